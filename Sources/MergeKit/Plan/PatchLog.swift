#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Output elements whose value depends on a number known only at the end of the merge pass:
/// TIES's model-wide majority sign, which decides the elements whose vote was an exact 0.
///
/// Each record holds the element's place and its bytes for a negative and for a zero majority
/// (the merge pass already wrote the bytes for a positive one). Records are buffered in memory
/// and spilled to an unlinked temporary file next to the output, so memory stays bounded even if
/// a model were full of exact ties.
final class PatchLog {
    private static let recordSize = 4 + 8 + 4 + 8 + 8
    private static let bufferLimit = 1 << 20

    private let directory: String
    private var buffer: [UInt8] = []
    private var fd: Int32 = -1
    private var spilled = 0
    private(set) var count = 0

    init(near outputPath: String) {
        directory = FileSystem.parentDirectory(of: FileSystem.canonicalPath(forNew: outputPath))
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    func append(shard: Int, dataOffset: Int, negative: [UInt8], zero: [UInt8]) throws(MergeKitError) {
        precondition(negative.count == zero.count && negative.count <= 8)
        var record = [UInt8](repeating: 0, count: PatchLog.recordSize)
        record.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: Int32(shard).littleEndian, toByteOffset: 0, as: Int32.self)
            raw.storeBytes(of: Int64(dataOffset).littleEndian, toByteOffset: 4, as: Int64.self)
            raw.storeBytes(of: Int32(negative.count).littleEndian, toByteOffset: 12, as: Int32.self)
            for (i, b) in negative.enumerated() { raw[16 + i] = b }
            for (i, b) in zero.enumerated() { raw[24 + i] = b }
        }
        buffer += record
        count += 1
        if buffer.count >= PatchLog.bufferLimit { try spill() }
    }

    private func spill() throws(MergeKitError) {
        if fd < 0 {
            var template = Array(FileSystem.join(directory, ".mergekit-patches-XXXXXX").utf8CString)
            fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            guard fd >= 0 else { throw FileSystem.writeError(file: directory, errno: errno) }
            template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        }
        try FileSystem.pwriteAll(fd, buffer, at: spilled, file: directory)
        spilled += buffer.count
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes the recorded bytes for `majority` (−1 or 0; +1 needs nothing).
    func apply(majority: Int, writer: CheckpointWriter) throws(MergeKitError) {
        guard majority <= 0, count > 0 else { return }
        var chunk = [UInt8](repeating: 0, count: PatchLog.bufferLimit)
        var position = 0
        while position < spilled {
            let n = min(chunk.count, spilled - position)
            let read = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, n, off_t(position)) }
            guard read == n else { throw FileSystem.writeError(file: directory, errno: read < 0 ? errno : EIO) }
            try applyRecords(Array(chunk[0..<n]), majority: majority, writer: writer)
            position += n
        }
        try applyRecords(buffer, majority: majority, writer: writer)
    }

    private func applyRecords(_ bytes: [UInt8], majority: Int, writer: CheckpointWriter) throws(MergeKitError) {
        var result: Result<Void, MergeKitError> = .success(())
        bytes.withUnsafeBytes { raw in
            var at = 0
            while at + PatchLog.recordSize <= raw.count {
                let shard = Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: Int32.self)))
                let offset = Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: at + 4, as: Int64.self)))
                let width = Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: at + 12, as: Int32.self)))
                let value = UnsafeRawBufferPointer(rebasing: raw[(at + (majority < 0 ? 16 : 24))..<(at + (majority < 0 ? 16 : 24) + width)])
                do throws(MergeKitError) {
                    try writer.write(value, dataOffset: offset, shard: shard)
                } catch {
                    result = .failure(error)
                    return
                }
                at += PatchLog.recordSize
            }
        }
        try result.get()
    }
}
