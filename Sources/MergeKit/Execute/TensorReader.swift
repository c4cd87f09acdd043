/// Reads one stored tensor's bytes with `pread` (`SafeTensorsFile.read(into:count:at:)`): the one
/// place that turns a position inside a tensor into a file offset,
///
///     offset = the file's data start + the tensor's `begin` + position,
///
/// with position = element index × element width for `read(elements:into:)`. Callers speak in
/// elements (or bytes) of the tensor, never in file offsets, so a tensor read from a shard, a view
/// (a linearized checkpoint's half) or a task-vector file is read the same way. A vocabulary
/// tensor presented in another vocabulary's row order (`Checkpoint.Entry.rows`) is read through
/// its row map (`VocabularyRows`), which reads each row where it lies.
struct TensorReader {
    let entry: Checkpoint.Entry

    init(_ entry: Checkpoint.Entry) {
        self.entry = entry
    }

    /// Reads elements `range` (a byte-aligned dtype) into `buffer`, which holds
    /// `range.count` × the element width bytes.
    func read(elements range: Range<Int>, into buffer: UnsafeMutableRawPointer) throws(MergeKitError) {
        let width = entry.info.dtype.byteWidth!
        try read(bytes: (range.lowerBound * width)..<(range.upperBound * width), into: buffer)
    }

    /// Reads bytes `range` of the tensor's data (any dtype, sub-byte ones included) into `buffer`.
    func read(bytes range: Range<Int>, into buffer: UnsafeMutableRawPointer) throws(MergeKitError) {
        precondition(range.lowerBound >= 0 && range.upperBound <= entry.info.byteCount, "read outside \(entry.name)")
        if let rows = entry.rows { return try rows.read(bytes: range, into: buffer) }
        try entry.file.read(into: buffer, count: range.count, at: entry.file.fileOffset(of: entry.info) + range.lowerBound)
    }
}
