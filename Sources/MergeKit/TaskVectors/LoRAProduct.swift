/// A LoRA module's τ_W = s·B·A (or s·(B·A)ᵀ = s·Aᵀ·Bᵀ when the weight is stored transposed),
/// produced a range of elements at a time so that a merge never holds the dense delta.
///
/// The factors are read once (A: r × in, B: out × r, converted to the compute type). For an element
/// range of the row-major delta [rows, columns], the full rows inside the range come from one GEMM
/// of the matching row block of B (or of Aᵀ) with A (or Bᵀ), written straight to the destination;
/// a partial row at either end of the range is computed whole into a one-row scratch and the part
/// inside the range copied. Each element is Σₖ B[i,k]·A[k,j] summed by BLAS in the compute type,
/// then multiplied by s (as PEFT computes `(B @ A) * scaling`). The row blocks depend only on
/// the range, so results are the same for any thread count.
final class LoRAProduct<T: MergeScalar> {
    let module: LoRAAdapter.Module
    private let a: [T]
    private let b: [T]
    private let scale: T
    let rows: Int
    let columns: Int
    private let rank: Int
    private var rowScratch: [T]

    init(_ module: LoRAAdapter.Module) throws(MergeKitError) {
        self.module = module
        a = Self.read(module.a)
        b = Self.read(module.b)
        scale = T(module.scale)
        rank = module.rank
        let shape = module.deltaShape
        rows = shape[0]
        columns = shape[1]
        rowScratch = [T](repeating: 0, count: columns)
    }

    private static func read(_ entry: Checkpoint.Entry) -> [T] {
        let bytes = entry.file.bytes(of: entry.info)
        let count = entry.info.elementCount
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { T.load(bytes.baseAddress!, dtype: entry.info.dtype, count: count, into: buffer.baseAddress!) }
            initialized = count
        }
    }

    /// Writes τ_W's elements `range` (row-major indices) to `destination`.
    func materialize(_ range: Range<Int>, into destination: UnsafeMutablePointer<T>) {
        guard !range.isEmpty else { return }
        precondition(range.upperBound <= rows * columns, "LoRA product range out of bounds")
        var position = range.lowerBound
        var out = destination
        while position < range.upperBound {
            let row = position / columns
            let offset = position - row * columns
            let fullRows = offset == 0 ? (range.upperBound - position) / columns : 0
            if fullRows > 0 {
                computeRows(row, count: fullRows, into: out)
                let n = fullRows * columns
                position += n
                out += n
            } else {
                let n = min(columns - offset, range.upperBound - position)
                rowScratch.withUnsafeMutableBufferPointer { scratch in
                    computeRows(row, count: 1, into: scratch.baseAddress!)
                    out.update(from: scratch.baseAddress! + offset, count: n)
                }
                position += n
                out += n
            }
        }
    }

    /// Rows `first ..< first + count` of τ_W, row-major, into `c` (count × columns).
    private func computeRows(_ first: Int, count: Int, into c: UnsafeMutablePointer<T>) {
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                Self.rows(first, count: count, a: ap.baseAddress!, b: bp.baseAddress!, rank: rank, rows: rows, columns: columns,
                          transposed: module.transposed, into: c)
            }
        }
        T.scal(scale, UnsafeMutableBufferPointer(start: c, count: count * columns))
    }

    /// Rows `first ..< first + count` of B·A (rows × columns; A rank × columns, B rows × rank) or,
    /// when `transposed`, of (B·A)ᵀ (rows × columns; A rank × rows, B columns × rank), unscaled.
    static func rows(_ first: Int, count: Int, a: UnsafePointer<T>, b: UnsafePointer<T>, rank: Int, rows: Int, columns: Int,
                     transposed: Bool, into c: UnsafeMutablePointer<T>) {
        if transposed {
            // τ_W[i, j] = Σₖ A[k, i]·B[j, k]: rows of Aᵀ (columns of A) times Bᵀ.
            gemm(transposeA: true, transposeB: true, m: count, n: columns, k: rank,
                 a + first, lda: rows, b, ldb: rank, c, ldc: columns)
        } else {
            // τ_W[i, j] = Σₖ B[i, k]·A[k, j]: a row block of B times A.
            gemm(transposeA: false, transposeB: false, m: count, n: columns, k: rank,
                 b + first * rank, lda: rank, a, ldb: columns, c, ldc: columns)
        }
    }

    /// LAPACK.gemm for the compute type (Float or Double, the only `MergeScalar`s).
    private static func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                             _ a: UnsafePointer<T>, lda: Int, _ b: UnsafePointer<T>, ldb: Int,
                             _ c: UnsafeMutablePointer<T>, ldc: Int) {
        if T.self == Float.self {
            LAPACK.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                        UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), lda: lda,
                        UnsafeRawPointer(b).assumingMemoryBound(to: Float.self), ldb: ldb,
                        UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
        } else if T.self == Double.self {
            LAPACK.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                        UnsafeRawPointer(a).assumingMemoryBound(to: Double.self), lda: lda,
                        UnsafeRawPointer(b).assumingMemoryBound(to: Double.self), ldb: ldb,
                        UnsafeMutableRawPointer(c).assumingMemoryBound(to: Double.self), ldc: ldc)
        } else {
            preconditionFailure("LoRA products are computed in Float or Double")
        }
    }
}
