extension LAPACK {
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
}
