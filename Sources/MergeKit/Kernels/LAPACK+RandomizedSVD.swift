extension LAPACK {
    /// A rank-`rank` approximation of the row-major `rows`×`columns` matrix `a` by the randomized
    /// range finder (Halko–Martinsson–Tropp): Ω columns×ℓ standard normal (ℓ = rank + oversampling),
    /// Y = AΩ, `powerIterations` rounds of Y ← A(AᵀQ) with QR re-orthonormalisation, Q = qr(Y),
    /// B = QᵀA, B = Ũ·diag(s)·Vᵀ exactly, U = QŨ, truncated to `rank`.
    ///
    /// `rank` is clamped to min(rows, columns); when ℓ ≥ min(rows, columns) the exact SVD is cheaper
    /// and is returned (truncated). The result is a pure function of (a, rank, oversampling,
    /// powerIterations, seed) for a given BLAS build. Accuracy: see the type's documentation.
    static func randomizedSVD<T: LAPACKScalar>(_ a: UnsafeBufferPointer<T>, rows: Int, columns: Int, rank requested: Int,
                                               oversampling: Int = 10, powerIterations: Int = 2, seed: UInt64,
                                               tensor: String) throws(MergeKitError) -> Decomposition<T> {
        precondition(rows >= 0 && columns >= 0 && a.count == rows * columns,
                     "randomizedSVD: buffer of \(a.count) elements for a \(rows)×\(columns) matrix")
        precondition(requested >= 0 && oversampling >= 0 && powerIterations >= 0,
                     "randomizedSVD: rank, oversampling and powerIterations must be non-negative")
        let k = min(rows, columns)
        let r = min(requested, k)
        let l = r + oversampling
        if r == 0 {
            return Decomposition(rows: rows, columns: columns, rank: 0, u: [], s: [], vt: [], driver: .divideAndConquer)
        }
        if l >= k {
            return try svd(a, rows: rows, columns: columns, tensor: tensor).truncated(to: r)
        }
        try checkFinite(a, columns: columns, tensor: tensor)
        // A itself only meets GEMM (dimensions, not its element count, must fit 32 bits); the
        // bases Q and Z (ℓ × rows, ℓ × columns) meet LAPACK's QR.
        try checkSize(max(rows, columns) * l, what: "a \(max(rows, columns))×\(l) basis", tensor: tensor)
        let A = a.baseAddress!

        // Ωᵀ, ℓ×columns row-major (= Ω columns×ℓ column-major).
        var gaussian = GaussianGenerator(seed: seed)
        var omegaT = [T](repeating: 0, count: l * columns)
        for i in omegaT.indices { omegaT[i] = T(gaussian.next()) }

        // The basis is kept as Qᵀ, ℓ×rows row-major, i.e. Q rows×ℓ column-major: what geqrf wants.
        var qT = [T](repeating: 0, count: l * rows)
        var zT = [T](repeating: 0, count: l * columns) // Zᵀ = QᵀA, ℓ×columns row-major = Z columns×ℓ column-major

        // Yᵀ = ΩᵀAᵀ
        omegaT.withUnsafeBufferPointer { op in
            qT.withUnsafeMutableBufferPointer { qp in
                gemm(transposeA: false, transposeB: true, m: l, n: rows, k: columns,
                     op.baseAddress!, lda: columns, A, ldb: columns, qp.baseAddress!, ldc: rows)
            }
        }
        try orthonormalizeColumns(&qT, rows: rows, columns: l, tensor: tensor)
        for _ in 0..<powerIterations {
            // Zᵀ = QᵀA, orthonormalise Z; Yᵀ = ZᵀAᵀ, orthonormalise Y.
            qT.withUnsafeBufferPointer { qp in
                zT.withUnsafeMutableBufferPointer { zp in
                    gemm(transposeA: false, transposeB: false, m: l, n: columns, k: rows,
                         qp.baseAddress!, lda: rows, A, ldb: columns, zp.baseAddress!, ldc: columns)
                }
            }
            try orthonormalizeColumns(&zT, rows: columns, columns: l, tensor: tensor)
            zT.withUnsafeBufferPointer { zp in
                qT.withUnsafeMutableBufferPointer { qp in
                    gemm(transposeA: false, transposeB: true, m: l, n: rows, k: columns,
                         zp.baseAddress!, lda: columns, A, ldb: columns, qp.baseAddress!, ldc: rows)
                }
            }
            try orthonormalizeColumns(&qT, rows: rows, columns: l, tensor: tensor)
        }
        // B = QᵀA, ℓ×columns row-major.
        qT.withUnsafeBufferPointer { qp in
            zT.withUnsafeMutableBufferPointer { zp in
                gemm(transposeA: false, transposeB: false, m: l, n: columns, k: rows,
                     qp.baseAddress!, lda: rows, A, ldb: columns, zp.baseAddress!, ldc: columns)
            }
        }
        let small = try svd(zT, rows: l, columns: columns, tensor: tensor) // Ũ ℓ×ℓ, s ℓ, Vᵀ ℓ×columns
        // U = QŨ, rows×ℓ row-major.
        var u = [T](repeating: 0, count: rows * l)
        qT.withUnsafeBufferPointer { qp in
            small.u.withUnsafeBufferPointer { sp in
                u.withUnsafeMutableBufferPointer { up in
                    gemm(transposeA: true, transposeB: false, m: rows, n: l, k: l,
                         qp.baseAddress!, lda: rows, sp.baseAddress!, ldb: l, up.baseAddress!, ldc: l)
                }
            }
        }
        let full = Decomposition(rows: rows, columns: columns, rank: l, u: u, s: small.s, vt: small.vt, driver: small.driver)
        return full.truncated(to: r)
    }

    /// The randomized SVD of `a`; see the buffer overload.
    static func randomizedSVD<T: LAPACKScalar>(_ a: [T], rows: Int, columns: Int, rank: Int,
                                               oversampling: Int = 10, powerIterations: Int = 2, seed: UInt64,
                                               tensor: String) throws(MergeKitError) -> Decomposition<T> {
        var result: Result<Decomposition<T>, MergeKitError>!
        a.withUnsafeBufferPointer { ap in
            do throws(MergeKitError) {
                result = .success(try randomizedSVD(ap, rows: rows, columns: columns, rank: rank, oversampling: oversampling,
                                                    powerIterations: powerIterations, seed: seed, tensor: tensor))
            } catch {
                result = .failure(error)
            }
        }
        return try result.get()
    }

    /// Replaces the `columns` columns of the column-major `rows`×`columns` matrix held in `matrix`
    /// (equivalently its row-major transpose) by an orthonormal basis of their span (Householder QR:
    /// `?geqrf` then `?orgqr`). Requires rows ≥ columns.
    static func orthonormalizeColumns<T: LAPACKScalar>(_ matrix: inout [T], rows: Int, columns: Int, tensor: String) throws(MergeKitError) {
        precondition(rows >= columns && matrix.count == rows * columns)
        guard columns > 0 else { return }
        try checkSize(rows * columns, what: "a \(rows)×\(columns) basis", tensor: tensor)
        let m = Int32(rows), n = Int32(columns)
        var tau = [T](repeating: 0, count: columns)
        var info: Int32 = 0
        var problem: MergeKitError?
        matrix.withUnsafeMutableBufferPointer { mp in
            tau.withUnsafeMutableBufferPointer { tp in
                do throws(MergeKitError) {
                    var query: T = 0
                    info = T.geqrf(m, n, mp.baseAddress!, m, tp.baseAddress!, &query, -1)
                    guard info == 0 else { return }
                    var lwork = try workspace(query, tensor: tensor)
                    var work = [T](repeating: 0, count: Int(lwork))
                    info = T.geqrf(m, n, mp.baseAddress!, m, tp.baseAddress!, &work, lwork)
                    guard info == 0 else { return }
                    info = T.orgqr(m, n, n, mp.baseAddress!, m, tp.baseAddress!, &query, -1)
                    guard info == 0 else { return }
                    lwork = try workspace(query, tensor: tensor)
                    if Int(lwork) > work.count { work = [T](repeating: 0, count: Int(lwork)) }
                    info = T.orgqr(m, n, n, mp.baseAddress!, m, tp.baseAddress!, &work, lwork)
                } catch {
                    problem = error
                }
            }
        }
        if let problem { throw problem }
        guard info == 0 else {
            throw MergeKitError(.invalidArgument, tensor: tensor,
                                "the QR factorisation of a \(rows)×\(columns) basis failed (LAPACK info = \(info))",
                                fix: "This should not happen for finite matrices; please report it with the tensor's values")
        }
    }
}
