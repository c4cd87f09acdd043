/// What the decompositions of `LAPACK` hold at their peak, in bytes, so that commands can refuse
/// (or serialise) work before allocating it. Every count is computed in `Int` (64-bit), so a
/// hostile shape gives a huge number, never an overflow. `elementSize` is 4 (Float) or 8 (Double).
///
/// The exact SVD (`svd`) holds the copy LAPACK destroys (rows·columns), U (rows·k), s (k), Vᵀ
/// (k·columns), k = min(rows, columns), and the driver's workspace:
///
///     ?gesdd, jobz "S":  3k² + 7k elements for near-square matrices, 4k² + 7k when
///                        max ≥ 11/6·k (a QR comes first), + 8k Int32 of iwork
///     ?gesvd, "S"/"S":   k² + 8k + (rows + columns)·64 at most (blocked bidiagonalisation;
///                        the k² only when max ≫ k)
///
/// the formulas behind the workspace queries of LAPACK 3.x (`?gesdd`'s is 3× the matrix for a
/// square one: the largest single term). The query itself is asked too when LAPACK's 32-bit
/// integers can express the answer, and the larger of the two is used. So an exact SVD of a
/// square matrix holds about 6× the matrix; the callers add their own buffers.
extension LAPACK {
    /// `?gesdd`'s workspace for a rows×columns matrix (elements), or nil when it exceeds LAPACK's
    /// 32-bit sizes; then `svd` uses `?gesvd` (which needs far less) directly.
    static func divideAndConquerWorkspace(rows: Int, columns: Int) -> Int? {
        let k = min(rows, columns), large = max(rows, columns)
        guard k > 0 else { return 0 }
        let formula = max((large * 6 >= k * 11 ? 4 : 3) * k * k + 7 * k, 3 * k + (rows + columns) * 64)
        guard formula <= Int(Int32.max), large <= Int(Int32.max) else { return nil }
        var a: Float = 0, s: Float = 0, u: Float = 0, vt: Float = 0, query: Float = 0
        var iwork: Int32 = 0
        // Column-major Aᵀ, as `svd` asks (M = columns, N = rows); a query touches no array.
        let info = Float.gesdd(Int32(columns), Int32(rows), &a, Int32(max(1, columns)), &s, &u, Int32(max(1, columns)),
                               &vt, Int32(max(1, k)), &query, -1, &iwork)
        let asked = info == 0 && query.isFinite && query > 0 ? Int(query.rounded(.up)) + 1 : 0
        let workspace = max(formula, asked)
        return workspace <= Int(Int32.max) ? workspace : nil
    }

    /// `?gesvd`'s workspace for a rows×columns matrix (elements): its query when the bound above
    /// fits LAPACK's 32-bit sizes (it needs the k² term only for a matrix much longer than wide),
    /// else the bound.
    static func qrIterationWorkspace(rows: Int, columns: Int) -> Int {
        let k = min(rows, columns)
        guard k > 0 else { return 0 }
        let bound = k * k + 8 * k + (rows + columns) * 64
        guard bound <= Int(Int32.max) else { return bound }
        var a: Float = 0, s: Float = 0, u: Float = 0, vt: Float = 0, query: Float = 0
        let info = Float.gesvd(Int32(columns), Int32(rows), &a, Int32(max(1, columns)), &s, &u, Int32(max(1, columns)),
                               &vt, Int32(k), &query, -1)
        return info == 0 && query.isFinite && query > 0 ? Int(query.rounded(.up)) + 1 : bound
    }

    /// Why `svd` cannot decompose a rows×columns matrix at all (LAPACK's 32-bit indices), or nil.
    static func exactSVDProblem(rows: Int, columns: Int) -> String? {
        if rows > Int(Int32.max) / max(1, columns) {
            return "a \(rows)×\(columns) matrix has more than 2³¹ − 1 elements, too many for LAPACK's 32-bit indices"
        }
        if divideAndConquerWorkspace(rows: rows, columns: columns) == nil
            && qrIterationWorkspace(rows: rows, columns: columns) > Int(Int32.max) {
            return "the SVD of a \(rows)×\(columns) matrix needs more workspace than LAPACK's 32-bit indices can address"
        }
        return nil
    }

    /// Bytes of U, s and Vᵀ of a decomposition with `rank` triplets.
    static func decompositionBytes(rows: Int, columns: Int, rank: Int, elementSize: Int) -> Int {
        elementSize * (rows * rank + rank + rank * columns)
    }

    /// Peak bytes of `svd` on a rows×columns matrix (the input itself not counted).
    static func svdBytes(rows: Int, columns: Int, elementSize: Int) -> Int {
        let k = min(rows, columns)
        guard k > 0 else { return 0 }
        let arrays = elementSize * rows * columns + decompositionBytes(rows: rows, columns: columns, rank: k, elementSize: elementSize)
        let qr = elementSize * qrIterationWorkspace(rows: rows, columns: columns)
        guard let dc = divideAndConquerWorkspace(rows: rows, columns: columns) else { return arrays + qr }
        return arrays + max(elementSize * dc + 4 * 8 * k, qr)
    }

    /// Peak bytes of `polar` on a rows×columns matrix (the input not counted, the result counted).
    static func polarBytes(rows: Int, columns: Int, elementSize: Int) -> Int {
        let factors = decompositionBytes(rows: rows, columns: columns, rank: min(rows, columns), elementSize: elementSize)
        return max(svdBytes(rows: rows, columns: columns, elementSize: elementSize), factors + elementSize * rows * columns)
    }

    /// Peak bytes of `randomizedSVD` (rank `rank`, `oversampling` extra vectors) on a rows×columns
    /// matrix, the input not counted and the truncated result counted.
    static func randomizedSVDBytes(rows: Int, columns: Int, rank: Int, oversampling: Int, elementSize: Int) -> Int {
        let k = min(rows, columns), r = min(rank, k), l = r + oversampling
        guard r > 0 else { return 0 }
        let result = decompositionBytes(rows: rows, columns: columns, rank: r, elementSize: elementSize)
        if l >= k {
            let full = decompositionBytes(rows: rows, columns: columns, rank: k, elementSize: elementSize)
            return max(svdBytes(rows: rows, columns: columns, elementSize: elementSize), full + result)
        }
        // Ωᵀ and Zᵀ (ℓ×columns), Qᵀ (ℓ×rows); then the small SVD of B (ℓ×columns), U = QŨ and the truncation.
        let held = elementSize * l * (2 * columns + rows)
        let orthonormalisation = elementSize * l * 65
        let small = decompositionBytes(rows: l, columns: columns, rank: l, elementSize: elementSize)
        let assembled = small + elementSize * rows * l + result
        return held + max(orthonormalisation, svdBytes(rows: l, columns: columns, elementSize: elementSize), assembled)
    }
}
