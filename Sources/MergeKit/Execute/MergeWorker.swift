/// One worker's buffers and pipeline (for one or several targets sharing the inputs).
final class MergeWorker: @unchecked Sendable {
    let targets: [MergeExecutor.Target]
    let plan: MergePlan
    private lazy var floatBuffers = WorkerBuffers<Float>(inputs: plan.inputs.count, targets: targets.count, capacity: chunkCapacity)
    private lazy var doubleBuffers = WorkerBuffers<Double>(inputs: plan.inputs.count, targets: targets.count, capacity: chunkCapacity)
    /// The longest chunk of any target's tensors (`MergeExecutor.chunkCapacity`).
    private lazy var chunkCapacity = MergeExecutor.chunkCapacity(targets.map(\.plan))
    /// Per target: Σ sign(vote) over everything this worker merged (mass-vote methods).
    private(set) var signVotes: [Int]
    /// Per target: elements whose result depended on how vote ties were resolved.
    private(set) var resolvedTies: [Int]
    /// The targets that write the item being processed (indices into `targets`).
    private var writing: [Int] = []

    init(targets: [MergeExecutor.Target]) {
        self.targets = targets
        plan = targets[0].plan
        signVotes = Array(repeating: 0, count: targets.count)
        resolvedTies = Array(repeating: 0, count: targets.count)
    }

    /// Merges (or copies) `item` for the targets that write its tensor (all but other
    /// partitions' shards: `OutputSpec.part`).
    func process(_ item: WorkItem) throws(MergeKitError) {
        let tensor = plan.tensors[item.tensor]
        guard !item.range.isEmpty else { return }
        writing = targets.indices.filter { targets[$0].writes(tensor: item.tensor) }
        switch tensor.action {
        case .copy:
            try copy(item)
        case .merge:
            if tensor.computeInDouble {
                try merge(item, doubleBuffers)
            } else {
                try merge(item, floatBuffers)
            }
        }
    }

    /// Copies bytes of a non-merged tensor through a staging buffer, a work item at a time.
    private func copy(_ item: WorkItem) throws(MergeKitError) {
        let tensor = plan.tensors[item.tensor]
        let bits = tensor.base.info.dtype.bitWidth
        let lower = item.range.lowerBound * bits / 8
        let upper = item.range.upperBound * bits / 8
        let staging = floatBuffers.staging[0]
        let capacity = MergeExecutor.itemElements * 8
        var position = lower
        while position < upper {
            let n = min(capacity, upper - position)
            try TensorReader(tensor.base).read(bytes: position..<(position + n), into: staging)
            for target in writing.map({ targets[$0] }) {
                let planned = target.plan.tensors[item.tensor]
                try target.sink?.write(UnsafeRawBufferPointer(start: staging, count: n), dataOffset: planned.output.begin + position,
                                        shard: planned.shard)
            }
            position += n
        }
    }

    /// Statistics passes over the tensor (for targets whose method has per-tensor statistics),
    /// then the merge pass, chunk by chunk in index order, each chunk read once for all targets.
    /// Methods compute their result before λ (`MergeMethod.lambda`) and `finish` applies λ.
    /// Targets that differ only in λ (a λ sweep) form one group: the result before λ is computed
    /// once per chunk and each target's λ applied to it.
    private func merge<T: MergeScalar>(_ item: WorkItem, _ buffers: WorkerBuffers<T>) throws(MergeKitError) {
        let range = item.range
        let tensors = targets.map { $0.plan.tensors[item.tensor] }
        // Targets whose method merges this tensor whole go first (they use the staging
        // buffers the chunk source below reuses); the others share one chunked pass.
        var chunked: [Int] = []
        var shared: [String: UnsafeMutableBufferPointer<T>] = [:]
        defer { shared.values.forEach { ScratchMemory.release($0) } }
        for t in writing {
            let tensor = tensors[t]
            if let method = MergeExecutor.wholeTensorMethod(tensor) {
                try mergeWhole(item, target: t, method: method, buffers, shared: &shared)
            } else {
                chunked.append(t)
            }
        }
        guard !chunked.isEmpty else { return }
        let multiPass = chunked.contains { tensors[$0].method.statistics.needsTensorPasses }
        // Chunks hold whole runs for every target's method (targets share the method's kind).
        let chunkLength = chunked.map { MergeExecutor.chunkLength(tensors[$0]) }.max()!
        let source = try ChunkSource(tensor: tensors[0], range: range, inputs: plan.inputs, basePath: plan.base.path, buffers: buffers,
                                     multiPass: multiPass, chunkLength: chunkLength, rounding: .init(plan, tensors[0]))
        let groups = Self.groups(tensors, among: chunked)
        var contexts: [ChunkContext] = []
        for group in groups {
            let tensor = tensors[group[0]]
            let context = ChunkContext(tensor: tensor.name, shape: tensor.output.shape, model: targets[group[0]].model,
                                       statistics: TensorStatistics(), scratch: buffers.methodScratch)
            context.rounding = plan.output.compute.rounding
            if tensor.method.statistics.needsTensorPasses {
                precondition(range == 0..<tensor.output.elementCount)
                try TensorStatisticsPass.compute(source, tensor: tensor, into: context.tensorStatistics, context: context)
            }
            contexts.append(context)
        }
        let weights = tensors.map { $0.weights.map { T($0) } }
        // Results are staged and written a work item's worth at a time: one large pwrite
        // costs far less than many small ones.
        var groupStart = range.lowerBound
        for chunk in source.chunks {
            let (base, deltas) = try source.load(chunk)
            for (g, group) in groups.enumerated() {
                // Methods overwrite their deltas: every group but the last works on a copy.
                var inputs = deltas
                if g < groups.count - 1 {
                    inputs = deltas.indices.map { i in
                        let copy = UnsafeMutableBufferPointer(rebasing: buffers.copies[i][0..<chunk.count])
                        T.copy(UnsafeBufferPointer(deltas[i]), copy)
                        return copy
                    }
                }
                let context = contexts[g]
                context.elementOffset = chunk.lowerBound
                let out = UnsafeMutableBufferPointer(rebasing: buffers.out[0..<chunk.count])
                let leader = tensors[group[0]]
                // A lone target's result is its own (λ is applied in place); a group's is shared.
                let result = group.count == 1 ? out : UnsafeMutableBufferPointer(rebasing: buffers.unscaled[0..<chunk.count])
                leader.method.combine(inputs, base: UnsafeBufferPointer(base), weights: weights[group[0]], into: result, context: context)
                for t in group {
                    let tensor = tensors[t]
                    try finish(tensor, chunk, result: result, scale: tensor.method.lambda ?? 1, sharedInto: group.count == 1 ? nil : out,
                               base: base, target: t,
                               into: buffers.outputStaging(t) + (chunk.lowerBound - groupStart) * tensor.output.dtype.byteWidth!)
                    if buffers.sharesOutputStaging { try writeStaged(t, tensor: tensor, from: groupStart, to: chunk.upperBound, buffers) }
                }
            }
            // Written when the next chunk would not fit the output staging, or at the end.
            if chunk.upperBound - groupStart + chunkLength > buffers.outputSpan || chunk.upperBound == range.upperBound {
                if !buffers.sharesOutputStaging {
                    for t in chunked { try writeStaged(t, tensor: tensors[t], from: groupStart, to: chunk.upperBound, buffers) }
                }
                groupStart = chunk.upperBound
            }
        }
        for (group, context) in zip(groups, contexts) {
            for t in group {
                signVotes[t] += context.signVotes
                resolvedTies[t] += context.resolvedTies
            }
        }
    }

    /// Writes target `t`'s staged results for elements `lower..<upper` of `tensor`.
    private func writeStaged<T: MergeScalar>(_ t: Int, tensor: PlannedTensor, from lower: Int, to upper: Int,
                                             _ buffers: WorkerBuffers<T>) throws(MergeKitError) {
        let width = tensor.output.dtype.byteWidth!
        try targets[t].sink?.write(UnsafeRawBufferPointer(start: buffers.outputStaging(t), count: (upper - lower) * width),
                                    dataOffset: tensor.output.begin + lower * width, shard: tensor.shard)
    }

    /// Target indices grouped so that the targets in a group compute the same unscaled result
    /// (same method, parameters other than λ, weights and model statistics); in target order.
    static func groups(_ tensors: [PlannedTensor], among indices: [Int]) -> [[Int]] {
        var groups: [[Int]] = []
        var byKey: [String: Int] = [:]
        for t in indices {
            let tensor = tensors[t]
            guard let key = tensor.method.unscaledKey.map({ $0 + " \(tensor.weights)" }) else {
                groups.append([t])
                continue
            }
            if let g = byKey[key] {
                groups[g].append(t)
            } else {
                byKey[key] = groups.count
                groups.append([t])
            }
        }
        return groups
    }

    /// θ = λ·u + θ₀ (or λ·u alone) for one chunk of target `t`, checked to be finite in the output
    /// dtype (`FiniteCheck`) and converted into the output staging buffer `staged`.
    ///
    /// This is where the executor applies λ, for every target of single merges and sweeps alike:
    /// `u` is the method's result (`combine`, or `combineTensor` for a tensor merged whole) and
    /// `scale` the method's `lambda` (1 for methods without one). Both paths round as λ·u, then + θ₀
    /// (a product, then a sum, never fused), so a sweep point has the bytes of a merge of its own:
    /// - `u` is the target's own (`sharedInto` nil): scaled in place by BLAS `scal` (skipped for
    ///   λ = 1), then θ₀ added (`addBase`);
    /// - `u` is shared by the targets of a λ sweep (`sharedInto` the target's buffer): λ·u + θ₀
    ///   in one pass (`scaleAdd`), `u` left for the next target.
    /// `base` may be nil when τ alone is written.
    ///
    /// Under a 16-bit compute dtype (`ComputeDType`) the steps round as mergekit's do: λ·u is
    /// rounded to it (λ a Float, as PyTorch multiplies by a Python number), then θ₀ + λ·u; a value
    /// past the 16-bit type's range fails as for a 16-bit output.
    func finish<T: MergeScalar>(_ tensor: PlannedTensor, _ chunk: Range<Int>, result u: UnsafeMutableBufferPointer<T>, scale: Double,
                                sharedInto shared: UnsafeMutableBufferPointer<T>? = nil, base: UnsafeMutableBufferPointer<T>?,
                                target t: Int, into staged: UnsafeMutableRawPointer) throws(MergeKitError) {
        var limit = T.overflowKey(storingAs: tensor.output.dtype)
        let addsBase = targets[t].plan.output.emit == .model
        let out: UnsafeMutableBufferPointer<T>
        let reached: Bool
        if let narrow = targets[t].plan.output.compute.rounding {
            limit = Swift.min(limit, T.overflowKey(storingAs: narrow))
            out = shared ?? u
            if let shared { T.copy(UnsafeBufferPointer(u), shared) }
            if scale != 1 {
                T.scal(T(scale), out)
                T.roundToNarrow(out, narrow)
            }
            if addsBase, let base {
                reached = T.addBase(UnsafeBufferPointer(base), into: out, limit: limit)
            } else {
                reached = T.reaches(UnsafeBufferPointer(out), key: limit)
            }
            T.roundToNarrow(out, narrow)
        } else if let shared {
            out = shared
            reached = T.scaleAdd(UnsafeBufferPointer(u), scale: T(scale), base: addsBase ? base.map { UnsafeBufferPointer($0) } : nil,
                                 into: out, limit: limit)
        } else {
            out = u
            if scale != 1 { T.scal(T(scale), out) }
            if addsBase, let base {
                reached = T.addBase(UnsafeBufferPointer(base), into: out, limit: limit)
            } else {
                reached = T.reaches(UnsafeBufferPointer(out), key: limit)
            }
        }
        if reached { try resolveOutput(tensor, chunk, out: out, base: base, target: t) }
        T.store(out.baseAddress!, count: chunk.count, as: tensor.output.dtype, into: staged)
    }

    /// For a chunk of results with a value that does not fit the output dtype: fails, or, where
    /// every input shared a non-finite value, restores the base's value (`FiniteCheck`).
    func resolveOutput<T: MergeScalar>(_ tensor: PlannedTensor, _ chunk: Range<Int>, out: UnsafeMutableBufferPointer<T>,
                                               base: UnsafeMutableBufferPointer<T>?, target t: Int) throws(MergeKitError) {
        try FiniteCheck.resolveOutput(tensor, output: targets[t].plan.output.path, chunkStart: chunk.lowerBound, out: out,
                                      base: base.map { UnsafeBufferPointer($0) }, emit: targets[t].plan.output.emit)
    }
}
