/// Building a WEMoE model from a pre-trained CLIP image encoder θ₀ and T fine-tunes of it, one
/// expert each (`WEMoEParameters.upscale`), with every input checked before anything is loaded:
/// the base is an ordinary model with a config.json, every expert an ordinary model of the same
/// architecture (config and projection), and the output replaces none of the inputs (the base,
/// the experts and the config it copies).
public struct WEMoEUpscaling: Sendable {
    /// The pre-trained encoder θ₀.
    public let base: String
    /// The fine-tuned encoders θₜ, one expert each.
    public let experts: [String]
    /// The config.json the output's directory gets (the base's).
    public let configPath: String
    /// The architecture every input shares.
    public let config: CLIPVisionConfig
    /// Whether the encoders have `visual_projection`.
    public let hasProjection: Bool
    /// Where the model goes, and whether it may replace what is there.
    public let output: String, overwrite: Bool

    /// Every file the model is built from.
    public var inputs: [String] { [base] + experts + [configPath] }

    /// Checks the base, the output against every input, then each expert, from their headers;
    /// `ignored` hears about each file's tensors the encoder does not use (only with
    /// `allowUnused`) as soon as that file is checked.
    public init(base: String, experts: [String], output: String, overwrite: Bool = false, allowUnused: Bool = false,
                ignored: (_ file: String, _ tensors: [String]) -> Void = { _, _ in }) throws(MergeKitError) {
        guard !experts.isEmpty else {
            throw MergeKitError(.invalidArgument, "A WEMoE model needs at least one expert", fix: "Give the fine-tuned encoders to use as experts")
        }
        let baseCheckpoint = try Checkpoint(path: base)
        try CheckpointRole.wemoeBase.check(baseCheckpoint)
        configPath = try CLIPVisionModel.configPath(for: baseCheckpoint)
        (self.base, self.experts, self.output, self.overwrite) = (base, experts, output, overwrite)
        // Checked before the upscale: the output must not replace the base, an expert or the config.
        try OutputGuard.check(output: output, overwrite: overwrite, inputs: [base] + experts + [configPath])
        let baseFile = try EncoderCheckpoint(baseCheckpoint, allowUnused: allowUnused)
        ignored(base, baseFile.ignoredTensors)
        for path in experts {
            let checkpoint = try Checkpoint(path: path)
            try CheckpointRole.wemoeExpert.check(checkpoint)
            let file = try EncoderCheckpoint(checkpoint, allowUnused: allowUnused)
            guard file.config == baseFile.config, file.hasProjection == baseFile.hasProjection else {
                throw MergeKitError(.shapeMismatch, file: path, "has a different config.json (architecture) from the base \(base)",
                                    fix: "\(term: .expertsOfBase)")
            }
            ignored(path, file.ignoredTensors)
        }
        (config, hasProjection) = (baseFile.config, baseFile.hasProjection)
    }

    /// The memory the upscale needs with routers of `routerDepth`.
    public func memory(routerDepth: Int) -> MemoryEstimate {
        EngineMemory.upscaling(config: config, hasProjection: hasProjection, experts: experts.count, routerDepth: routerDepth)
    }

    /// Checks the memory against `budget`, upscales (routers from `seed`, their output weights
    /// zeroed when `exactStart`, so that the untrained model is exactly task arithmetic at λ =
    /// `scale`) and writes the model.
    /// - Returns: what happened around the output (stale temporaries removed, …).
    public func write(scale: Float, routerDepth: Int, seed: UInt64, exactStart: Bool,
                      budget: MemoryBudget?) throws(MergeKitError) -> [OutputNote] {
        try EngineMemory.check(memory(routerDepth: routerDepth), command: "wemoe", budget: budget)
        let baseModel = try CLIPVisionModel(path: base, threads: 1, allowUnused: true)
        let parameters = try WEMoEParameters.upscale(base: baseModel.parameters, experts: experts.count, names: experts,
                                                     scale: scale, routerDepth: routerDepth, seed: seed) { t throws(MergeKitError) in
            try CLIPVisionModel(path: experts[t], threads: 1, allowUnused: true).parameters
        }
        if exactStart { parameters.zeroRouterOutputWeights() }
        return try parameters.save(to: output, configSource: configPath, overwrite: overwrite, inputs: inputs)
    }
}
