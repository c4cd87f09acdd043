/// The disentanglement error of two task vectors (`Disentanglement`) from files, with every input
/// checked before anything large is loaded. The base is an ordinary model or a linearized
/// checkpoint; a linearized base always runs linearized, around its θ₀. Each task vector is a
/// task-vector file, a fine-tuned model (τ = θ − θ₀) or a linearized checkpoint (θ − θ₀ around
/// the base's θ₀).
public struct DisentanglementJob: Sendable {
    /// One task's input: a file, and whether it is a fine-tuned model (else a task vector).
    public struct Input: Sendable {
        public let path: String
        public let isModel: Bool

        public init(path: String, isModel: Bool) {
            self.path = path
            self.isModel = isModel
        }
    }

    /// The base θ₀, checked from its header.
    public let base: EncoderCheckpoint
    /// Whether every model is evaluated linearized around θ₀ (asked for, or a linearized base).
    public let linearized: Bool
    /// The two tasks' inputs, heads and datasets, in order.
    public let inputs: [Input]
    public let heads: [TaskHead]
    public let data: [ImageDataset]
    private let checkpoints: [Checkpoint]
    private let allowUnused: Bool

    /// Checks the base, then every task input, then the heads and the data; `ignored` hears about
    /// the base's tensors the encoder does not use (only with `allowUnused`).
    public init(base path: String, inputs: [Input], heads headPaths: [String], data dataPaths: [String], linearized: Bool = false,
                allowUnused: Bool = false, ignored: (_ file: String, _ tensors: [String]) -> Void = { _, _ in }) throws(MergeKitError) {
        guard inputs.count == 2, headPaths.count == 2, dataPaths.count == 2 else {
            throw MergeKitError(.invalidArgument, "Got \(inputs.count) task vectors, \(headPaths.count) heads and \(dataPaths.count) datasets",
                                fix: "Give two tasks, each with its task vector, head and dataset")
        }
        let baseCheckpoint = try Checkpoint(path: path)
        let baseKind = try CheckpointRole.disentanglementBase.check(baseCheckpoint)
        // Every input is checked before anything is loaded.
        checkpoints = try inputs.map { (input) throws(MergeKitError) in
            let checkpoint = try Checkpoint(path: input.path)
            try (input.isModel ? CheckpointRole.disentanglementModel : .disentanglementTaskVector).check(checkpoint)
            return checkpoint
        }
        base = try EncoderCheckpoint(baseCheckpoint, allowUnused: allowUnused)
        ignored(path, base.ignoredTensors)
        self.linearized = linearized || baseKind == .linearized
        (self.inputs, self.allowUnused) = (inputs, allowUnused)
        heads = try headPaths.map { (path) throws(MergeKitError) in try TaskHead(path: path) }
        data = try dataPaths.map { (path) throws(MergeKitError) in try ImageDataset(path: path) }
        for (head, dataset) in zip(heads, data) {
            try Evaluation.check(head: head, data: dataset, config: base.config, embeddingSize: base.embeddingSize,
                                 purpose: "to measure disentanglement on")
        }
    }

    /// The memory the measurement needs with batches of `batch` on `threads` threads.
    public func memory(batch: Int, threads: Int) -> MemoryEstimate {
        EngineMemory.disentanglement(config: base.config, hasProjection: base.hasProjection, linearized: linearized,
                                     batch: min(batch, data.map(\.count).max() ?? batch), threads: threads,
                                     images: data.map(\.count), classes: heads.map(\.classes))
    }

    /// Loads θ₀ and the task vectors and measures ξ over `alphas` × `alphas`; `ignored` hears
    /// about each task input's tensors the encoder does not use (only with `allowUnused`).
    public func run(alphas: [Double], batchSize: Int, threads: Int? = nil,
                    ignored: (_ file: String, _ tensors: [String]) -> Void = { _, _ in }) throws(MergeKitError) -> Disentanglement.Result {
        let model: CLIPVisionModel
        if base.form == .linearized {
            model = try LinearizedCheckpoint.model(base.checkpoint, threads: threads, allowUnused: true).base
        } else {
            model = CLIPVisionModel(parameters: try CLIPVisionParameters.load(from: base.checkpoint, config: base.config, allowUnused: true),
                                    threads: threads)
        }
        var tasks: [Disentanglement.Task] = []
        for (t, (input, checkpoint)) in zip(inputs, checkpoints).enumerated() {
            let vector = try Disentanglement.taskVector(checkpoint, base: model.parameters, isModel: input.isModel, allowUnused: allowUnused)
            ignored(input.path, vector.ignoredTensors)
            tasks.append(Disentanglement.Task(vector: vector, head: heads[t], data: data[t]))
        }
        return try Disentanglement.run(base: model, tasks: tasks, alphas: alphas, linearized: linearized, batchSize: batchSize)
    }
}
