/// An owned Float array with a stable, 64-byte-aligned address: parameters, gradients and
/// activations of the engine, handed to BLAS as raw pointers.
final class FloatBuffer: @unchecked Sendable {
    let count: Int
    let pointer: UnsafeMutablePointer<Float>

    /// Allocates `count` floats, set to zero when `zeroed` (scratch that is always written before
    /// it is read can skip that pass).
    init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0)
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(1, count))
        if zeroed { pointer.initialize(repeating: 0, count: count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    func zero() { pointer.update(repeating: 0, count: count) }

    var array: [Float] { Array(buffer) }
}

/// Scratch memory for one pass over one shard of a batch: every `take` is a fresh buffer that
/// lives as long as the workspace.
///
/// A measuring workspace allocates nothing: `take` only adds up the floats (saturating) and hands
/// out a placeholder that must never be read or written, so that building a pass's buffers on it
/// measures exactly what the pass would allocate (`EngineMemory`).
final class Workspace {
    private var buffers: [FloatBuffer] = []
    private let measuring: Bool
    private var measured = 0

    init(measuring: Bool = false) { self.measuring = measuring }

    /// Where a measuring workspace points every buffer (never dereferenced).
    nonisolated(unsafe) private static let placeholder = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    /// `count` uninitialised floats (zeroed when asked).
    func take(_ count: Int, zeroed: Bool = false) -> UnsafeMutablePointer<Float> {
        if measuring {
            let (sum, overflow) = measured.addingReportingOverflow(max(0, count))
            measured = overflow ? .max : sum
            return Workspace.placeholder
        }
        let buffer = FloatBuffer(count: count, zeroed: zeroed)
        buffers.append(buffer)
        return buffer.pointer
    }

    /// Total floats handed out (for memory accounting in tests, benchmarks and `EngineMemory`).
    var floatCount: Int { measuring ? measured : buffers.reduce(0) { $0 + $1.count } }
}
