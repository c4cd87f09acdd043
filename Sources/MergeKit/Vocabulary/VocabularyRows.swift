import Synchronization

/// A vocabulary tensor of one model (an embedding, an output head: one row per token) presented
/// in the output vocabulary's row order, read where its rows lie.
///
/// Row j of the presented tensor is the output vocabulary's token j:
///
/// - the model's own row for that token when the model has it (`rows[j] ≥ 0`: a row of `own`);
/// - otherwise a fill (`rows[j] < 0`: fill −1 − `rows[j]` of `fills`, shared by every model of the
///   tensor): zero, a row of one model's tensor, or the mean of rows of several models'
///   (`VocabularyFills`; `VocabularyMerge` decides which by mergekit's rules);
/// - rows after the vocabulary (`pad_to_multiple_of`) hold the mean of this model's presented
///   vocabulary rows, computed once, on first use, in Double.
///
/// Reading (`read(bytes:into:)`, through `TensorReader`) produces exactly the bytes such a stored
/// tensor would hold in the model's dtype: runs of consecutive own rows are read with one `pread`
/// each, fills are formed row by row (a copy in the same dtype is byte for byte; a mean or a copy
/// from another dtype is formed in Double and rounded once). Nothing is held but the padding row,
/// so memory stays flat; every reader sees the same bytes, so merges stay deterministic.
final class VocabularyRows: Sendable {
    /// The model's stored tensor.
    let own: Checkpoint.Entry
    let fills: VocabularyFills
    /// Per vocabulary row: an own row (≥ 0) or a fill (−1 − index).
    let rows: [Int32]
    /// Rows in all, padding included (≥ `rows.count`).
    let rowCount: Int
    /// Elements per row (the product of the tensor's other dimensions).
    let rowLength: Int
    /// The padding row in the model's dtype, once computed.
    private let paddingRow = Mutex<[UInt8]?>(nil)

    init(own: Checkpoint.Entry, fills: VocabularyFills, rows: [Int32], rowCount: Int) {
        precondition(own.info.dtype.isMergeable && rowCount >= rows.count)
        self.own = own
        self.fills = fills
        self.rows = rows
        self.rowCount = rowCount
        rowLength = own.info.shape.dropFirst().reduce(1, *)
    }

    var dtype: DType { own.info.dtype }
    private var width: Int { dtype.byteWidth! }
    var rowBytes: Int { rowLength * width }

    /// The presented tensor's entry, named `name`: `own`'s dtype, the output vocabulary's rows.
    func entry(named name: String) -> Checkpoint.Entry {
        let shape = [rowCount] + own.info.shape.dropFirst()
        return Checkpoint.Entry(file: own.file, info: TensorInfo(name: name, dtype: dtype, shape: shape, begin: 0, end: rowCount * rowBytes),
                                rows: self)
    }

    /// Reads bytes `range` of the presented tensor into `buffer`.
    func read(bytes range: Range<Int>, into buffer: UnsafeMutableRawPointer) throws(MergeKitError) {
        guard !range.isEmpty else { return }
        let rowBytes = self.rowBytes
        var scratch: UnsafeMutableRawPointer?
        defer { scratch?.deallocate() }
        var position = range.lowerBound
        while position < range.upperBound {
            let row = position / rowBytes, within = position % rowBytes
            let out = buffer + (position - range.lowerBound)
            if row < rows.count, rows[row] >= 0 {
                // A run of consecutive own rows: one read.
                var end = row + 1
                while end < rows.count, end * rowBytes < range.upperBound, rows[end] == rows[end - 1] + 1 { end += 1 }
                let count = min(end * rowBytes, range.upperBound) - position
                let start = Int(rows[row]) * rowBytes + within
                try TensorReader(own).read(bytes: start..<(start + count), into: out)
                position += count
                continue
            }
            let count = min(rowBytes - within, range.upperBound - position)
            let formed = scratch ?? UnsafeMutableRawPointer.allocate(byteCount: rowBytes, alignment: 16)
            scratch = formed
            if row < rows.count {
                try fills.form(Int(-1 - rows[row]), as: dtype, into: formed)
            } else {
                let padding = try self.padding()
                padding.withUnsafeBytes { formed.copyMemory(from: $0.baseAddress!, byteCount: rowBytes) }
            }
            out.copyMemory(from: formed + within, byteCount: count)
            position += count
        }
    }

    /// The padding row: the mean over the vocabulary rows as presented (mergekit's fill for the
    /// rows `pad_to_multiple_of` adds), summed in Double in row order and rounded to the dtype once.
    private func padding() throws(MergeKitError) -> [UInt8] {
        try paddingRow.withLock { (held: inout [UInt8]?) throws(MergeKitError) -> [UInt8] in
            if let held { return held }
            var sums = [Double](repeating: 0, count: rowLength)
            let block = max(1, (1 << 20) / max(1, rowBytes))
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: block * rowBytes, alignment: 16)
            defer { bytes.deallocate() }
            var values = [Double](repeating: 0, count: block * rowLength)
            var row = 0
            while row < rows.count {
                let n = min(block, rows.count - row)
                try read(bytes: (row * rowBytes)..<((row + n) * rowBytes), into: bytes)
                values.withUnsafeMutableBufferPointer { Double.load(bytes, dtype: dtype, count: n * rowLength, into: $0.baseAddress!) }
                for r in 0..<n {
                    for c in 0..<rowLength { sums[c] += values[r * rowLength + c] }
                }
                row += n
            }
            let count = Double(max(1, rows.count))
            for c in 0..<rowLength { sums[c] /= count }
            var result = [UInt8](repeating: 0, count: rowBytes)
            result.withUnsafeMutableBytes { raw in
                sums.withUnsafeBufferPointer { Double.store($0.baseAddress!, count: rowLength, as: dtype, into: raw.baseAddress!) }
            }
            held = result
            return result
        }
    }
}

/// The rows every model of one vocabulary tensor may be given for a token it lacks (or whose row
/// is forced, `tokens:`): shared by the models' `VocabularyRows`, formed when read.
final class VocabularyFills: Sendable {
    enum Fill: Sendable, Equatable {
        case zero
        /// Row `row` of `sources[source]`.
        case row(source: Int, row: Int)
        /// The mean of these rows (in this order).
        case mean([Row])
    }

    struct Row: Sendable, Equatable {
        let source: Int
        let row: Int
    }

    /// Each model's stored tensor (its own rows, in its own vocabulary's order).
    let sources: [Checkpoint.Entry]
    let fills: [Fill]

    init(sources: [Checkpoint.Entry], fills: [Fill]) {
        self.sources = sources
        self.fills = fills
    }

    /// Writes fill `index` as one row of `dtype` into `out` (a row's bytes).
    func form(_ index: Int, as dtype: DType, into out: UnsafeMutableRawPointer) throws(MergeKitError) {
        let length = sources[0].info.shape.dropFirst().reduce(1, *)
        switch fills[index] {
        case .zero:
            out.initializeMemory(as: UInt8.self, repeating: 0, count: length * dtype.byteWidth!)
        case .row(let source, let row) where sources[source].info.dtype == dtype:
            try read(Row(source: source, row: row), length: length, into: out)
        case .row(let source, let row):
            try mean([Row(source: source, row: row)], length: length, as: dtype, into: out)
        case .mean(let rows):
            try mean(rows, length: length, as: dtype, into: out)
        }
    }

    private func read(_ row: Row, length: Int, into out: UnsafeMutableRawPointer) throws(MergeKitError) {
        let bytes = length * sources[row.source].info.dtype.byteWidth!
        try TensorReader(sources[row.source]).read(bytes: (row.row * bytes)..<((row.row + 1) * bytes), into: out)
    }

    /// The mean of `rows` (each converted to Double, summed in order, divided by their count),
    /// rounded to `dtype`.
    private func mean(_ rows: [Row], length: Int, as dtype: DType, into out: UnsafeMutableRawPointer) throws(MergeKitError) {
        var sums = [Double](repeating: 0, count: length), values = [Double](repeating: 0, count: length)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: length * 8, alignment: 16)
        defer { raw.deallocate() }
        for row in rows {
            let source = sources[row.source].info.dtype
            try read(row, length: length, into: raw)
            values.withUnsafeMutableBufferPointer { Double.load(raw, dtype: source, count: length, into: $0.baseAddress!) }
            for c in 0..<length { sums[c] += values[c] }
        }
        let count = Double(max(1, rows.count))
        for c in 0..<length { sums[c] /= count }
        sums.withUnsafeBufferPointer { Double.store($0.baseAddress!, count: length, as: dtype, into: out) }
    }
}
