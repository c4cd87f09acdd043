/// The terms of MergeKit's messages (`MergeKitError.Term`), in the library's words. A front end
/// words each by its `key` (the command line: `CLIWording` in merge-cli).
extension MergeKitError.Term {
    // MARK: Settings

    /// A work directory of one's own for a multi-document recipe's intermediates.
    public static let workDirectory = Self("work-dir", "a work directory of your own")
    /// The document of a multi-document recipe written to the output.
    public static let outputDocument = Self("target", "the output's document")
    /// Running on fewer threads (less memory held at once).
    public static let fewerThreads = Self("threads", "fewer threads")
    /// Letting a new output replace an existing one.
    public static let overwrite = Self("overwrite", "allow overwriting")
    /// Letting models missing from the Hugging Face cache be downloaded.
    public static let allowHubDownloads = Self("allow-hub-downloads", "Allow downloads (unset HF_HUB_OFFLINE)")
    /// Working from the Hugging Face cache alone.
    public static let workOffline = Self("work-offline", "work from the cache alone (HF_HUB_OFFLINE=1)")
    /// Ignoring tensors of a checkpoint the encoder does not use.
    public static let allowUnused = Self("allow-unused", "allow unused tensors")
    /// The finiteness check of the inputs before a merge.
    public static let checkFinite = Self("check-finite", "the finiteness check")
    /// λ, smaller.
    public static let smallerScale = Self("scale", "a smaller λ")
    /// A wider output dtype than F16.
    public static let widerDType = Self("wider-dtype", "a wider output dtype (F32 or BF16)")
    /// An output in `dtype`.
    public static func outputDType(_ dtype: String) -> Self { Self("dtype", "an \(dtype) output", arguments: [dtype]) }
    /// A training's settings, by name.
    public static let steps = Self("steps", "the number of steps")
    public static let batchSize = Self("batch-size", "the batch size")
    public static let learningRate = Self("lr", "the learning rate")
    public static let weightDecay = Self("weight-decay", "the weight decay")
    public static let warmupSteps = Self("warmup-steps", "the number of warm-up steps")
    public static let clipNorm = Self("clip-norm", "the gradient clipping norm")
    public static let adamEpsilon = Self("adam-eps", "Adam's ε")
    /// A batch of at most `batch` images.
    public static func batchSizeAtMost(_ batch: Int) -> Self {
        Self("batch-size-at-most", "use a batch size of \(batch) or less", arguments: [String(batch)])
    }

    // MARK: Inputs

    /// Giving a checkpoint as a fine-tuned model (τ = θ − θ₀ on the fly).
    public static let passAsModel = Self("as-model", "pass it as a fine-tuned model")
    /// Giving a checkpoint as a task-vector file.
    public static let passAsTaskVector = Self("as-task-vector", "pass it as a task vector")
    /// Giving a checkpoint merged by PEFT as a fine-tuned model.
    public static let passResultAsModel = Self("result-as-model", "pass the result as a fine-tuned model")
    /// Merging a checkpoint as one of the fine-tuned models.
    public static let asAModel = Self("as-a-model", "as a fine-tuned model")
    /// Giving a checkpoint as the base θ₀.
    public static let asBase = Self("as-base", "as the base")
    /// Giving a directory as a LoRA adapter.
    public static let asLoRA = Self("as-lora", "as the LoRA adapter")
    /// The model path of an engine operation.
    public static let modelPath = Self("model-path", "Point the model path at")
    /// The base an ordinary fine-tune is linearized around.
    public static let givenBase = Self("given-base", "the given base")
    /// Evaluating a model as it is, not linearized around a given base.
    public static let notAroundABase = Self("not-around-a-base", "do not linearize around a base")
    /// Evaluating the linearized checkpoint at `path` itself.
    public static func evaluateItself(_ path: String) -> Self { Self("evaluate-itself", "(\(path), not around a base)", arguments: [path]) }
    /// An ordinary fine-tune of the base, for linearization around it.
    public static let modelOfBase = Self("model-of-base", "the model must be a fine-tune of the base")
    /// WEMoE's experts, fine-tunes of the base.
    public static let expertsOfBase = Self("experts-of-base", "Every expert must be a fine-tune of the base")
    /// What disentanglement measures in place of a WEMoE model.
    public static let wemoeSources = Self("wemoe-sources",
        "Pass the fine-tuned models the WEMoE model was built from (τ = θ − θ₀), or their task vectors")

    // MARK: LoRA extraction

    public static let rankExample = Self("rank-example", "Use a rank such as 64")
    public static let randomizedSVDDefaults = Self("svd-defaults", "(10 extra test vectors, 4 power iterations)")
    public static let leaveOutEmbeddings = Self("no-embeddings", "leave out embeddings")
    public static let includeEmbeddings = Self("embeddings", "Factorise embeddings and the output head too")
    /// Using the randomized SVD.
    public static let useRandomized = Self("use-randomized", "use the randomized SVD")
    public static let randomized = Self("randomized", "the randomized SVD")
    public static let randomizedReadsProducts = Self("randomized-products",
        "Use the randomized SVD, which reads the matrix through matrix products only")
    /// Factors written in `dtype`.
    public static func factorsIn(_ dtype: String) -> Self { Self("factors-dtype", "write the factors in \(dtype)", arguments: [dtype]) }
    /// The inputs of an extraction.
    public static let extractionInputs = Self("extraction-inputs", "(the pre-trained and the fine-tuned checkpoint)")

    // MARK: Other operations

    /// Writing a task vector τ = θ − θ₀ (against `base`, when given).
    public static func taskVectorExtraction(base: String? = nil) -> Self {
        Self("task-vector-command", base.map { "task-vector extraction against \($0)" } ?? "task-vector extraction", arguments: base.map { [$0] } ?? [])
    }
    /// θ₀ + τ: task arithmetic of `base` and the task vector `taskVector` (written to `output`).
    public static func applyTaskVector(base: String, taskVector: String, output: String? = nil) -> Self {
        Self("apply-task-vector", "task arithmetic of \(base) and \(taskVector)" + (output.map { ", written to \($0)" } ?? ""),
             arguments: [base, taskVector] + (output.map { [$0] } ?? []))
    }
    /// Task arithmetic of `base` and the model `model`.
    public static func mergeModel(base: String, model: String) -> Self {
        Self("merge-model", "task arithmetic of \(base) and the model \(model)", arguments: [base, model])
    }
    /// The NaN and ±Inf counts of every tensor of a checkpoint.
    public static let finitenessScan = Self("inspect-check-finite", "the checkpoint summary's finiteness scan")
    /// Reading every byte of a checkpoint once.
    public static let verification = Self("verify-command", "a checkpoint verification")
    /// Linearizing (a base alone into `output`, or `model` around `base` into `output`).
    public static func linearization(base: String? = nil, model: String? = nil, output: String? = nil) -> Self {
        guard let base, let output else { return Self("linearize-command", "linearization") }
        guard let model else { return Self("linearize-command", "linearization of \(base) alone, written to \(output)", arguments: [base, output]) }
        return Self("linearize-command", "linearization of \(model) around \(base), written to \(output)", arguments: [base, model, output])
    }
    /// The base of a linearization, and of a fine-tuning.
    public static let linearizationBase = Self("linearize-base", "linearization base")
    public static let fineTuningBase = Self("finetune-base", "fine-tuning base")
    /// Linear fine-tuning (as an aside: "linear fine-tuning, in the tangent space, …").
    public static let inTheTangentSpace = Self("finetune-linearized", "in the tangent space")
    /// Linear fine-tuning, as an operation.
    public static let tangentSpaceFineTuning = Self("finetune-linearized-command", "tangent-space fine-tuning")
    /// Building a WEMoE model (of `base` with `experts`, written to `output`).
    public static func wemoeUpscaling(base: String? = nil, experts: [String] = [], output: String? = nil) -> Self {
        guard let base, let output else { return Self("wemoe-command", "WEMoE upscaling") }
        return Self("wemoe-command", "WEMoE upscaling of \(base) with experts \(experts.joined(separator: " and ")), written to \(output)",
                    arguments: [base, output] + experts)
    }
    /// Training a WEMoE model's routers.
    public static let testTimeAdaptation = Self("wemoe-train-command", "test-time adaptation")
}
