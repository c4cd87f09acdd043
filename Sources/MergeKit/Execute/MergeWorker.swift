/// One worker's buffers and pipeline (for one or several targets sharing the inputs).
final class MergeWorker: @unchecked Sendable {
    let targets: [MergeExecutor.Target]
    let plan: MergePlan
    private lazy var floatBuffers = WorkerBuffers<Float>(inputs: plan.inputs.count, targets: targets.count)
    private lazy var doubleBuffers = WorkerBuffers<Double>(inputs: plan.inputs.count, targets: targets.count)
    /// Per target: Σ sign(vote) over everything this worker merged (mass-vote methods).
    private(set) var signVotes: [Int]
    /// Per target: elements whose result depended on how vote ties were resolved.
    private(set) var resolvedTies: [Int]

    init(targets: [MergeExecutor.Target]) {
        self.targets = targets
        plan = targets[0].plan
        signVotes = Array(repeating: 0, count: targets.count)
        resolvedTies = Array(repeating: 0, count: targets.count)
    }

    func process(_ item: WorkItem) throws(MergeKitError) {
        let tensor = plan.tensors[item.tensor]
        guard !item.range.isEmpty else { return }
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
            for target in targets {
                let planned = target.plan.tensors[item.tensor]
                try target.writer.write(UnsafeRawBufferPointer(start: staging, count: n), dataOffset: planned.output.begin + position,
                                        shard: planned.shard)
            }
            position += n
        }
    }

    /// Statistics passes over the tensor (for targets whose method has per-tensor statistics),
    /// then the merge pass, chunk by chunk in index order, each chunk read once for all targets.
    /// Targets that differ only in λ (a λ sweep) form one group: the unscaled result is computed
    /// once per chunk and each target scales it, exactly as a single merge does.
    private func merge<T: MergeScalar>(_ item: WorkItem, _ buffers: WorkerBuffers<T>) throws(MergeKitError) {
        let range = item.range
        let tensors = targets.map { $0.plan.tensors[item.tensor] }
        // Targets whose method merges this tensor whole go first (they use the staging
        // buffers the chunk source below reuses); the others share one chunked pass.
        var chunked: [Int] = []
        var shared: [String: UnsafeMutableBufferPointer<T>] = [:]
        defer { shared.values.forEach { ScratchMemory.release($0) } }
        for (t, tensor) in tensors.enumerated() {
            if let method = MergeExecutor.wholeTensorMethod(tensor) {
                try mergeWhole(item, target: t, method: method, buffers, shared: &shared)
            } else {
                chunked.append(t)
            }
        }
        guard !chunked.isEmpty else { return }
        let multiPass = chunked.contains { tensors[$0].method.statistics.needsTensorPasses }
        let source = try ChunkSource(tensor: tensors[0], range: range, inputs: plan.inputs, basePath: plan.base.path, buffers: buffers,
                                     multiPass: multiPass)
        let groups = Self.groups(tensors, among: chunked)
        var contexts: [ChunkContext] = []
        for group in groups {
            let tensor = tensors[group[0]]
            let context = ChunkContext(tensor: tensor.name, shape: tensor.output.shape, model: targets[group[0]].model,
                                       statistics: TensorStatistics(), scratch: buffers.methodScratch)
            if tensor.method.statistics.needsTensorPasses {
                precondition(range == 0..<tensor.output.elementCount)
                try computeTensorStatistics(source, tensor: tensor, context.tensorStatistics, context)
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
                if group.count == 1 {
                    leader.method.combine(inputs, base: UnsafeBufferPointer(base), weights: weights[group[0]], into: out, context: context)
                    try finish(leader, chunk, out: out, base: base, target: group[0],
                               into: buffers.outputStaging(group[0]) + (chunk.lowerBound - groupStart) * leader.output.dtype.byteWidth!)
                    if buffers.sharesOutputStaging { try writeStaged(group[0], tensor: leader, from: groupStart, to: chunk.upperBound, buffers) }
                    continue
                }
                let unscaled = UnsafeMutableBufferPointer(rebasing: buffers.unscaled[0..<chunk.count])
                leader.method.combineUnscaled(inputs, base: UnsafeBufferPointer(base), weights: weights[group[0]],
                                              into: unscaled, context: context)
                for t in group {
                    // λ·τ (+ θ₀) in one pass, rounded as a single merge's scal(λ) then axpy.
                    let tensor = tensors[t]
                    let emit = targets[t].plan.output.emit
                    let reached = T.scaleAdd(UnsafeBufferPointer(unscaled), scale: T(tensor.method.finalScale!),
                                             base: emit == .model ? UnsafeBufferPointer(base) : nil, into: out,
                                             limit: T.overflowKey(storingAs: tensor.output.dtype))
                    if reached { try resolveOutput(tensor, chunk, out: out, base: base, target: t) }
                    T.store(out.baseAddress!, count: chunk.count, as: tensor.output.dtype,
                            into: buffers.outputStaging(t) + (chunk.lowerBound - groupStart) * tensor.output.dtype.byteWidth!)
                    if buffers.sharesOutputStaging { try writeStaged(t, tensor: tensor, from: groupStart, to: chunk.upperBound, buffers) }
                }
            }
            if (chunk.upperBound - range.lowerBound) % buffers.outputSpan == 0 || chunk.upperBound == range.upperBound {
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
        try targets[t].writer.write(UnsafeRawBufferPointer(start: buffers.outputStaging(t), count: (upper - lower) * width),
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

    /// θ = θ₀ + τ (or τ alone), checked to be finite in the output dtype (`FiniteCheck`) and
    /// converted into the output staging buffer. `base` may be nil when τ alone is written.
    func finish<T: MergeScalar>(_ tensor: PlannedTensor, _ chunk: Range<Int>, out: UnsafeMutableBufferPointer<T>,
                                        base: UnsafeMutableBufferPointer<T>?, target t: Int,
                                        into staged: UnsafeMutableRawPointer) throws(MergeKitError) {
        let limit = T.overflowKey(storingAs: tensor.output.dtype)
        let reached: Bool
        if targets[t].plan.output.emit == .model, let base {
            reached = T.addBase(UnsafeBufferPointer(base), into: out, limit: limit)
        } else {
            reached = T.reaches(UnsafeBufferPointer(out), key: limit)
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
