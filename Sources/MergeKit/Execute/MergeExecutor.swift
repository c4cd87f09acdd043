import Foundation
import Synchronization

/// Runs a `MergePlan`:
///
/// 1. reserve the output files (so a full disk fails before any work: `CheckpointWriter`);
/// 2. **statistics** passes over every merged tensor when the method needs whole-model numbers
///    (Statistics/: `computeModelStatistics`, `ModelStatisticsPass`);
/// 3. **merge** (Execute/: `merge`): the worker pool (`WorkerPool`) streams over the tensors
///    chunk by chunk (`MergeWorker`) — `pread` the inputs (`TensorReader`, `readElements` at a
///    time), convert to the compute type (`ChunkSource`), run the method, apply λ, add θ₀,
///    convert to the output dtype and `pwrite` at the tensor's precomputed offset (the writer
///    streams each completed window to disk: `WriteBehind`). Methods with per-tensor statistics
///    get whole tensors, which a worker passes over twice or more (from memory when the tensor
///    fits `tensorCacheBytes`, else re-reading it);
/// 4. commit the outputs atomically (Finish/: `finish`).
///
/// TIES's mass vote resolves exact ties by the sign of the vote over the whole model, which is
/// only known once every element has voted: the merge pass uses a prediction (from the statistics
/// sample, else +) and counts the vote; in the rare case the count disagrees and some result
/// depended on it, the merge pass runs again with the counted majority.
///
/// Memory stays flat in model size and bounded in the number of inputs and sweep points
/// (`MemoryBudget`): scratch buffers of `chunkElements` values per input per worker, input and
/// output staging from fixed per-worker budgets, at most `tensorCacheBytes` of cached tensor per
/// worker; inputs are read into the staging buffers, not mapped, and outputs leave the page
/// cache as they are written. Results do not depend on the thread count: chunks
/// are computed independently with BLAS single-threaded, statistics are reduced in a fixed order,
/// and each result lands at a fixed offset.
public enum MergeExecutor {
    /// Elements per chunk: 64 KB of Float per buffer, so a chunk's buffers stay in L2 cache
    /// through the several passes a method makes over them.
    public static let chunkElements = 1 << 14
    /// Elements per work item: the unit a worker takes (tensors with per-tensor statistics are
    /// taken whole) and the size of its output staging.
    public static let itemElements = 64 * chunkElements
    /// Elements per `pread` of each input: 512 KB of bf16, so the bytes are still in cache when
    /// they are converted. (Reading a work item's worth — 2 MB per input — at a time left them in
    /// memory and the conversion stalled on the loads; README, "Performance", has the measurement.)
    static let readElements = 16 * chunkElements
    /// Largest tensor (all inputs and the base, in the compute type) a worker keeps in memory
    /// for methods with per-tensor statistics; larger tensors are re-read for each pass.
    public static let tensorCacheBytes = 192 << 20

    /// - Parameter memoryBudget: bytes the tensors merged whole may use (nil: unlimited); see
    ///   Execute/MemoryPlan.swift. By default what the system has available (`MemoryBudget`).
    public static func run(_ plan: MergePlan, threads requested: Int? = nil, memoryBudget: Int? = MemoryBudget.configuredBytes,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> MergeResult {
        try run([plan], threads: requested, memoryBudget: memoryBudget, progress: progress)[0]
    }

    /// Runs several plans over the same inputs in one pass (a sweep): every input tensor is read
    /// once and each plan's result computed from it. The plans must share the base, the inputs
    /// and the tensor list (they differ in method parameters and outputs). With `sweep`, the
    /// outputs are written inside the sweep's temporary directory, which `SweepOutput.commit()`
    /// then moves into place as a whole.
    ///
    /// `statistics`: each plan's whole-model statistics, complete and exact (a partition's,
    /// combined from every partition's: `PartitionStatistics`), instead of computing them here.
    public static func run(_ plans: [MergePlan], threads requested: Int? = nil, sweep: SweepOutput? = nil, memoryBudget: Int? = MemoryBudget.configuredBytes,
                           statistics: [ModelStatistics]? = nil,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> [MergeResult] {
        try run(plans, inMemory: [], threads: requested, sweep: sweep, memoryBudget: memoryBudget, statistics: statistics,
                progress: progress).map { $0.written! }
    }

    /// One plan's output: written (its result), or built in memory.
    public enum Output: Sendable {
        case written(MergeResult)
        case memory(MemoryOutput)

        public var written: MergeResult? { if case .written(let result) = self { result } else { nil } }
        public var memory: MemoryOutput? { if case .memory(let output) = self { output } else { nil } }
    }

    /// `run`, with the outputs of the plans at `inMemory` (indices into `plans`) built in memory
    /// (`MemoryOutput`) instead of written: a sweep's points that are evaluated before it is
    /// decided which to keep. The others are written and committed as usual.
    public static func run(_ plans: [MergePlan], inMemory: Set<Int>, threads requested: Int? = nil, sweep: SweepOutput? = nil,
                           memoryBudget: Int? = MemoryBudget.configuredBytes, statistics: [ModelStatistics]? = nil,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> [Output] {
        precondition(!plans.isEmpty)
        for plan in plans.dropFirst() {
            precondition(plan.base === plans[0].base && plan.tensors.map(\.name) == plans[0].tensors.map(\.name),
                         "plans run together must share the base and the tensor list")
        }
        let start = Date()
        // Tensors merged whole must fit the memory: refused now, before any output exists.
        let memory = try memoryPlan(plans, threads: ThreadCount.resolved(requested), budget: memoryBudget)
        let threads = memory.workers
        let gate = WholeTensorGate(plans: plans, slots: memory.wholeTensorSlots)
        BLAS.useOneThread()
        var targets: [Target] = []
        do throws(MergeKitError) {
            for (i, plan) in plans.enumerated() {
                let sink: any OutputSink = inMemory.contains(i) ? try MemoryOutput(plan: plan)
                    : try CheckpointWriter(output: plan.output, shards: plan.shards, in: sweep?.staged)
                targets.append(Target(plan: plan, sink: sink))
            }
            if let statistics {
                precondition(statistics.count == targets.count)
                for (target, known) in zip(targets, statistics) { target.model = known }
            } else {
                try computeModelStatistics(targets, threads: threads)
            }
            try merge(targets, threads: threads, gate: gate, progress: progress)
        } catch {
            targets.forEach { $0.sink?.abort() }
            throw error
        }
        let results = try finish(targets.filter { $0.writer != nil }, start: start)
        var written = results.makeIterator()
        return targets.map { target in target.writer != nil ? .written(written.next()!) : .memory(target.sink as! MemoryOutput) }
    }

    /// `--check-finite`: reads every merged tensor's inputs once, before any merging, and applies
    /// the merge's NaN/Inf policy (`FiniteCheck`), so that an offending input is reported before
    /// any work. (Merges apply the same policy as they go; this only reports it first.)
    public static func checkInputsFinite(_ plan: MergePlan, threads requested: Int? = nil) throws(MergeKitError) {
        let threads = ThreadCount.resolved(requested)
        BLAS.useOneThread()
        let ranges = TaskVectorPass.mergedRanges(plan).filter { range in
            !range.range.isEmpty && plan.output.part.map { $0.shards.contains(plan.tensors[range.tensor].shard) } ?? true
        }
        _ = try TaskVectorPass(plan: plan, threads: threads).run(ranges) { ReadOnlyVisitor() }
    }

    /// Visits nothing: the chunk source's checks are the point of the pass.
    struct ReadOnlyVisitor: ChunkVisitor {
        mutating func begin(item: Int) {}
        mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {}
    }

    /// One plan being executed: where its output goes and its whole-model statistics.
    final class Target: @unchecked Sendable {
        let plan: MergePlan
        /// A file (`CheckpointWriter`) or memory (`MemoryOutput`); nil for a target merged only
        /// to count its vote (`countVotes`): nothing is written.
        let sink: (any OutputSink)?
        /// Without a sink: the `plan.tensors` indices merged.
        private let merged: Set<Int>
        var model = ModelStatistics()

        init(plan: MergePlan, sink: any OutputSink) {
            self.plan = plan
            self.sink = sink
            merged = []
        }

        /// A target that merges `tensors` without writing them (`countVotes`), with `model`.
        init(plan: MergePlan, merging tensors: Set<Int>, model: ModelStatistics) {
            self.plan = plan
            sink = nil
            merged = tensors
            self.model = model
        }

        /// The file writer, when the output is written to a file.
        var writer: CheckpointWriter? { sink as? CheckpointWriter }

        /// Whether this target writes `plan.tensors[tensor]`: every tensor, except for a
        /// partition (`OutputSpec.part`), which writes only the tensors of its shards.
        func writes(tensor: Int) -> Bool { sink?.writes(shard: plan.tensors[tensor].shard) ?? merged.contains(tensor) }
    }

    /// The merge pass for `targets`. Exact vote ties (TIES's mass vote) are merged with the
    /// predicted majority; if the counted majority resolves ties differently and some result
    /// depended on it, that target is merged again.
    static func merge(_ targets: [Target], threads: Int, gate: WholeTensorGate,
                      progress: (@Sendable (MergeProgress) -> Void)?) throws(MergeKitError) {
        // A partition's share (`OutputSpec.part`): only the tensors some target writes are read.
        let items = workItems(targets[0].plan).filter { item in targets.contains { $0.writes(tensor: item.tensor) } }
        let workers = try runWorkers(targets, items: items, threads: threads, gate: gate, progress: progress)
        var again: [Target] = []
        for (t, target) in targets.enumerated() {
            let request = target.plan.method.statistics
            // (A majority counted over the whole model beforehand is final: `PartitionStatistics`.)
            guard request.majoritySign, let tieSign = request.tieSign, !target.model.majorityIsCounted else { continue }
            let counted = workers.reduce(0) { $0 + $1.signVotes[t] }.signum()
            let resolved = workers.reduce(0) { $0 + $1.resolvedTies[t] }
            if tieSign(counted) != tieSign(target.model.majority!) && resolved > 0 { again.append(target) }
            target.model.majority = counted
        }
        if !again.isEmpty { _ = try runWorkers(again, items: items, threads: threads, gate: gate) }
    }

    /// Runs the merge pass over `items` for `targets` on the worker pool; returns the workers
    /// (for their vote counts).
    static func runWorkers(_ targets: [Target], items: [WorkItem], threads: Int, gate: WholeTensorGate,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> [MergeWorker] {
        let totalTensors = items.reduce(0) { $0 + ($1.isLast ? 1 : 0) }
        let totalBytes = items.reduce(0) { $0 + $1.bytes }
        let doneBytes = Atomic<Int>(0)
        let doneTensors = Atomic<Int>(0)
        return try WorkerPool.run(items: items.count, threads: threads, makeWorker: { MergeWorker(targets: targets) }) { worker, i throws(MergeKitError) in
            let item = items[i]
            try gate.run(item) { () throws(MergeKitError) in try worker.process(item) }
            let bytes = doneBytes.wrappingAdd(item.bytes, ordering: .relaxed).newValue
            let tensors = item.isLast ? doneTensors.wrappingAdd(1, ordering: .relaxed).newValue : doneTensors.load(ordering: .relaxed)
            progress?(MergeProgress(completedBytes: bytes, totalBytes: totalBytes, completedTensors: tensors, totalTensors: totalTensors))
        }
    }
}

