import CBLAS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Singular value decompositions for the SVD-based merges (TSV-M, Iso-C) and LoRA extraction.
///
/// Everything here works on dense row-major matrices, the layout of a safetensors tensor
/// `[rows, columns]` (a Linear weight `[out_features, in_features]`).
///
/// **Exact thin SVD** (`svd`): A = U·diag(s)·Vᵀ with U rows×k, Vᵀ k×columns, k = min(rows, columns),
/// s descending and ≥ 0. LAPACK's divide-and-conquer driver `?gesdd` (jobz "S") is used first; if it
/// reports that its bidiagonal SVD did not converge (info > 0), the QR-iteration driver `?gesvd`
/// (jobu = jobvt = "S") is run on a fresh copy of the input. Any other failure, or a failure of the
/// fallback, is thrown as a `MergeKitError` naming the tensor. A NaN or ±∞ anywhere in the input is
/// rejected before LAPACK sees it (`.nonFiniteValue`, with the element's position).
///
/// Layout: a row-major rows×columns matrix *is* the column-major columns×rows matrix Aᵀ, so the
/// wrapper decomposes Aᵀ = V·diag(s)·Uᵀ with `LAPACK_COL_MAJOR` instead of asking LAPACKE for
/// `LAPACK_ROW_MAJOR`. The two give the same factors (the column-major U of Aᵀ is, byte for byte,
/// the row-major Vᵀ of A, and its Vᵀ is the row-major U), but the row-major entry points of LAPACKE
/// transpose A, U and Vᵀ into temporary copies first, doubling the memory of a large SVD. Workspace
/// sizes are queried and rounded up (single-precision workspace queries can round down for large
/// matrices in older LAPACKs). Matrices must have at most 2³¹ − 1 elements (LAPACK's 32-bit indices);
/// when `?gesdd`'s workspace (3–4·min(rows, columns)² elements) would exceed that, `.automatic` runs
/// `?gesvd` directly. What each decomposition holds at its peak: LAPACK+WorkingSet.swift.
///
/// **Randomized truncated SVD** (`randomizedSVD`): the range finder of Halko, Martinsson & Tropp
/// (SIAM Review 2011, Algorithms 4.3/4.4) with ℓ = r + p Gaussian test vectors and q power iterations,
/// each re-orthonormalised by Householder QR (`?geqrf` + `?orgqr`), then an exact SVD of the small
/// ℓ×columns matrix B = QᵀA; U = Q·Ũ, truncated to rank r. Cost O(rows·columns·ℓ·(2q + 2)) instead
/// of O(rows·columns·min(rows, columns)), and memory O((rows + columns)·ℓ) besides the input (which,
/// touched only by GEMM, may exceed 2³¹ − 1 elements). The
/// Gaussian matrix comes from SplitMix64 + Box–Muller on the seed, so a seed gives bit-identical
/// results on one machine and BLAS build.
///
/// Measured accuracy (Float, 400×300 matrices A = U·diag(σ)·Vᵀ with random orthonormal U, V;
/// r = 20, p = 10): the Frobenius error ‖A − UₐSₐVₐᵀ‖ of the randomized SVD divided by that of the
/// exact rank-r truncation, mean over seeds 1…5 (worst seed in parentheses); see LAPACKTests:
///
/// | spectrum σᵢ, i = 1…300 | q = 0         | q = 1             | q = 2                 |
/// |------------------------|---------------|-------------------|-----------------------|
/// | 1/i                    | 1.315 (1.367) | 1.0093 (1.0136)   | 1.00099 (1.0013)      |
/// | 1/i²                   | 1.349 (1.457) | 1.0017 (1.0023)   | 1.000035 (1.000058)   |
/// | exp(−i/10)             | 1.242 (1.332) | 1.00066 (1.0010)  | 1.0000052 (1.000011)  |
///
/// So the default q = 2 is within 0.15 % of the optimal error on all three; q = 1 within 1.4 %;
/// q = 0 (no power iteration) is 25–45 % worse and only suits a quick look. The tests assert these
/// numbers with a margin. At a model's size (2048×2048, σᵢ = 1/i, the slowest decay above; rank
/// 64, p = 10, q = 2) the ratio was 1.0057, within 1 % of optimal at a fraction of the exact
/// `sgesdd`'s time (the README's performance section has the timings).
///
/// This file imports CBLAS for LAPACKE and GEMM; every other BLAS call goes through BLAS.swift.
///
/// **Polar factor** (`polar`): the orthogonal factor P·Qᵀ of M = P·S·Qᵀ, the orthonormal matrix
/// nearest to M in Frobenius norm; TSV-M orthogonalises its concatenated singular vectors with it.
enum LAPACK {
    /// Which LAPACK driver computes an exact SVD.
    enum Driver: String, Sendable, CaseIterable, Equatable {
        /// `?gesdd`, falling back to `?gesvd` when `?gesdd` does not converge (the default).
        case automatic
        /// `?gesdd` only (divide and conquer).
        case divideAndConquer
        /// `?gesvd` only (QR iteration).
        case qrIteration
    }

    /// A thin or truncated SVD A ≈ U·diag(s)·Vᵀ of a rows×columns matrix, factors row-major.
    struct Decomposition<Scalar: LAPACKScalar>: Sendable, Equatable {
        let rows: Int
        let columns: Int
        /// The number of singular triplets held (min(rows, columns) for a thin SVD).
        let rank: Int
        /// rows × rank, row-major; orthonormal columns.
        var u: [Scalar]
        /// rank singular values, descending, ≥ 0.
        var s: [Scalar]
        /// rank × columns, row-major (the rows are the right singular vectors).
        var vt: [Scalar]
        /// The driver that produced the factors: `.divideAndConquer` or `.qrIteration` (never
        /// `.automatic`). For a randomized SVD, the driver of its small exact SVD.
        var driver: Driver

        /// U_r·diag(s_r)·V_rᵀ, rows × columns row-major, from the leading `rank` triplets
        /// (all of them by default).
        func reconstruct(rank requested: Int? = nil) -> [Scalar] {
            let r = min(requested ?? rank, rank)
            precondition(r >= 0, "rank must be non-negative")
            var out = [Scalar](repeating: 0, count: rows * columns)
            guard r > 0, rows > 0, columns > 0 else { return out }
            // (U_r·diag(s_r)) rows × r, then times the first r rows of Vᵀ.
            var scaled = [Scalar](repeating: 0, count: rows * r)
            for i in 0..<rows {
                for j in 0..<r { scaled[i * r + j] = u[i * rank + j] * s[j] }
            }
            scaled.withUnsafeBufferPointer { sp in
                vt.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        LAPACK.gemm(transposeA: false, transposeB: false, m: rows, n: columns, k: r,
                                    sp.baseAddress!, lda: r, vp.baseAddress!, ldb: columns, op.baseAddress!, ldc: columns)
                    }
                }
            }
            return out
        }

        /// The leading `r` triplets (r is clamped to `rank`).
        func truncated(to requested: Int) -> Decomposition {
            precondition(requested >= 0, "rank must be non-negative")
            let r = min(requested, rank)
            if r == rank { return self }
            var newU = [Scalar](repeating: 0, count: rows * r)
            for i in 0..<rows {
                for j in 0..<r { newU[i * r + j] = u[i * rank + j] }
            }
            return Decomposition(rows: rows, columns: columns, rank: r, u: newU, s: Array(s[0..<r]),
                                 vt: Array(vt[0..<(r * columns)]), driver: driver)
        }

        /// The number of singular values above `tolerance`; by default numpy's `matrix_rank`
        /// threshold σ₁·max(rows, columns)·ε.
        func numericalRank(tolerance: Scalar? = nil) -> Int {
            guard let first = s.first else { return 0 }
            let threshold = tolerance ?? first * Scalar(max(rows, columns)) * Scalar.ulpOfOne
            return s.reduce(0) { $0 + ($1 > threshold ? 1 : 0) }
        }

        /// ‖A − U_r·diag(s_r)·V_rᵀ‖_F computed from the discarded singular values (exact for a full
        /// thin SVD; for a truncated one it is the error of the triplets held beyond r only).
        func truncationError(rank r: Int) -> Double {
            guard r < rank else { return 0 }
            var sum = 0.0
            for value in s[max(0, r)...] { sum += Double(value) * Double(value) }
            return sum.squareRoot()
        }
    }

    /// The Float SVD the merge kernels use.
    typealias SVD = Decomposition<Float>

    // MARK: - Exact SVD

    /// The thin SVD of the row-major `rows`×`columns` matrix `a` (which is not modified).
    ///
    /// - Parameters:
    ///   - tensor: named in every error.
    ///   - driver: `.automatic` (sgesdd, then sgesvd if it does not converge) unless testing.
    ///   - simulateNonConvergence: test hook: treat these drivers as not converged (info = 1 after
    ///     they ran), so that the fallback and the error paths run.
    /// - Throws: `.nonFiniteValue` if `a` holds NaN or ±∞; `.invalidArgument` if the matrix is too
    ///   large for LAPACK's 32-bit indices or LAPACK fails after the fallback.
    static func svd<T: LAPACKScalar>(_ a: UnsafeBufferPointer<T>, rows: Int, columns: Int, tensor: String,
                                     driver: Driver = .automatic,
                                     simulateNonConvergence: Set<Driver> = []) throws(MergeKitError) -> Decomposition<T> {
        precondition(rows >= 0 && columns >= 0 && a.count == rows * columns,
                     "svd: buffer of \(a.count) elements for a \(rows)×\(columns) matrix")
        let k = min(rows, columns)
        if k == 0 {
            return Decomposition(rows: rows, columns: columns, rank: 0, u: [], s: [], vt: [],
                                 driver: driver == .qrIteration ? .qrIteration : .divideAndConquer)
        }
        try checkFinite(a, columns: columns, tensor: tensor)
        try checkSize(rows * columns, what: "a \(rows)×\(columns) matrix", tensor: tensor)

        // LAPACK sees the column-major matrix Aᵀ: M = columns, N = rows, lda = columns.
        // Its U (M×k, ldu = M) is our Vᵀ; its Vᵀ (k×N, ldvt = k) is our U.
        let lapackM = Int32(columns), lapackN = Int32(rows), lapackK = Int32(k)
        var u = [T](repeating: 0, count: rows * k)
        var s = [T](repeating: 0, count: k)
        var vt = [T](repeating: 0, count: k * columns)
        var work = Array(a)

        func run(_ which: Driver) throws(MergeKitError) -> Int32 {
            var result: Int32 = 0
            var workspaceProblem: MergeKitError?
            work.withUnsafeMutableBufferPointer { wp in
                s.withUnsafeMutableBufferPointer { sp in
                    u.withUnsafeMutableBufferPointer { up in
                        vt.withUnsafeMutableBufferPointer { vp in
                            do throws(MergeKitError) {
                                if which == .qrIteration {
                                    result = try gesvd(wp.baseAddress!, m: lapackM, n: lapackN, s: sp.baseAddress!,
                                                       u: vp.baseAddress!, ldu: lapackM, vt: up.baseAddress!, ldvt: lapackK,
                                                       tensor: tensor)
                                } else {
                                    result = try gesdd(wp.baseAddress!, m: lapackM, n: lapackN, s: sp.baseAddress!,
                                                       u: vp.baseAddress!, ldu: lapackM, vt: up.baseAddress!, ldvt: lapackK,
                                                       tensor: tensor)
                                }
                            } catch {
                                workspaceProblem = error
                            }
                        }
                    }
                }
            }
            if let workspaceProblem { throw workspaceProblem }
            return result
        }

        var used: Driver
        var info: Int32
        var history: [String] = []
        switch driver {
        case .qrIteration:
            used = .qrIteration
            info = try run(.qrIteration)
            if simulateNonConvergence.contains(.qrIteration) && info == 0 { info = 1 }
            history.append("sgesvd info = \(info)")
        case .automatic where divideAndConquerWorkspace(rows: rows, columns: columns) == nil:
            // ?gesdd's workspace (3–4 min(rows, columns)² elements) exceeds LAPACK's 32-bit sizes.
            used = .qrIteration
            info = try run(.qrIteration)
            if simulateNonConvergence.contains(.qrIteration) && info == 0 { info = 1 }
            history.append("sgesvd info = \(info)")
        case .divideAndConquer, .automatic:
            used = .divideAndConquer
            info = try run(.divideAndConquer)
            if simulateNonConvergence.contains(.divideAndConquer) && info == 0 { info = 1 }
            history.append("sgesdd info = \(info)")
            if driver == .automatic && info > 0 {
                // Not converged: retry with QR iteration on a fresh copy (gesdd destroyed `work`),
                // releasing the old one first so that two copies are never held.
                work = []
                work = Array(a)
                used = .qrIteration
                info = try run(.qrIteration)
                if simulateNonConvergence.contains(.qrIteration) && info == 0 { info = 1 }
                history.append("sgesvd info = \(info)")
            }
        }
        guard info == 0 else {
            let reason = info > 0 ? "the bidiagonal SVD did not converge" : "LAPACK rejected argument \(-info)"
            throw MergeKitError(.invalidArgument, tensor: tensor,
                                "the SVD of this \(rows)×\(columns) matrix failed: \(reason) (\(history.joined(separator: ", ")))",
                                fix: "This should not happen for finite matrices; please report it with the tensor's values")
        }
        return Decomposition(rows: rows, columns: columns, rank: k, u: u, s: s, vt: vt, driver: used)
    }

    /// The thin SVD of the row-major `rows`×`columns` matrix `a`; see the buffer overload.
    static func svd<T: LAPACKScalar>(_ a: [T], rows: Int, columns: Int, tensor: String,
                                     driver: Driver = .automatic,
                                     simulateNonConvergence: Set<Driver> = []) throws(MergeKitError) -> Decomposition<T> {
        var result: Result<Decomposition<T>, MergeKitError>!
        a.withUnsafeBufferPointer { ap in
            do throws(MergeKitError) {
                result = .success(try svd(ap, rows: rows, columns: columns, tensor: tensor, driver: driver,
                                          simulateNonConvergence: simulateNonConvergence))
            } catch {
                result = .failure(error)
            }
        }
        return try result.get()
    }

    // MARK: - Randomized SVD

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

    // MARK: - Polar factor

    /// The orthogonal polar factor P·Qᵀ of the row-major `rows`×`columns` matrix M = P·S·Qᵀ:
    /// rows×columns row-major, with orthonormal columns when rows ≥ columns and orthonormal rows
    /// otherwise. It is the orthonormal matrix nearest to M (Frobenius norm), and unique when M has
    /// full rank. TSV-M uses it to orthogonalise the concatenated singular vectors of the tasks.
    static func polar<T: LAPACKScalar>(_ m: [T], rows: Int, columns: Int, tensor: String = "") throws(MergeKitError) -> [T] {
        let d = try svd(m, rows: rows, columns: columns, tensor: tensor)
        var out = [T](repeating: 0, count: rows * columns)
        guard d.rank > 0 else { return out }
        d.u.withUnsafeBufferPointer { up in
            d.vt.withUnsafeBufferPointer { vp in
                out.withUnsafeMutableBufferPointer { op in
                    gemm(transposeA: false, transposeB: false, m: rows, n: columns, k: d.rank,
                         up.baseAddress!, lda: d.rank, vp.baseAddress!, ldb: columns, op.baseAddress!, ldc: columns)
                }
            }
        }
        return out
    }

    // MARK: - QR

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

    // MARK: - Helpers

    /// C ← op(A)·op(B), all row-major; op(X) = Xᵀ when asked. m×n result, inner dimension k.
    static func gemm<T: LAPACKScalar>(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                                      _ a: UnsafePointer<T>, lda: Int, _ b: UnsafePointer<T>, ldb: Int,
                                      _ c: UnsafeMutablePointer<T>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = 0 } }
            return
        }
        for value in [m, n, k, lda, ldb, ldc] {
            precondition(value <= Int(Int32.max), "gemm dimension \(value) out of BLAS's range")
        }
        T.gemm(transposeA, transposeB, Int32(m), Int32(n), Int32(k), a, Int32(lda), b, Int32(ldb), c, Int32(ldc))
    }

    private static func checkFinite<T: LAPACKScalar>(_ a: UnsafeBufferPointer<T>, columns: Int, tensor: String) throws(MergeKitError) {
        for (index, value) in a.enumerated() where !value.isFinite {
            let what = value.isNaN ? "NaN" : (value < 0 ? "-Inf" : "+Inf")
            throw MergeKitError(.nonFiniteValue, tensor: tensor,
                                "cannot take the SVD: element [\(index / columns), \(index % columns)] is \(what)",
                                fix: "Check the inputs with \(term: .checkFinite); a merge cannot use a tensor holding NaN or Inf")
        }
    }

    private static func checkSize(_ count: Int, what: String, tensor: String) throws(MergeKitError) {
        guard count <= Int(Int32.max) else {
            throw MergeKitError(.invalidArgument, tensor: tensor,
                                "\(what) has more than 2³¹ − 1 elements, too many for LAPACK's 32-bit indices",
                                fix: "SVD-based methods support matrices of up to 2³¹ − 1 elements")
        }
    }

    /// A workspace size from a LAPACK query, rounded up (single-precision queries can round down).
    private static func workspace<T: LAPACKScalar>(_ query: T, tensor: String) throws(MergeKitError) -> Int32 {
        let size = (Double(query) * (1 + 1e-6)).rounded(.up) + 1
        guard size.isFinite, size <= Double(Int32.max) else {
            throw MergeKitError(.invalidArgument, tensor: tensor,
                                "LAPACK asks for a workspace of \(query) elements, too many for its 32-bit indices",
                                fix: "SVD-based methods support matrices of up to about 2³¹ elements of workspace")
        }
        return Int32(max(1, size))
    }

    private static func gesdd<T: LAPACKScalar>(_ a: UnsafeMutablePointer<T>, m: Int32, n: Int32, s: UnsafeMutablePointer<T>,
                                               u: UnsafeMutablePointer<T>, ldu: Int32, vt: UnsafeMutablePointer<T>, ldvt: Int32,
                                               tensor: String) throws(MergeKitError) -> Int32 {
        var iwork = [Int32](repeating: 0, count: 8 * Int(min(m, n)))
        var query: T = 0
        var info = T.gesdd(m, n, a, m, s, u, ldu, vt, ldvt, &query, -1, &iwork)
        guard info == 0 else { return info }
        let lwork = try workspace(query, tensor: tensor)
        var work = [T](repeating: 0, count: Int(lwork))
        info = T.gesdd(m, n, a, m, s, u, ldu, vt, ldvt, &work, lwork, &iwork)
        return info
    }

    private static func gesvd<T: LAPACKScalar>(_ a: UnsafeMutablePointer<T>, m: Int32, n: Int32, s: UnsafeMutablePointer<T>,
                                               u: UnsafeMutablePointer<T>, ldu: Int32, vt: UnsafeMutablePointer<T>, ldvt: Int32,
                                               tensor: String) throws(MergeKitError) -> Int32 {
        var query: T = 0
        var info = T.gesvd(m, n, a, m, s, u, ldu, vt, ldvt, &query, -1)
        guard info == 0 else { return info }
        let lwork = try workspace(query, tensor: tensor)
        var work = [T](repeating: 0, count: Int(lwork))
        info = T.gesvd(m, n, a, m, s, u, ldu, vt, ldvt, &work, lwork)
        return info
    }
}

// MARK: - Gaussian generator

/// Standard normal numbers from SplitMix64 (Vigna) and the Box–Muller transform, both outputs
/// used. Deterministic for a seed; the random test matrices of the randomized SVD.
struct GaussianGenerator: Sendable {
    private var state: UInt64
    private var spare: Double?

    init(seed: UInt64) { state = seed }

    /// The next SplitMix64 output.
    mutating func nextBits() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal number.
    mutating func next() -> Double {
        if let value = spare {
            spare = nil
            return value
        }
        // u1 in (0, 1] so that log(u1) is finite; u2 in [0, 1).
        let u1 = Double((nextBits() >> 11) + 1) * 0x1p-53
        let u2 = Double(nextBits() >> 11) * 0x1p-53
        let radius = (-2 * log(u1)).squareRoot()
        let angle = 2 * Double.pi * u2
        spare = radius * sin(angle)
        return radius * cos(angle)
    }
}

// MARK: - Element types

/// Float and Double: the LAPACK (`s…`/`d…`, column-major, caller-supplied workspace) and GEMM
/// entry points the decompositions use. Dimensions are checked to fit Int32 by the callers.
protocol LAPACKScalar: ComputeScalar {
    static func gesdd(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Self>, _ lda: Int32, _ s: UnsafeMutablePointer<Self>,
                      _ u: UnsafeMutablePointer<Self>, _ ldu: Int32, _ vt: UnsafeMutablePointer<Self>, _ ldvt: Int32,
                      _ work: UnsafeMutablePointer<Self>, _ lwork: Int32, _ iwork: UnsafeMutablePointer<Int32>) -> Int32
    static func gesvd(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Self>, _ lda: Int32, _ s: UnsafeMutablePointer<Self>,
                      _ u: UnsafeMutablePointer<Self>, _ ldu: Int32, _ vt: UnsafeMutablePointer<Self>, _ ldvt: Int32,
                      _ work: UnsafeMutablePointer<Self>, _ lwork: Int32) -> Int32
    static func geqrf(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Self>, _ lda: Int32, _ tau: UnsafeMutablePointer<Self>,
                      _ work: UnsafeMutablePointer<Self>, _ lwork: Int32) -> Int32
    static func orgqr(_ m: Int32, _ n: Int32, _ k: Int32, _ a: UnsafeMutablePointer<Self>, _ lda: Int32, _ tau: UnsafePointer<Self>,
                      _ work: UnsafeMutablePointer<Self>, _ lwork: Int32) -> Int32
    /// Row-major C ← op(A)·op(B) (α = 1, β = 0): `cblas_sgemm` / `cblas_dgemm`.
    static func gemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int32, _ n: Int32, _ k: Int32,
                     _ a: UnsafePointer<Self>, _ lda: Int32, _ b: UnsafePointer<Self>, _ ldb: Int32,
                     _ c: UnsafeMutablePointer<Self>, _ ldc: Int32)
}

private let jobS = CChar(UInt8(ascii: "S"))

extension Float: LAPACKScalar {
    static func gesdd(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Float>, _ lda: Int32, _ s: UnsafeMutablePointer<Float>,
                      _ u: UnsafeMutablePointer<Float>, _ ldu: Int32, _ vt: UnsafeMutablePointer<Float>, _ ldvt: Int32,
                      _ work: UnsafeMutablePointer<Float>, _ lwork: Int32, _ iwork: UnsafeMutablePointer<Int32>) -> Int32 {
        LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, jobS, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork)
    }
    static func gesvd(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Float>, _ lda: Int32, _ s: UnsafeMutablePointer<Float>,
                      _ u: UnsafeMutablePointer<Float>, _ ldu: Int32, _ vt: UnsafeMutablePointer<Float>, _ ldvt: Int32,
                      _ work: UnsafeMutablePointer<Float>, _ lwork: Int32) -> Int32 {
        LAPACKE_sgesvd_work(LAPACK_COL_MAJOR, jobS, jobS, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork)
    }
    static func geqrf(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Float>, _ lda: Int32, _ tau: UnsafeMutablePointer<Float>,
                      _ work: UnsafeMutablePointer<Float>, _ lwork: Int32) -> Int32 {
        LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, m, n, a, lda, tau, work, lwork)
    }
    static func orgqr(_ m: Int32, _ n: Int32, _ k: Int32, _ a: UnsafeMutablePointer<Float>, _ lda: Int32, _ tau: UnsafePointer<Float>,
                      _ work: UnsafeMutablePointer<Float>, _ lwork: Int32) -> Int32 {
        LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, m, n, k, a, lda, tau, work, lwork)
    }
    static func gemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int32, _ n: Int32, _ k: Int32,
                     _ a: UnsafePointer<Float>, _ lda: Int32, _ b: UnsafePointer<Float>, _ ldb: Int32,
                     _ c: UnsafeMutablePointer<Float>, _ ldc: Int32) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
    }
}

extension Double: LAPACKScalar {
    static func gesdd(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Double>, _ lda: Int32, _ s: UnsafeMutablePointer<Double>,
                      _ u: UnsafeMutablePointer<Double>, _ ldu: Int32, _ vt: UnsafeMutablePointer<Double>, _ ldvt: Int32,
                      _ work: UnsafeMutablePointer<Double>, _ lwork: Int32, _ iwork: UnsafeMutablePointer<Int32>) -> Int32 {
        LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, jobS, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork)
    }
    static func gesvd(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Double>, _ lda: Int32, _ s: UnsafeMutablePointer<Double>,
                      _ u: UnsafeMutablePointer<Double>, _ ldu: Int32, _ vt: UnsafeMutablePointer<Double>, _ ldvt: Int32,
                      _ work: UnsafeMutablePointer<Double>, _ lwork: Int32) -> Int32 {
        LAPACKE_dgesvd_work(LAPACK_COL_MAJOR, jobS, jobS, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork)
    }
    static func geqrf(_ m: Int32, _ n: Int32, _ a: UnsafeMutablePointer<Double>, _ lda: Int32, _ tau: UnsafeMutablePointer<Double>,
                      _ work: UnsafeMutablePointer<Double>, _ lwork: Int32) -> Int32 {
        LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, m, n, a, lda, tau, work, lwork)
    }
    static func orgqr(_ m: Int32, _ n: Int32, _ k: Int32, _ a: UnsafeMutablePointer<Double>, _ lda: Int32, _ tau: UnsafePointer<Double>,
                      _ work: UnsafeMutablePointer<Double>, _ lwork: Int32) -> Int32 {
        LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, m, n, k, a, lda, tau, work, lwork)
    }
    static func gemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int32, _ n: Int32, _ k: Int32,
                     _ a: UnsafePointer<Double>, _ lda: Int32, _ b: UnsafePointer<Double>, _ ldb: Int32,
                     _ c: UnsafeMutablePointer<Double>, _ ldc: Int32) {
        cblas_dgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    m, n, k, 1, a, lda, b, ldb, 0, c, ldc)
    }
}
