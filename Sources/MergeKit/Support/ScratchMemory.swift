#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Tensor-sized buffers that fail with an error instead of stopping the process.
///
/// `UnsafeMutableBufferPointer.allocate` and `Array(repeating:count:)` end the process when the
/// system refuses the memory, which leaves a half-written output's temporary files behind and
/// tells the user nothing. The whole-tensor paths (TSV-M, Iso-C, extract-lora) take their
/// largest buffers from here: `malloc`, and a `MergeKitError` (`.insufficientMemory`, naming the
/// tensor and the size) when it returns nothing. (On Linux with memory overcommit, `malloc` can
/// succeed for memory that is not there; the working-set estimates made before a command starts
/// are the real guard, this is the last one.) Release the buffers with `release`.
enum ScratchMemory {
    static func allocate<T>(_ type: T.Type, count: Int, tensor: String, purpose: String) throws(MergeKitError) -> UnsafeMutableBufferPointer<T> {
        let (bytes, overflow) = max(1, count).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow, let raw = malloc(bytes) else {
            throw MergeKitError(.insufficientMemory, tensor: tensor,
                                "could not allocate \(overflow ? "more than 2⁶³ bytes" : ByteCount.describe(bytes)) for \(purpose)",
                                fix: "Run on a machine with more free memory, or with \(term: .fewerThreads)")
        }
        return UnsafeMutableBufferPointer(start: raw.bindMemory(to: T.self, capacity: max(1, count)), count: count)
    }

    static func release<T>(_ buffer: UnsafeMutableBufferPointer<T>) {
        free(buffer.baseAddress)
    }
}
