/// The encoder an evaluation runs, chosen from the checkpoints and checked from their headers
/// before anything large is allocated:
///
/// | given                                  | runs                                                  |
/// |----------------------------------------|-------------------------------------------------------|
/// | a model                                | the model                                             |
/// | a linearized checkpoint                | f(x; θ₀) + J·(θ − θ₀) around its own θ₀               |
/// | a WEMoE model                          | the WEMoE model, routed per image                     |
/// | an ordinary fine-tune and a base θ₀    | the fine-tune linearized around θ₀ (tangent space)    |
///
/// The last form takes the fine-tune as a directory with its own config.json (which must
/// describe the base's architecture) or as a bare weights file read with the base's layout.
/// `load` builds the encoder; `form`, `config` and `hasProjection` are what a memory estimate
/// (`EngineMemory.evaluation`) needs before that.
public struct EvaluatedEncoder: Sendable {
    /// How the encoder runs.
    public let form: EncoderCheckpoint.Form
    /// The architecture (the base's, when linearizing around a base).
    public let config: CLIPVisionConfig
    /// Whether the encoder has `visual_projection`.
    public let hasProjection: Bool
    private let model: EncoderCheckpoint
    /// The base θ₀ to linearize `model` around, when one was given.
    private let base: (path: String, checkpoint: EncoderCheckpoint)?

    /// Opens `model` (and `base`, to linearize around it) and checks them; `ignored` hears about
    /// the tensors of each file the encoder does not use (only with `allowUnused`; the base's
    /// first), once every file has been checked.
    public init(model path: String, linearizedAround basePath: String? = nil, allowUnused: Bool = false,
                ignored: (_ file: String, _ tensors: [String]) -> Void = { _, _ in }) throws(MergeKitError) {
        let checkpoint = try Checkpoint(path: path)
        guard let basePath else {
            // A linearized checkpoint always runs linearized, around its own θ₀; a WEMoE model
            // with per-image routing.
            try CheckpointRole.evalModel.check(checkpoint)
            model = try EncoderCheckpoint(checkpoint, allowUnused: allowUnused)
            ignored(path, model.ignoredTensors)
            base = nil
            (form, config, hasProjection) = (model.form, model.config, model.hasProjection)
            return
        }
        try CheckpointRole.evalLinearizedModel.check(checkpoint)
        let baseCheckpoint = try Checkpoint(path: basePath)
        try CheckpointRole.evalBase.check(baseCheckpoint)
        let baseFile = try EncoderCheckpoint(baseCheckpoint, allowUnused: allowUnused)
        if let configPath = try? CLIPVisionModel.configPath(for: checkpoint),
           try CLIPVisionConfig.load(path: configPath) != baseFile.config {
            throw MergeKitError(.shapeMismatch, file: configPath, "describes a different architecture from the base's config.json",
                                fix: "\(term: .modelOfBase)")
        }
        model = try EncoderCheckpoint(checkpoint, config: baseFile.config, allowUnused: allowUnused)
        ignored(basePath, baseFile.ignoredTensors)
        ignored(path, model.ignoredTensors)
        base = (basePath, baseFile)
        (form, config, hasProjection) = (.linearized, baseFile.config, baseFile.hasProjection)
    }

    /// E, the width of an image embedding.
    public var embeddingSize: Int { hasProjection ? config.projectionDim : config.hiddenSize }

    /// Builds the encoder (unused tensors were allowed or refused when it was opened).
    public func load(threads: Int? = nil) throws(MergeKitError) -> any ImageEncoder {
        guard let base else { return try model.load(threads: threads) }
        let baseModel = try CLIPVisionModel(path: base.path, threads: threads, allowUnused: true)
        let parameters = try CLIPVisionParameters.load(from: model.checkpoint, config: baseModel.config, allowUnused: true)
        return try LinearizedCLIPVisionModel(base: baseModel, finetuned: parameters, file: model.checkpoint.path)
    }
}
