import Dispatch

/// Memory of the tensors merged whole (`WholeTensorMergeMethod`: TSV-M, Iso-C), planned before
/// any output is created.
///
/// Each whole tensor's peak working set is the method's (`wholeTensorBytes`: for an SVD, the
/// copy LAPACK destroys, U, Vᵀ and the workspace), the tensor-sized result buffer, one more per
/// distinct result when several plans run together (a sweep), and the factors of LoRA inputs.
/// Every worker also holds its chunk and staging buffers, and BLAS's and the allocator's share
/// (`perWorkerBytes`, with `MemoryBudget.workerSlack`). Against the
/// available memory (`MemoryBudget`):
///
/// - a tensor the method cannot merge at all (`wholeTensorProblem`), or whose working set does
///   not fit even with a single worker, is refused, naming it, the estimate and what is available;
/// - otherwise the number of workers is lowered until each has its buffers and the largest tensor
///   fits, and at most `wholeTensorSlots` workers hold a whole tensor at once: the most k such
///   that the k largest fit together (so any k do). Results do not depend on either number.
extension MergeExecutor {
    struct MemoryPlan: Sendable, Equatable {
        /// Workers to run (at most the requested threads).
        let workers: Int
        /// Workers that may merge a whole tensor at the same time.
        let wholeTensorSlots: Int
        /// The largest whole tensor's working set in bytes (0 when no tensor is merged whole).
        let largestBytes: Int
    }

    /// The memory plan of running `plans` together with `threads` workers within `budget` bytes
    /// (nil: unlimited).
    static func memoryPlan(_ plans: [MergePlan], threads: Int, budget: Int?) throws(MergeKitError) -> MemoryPlan {
        // Runs a method needs whole in a chunk must fit a work item.
        for plan in plans {
            for tensor in plan.tensors where tensor.action == .merge && chunkLength(tensor) > itemElements {
                let run = tensor.method.chunkAlignment(shape: tensor.output.shape)
                throw MergeKitError(.invalidArgument, tensor: tensor.name,
                    "\(tensor.method.info.name) needs runs of \(run) consecutive elements of this \(tensor.output.shape) tensor together, more than the \(itemElements) a worker holds",
                    fix: "Merge this model with a method that works element by element or per tensor (ties, dare_ties, …)")
            }
        }
        let items = workItems(plans[0])
        var workers = threads
        var whole: [(tensor: Int, bytes: Int)] = []
        for item in items {
            guard let bytes = try wholeTensorBytes(plans, tensor: item.tensor) else { continue }
            whole.append((item.tensor, bytes))
        }
        guard let largest = whole.max(by: { $0.bytes < $1.bytes }) else {
            return MemoryPlan(workers: workers, wholeTensorSlots: workers, largestBytes: 0)
        }
        let perWorker = perWorkerBytes(plans)
        guard let budget else { return MemoryPlan(workers: workers, wholeTensorSlots: workers, largestBytes: largest.bytes) }
        if largest.bytes + perWorker > budget {
            let tensor = plans[0].tensors[largest.tensor]
            let methods = Set(plans.compactMap { wholeTensorMethod($0.tensors[largest.tensor])?.info.name }).sorted().joined(separator: ", ")
            let compute = tensor.computeInDouble ? "Double" : "Float"
            let matrix = tensor.output.elementCount * (tensor.computeInDouble ? 8 : 4)
            throw MergeKitError(.insufficientMemory, tensor: tensor.name,
                "merging this \(tensor.output.shape) matrix whole with \(methods) needs about \(ByteCount.describe(largest.bytes + perWorker)) of memory (it is \(ByteCount.describe(matrix)) in \(compute); the SVD holds its copy, U, Vᵀ and LAPACK's workspace besides the result), but \(ByteCount.describe(budget)) is available",
                fix: "Run on a machine with that much free memory (or raise \(MemoryBudget.variable) if it was set lower); \(term: .fewerThreads) does not help, since tensors that do not fit together are already merged one at a time")
        }
        while workers > 1 && workers * perWorker + largest.bytes > budget { workers -= 1 }
        let slots = MemoryBudget.concurrency(whole.map(\.bytes), workers: workers, perWorker: perWorker, budget: budget)
        return MemoryPlan(workers: workers, wholeTensorSlots: slots, largestBytes: largest.bytes)
    }

    /// The peak working set of merging `plans`' tensor `index` whole, or nil when no plan merges
    /// it whole. Throws when a method cannot merge it at all.
    static func wholeTensorBytes(_ plans: [MergePlan], tensor index: Int) throws(MergeKitError) -> Int? {
        var methodBytes = 0
        var results = Set<String>()
        var elementSize = 0
        for plan in plans {
            let tensor = plan.tensors[index]
            guard let method = wholeTensorMethod(tensor) else { continue }
            if let problem = method.wholeTensorProblem(shape: tensor.output.shape) {
                throw MergeKitError(.invalidArgument, tensor: tensor.name, "\(method.info.name) cannot merge this \(tensor.output.shape) matrix: \(problem)",
                    fix: "Merge this model with a method that does not decompose its matrices (task-arithmetic, ties, …)")
            }
            let size = tensor.computeInDouble ? 8 : 4
            elementSize = max(elementSize, size)
            methodBytes = max(methodBytes, method.wholeTensorBytes(shape: tensor.output.shape, inputs: tensor.inputs.count, elementSize: size))
            results.insert("\(method.info.name)|\(method.wholeTensorKey)|\(tensor.weights)")
        }
        guard elementSize > 0 else { return nil }
        let tensor = plans[0].tensors[index]
        let n = tensor.output.elementCount
        let shared = plans.count > 1 ? results.count : 0
        var factors = 0
        for case .lora(let module) in tensor.inputs {
            factors += elementSize * (module.a.info.elementCount + module.b.info.elementCount)
        }
        return methodBytes + elementSize * n * (1 + shared) + factors
    }

    /// The tensor merged whole with the largest working set and that set's bytes (nil when none;
    /// tensors the method cannot merge at all are left out).
    static func largestWholeTensor(_ plans: [MergePlan]) -> (name: String, bytes: Int)? {
        var largest: (name: String, bytes: Int)?
        for index in plans[0].tensors.indices {
            guard let bytes = (try? wholeTensorBytes(plans, tensor: index)) ?? nil else { continue }
            if bytes > largest?.bytes ?? -1 { largest = (plans[0].tensors[index].name, bytes) }
        }
        return largest
    }

    /// What one worker allocates whatever it merges (`WorkerBuffers`, for each compute type in use).
    static func perWorkerBytes(_ plans: [MergePlan]) -> Int {
        let inputs = plans[0].inputs.count, targets = plans.count
        // As `WorkerBuffers` allocates them: a work item for the output and for the base's and the
        // first input's staging, `BufferBudget.readElements` per further input, and an output span
        // per further target unless they share one.
        let item = itemElements * 8
        let read = BufferBudget.readElements(inputs: inputs) * 8
        let extraOutputs = BufferBudget.sharesOutputStaging(targets: targets) ? 0 : (targets - 1) * BufferBudget.outputSpan(targets: targets) * 8
        let capacity = chunkCapacity(plans)
        let staging = 3 * item + max(0, inputs - 1) * max(read, capacity * 8) + extraOutputs + ChunkContext.scratchBytes(capacity: capacity)
        func chunks(_ size: Int) -> Int {
            size * capacity * (inputs + 2 + (targets > 1 ? inputs + 1 : 0))
        }
        let double = plans[0].tensors.contains { $0.action == .merge && $0.computeInDouble }
        return staging + chunks(4) + (double ? staging + chunks(8) : 0) + MemoryBudget.workerSlack
    }

    /// Lets at most `slots` workers merge a whole tensor at the same time.
    final class WholeTensorGate: @unchecked Sendable {
        private let tensors: Set<Int>
        private let semaphore: DispatchSemaphore

        init(plans: [MergePlan], slots: Int) {
            tensors = Set(plans[0].tensors.indices.filter { index in plans.contains { wholeTensorMethod($0.tensors[index]) != nil } })
            semaphore = DispatchSemaphore(value: slots)
        }

        /// Runs `body` for `item`, waiting for a slot first when the item is a whole tensor.
        func run(_ item: WorkItem, _ body: () throws(MergeKitError) -> Void) throws(MergeKitError) {
            guard tensors.contains(item.tensor) else { return try body() }
            semaphore.wait()
            defer { semaphore.signal() }
            try body()
        }
    }
}
