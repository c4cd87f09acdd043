import Dispatch
import Foundation
import Synchronization

/// Runs a `MergePlan`:
///
/// 1. reserve the output files (so a full disk fails before any work);
/// 2. **statistics** passes over every merged tensor when the method needs whole-model numbers;
/// 3. **merge**: a bounded pool of workers streams over the tensors chunk by chunk — `pread` the
///    inputs (`readElements` at a time), convert to the compute type, run the method, convert to
///    the output dtype and `pwrite` at the tensor's precomputed offset (the writer streams each
///    completed window to disk: `WriteBehind`). Methods with per-tensor
///    statistics get whole tensors, which a worker passes over twice or more (from memory when the
///    tensor fits `tensorCacheBytes`, else re-reading it);
/// 4. commit the output atomically.
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
    /// memory: the conversion stalled on the loads and task arithmetic on the 1.1 B benchmark set
    /// took 2.3 s instead of 1.6–1.8 s; TIES 7.8 s instead of 6.5 s.)
    static let readElements = 16 * chunkElements
    /// Largest tensor (all inputs and the base, in the compute type) a worker keeps in memory
    /// for methods with per-tensor statistics; larger tensors are re-read for each pass.
    public static let tensorCacheBytes = 192 << 20

    /// - Parameter memoryBudget: bytes the tensors merged whole may use (nil: unlimited); see
    ///   MergeExecutor+Memory.swift. By default what the system has available (`MemoryBudget`).
    public static func run(_ plan: MergePlan, threads requested: Int? = nil, memoryBudget: Int? = MemoryBudget.configuredBytes,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> MergeResult {
        try run([plan], threads: requested, memoryBudget: memoryBudget, progress: progress)[0]
    }

    /// Runs several plans over the same inputs in one pass (a sweep): every input tensor is read
    /// once and each plan's result computed from it. The plans must share the base, the inputs
    /// and the tensor list (they differ in method parameters and outputs). With `sweep`, the
    /// outputs are written inside the sweep's temporary directory, which `SweepOutput.commit()`
    /// then moves into place as a whole.
    public static func run(_ plans: [MergePlan], threads requested: Int? = nil, sweep: SweepOutput? = nil, memoryBudget: Int? = MemoryBudget.configuredBytes,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> [MergeResult] {
        precondition(!plans.isEmpty)
        for plan in plans.dropFirst() {
            precondition(plan.base === plans[0].base && plan.tensors.map(\.name) == plans[0].tensors.map(\.name),
                         "plans run together must share the base and the tensor list")
        }
        let start = Date()
        // Tensors merged whole must fit the memory: refused now, before any output exists.
        let memory = try memoryPlan(plans, threads: max(1, requested ?? ProcessInfo.processInfo.activeProcessorCount), budget: memoryBudget)
        let threads = memory.workers
        let gate = WholeTensorGate(plans: plans, slots: memory.wholeTensorSlots)
        BLAS.useOneThread()
        var targets: [Target] = []
        do throws(MergeKitError) {
            for plan in plans {
                targets.append(Target(plan: plan, writer: try CheckpointWriter(output: plan.output, shards: plan.shards, in: sweep?.staged)))
            }
            // Whole-model statistics, shared between plans that ask for the same ones.
            var computed: [String: ModelStatistics] = [:]
            for target in targets {
                let request = target.plan.method.statistics
                guard request.needsModelPasses else { continue }
                let key = "\(String(describing: request.globalKeepFraction))|\(request.globalSquaredNorms)|\(request.majoritySign)|\(target.plan.inputs.map(\.weight))"
                if let known = computed[key] {
                    target.model = known
                } else {
                    target.model = try ModelStatisticsPass(plan: target.plan, request: request, threads: threads).run()
                    computed[key] = target.model
                }
            }
            for target in targets where target.plan.method.statistics.majoritySign && target.model.majority == nil {
                target.model.majority = 1
            }
            let items = workItems(plans[0])
            let workers = try runWorkers(targets, items: items, threads: threads, gate: gate, progress: progress)
            // Exact vote ties were merged with the predicted majority. If the counted majority
            // resolves ties differently and some result depended on it, merge that plan again.
            var again: [Target] = []
            for (t, target) in targets.enumerated() {
                let request = target.plan.method.statistics
                guard request.majoritySign, let tieSign = request.tieSign else { continue }
                let counted = workers.reduce(0) { $0 + $1.signVotes[t] }.signum()
                let resolved = workers.reduce(0) { $0 + $1.resolvedTies[t] }
                if tieSign(counted) != tieSign(target.model.majority!) && resolved > 0 { again.append(target) }
                target.model.majority = counted
            }
            if !again.isEmpty { _ = try runWorkers(again, items: items, threads: threads, gate: gate) }
        } catch {
            targets.forEach { $0.writer.abort() }
            throw error
        }

        var results: [MergeResult] = []
        for target in targets {
            let plan = target.plan
            var warnings: [String] = []
            do throws(MergeKitError) {
                let companions = try plan.companions.map { name throws(MergeKitError) in (source: try plan.base.companionSource(name), name: name) }
                try target.writer.commit(companions: companions, generated: plan.generatedFiles) { name, bytes in
                    guard name == "config.json" else { return bytes }
                    let rewritten = ConfigRewriter.settingDType(plan.output.dtype, in: bytes)
                    if let dtype = plan.output.dtype, rewritten == bytes, !ConfigRewriter.isJSONObject(bytes) {
                        warnings.append("\(FileSystem.join(plan.output.path, name)): copied unchanged: the base's config.json is not a JSON object, so its torch_dtype was not set to \(ConfigRewriter.torchNames[dtype] ?? dtype.rawValue); fix it by hand before loading the model with transformers")
                    }
                    return rewritten
                }
            } catch {
                targets.forEach { $0.writer.abort() }
                throw error
            }
            let files = plan.shards.map { shard in
                MergeResult.File(path: plan.output.isDirectory ? FileSystem.join(plan.output.path, shard.fileName) : plan.output.path,
                                 bytes: shard.layout.fileSize)
            }
            results.append(MergeResult(outputPath: plan.output.path, files: files,
                                       tensorsMerged: plan.tensors.reduce(0) { $0 + ($1.action == .merge ? 1 : 0) },
                                       tensorsCopied: plan.tensors.reduce(0) { $0 + ($1.action == .copy ? 1 : 0) },
                                       inputBytes: plan.inputBytes, outputBytes: plan.outputBytes,
                                       seconds: Date().timeIntervalSince(start),
                                       modelStatistics: plan.method.statistics.needsModelPasses ? target.model : nil,
                                       notes: target.writer.notes, warnings: warnings))
        }
        return results
    }

    /// `--check-finite`: reads every merged tensor's inputs once, before any merging, and applies
    /// the merge's NaN/Inf policy (`FiniteCheck`), so that an offending input is reported before
    /// any work. (Merges apply the same policy as they go; this only reports it first.)
    public static func checkInputsFinite(_ plan: MergePlan, threads requested: Int? = nil) throws(MergeKitError) {
        let threads = max(1, requested ?? ProcessInfo.processInfo.activeProcessorCount)
        BLAS.useOneThread()
        let ranges = workItems(plan, chunked: true, mergedOnly: true)
            .filter { !$0.range.isEmpty }
            .sorted { ($0.tensor, $0.range.lowerBound) < ($1.tensor, $1.range.lowerBound) }
            .map { ($0.tensor, $0.range) }
        _ = try ModelStatisticsPass(plan: plan, request: StatisticsRequest(), threads: threads).runPass(ranges) { ReadOnlyVisitor() }
    }

    /// Visits nothing: the chunk source's checks are the point of the pass.
    struct ReadOnlyVisitor: ChunkVisitor {
        mutating func begin(item: Int) {}
        mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {}
    }

    /// One plan being executed: its writer and whole-model statistics.
    final class Target: @unchecked Sendable {
        let plan: MergePlan
        let writer: CheckpointWriter
        var model = ModelStatistics()

        init(plan: MergePlan, writer: CheckpointWriter) {
            self.plan = plan
            self.writer = writer
        }
    }

    /// Runs the worker pool over `items` for `targets`; returns the workers (for their vote counts).
    static func runWorkers(_ targets: [Target], items: [WorkItem], threads: Int, gate: WholeTensorGate,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> [Worker] {
        let plan = targets[0].plan
        let totalBytes = items.reduce(0) { $0 + $1.bytes }
        let next = Atomic<Int>(0)
        let doneBytes = Atomic<Int>(0)
        let doneTensors = Atomic<Int>(0)
        let failure = Mutex<MergeKitError?>(nil)
        let failed = Atomic<Bool>(false)
        let finished = Mutex<[Worker]>([])
        DispatchQueue.concurrentPerform(iterations: min(threads, max(1, items.count))) { _ in
            let worker = Worker(targets: targets)
            while !failed.load(ordering: .relaxed) {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < items.count else { break }
                do throws(MergeKitError) {
                    try gate.run(items[i]) { () throws(MergeKitError) in try worker.process(items[i]) }
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                    failed.store(true, ordering: .relaxed)
                    break
                }
                let bytes = doneBytes.wrappingAdd(items[i].bytes, ordering: .relaxed).newValue
                let tensors = items[i].isLast ? doneTensors.wrappingAdd(1, ordering: .relaxed).newValue
                                              : doneTensors.load(ordering: .relaxed)
                progress?(MergeProgress(completedBytes: bytes, totalBytes: totalBytes,
                                        completedTensors: tensors, totalTensors: plan.tensors.count))
            }
            finished.withLock { $0.append(worker) }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return finished.withLock { $0 }
    }

    /// A unit of work: elements `range` of `plan.tensors[tensor]`.
    struct WorkItem: Sendable {
        let tensor: Int
        let range: Range<Int>
        /// Input + output bytes this item moves (for progress).
        let bytes: Int
        let isLast: Bool
    }

    /// The method of `tensor` when it merges this tensor whole (`WholeTensorMergeMethod`).
    static func wholeTensorMethod(_ tensor: PlannedTensor) -> (any WholeTensorMergeMethod)? {
        guard tensor.action == .merge, let method = tensor.method as? any WholeTensorMergeMethod,
              method.mergesWhole(shape: tensor.output.shape) else { return nil }
        return method
    }

    /// Chunks of every tensor; whole tensors for merged tensors whose method has per-tensor
    /// statistics (one worker must see the tensor's chunks in order) or merges them whole
    /// (`WholeTensorMergeMethod`), unless `chunked`.
    static func workItems(_ plan: MergePlan, chunked: Bool = false, mergedOnly: Bool = false) -> [WorkItem] {
        var items: [WorkItem] = []
        for (index, tensor) in plan.tensors.enumerated() {
            if mergedOnly && tensor.action != .merge { continue }
            let n = tensor.output.elementCount
            let bitsPerElement = tensor.base.info.dtype.bitWidth + tensor.output.dtype.bitWidth
                + tensor.inputs.reduce(0) { $0 + $1.bitsPerElement }
            let step: Int
            switch tensor.action {
            case .copy: step = max(1, (itemElements * 64) / max(1, tensor.base.info.dtype.bitWidth))
            case .merge: step = !chunked && (tensor.method.statistics.needsTensorPasses || wholeTensorMethod(tensor) != nil) ? max(1, n) : itemElements
            }
            if n == 0 {
                items.append(WorkItem(tensor: index, range: 0..<0, bytes: 0, isLast: true))
                continue
            }
            // Sub-byte copies are written whole (their chunks would not fall on byte boundaries).
            let effectiveStep = tensor.base.info.dtype.byteWidth == nil ? n : step
            var lower = 0
            while lower < n {
                let upper = min(n, lower + effectiveStep)
                items.append(WorkItem(tensor: index, range: lower..<upper, bytes: (upper - lower) * bitsPerElement / 8,
                                      isLast: upper == n))
                lower = upper
            }
        }
        // Whole tensors are scheduled largest first, so that no large tensor starts last while
        // the other workers run out of work. Results do not depend on the order.
        items.sort { a, b in
            let wa = a.range.count > itemElements ? a.range.count : 0, wb = b.range.count > itemElements ? b.range.count : 0
            if wa != wb { return wa > wb }
            return (a.tensor, a.range.lowerBound) < (b.tensor, b.range.lowerBound)
        }
        return items
    }

    /// One worker's buffers and pipeline (for one or several targets sharing the inputs).
    final class Worker: @unchecked Sendable {
        let targets: [Target]
        let plan: MergePlan
        private lazy var floatBuffers = WorkerBuffers<Float>(inputs: plan.inputs.count, targets: targets.count)
        private lazy var doubleBuffers = WorkerBuffers<Double>(inputs: plan.inputs.count, targets: targets.count)
        /// Per target: Σ sign(vote) over everything this worker merged (mass-vote methods).
        private(set) var signVotes: [Int]
        /// Per target: elements whose result depended on how vote ties were resolved.
        private(set) var resolvedTies: [Int]

        init(targets: [Target]) {
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
                try tensor.base.file.read(into: staging, count: n, at: tensor.base.file.fileOffset(of: tensor.base.info) + position)
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

        /// Merges a whole tensor for target `t` with a `WholeTensorMergeMethod`: the method loads
        /// the task vectors one input at a time (`loadWhole`) and writes τ₁ into a tensor-sized
        /// buffer; τ = α·τ₁, and θ₀ + τ (or τ) is converted and written a work item's worth at a
        /// time. With several targets (a sweep), τ₁ is kept in `shared` for the targets whose
        /// method has the same name, key and weights, so each tensor is decomposed once.
        private func mergeWhole<T: MergeScalar>(_ item: WorkItem, target t: Int, method: any WholeTensorMergeMethod,
                                                _ buffers: WorkerBuffers<T>,
                                                shared: inout [String: UnsafeMutableBufferPointer<T>]) throws(MergeKitError) {
            let tensor = targets[t].plan.tensors[item.tensor]
            let n = tensor.output.elementCount
            precondition(item.range == 0..<n, "a tensor merged whole must be one work item")
            let out = try ScratchMemory.allocate(T.self, count: n, tensor: tensor.name, purpose: "the merged matrix")
            defer { ScratchMemory.release(out) }
            let key = "\(method.info.name)|\(method.wholeTensorKey)|\(tensor.weights)"
            if let known = shared[key] {
                T.copy(UnsafeBufferPointer(known), out)
            } else {
                out.initialize(repeating: 0)
                let context = ChunkContext(tensor: tensor.name, shape: tensor.output.shape, model: targets[t].model,
                                           statistics: TensorStatistics(), scratch: buffers.methodScratch)
                let deltas = TensorDeltas<T>(tensor: tensor.name, shape: tensor.output.shape, count: tensor.inputs.count) { i, destination throws(MergeKitError) in
                    try self.loadWhole(tensor, input: i, into: destination, buffers)
                }
                try method.combineTensor(deltas, weights: tensor.weights.map { T($0) }, into: out, context: context)
                if targets.count > 1 {
                    let copy = try ScratchMemory.allocate(T.self, count: n, tensor: tensor.name, purpose: "the merged matrix shared by the sweep's plans")
                    T.copy(UnsafeBufferPointer(out), copy)
                    shared[key] = copy
                }
            }
            if method.wholeTensorScale != 1 { T.scal(T(method.wholeTensorScale), out) }
            let emit = targets[t].plan.output.emit
            let width = tensor.output.dtype.byteWidth!, baseWidth = tensor.base.info.dtype.byteWidth!
            var group = 0
            while group < n {
                let end = Swift.min(n, group + MergeExecutor.itemElements)
                if emit == .model {
                    try tensor.base.file.read(into: buffers.staging[0], count: (end - group) * baseWidth,
                                              at: tensor.base.file.fileOffset(of: tensor.base.info) + group * baseWidth)
                }
                var lower = group
                while lower < end {
                    let upper = Swift.min(end, lower + MergeExecutor.chunkElements)
                    let base = UnsafeMutableBufferPointer(rebasing: buffers.base[0..<(upper - lower)])
                    if emit == .model {
                        T.load(buffers.staging[0] + (lower - group) * baseWidth, dtype: tensor.base.info.dtype, count: upper - lower,
                               into: base.baseAddress!)
                    }
                    // Written right away, so every target stages in the one work-item-sized buffer.
                    try finish(tensor, lower..<upper, out: UnsafeMutableBufferPointer(rebasing: out[lower..<upper]),
                               base: emit == .model ? base : nil, target: t, into: buffers.bytes.baseAddress! + (lower - group) * width)
                    lower = upper
                }
                try targets[t].writer.write(UnsafeRawBufferPointer(start: buffers.bytes.baseAddress!, count: (end - group) * width),
                                            dataOffset: tensor.output.begin + group * width, shard: tensor.shard)
                group = end
            }
        }

        /// τ of input `i` for the whole tensor into `destination`, a work item's worth of bytes
        /// read at a time, checked chunk by chunk against the base as the chunked merge checks
        /// it (`FiniteCheck`): a NaN or ±∞ is reported naming the file.
        private func loadWhole<T: MergeScalar>(_ tensor: PlannedTensor, input i: Int, into destination: UnsafeMutableBufferPointer<T>,
                                               _ buffers: WorkerBuffers<T>) throws(MergeKitError) {
            let n = tensor.output.elementCount
            precondition(destination.count == n)
            let source = tensor.inputs[i]
            switch source {
            case .tensor:
                break
            case .lora(let module):
                // s·B·A for the whole tensor, one GEMM per row block.
                try buffers.loraProduct(input: i, module: module).materialize(0..<n, into: destination.baseAddress!)
            case .zero:
                // τ = 0 agrees with any base value.
                destination.update(repeating: 0)
                return
            }
            let isModel = plan.inputs[i].kind == .model
            let baseWidth = tensor.base.info.dtype.byteWidth!
            var counts = [FiniteCheck.Counts()]
            var group = 0
            while group < n {
                let end = Swift.min(n, group + MergeExecutor.itemElements)
                if let entry = source.entry {
                    let width = entry.info.dtype.byteWidth!
                    try entry.file.read(into: buffers.staging[1], count: (end - group) * width,
                                        at: entry.file.fileOffset(of: entry.info) + group * width)
                }
                try tensor.base.file.read(into: buffers.staging[0], count: (end - group) * baseWidth,
                                          at: tensor.base.file.fileOffset(of: tensor.base.info) + group * baseWidth)
                var lower = group
                while lower < end {
                    let count = Swift.min(end, lower + MergeExecutor.chunkElements) - lower
                    let target = UnsafeMutableBufferPointer(start: destination.baseAddress! + lower, count: count)
                    let base = UnsafeMutableBufferPointer(rebasing: buffers.base[0..<count])
                    T.load(buffers.staging[0] + (lower - group) * baseWidth, dtype: tensor.base.info.dtype, count: count,
                           into: base.baseAddress!)
                    let raw = source.entry.map { UnsafeRawPointer(buffers.staging[1] + (lower - group) * $0.info.dtype.byteWidth!) }
                    let finite: Bool
                    if let raw, let entry = source.entry, isModel {
                        finite = T.loadDifference(raw, dtype: entry.info.dtype, count: count, minus: UnsafePointer(base.baseAddress!),
                                                  into: target.baseAddress!)
                    } else {
                        if let raw, let entry = source.entry { T.load(raw, dtype: entry.info.dtype, count: count, into: target.baseAddress!) }
                        finite = !T.reaches(UnsafeBufferPointer(target), key: T.infinityKey)
                            && !T.reaches(UnsafeBufferPointer(base), key: T.infinityKey)
                    }
                    if !finite {
                        try FiniteCheck.resolveInputs(tensor, inputs: [FiniteCheck.Input(input: plan.inputs[i], source: source, raw: raw)],
                                                      basePath: plan.base.path, chunkStart: lower, base: UnsafeBufferPointer(base),
                                                      deltas: [target], counts: &counts)
                    }
                    lower += count
                }
                group = end
            }
        }

        /// θ = θ₀ + τ (or τ alone), checked to be finite in the output dtype (`FiniteCheck`) and
        /// converted into the output staging buffer. `base` may be nil when τ alone is written.
        private func finish<T: MergeScalar>(_ tensor: PlannedTensor, _ chunk: Range<Int>, out: UnsafeMutableBufferPointer<T>,
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
        private func resolveOutput<T: MergeScalar>(_ tensor: PlannedTensor, _ chunk: Range<Int>, out: UnsafeMutableBufferPointer<T>,
                                                   base: UnsafeMutableBufferPointer<T>?, target t: Int) throws(MergeKitError) {
            try FiniteCheck.resolveOutput(tensor, output: targets[t].plan.output.path, chunkStart: chunk.lowerBound, out: out,
                                          base: base.map { UnsafeBufferPointer($0) }, emit: targets[t].plan.output.emit)
        }

        /// Tensors up to this many elements get their rank windows from a sorted copy of the keys
        /// (one pass); larger ones from radix selections (2 passes for Float, 4 for Double).
        static let sortedSelectionLimit = 1 << 18

        /// Gram matrix, DARE L1 sums and rank-window selections, in as few passes as possible.
        ///
        /// Rank windows come from each input's sorted magnitude keys when the tensor is small and
        /// whole in memory (cached, or one chunk), sorted one input at a time; otherwise from
        /// radix selections, run for as many inputs at once as `BufferBudget.counterBatch` allows
        /// (each further batch costs its own passes).
        private func computeTensorStatistics<T: MergeScalar>(_ source: ChunkSource<T>, tensor: PlannedTensor, _ statistics: TensorStatistics,
                                                             _ context: ChunkContext) throws(MergeKitError) {
            let inputs = plan.inputs.count
            let n = tensor.output.elementCount
            let request = tensor.method.statistics
            let windows = request.tensorRankWindow.map { window in (0..<inputs).map { window(n, $0) } } ?? []
            let bounded = windows.indices.filter { !windows[$0].isEmpty && (windows[$0].lowerBound > 0 || windows[$0].upperBound < n) }
            let wholeInMemory = source.cached || source.chunks.count == 1
            let sortKeys = !bounded.isEmpty && n <= Worker.sortedSelectionLimit && wholeInMemory
            var lowerStatistics = [OrderStatistic?](repeating: nil, count: inputs)
            var upperStatistics = [OrderStatistic?](repeating: nil, count: inputs)
            var keys: [UInt64] = []
            /// The statistics at the ends of input i's window, from its values' sorted keys.
            func sortedStatistics(_ i: Int, _ values: UnsafeBufferPointer<T>) {
                let w = windows[i]
                keys.removeAll(keepingCapacity: true)
                keys.append(contentsOf: values.lazy.map { T.magnitudeKey($0) })
                keys.sort()
                if w.lowerBound > 0 { lowerStatistics[i] = OrderStatistic(sortedKeys: keys, rank: w.lowerBound) }
                if w.upperBound < n { upperStatistics[i] = OrderStatistic(sortedKeys: keys, rank: w.upperBound - 1) }
            }
            let selected = sortKeys ? [] : bounded
            let batchSize = max(1, BufferBudget.counterBatch(selections: 2 * selected.count) / 2)
            let batches = selected.isEmpty ? [[]] : stride(from: 0, to: selected.count, by: batchSize).map {
                Array(selected[$0..<min(selected.count, $0 + batchSize)])
            }
            var gram = [[Double]](repeating: [Double](repeating: 0, count: inputs), count: inputs)
            var l1 = [(before: Double, after: Double)](repeating: (0, 0), count: inputs)
            for (b, batch) in batches.enumerated() {
                var lowerSelections: [RadixSelection?] = batch.map { i in
                    windows[i].lowerBound > 0 ? RadixSelection(rank: windows[i].lowerBound, keyBits: T.magnitudeKeyBits) : nil
                }
                var upperSelections: [RadixSelection?] = batch.map { i in
                    windows[i].upperBound < n ? RadixSelection(rank: windows[i].upperBound - 1, keyBits: T.magnitudeKeyBits) : nil
                }
                let passes = batch.isEmpty ? 1 : T.magnitudeKeyBits / RadixSelection.digitBits
                for pass in 0..<passes {
                    for chunk in source.chunks {
                        let (_, deltas) = try source.load(chunk)
                        if b == 0 && pass == 0 {
                            if request.tensorGram {
                                for i in 0..<inputs {
                                    for j in i..<inputs {
                                        gram[i][j] += Double(T.dot(UnsafeBufferPointer(deltas[i]), UnsafeBufferPointer(deltas[j])))
                                    }
                                }
                            }
                            if let masks = request.tensorDropL1 {
                                for i in 0..<inputs {
                                    let mask = masks.mask(for: i)
                                    let limit = mask.threshold
                                    // Σ|τ| and Σ|τ| over kept entries with BLAS asum (per chunk, summed in Double).
                                    CounterRandom(seed: mask.seed, tensor: context.tensor, input: i)
                                        .fill(context.bitsScratch, count: chunk.count, start: chunk.lowerBound)
                                    let kept: UnsafeMutableBufferPointer<T> = context.scratch(0, count: chunk.count)
                                    T.copy(UnsafeBufferPointer(deltas[i]), kept)
                                    T.drop(kept, bits: context.bitsScratch, limit: limit)
                                    let sums = (before: Double(T.asum(UnsafeBufferPointer(deltas[i]))), after: Double(T.asum(UnsafeBufferPointer(kept))))
                                    l1[i].before += sums.before
                                    l1[i].after += sums.after
                                }
                            }
                            // A single chunk is the whole tensor.
                            if sortKeys && !source.cached {
                                for i in bounded { sortedStatistics(i, UnsafeBufferPointer(deltas[i])) }
                            }
                        }
                        for (s, i) in batch.enumerated() {
                            lowerSelections[s]?.observe(UnsafeBufferPointer(deltas[i]))
                            upperSelections[s]?.observe(UnsafeBufferPointer(deltas[i]))
                        }
                    }
                    for s in batch.indices {
                        lowerSelections[s]?.finishPass()
                        upperSelections[s]?.finishPass()
                    }
                }
                for (s, i) in batch.enumerated() {
                    lowerStatistics[i] = lowerSelections[s]?.statistic
                    upperStatistics[i] = upperSelections[s]?.statistic
                }
            }
            if sortKeys && source.cached {
                for i in bounded { sortedStatistics(i, UnsafeBufferPointer(rebasing: source.buffers.cacheDeltas[i][0..<n])) }
            }
            for i in 0..<inputs { for j in 0..<i { gram[i][j] = gram[j][i] } }
            statistics.gram = request.tensorGram ? gram : []
            statistics.dropL1 = request.tensorDropL1 != nil ? l1 : []
            statistics.windows = windows.indices.map { i in
                let w = windows[i]
                if w.isEmpty { return RankWindow.empty }
                return RankWindow(lower: w.lowerBound, lowerStatistic: lowerStatistics[i], upper: w.upperBound, upperStatistic: upperStatistics[i],
                                  earlierRanksHigher: request.tensorRankTiesEarlierHigher)
            }
        }
    }
}
