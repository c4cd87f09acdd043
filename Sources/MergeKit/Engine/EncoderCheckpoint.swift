/// A checkpoint of an image encoder the engine runs, opened and checked before anything large is
/// allocated: its form (told by `CheckpointKind`), its config, and every tensor against the
/// layout the config implies (names, shapes, float dtypes, no unused tensors unless allowed),
/// from the safetensors header alone. What a memory estimate (`EngineMemory`) needs is known
/// from here; `load` then builds the encoder.
public struct EncoderCheckpoint: Sendable {
    public enum Form: Sendable, Equatable {
        /// An ordinary CLIP image encoder.
        case plain
        /// A linearized checkpoint: θ₀ and θ, run as f(x; θ₀) + J·(θ − θ₀).
        case linearized
        /// A WEMoE model with T experts and routers of this depth.
        case wemoe(experts: Int, routerDepth: Int)
    }

    public let checkpoint: Checkpoint
    public let form: Form
    public let config: CLIPVisionConfig
    /// Whether the encoder has `visual_projection` (E = projection_dim, else hidden_size).
    public let hasProjection: Bool
    /// Tensors of the file the model does not use (empty unless allowed).
    public let ignoredTensors: [String]

    /// Opens `checkpoint` as the form its kind says (a task vector is read as a plain encoder;
    /// `CheckpointRole` refuses it where it does not belong) and checks it. A plain encoder is
    /// read with `config` when given (a bare weights file with a known base's layout), else with
    /// the config.json in its directory or next to it.
    public init(_ checkpoint: Checkpoint, config given: CLIPVisionConfig? = nil, allowUnused: Bool = false) throws(MergeKitError) {
        self.checkpoint = checkpoint
        switch CheckpointKind(checkpoint) {
        case .linearized:
            let config = try LinearizedCheckpoint.clipConfig(of: checkpoint)
            let base = try LinearizedCheckpoint.half(.base, of: checkpoint)
            let (layout, unused) = try LinearizedCheckpoint.inHalf(.base) { () throws(MergeKitError) in
                try CLIPVisionParameters.check(base, config: config, allowUnused: allowUnused)
            }
            self.config = config
            form = .linearized
            hasProjection = layout.projectionName != nil
            ignoredTensors = unused.flatMap { [LinearizedCheckpoint.Half.base.prefix + $0, LinearizedCheckpoint.Half.model.prefix + $0] }
        case .wemoe:
            let (description, unused) = try WEMoEParameters.check(checkpoint, allowUnused: allowUnused)
            config = description.config
            form = .wemoe(experts: description.experts, routerDepth: description.routerDepth)
            hasProjection = description.projection != nil
            ignoredTensors = unused
        case .model, .taskVector:
            if let given { config = given } else {
                config = try CLIPVisionConfig.load(path: try CLIPVisionModel.configPath(for: checkpoint))
            }
            let (layout, unused) = try CLIPVisionParameters.check(checkpoint, config: config, allowUnused: allowUnused)
            form = .plain
            hasProjection = layout.projectionName != nil
            ignoredTensors = unused
        }
    }

    /// The encoder's parameter count P (one set; a linearized checkpoint holds two).
    public var parameterCount: Int { CLIPVisionParameters.parameterCount(config, projection: hasProjection) ?? .max }

    /// E, the width of an image embedding.
    public var embeddingSize: Int { hasProjection ? config.projectionDim : config.hiddenSize }

    /// Builds the encoder: the model, the linearized model around its own θ₀, or the WEMoE model
    /// with per-image routing. Unused tensors were allowed or refused when it was opened.
    public func load(threads: Int? = nil) throws(MergeKitError) -> any ImageEncoder {
        switch form {
        case .plain:
            return CLIPVisionModel(parameters: try CLIPVisionParameters.load(from: checkpoint, config: config, allowUnused: true),
                                   threads: threads)
        case .linearized:
            return try LinearizedCheckpoint.model(checkpoint, threads: threads, allowUnused: true)
        case .wemoe:
            return WEMoEModel(parameters: try WEMoEParameters.load(from: checkpoint, allowUnused: true), threads: threads)
        }
    }
}
