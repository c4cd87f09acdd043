import Foundation

/// A data-driven merge (AdaMerging, aTLAS) from files, with every input checked from headers
/// before anything large is allocated: the base and the models are CLIP image encoders of one
/// layout (ordinary fine-tunes, or linearized models around the base's θ₀), every task's data
/// and head fit the encoder (with labels when the objective is supervised), and the outputs
/// replace none of the inputs.
public struct CoefficientMerge: Sendable {
    /// The method's name in the outputs (`adamerging`, `atlas`).
    public let method: String
    public let base: String
    public let models: [String]
    public let tasks: [CoefficientTask]
    /// The base's encoder (the half at θ₀ of a linearized base).
    public let encoder: EncoderCheckpoint
    public let linearized: Bool
    public let output: OutputSpec
    /// Where the coefficients (JSON) and the recipe that re-applies them go, if anywhere.
    public let coefficientsPath: String?, recipePath: String?
    private let baseView: Checkpoint
    /// The base's encoder layout and the task vectors' tensors in every model (headers only).
    private let layout: CLIPVisionParameters.Layout
    private let stream: TaskVectorStream

    /// A task: its data file and its head.
    public struct TaskFiles: Sendable {
        public let data: String, head: String
        public init(data: String, head: String) { (self.data, self.head) = (data, head) }
    }

    /// - Parameters:
    ///   - shots: supervised few-shot: up to this many labeled images per class of every task
    ///     (nil: every image, unlabeled unless `labeled`).
    ///   - labeled: whether the objective needs labels (then every data file must have them).
    ///   - ignored: hears about tensors of an input the encoder does not use (only with `allowUnused`).
    public init(method: String, base: String, models: [String], tasks taskFiles: [TaskFiles], labeled: Bool, shots: Int? = nil,
                seed: UInt64 = 0, linearized: Bool, output: OutputSpec, coefficientsPath: String?, recipePath: String?,
                allowUnused: Bool = false, ignored: (_ file: String, _ tensors: [String]) -> Void = { _, _ in }) throws(MergeKitError) {
        guard !models.isEmpty else {
            throw MergeKitError(.invalidArgument, "no models to merge", fix: "Give at least one fine-tuned model")
        }
        guard !taskFiles.isEmpty else {
            throw MergeKitError(.invalidArgument, "no data to learn the coefficients from",
                                fix: "Give every task's data with its head (at least one), in the same order")
        }
        if let shots, shots < 1 { throw MergeKitError(.invalidArgument, "the number of shots must be at least 1, not \(shots)") }
        var output = output
        output.inputs += [base] + models + taskFiles.flatMap { [$0.data, $0.head] }
        (self.method, self.base, self.models, self.linearized, self.output) = (method, base, models, linearized, output)
        (self.coefficientsPath, self.recipePath) = (coefficientsPath, recipePath)
        let extra = [coefficientsPath, recipePath].compactMap { $0 }
        if let a = coefficientsPath, a == recipePath {
            throw MergeKitError(.outputIsInput, file: a, "is given for both the coefficients and the recipe", fix: "Give each its own path")
        }
        for path in extra where path == output.path || output.inputs.contains(path) {
            throw MergeKitError(.outputIsInput, file: path, "is both an output and an input or the merged model",
                                fix: "Write the coefficients and the recipe to paths of their own")
        }
        try OutputGuard.check(output: output.path, overwrite: output.overwrite, inputs: output.inputs)
        for path in extra { try OutputGuard.check(file: path, overwrite: output.overwrite, inputs: output.inputs) }

        let baseCheckpoint = try Checkpoint(path: base)
        try CoefficientMerge.requireKind(baseCheckpoint, linearized: linearized, role: "the base")
        if linearized { try LinearizedCheckpoint.checkUnmoved(baseCheckpoint) }
        encoder = try EncoderCheckpoint(baseCheckpoint, allowUnused: allowUnused)
        ignored(base, encoder.ignoredTensors)
        baseView = linearized ? try LinearizedCheckpoint.half(.base, of: baseCheckpoint) : baseCheckpoint
        var views: [Checkpoint] = []
        for path in models {
            let checkpoint = try Checkpoint(path: path)
            try CoefficientMerge.requireKind(checkpoint, linearized: linearized, role: "a model")
            if linearized {
                try LinearizedCheckpoint.checkSameBase(checkpoint, as: baseCheckpoint)
                views.append(try LinearizedCheckpoint.half(.model, of: checkpoint))
            } else {
                views.append(checkpoint)
            }
        }
        layout = try CLIPVisionParameters.check(baseView, config: encoder.config, allowUnused: true).layout
        stream = try TaskVectorStream(layout: layout, base: baseView, models: views)
        var tasks: [CoefficientTask] = []
        for (i, files) in taskFiles.enumerated() {
            let head = try TaskHead(path: files.head)
            try head.check(embeddingSize: encoder.embeddingSize)
            if labeled {
                let data = try ImageDataset(path: files.data)
                try data.check(against: encoder.config, classes: head.classes)
                let indices = shots.map { ATLAS.shots(labels: data.labels, classes: head.classes, shots: $0, seed: seed &+ UInt64(i)) }
                if (indices ?? Array(0..<data.count)).isEmpty {
                    throw MergeKitError(.invalidArgument, file: files.data, tensor: "pixel_values", "holds no images",
                                        fix: "Give every task at least one labeled image")
                }
                tasks.append(CoefficientTask(labeled: data, head: head, indices: indices))
            } else {
                let data = try UnlabeledImages(path: files.data)
                try data.check(against: encoder.config)
                tasks.append(CoefficientTask(unlabeled: data, head: head))
            }
        }
        self.tasks = tasks
    }

    /// Refuses a checkpoint that is not an ordinary model (or, `linearized`, a linearized one).
    static func requireKind(_ checkpoint: Checkpoint, linearized: Bool, role: String) throws(MergeKitError) {
        let kind = CheckpointKind(checkpoint)
        let wanted: CheckpointKind = linearized ? .linearized : .model
        guard kind != wanted else { return }
        throw MergeKitError(.invalidArgument, file: checkpoint.path,
            "is \(kind.description), but \(role) of this merge must be \(wanted.description)",
            fix: linearized ? "Pass models linearized around the base (merge-cli linearize / finetune --linearized), or merge without --linearized"
                            : kind == .linearized ? "Merge linearized models with --linearized" : "Pass the fine-tuned model itself (θ), not \(kind.description)")
    }

    /// The memory training needs with batches of `batch` images per task (a larger batch than a
    /// task has takes all of its images) on `threads` threads: the model (θ, or θ₀ and Δθ), the
    /// gradient sum and the scratch sets of the threads at work, one batch's activations (and a
    /// JVP's, linearized), and per worker θ₀ₗ and τₜₗ of the largest tensor; the task vectors
    /// themselves are read from the files, never held.
    public func memory(batch requested: Int, threads: Int) -> MemoryEstimate {
        let c = encoder.config, p = encoder.parameterCount, e = encoder.embeddingSize
        let batch = min(requested, tasks.map(\.indices.count).max() ?? 1)
        let sets = 1 + min(max(1, threads), EngineMemory.gradientShards(c, batch: batch))
        var estimate = MemoryEstimate()
        estimate.add(linearized ? "parameters (θ₀ and Δθ = Σλτ)" : "parameters (θ = θ₀ + Σλτ)", floats: EngineMemory.product(linearized ? 2 : 1, p))
        estimate.add("gradients (the sum and one set per thread at work, \(sets) sets)", floats: EngineMemory.product(sets, p))
        var activations = EngineMemory.overShards(c, batch: batch) { EngineMemory.gradientFloats(c, $0, inputGradient: false) }
        if linearized {
            activations = max(activations, EngineMemory.inFlight(batch: batch, threads: threads) { EngineMemory.jvpFloats(c, $0) })
        }
        estimate.add("activations of a batch of \(batch)", floats: activations)
        let largest = stream.tensors.map(\.count).max() ?? 0
        estimate.add("task-vector scratch (θ₀ and τ of the largest tensor, as floats and as read, per thread)",
                     floats: EngineMemory.product(4 * max(1, threads), largest))
        let classes = tasks.map(\.head.classes).max() ?? 1
        estimate.add("pixels, embeddings, logits and their gradients",
                     floats: EngineMemory.product(batch, EngineMemory.sum(EngineMemory.sum(c.pixelsPerImage, EngineMemory.product(6, e)),
                                                                        EngineMemory.product(3, classes))))
        return estimate
    }

    /// The trainer, with θ (or θ₀ and Δθ) built from the files at the starting λ.
    public func trainer(options: CoefficientTrainingOptions, threads: Int? = nil) throws(MergeKitError) -> CoefficientTraining {
        precondition(options.linearized == linearized, "the options' linearized flag must match the merge's")
        let parameters = CLIPVisionParameters(config: layout.config, prefix: layout.prefix, projectionName: layout.projectionName)
        stream.threads = ThreadCount.resolved(threads)
        return try CoefficientTraining(parameters: parameters, stream: stream, tasks: tasks, options: options, threads: threads)
    }

    /// The coefficients of `trainer` as a file would hold them.
    public func coefficients(of trainer: CoefficientTraining, losses: [Double]) -> MergingCoefficients {
        MergingCoefficients(method: method, granularity: trainer.options.granularity, linearized: linearized, base: base, models: models,
                            tensors: trainer.options.granularity == .taskWise ? [] : trainer.stream.tensors.map(\.name),
                            values: trainer.coefficients, steps: trainer.step,
                            losses: [losses.first, losses.last].compactMap { $0 })
    }

    /// Writes the merged model (θ = θ₀ + Σλτ in the base's dtypes; a linearized model when
    /// linearized), then the coefficients and the recipe when asked.
    /// - Returns: what happened around the output.
    public func write(_ theta: CLIPVisionParameters, coefficients: MergingCoefficients) throws(MergeKitError) -> [OutputNote] {
        let metadata = ["merge_method": method, "\(method).granularity": coefficients.granularity.rawValue,
                        "\(method).steps": String(coefficients.steps),
                        "\(method).coefficients": coefficients.json.serialized()]
        let notes = try FineTuning.write(theta: theta, base: baseView, linearized: linearized, output: output, metadata: metadata)
        if let coefficientsPath { try CoefficientMerge.replace(coefficientsPath, with: coefficients.json.serialized(indent: 2) + "\n") }
        if let recipePath { try CoefficientMerge.replace(recipePath, with: coefficients.recipe) }
        return notes
    }

    /// Writes a small text file next to its destination, then renames it into place.
    static func replace(_ path: String, with text: String) throws(MergeKitError) {
        let temporary = FileSystem.join(FileSystem.parentDirectory(of: path), ".\(FileSystem.lastComponent(of: path)).\(getpid()).tmp")
        try FileSystem.writeFile(temporary, Array(text.utf8))
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw FileSystem.writeError(file: path, errno: code)
        }
    }
}
