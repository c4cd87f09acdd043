import Foundation
import Synchronization

/// The task vectors τₜ = θₜ − θ₀ of a data-driven merge, read from the checkpoints tensor by
/// tensor with `pread` (`TensorReader`) every time they are needed, never held: a step of
/// AdaMerging or aTLAS needs the inner products ⟨∂L/∂θₗ, τₜₗ⟩ and then θₗ = θ₀ₗ + Σₜ λₜₗ τₜₗ,
/// and both are one pass over the tensors in which a worker holds θ₀ₗ and one τₜₗ at a time.
/// Memory is the model θ, its gradient and a few tensors per worker, whatever the number of
/// tasks; the files come from the page cache after the first step (reading them costs far less
/// than the forward and backward passes of a step), and `pread` keeps them out of the process's
/// resident memory, unlike a memory map.
///
/// Passes are split into one work item per tensor; an item's arithmetic is fixed (sums over a
/// tensor in fixed blocks, combined into Double in block order), so the results are the same for
/// any thread count.
final class TaskVectorStream: @unchecked Sendable {
    /// The encoder's tensors (θ's layout).
    let tensors: [CLIPVisionParameters.Tensor]
    /// θ₀ₗ and θₜₗ for every tensor l of the layout.
    let base: [Checkpoint.Entry]
    let models: [[Checkpoint.Entry]]
    /// Workers of a pass.
    var threads = 1
    private let pool = Mutex<[Scratch]>([])
    private let largest: Int

    /// Per worker: θ₀ₗ, τₜₗ (as Float) and the raw bytes of a tensor.
    final class Scratch: @unchecked Sendable {
        let base, vector: FloatBuffer
        let raw: UnsafeMutableRawPointer
        init(_ count: Int) {
            base = FloatBuffer(count: count, zeroed: false)
            vector = FloatBuffer(count: count, zeroed: false)
            raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * 8, alignment: 64)
        }
        deinit { raw.deallocate() }
    }

    /// `base` and `models` in `layout` (the base's encoder, checked against it); every model's
    /// tensor must exist (under the same name, or the other naming of the encoder) with the same
    /// shape and a float dtype. Reads headers only.
    init(layout: CLIPVisionParameters.Layout, base: Checkpoint, models: [Checkpoint]) throws(MergeKitError) {
        let tensors = CLIPVisionParameters.layout(layout.config, prefix: layout.prefix, projectionName: layout.projectionName)
        self.tensors = tensors
        func entries(of checkpoint: Checkpoint, other: CLIPVisionParameters.Layout) throws(MergeKitError) -> [Checkpoint.Entry] {
            var result: [Checkpoint.Entry] = []
            for tensor in tensors {
                // The model may name the encoder differently (CLIPModel vs CLIPVisionModelWithProjection).
                let name = tensor.name == layout.projectionName ? other.projectionName
                    : other.prefix + String(tensor.name.dropFirst(layout.prefix.count))
                guard let name, let entry = checkpoint.entry(named: name) else {
                    throw MergeKitError(.missingTensor, file: checkpoint.path, tensor: tensor.name,
                        "is in the base but not in this model", fix: "Every model must be a fine-tune of the base (the same encoder)")
                }
                try CLIPVisionParameters.check(entry, against: tensor, file: checkpoint.path)
                result.append(entry)
            }
            return result
        }
        self.base = try entries(of: base, other: layout)
        var entries_: [[Checkpoint.Entry]] = []
        for model in models {
            let (other, _) = try CLIPVisionParameters.check(model, config: layout.config, allowUnused: true)
            if (other.projectionName == nil) != (layout.projectionName == nil) {
                throw MergeKitError(.missingTensor, file: model.path, tensor: layout.projectionName ?? other.projectionName,
                    other.projectionName == nil ? "is missing: the base has a visual projection and this model has none"
                                                : "is in this model but the base has no visual projection",
                    fix: "Every model must be a fine-tune of the base (the same encoder)")
            }
            entries_.append(try entries(of: model, other: other))
        }
        self.models = entries_
        largest = tensors.map(\.count).max() ?? 0
    }

    var taskCount: Int { models.count }

    /// Reads `entry` (a tensor of `count` elements) converted to Float into `out` (an F32 tensor
    /// straight into `out`, without a copy through the raw buffer).
    private func read(_ entry: Checkpoint.Entry, into out: UnsafeMutablePointer<Float>, count: Int, scratch: Scratch) throws(MergeKitError) {
        guard count > 0 else { return }
        if entry.info.dtype == .F32 {
            // The bytes `Float.load` would copy (little-endian F32 is Float's own layout).
            try TensorReader(entry).read(bytes: 0..<entry.info.byteCount, into: UnsafeMutableRawPointer(out))
            return
        }
        try TensorReader(entry).read(bytes: 0..<entry.info.byteCount, into: scratch.raw)
        Float.load(scratch.raw, dtype: entry.info.dtype, count: count, into: out)
    }

    /// Runs `body(l, θ₀ₗ, τ(t))` for every tensor l on the workers, where `τ(t)` reads τₜₗ into a
    /// worker buffer and returns it (valid until the next call). Stops at the first read error.
    func forEachTensor(_ body: (Int, UnsafePointer<Float>, (Int) throws(MergeKitError) -> UnsafePointer<Float>) throws(MergeKitError) -> Void) throws(MergeKitError) {
        let failure = Mutex<MergeKitError?>(nil)
        BLAS.useOneThread()  // the dot products' bits must not depend on OpenBLAS's threads
        WorkQueue.run(tensors.count, workers: threads) { l in
            guard failure.withLock({ $0 == nil }) else { return }
            let scratch = pool.withLock { $0.popLast() } ?? Scratch(largest)
            defer { pool.withLock { $0.append(scratch) } }
            let n = tensors[l].count
            do throws(MergeKitError) {
                try read(base[l], into: scratch.base.pointer, count: n, scratch: scratch)
                let theta0 = UnsafePointer(scratch.base.pointer)
                try body(l, theta0) { t throws(MergeKitError) in
                    try self.read(self.models[t][l], into: scratch.vector.pointer, count: n, scratch: scratch)
                    // τ = θₜ − θ₀, rounded to Float as a stored task vector is.
                    for i in 0..<n { scratch.vector.pointer[i] -= theta0[i] }
                    return UnsafePointer(scratch.vector.pointer)
                }
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }

    /// θ ← θ₀ + Σₜ λ(t, l)·τₜₗ for every tensor l, summed in task order (FusionBench's
    /// `merge_weights`: ((θ₀ + λ₁τ₁) + λ₂τ₂) + …); without `base`, θ ← Σₜ λ(t, l)·τₜₗ (a
    /// linearized model's direction); without `tasks`, θ ← θ₀.
    func merge(into theta: CLIPVisionParameters, base: Bool = true, tasks: Bool = true,
               coefficient: (Int, Int) -> Float) throws(MergeKitError) {
        let p = Shared(theta.storage.pointer)
        try forEachTensor { l, theta0, vector throws(MergeKitError) in
            let tensor = self.tensors[l], n = tensor.count
            let out = p.value + tensor.offset
            if base {
                out.update(from: theta0, count: n)
            } else {
                out.update(repeating: 0, count: n)
            }
            guard tasks else { return }
            for t in 0..<self.taskCount {
                let tau = try vector(t)
                let lambda = coefficient(t, l)
                for i in 0..<n { out[i] += lambda * tau[i] }
            }
        }
    }

    /// ⟨g_l, τₜₗ⟩ for every task t and tensor l, [tasks, tensors] row-major, each in Double over
    /// BLAS blocks (`dot`).
    func innerProducts(with gradient: CLIPVisionParameters) throws(MergeKitError) -> [Double] {
        let tasks = taskCount, count = tensors.count
        let result = UnsafeMutablePointer<Double>.allocate(capacity: max(1, tasks * count))
        defer { result.deallocate() }
        let r = Shared(result), g = Shared(gradient.storage.pointer)
        try forEachTensor { l, _, vector throws(MergeKitError) in
            let tensor = self.tensors[l], n = tensor.count
            let gl = g.value + tensor.offset
            for t in 0..<tasks {
                let tau = try vector(t)
                r.value[t * count + l] = TaskVectorStream.dot(gl, tau, count: n)
            }
        }
        return Array(UnsafeBufferPointer(start: result, count: tasks * count))
    }

    /// Σᵢ xᵢyᵢ: BLAS dot products of blocks of 4096 elements, added in Double in block order.
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) -> Double {
        var total = 0.0
        var start = 0
        while start < n {
            let end = min(n, start + 4096)
            total += Double(Float.dot(UnsafeBufferPointer(start: x + start, count: end - start),
                                      UnsafeBufferPointer(start: y + start, count: end - start)))
            start = end
        }
        return total
    }
}
