/// Fine-tuning from files (`FineTuning`), with every input checked before anything large is
/// loaded: the base is an ordinary model with a config.json, the output replaces none of the
/// inputs (the base, the head, the data, the config), and the head and the data fit the encoder.
/// The output records the run in its metadata: `mergekit.finetune` (the hyper-parameters, the head
/// and the data, as JSON) and `mergekit.finetune.base`.
public struct FineTuningJob: Sendable {
    /// The model to start from, θ₀, checked from its header.
    public let base: EncoderCheckpoint
    public let head: TaskHead
    public let data: ImageDataset
    /// Where the model goes, and whether it may replace what is there.
    public let output: String, overwrite: Bool
    /// Every file the fine-tuned model is built from: the base, the head, the data, the config.
    public let inputs: [String]

    /// Checks the base, the output against every input, then the head and the data; `ignored`
    /// hears about the base's tensors the encoder does not use (only with `allowUnused`).
    public init(base path: String, head headPath: String, data dataPath: String, output: String, overwrite: Bool = false,
                allowUnused: Bool = false, ignored: (_ file: String, _ tensors: [String]) -> Void = { _, _ in }) throws(MergeKitError) {
        let checkpoint = try Checkpoint(path: path)
        try CheckpointRole.finetuneBase.check(checkpoint)
        // Checked before any work: the output must not replace the model, the head, the data or the config.
        inputs = [path, headPath, dataPath, try CLIPVisionModel.configPath(for: checkpoint)]
        (self.output, self.overwrite) = (output, overwrite)
        try OutputGuard.check(output: output, overwrite: overwrite, inputs: inputs)
        base = try EncoderCheckpoint(checkpoint, allowUnused: allowUnused)
        ignored(path, base.ignoredTensors)
        head = try TaskHead(path: headPath)
        data = try ImageDataset(path: dataPath)
        try Evaluation.check(head: head, data: data, config: base.config, embeddingSize: base.embeddingSize, purpose: "to fine-tune on")
    }

    /// The images per step with `options`: a batch larger than the dataset takes every image once.
    public func batchSize(_ options: FineTuning.Options) -> Int { min(options.batchSize, data.count) }

    /// The memory one step needs with batches of `batch` on `threads` threads.
    public func memory(batch: Int, linearized: Bool, threads: Int) -> MemoryEstimate {
        EngineMemory.fineTuning(config: base.config, hasProjection: base.hasProjection, linearized: linearized, batch: batch,
                                threads: threads, classes: head.classes)
    }

    /// Loads θ₀ and sets up the training (`FineTuning`, which validates `options`).
    public func start(options: FineTuning.Options, threads: Int? = nil) throws(MergeKitError) -> FineTuning {
        let model = CLIPVisionModel(parameters: try CLIPVisionParameters.load(from: base.checkpoint, config: base.config, allowUnused: true),
                                    threads: threads)
        return try FineTuning(base: model, head: head, data: data, options: options)
    }

    /// Writes `training`'s θ (`FineTuning.write`), the run recorded in the metadata.
    /// - Returns: what happened around the output (stale temporaries removed, …).
    public func write(_ training: FineTuning) throws(MergeKitError) -> [OutputNote] {
        let o = training.options
        let recipe = JSONValue.object([
            JSONMember("linearized", .bool(o.linearized)), JSONMember("steps", .int(o.steps)), JSONMember("batch_size", .int(training.batchSize)),
            JSONMember("lr", .double(o.learningRate)), JSONMember("weight_decay", .double(o.weightDecay)),
            JSONMember("warmup_steps", .int(o.warmupSteps)), JSONMember("clip_norm", .double(o.clipNorm ?? 0)),
            JSONMember("betas", .array([.double(o.beta1), .double(o.beta2)])), JSONMember("eps", .double(o.epsilon)),
            JSONMember("seed", .string(String(o.seed))), JSONMember("head", .string(inputs[1])), JSONMember("data", .string(inputs[2])),
        ]).serialized()
        return try FineTuning.write(theta: training.theta, base: base.checkpoint, linearized: o.linearized,
                                    output: OutputSpec(path: output, overwrite: overwrite, inputs: inputs),
                                    metadata: ["mergekit.finetune": recipe, "mergekit.finetune.base": base.checkpoint.path])
    }
}
