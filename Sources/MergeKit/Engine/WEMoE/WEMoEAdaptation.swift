/// Test-time adaptation of a WEMoE model's routers (`WEMoETraining`) from files, with every input
/// checked before anything large is loaded: the model is a WEMoE model, the output replaces none
/// of the inputs (the model, its config, a dataset or a head), and every task's images and head
/// fit the encoder.
public struct WEMoEAdaptation: Sendable {
    /// The WEMoE model, checked from its header.
    public let model: EncoderCheckpoint
    /// The tasks, in the order given (one dataset and one head each).
    public let tasks: [WEMoETask]
    /// T experts, routers of this depth.
    public let experts: Int, routerDepth: Int
    /// The model's config.json, when it has one (copied into a directory output).
    public let configPath: String?
    /// Where the trained model goes, and whether it may replace what is there.
    public let output: String, overwrite: Bool
    /// Every file the trained model is built from.
    public let inputs: [String]

    /// Checks the model, the output against every input, then each task (`data[i]` with
    /// `heads[i]`); `ignored` hears about the model's tensors the encoder does not use (only with
    /// `allowUnused`).
    public init(model path: String, data: [String], heads: [String], output: String, overwrite: Bool = false,
                allowUnused: Bool = false, ignored: (_ file: String, _ tensors: [String]) -> Void = { _, _ in }) throws(MergeKitError) {
        guard !data.isEmpty, data.count == heads.count else {
            throw MergeKitError(.invalidArgument, "Got \(data.count) datasets and \(heads.count) heads",
                                fix: "Give one head per dataset (at least one), in the same order")
        }
        let checkpoint = try Checkpoint(path: path)
        try CheckpointRole.wemoeTrainModel.check(checkpoint)
        configPath = try? CLIPVisionModel.configPath(for: checkpoint)
        // Checked before training: the output must not replace the model, its config, a dataset or a head.
        inputs = [path] + data + heads + (configPath.map { [$0] } ?? [])
        (self.output, self.overwrite) = (output, overwrite)
        try OutputGuard.check(output: output, overwrite: overwrite, inputs: inputs)
        model = try EncoderCheckpoint(checkpoint, allowUnused: allowUnused)
        ignored(path, model.ignoredTensors)
        guard case .wemoe(let experts, let depth) = model.form else { preconditionFailure("checked as a WEMoE model") }
        (self.experts, routerDepth) = (experts, depth)
        var tasks: [WEMoETask] = []
        for (d, h) in zip(data, heads) {
            let task = WEMoETask(data: try UnlabeledImages(path: d), head: try TaskHead(path: h))
            try task.check(config: model.config, embeddingSize: model.embeddingSize)
            tasks.append(task)
        }
        self.tasks = tasks
    }

    /// The memory training needs with batches of `batch` images per task (a batch larger than
    /// every task's dataset takes the largest whole).
    public func memory(batch: Int) -> MemoryEstimate {
        let images = tasks.map(\.data.count).max() ?? 0
        return EngineMemory.routerTraining(config: model.config, hasProjection: model.hasProjection, experts: experts,
                                           routerDepth: routerDepth, batch: min(batch, images),
                                           classes: tasks.map(\.head.classes).max() ?? 1)
    }

    /// Loads the model (unused tensors were allowed or refused when it was opened).
    public func load(threads: Int? = nil) throws(MergeKitError) -> WEMoEModel {
        WEMoEModel(parameters: try WEMoEParameters.load(from: model.checkpoint, allowUnused: true), threads: threads)
    }

    /// Trains `moe`'s routers in place on the tasks (`WEMoETraining.run`); `progress(step, steps,
    /// loss)` after every step.
    /// - Returns: every step's loss.
    public func train(_ moe: WEMoEModel, options: WEMoETrainingOptions,
                      progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws(MergeKitError) -> [Double] {
        try WEMoETraining.run(moe, tasks: tasks, options: options, progress: progress)
    }

    /// Writes the trained model to the output (with the model's config.json in a directory).
    /// - Returns: what happened around the output (stale temporaries removed, …).
    public func write(_ trained: WEMoEModel) throws(MergeKitError) -> [OutputNote] {
        try trained.parameters.save(to: output, configSource: configPath, overwrite: overwrite, inputs: inputs)
    }
}
