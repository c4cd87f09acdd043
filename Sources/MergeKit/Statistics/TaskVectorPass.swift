/// One streaming pass over task vectors on the worker pool (`WorkerPool`): each worker's visitor
/// sees the τ chunks of the element ranges it takes (read, converted and checked by `ChunkSource`:
/// θᵢ − θ₀ formed, NaN and ±∞ handled by `handling`). The whole-model statistics
/// (`ModelStatisticsPass`), `--check-finite` and `analyze` are made of such passes.
struct TaskVectorPass {
    let plan: MergePlan
    let threads: Int
    /// NaN and ±∞ in the task vectors fail (merges), or count as 0 and are reported to the
    /// visitors (`analyze`).
    var handling: FiniteCheck.Handling = .fail

    /// Every merged tensor in work-item ranges, in tensor and element order (a zero-element
    /// tensor as one empty range): what the whole-model passes visit.
    static func mergedRanges(_ plan: MergePlan) -> [(tensor: Int, range: Range<Int>)] {
        MergeExecutor.workItems(plan, chunked: true, mergedOnly: true)
            .sorted { ($0.tensor, $0.range.lowerBound) < ($1.tensor, $1.range.lowerBound) }
            .map { ($0.tensor, $0.range) }
    }

    /// Runs `visitor`s over the τ chunks of `ranges` (`plan.tensors` index, element range) on all
    /// workers; returns one visitor per worker. `begin(item:)` gets the range's index.
    func run<V: ChunkVisitor>(_ ranges: [(tensor: Int, range: Range<Int>)], _ makeVisitor: @Sendable () -> V) throws(MergeKitError) -> [V] {
        let inputs = plan.inputs.count
        let workers = try WorkerPool.run(items: ranges.count, threads: threads,
                                         makeWorker: { Worker(visitor: makeVisitor(), floatBuffers: WorkerBuffers<Float>(inputs: inputs)) }) { worker, i throws(MergeKitError) in
            let (tensorIndex, range) = ranges[i]
            if plan.tensors[tensorIndex].computeInDouble {
                if worker.doubleBuffers == nil { worker.doubleBuffers = WorkerBuffers<Double>(inputs: inputs) }
                try visit(&worker.visitor, tensorIndex, range, item: i, worker.doubleBuffers!)
            } else {
                try visit(&worker.visitor, tensorIndex, range, item: i, worker.floatBuffers)
            }
        }
        return workers.map(\.visitor)
    }

    /// A worker's visitor and buffers (the Double ones made when a tensor computed in Double
    /// comes); used by one thread at a time.
    private struct Worker<V: ChunkVisitor>: @unchecked Sendable {
        var visitor: V
        let floatBuffers: WorkerBuffers<Float>
        var doubleBuffers: WorkerBuffers<Double>? = nil
    }

    private func visit<V: ChunkVisitor, T: MergeScalar>(_ visitor: inout V, _ tensorIndex: Int, _ range: Range<Int>, item: Int,
                                                       _ buffers: WorkerBuffers<T>) throws(MergeKitError) {
        let tensor = plan.tensors[tensorIndex]
        let source = try ChunkSource(tensor: tensor, range: range, inputs: plan.inputs, basePath: plan.base.path,
                                     buffers: buffers, handling: handling, rounding: .init(plan, tensor))
        visitor.begin(item: item)
        for chunk in source.chunks {
            let (_, deltas) = try source.load(chunk)
            visitor.visit(deltas)
        }
        if handling == .exclude && source.nonFiniteCounts.contains(where: { $0.total > 0 }) {
            visitor.excluded(tensor: tensorIndex, counts: source.nonFiniteCounts)
        }
    }
}

/// What a statistics pass does with each chunk of task vectors (one visitor per worker).
protocol ChunkVisitor: Sendable {
    mutating func begin(item: Int)
    mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>])
    /// With `FiniteCheck.Handling.exclude`: per input, the non-finite elements of `plan.tensors[tensor]` in the
    /// item just visited, which the visitor saw as 0.
    mutating func excluded(tensor: Int, counts: [FiniteCheck.Counts])
}

extension ChunkVisitor {
    mutating func excluded(tensor: Int, counts: [FiniteCheck.Counts]) {}
}
