import CBLAS

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
/// results on one machine and BLAS build. Code: LAPACK+RandomizedSVD.swift (with the QR) and
/// GaussianGenerator.swift.
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

    static func checkFinite<T: LAPACKScalar>(_ a: UnsafeBufferPointer<T>, columns: Int, tensor: String) throws(MergeKitError) {
        for (index, value) in a.enumerated() where !value.isFinite {
            let what = value.isNaN ? "NaN" : (value < 0 ? "-Inf" : "+Inf")
            throw MergeKitError(.nonFiniteValue, tensor: tensor,
                                "cannot take the SVD: element [\(index / columns), \(index % columns)] is \(what)",
                                fix: "Check the inputs with \(term: .checkFinite); a merge cannot use a tensor holding NaN or Inf")
        }
    }

    static func checkSize(_ count: Int, what: String, tensor: String) throws(MergeKitError) {
        guard count <= Int(Int32.max) else {
            throw MergeKitError(.invalidArgument, tensor: tensor,
                                "\(what) has more than 2³¹ − 1 elements, too many for LAPACK's 32-bit indices",
                                fix: "SVD-based methods support matrices of up to 2³¹ − 1 elements")
        }
    }

    /// A workspace size from a LAPACK query, rounded up (single-precision queries can round down).
    static func workspace<T: LAPACKScalar>(_ query: T, tensor: String) throws(MergeKitError) -> Int32 {
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

// MARK: - Symmetric positive-definite systems (RegMean)

/// The three double-precision drivers RegMean's solve (Engine/DataMerging/GramSolver.swift) needs:
/// a Cholesky factorisation, the solve with it, and the minimum-norm least-squares solution when
/// the matrix is singular. All take column-major matrices; a symmetric matrix is its own
/// transpose, so a row-major one is passed as it is.
extension LAPACK {
    /// A = UᵀU for a symmetric positive-definite n×n matrix, in place on its upper triangle
    /// (`dpotrf`). Returns LAPACK's info: 0 on success, k > 0 when the leading minor of order k is
    /// not positive definite (the matrix is singular or indefinite to working precision).
    static func choleskyFactor(_ a: UnsafeMutablePointer<Double>, n: Int) -> Int32 {
        LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, CChar(UInt8(ascii: "U")), Int32(n), a, Int32(n))
    }

    /// Solves A·X = B with the factor of `choleskyFactor` (`dpotrs`): B is n×`columns`
    /// column-major (`columns` rows of n values each, row-major) and is overwritten by X.
    static func choleskySolve(_ factor: UnsafePointer<Double>, n: Int, _ b: UnsafeMutablePointer<Double>, columns: Int) -> Int32 {
        LAPACKE_dpotrs_work(LAPACK_COL_MAJOR, CChar(UInt8(ascii: "U")), Int32(n), Int32(columns), factor, Int32(n), b, Int32(n))
    }

    /// X = A⁺·B, the minimum-norm least-squares solution of A·X = B for a square n×n A, by its SVD
    /// (`dgelsd`): singular values at most `rcond`·σ_max count as zero. A is destroyed; B is
    /// n×`columns` column-major and is overwritten by X. Returns LAPACK's info (0 on success,
    /// > 0 when the SVD did not converge) and the effective rank.
    static func leastSquares(_ a: UnsafeMutablePointer<Double>, n: Int, _ b: UnsafeMutablePointer<Double>, columns: Int,
                             rcond: Double) -> (info: Int32, rank: Int) {
        let m = Int32(n), nrhs = Int32(columns)
        var singular = [Double](repeating: 0, count: n)
        var rank: Int32 = 0
        var query: Double = 0
        var iquery: Int32 = 0
        var info = LAPACKE_dgelsd_work(LAPACK_COL_MAJOR, m, m, nrhs, a, m, b, m, &singular, rcond, &rank, &query, -1, &iquery)
        guard info == 0 else { return (info, 0) }
        var work = [Double](repeating: 0, count: Int(query.rounded(.up)) + 1)
        var iwork = [Int32](repeating: 0, count: max(1, Int(iquery)))
        info = LAPACKE_dgelsd_work(LAPACK_COL_MAJOR, m, m, nrhs, a, m, b, m, &singular, rcond, &rank, &work, Int32(work.count), &iwork)
        return (info, Int(rank))
    }
}
