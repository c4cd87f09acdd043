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
final class Workspace {
    private var buffers: [FloatBuffer] = []

    /// `count` uninitialised floats (zeroed when asked).
    func take(_ count: Int, zeroed: Bool = false) -> UnsafeMutablePointer<Float> {
        let buffer = FloatBuffer(count: count, zeroed: zeroed)
        buffers.append(buffer)
        return buffer.pointer
    }

    /// Total floats handed out (for memory accounting in tests and benchmarks).
    var floatCount: Int { buffers.reduce(0) { $0 + $1.count } }
}
