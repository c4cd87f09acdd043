import Foundation

/// A linearized model on disk (tangent-space task arithmetic, docs/METHODS.md §6): the
/// parameters θ₀ it is linearized around and its own parameters θ, which run as
///
///     f_lin(x; θ) = f(x; θ₀) + J_θ f(x; θ₀)·(θ − θ₀).
///
/// Layout: one ordinary safetensors checkpoint (a file, or a directory, possibly sharded) holding
/// every tensor of the model twice under its real name, `params0.<name>` (θ₀) and `params.<name>`
/// (θ), with the same shape and dtype, and no other tensors. `__metadata__` carries
///
///     mergekit.kind         = "linearized"
///     mergekit.architecture = "clip-vision" (an image encoder the engine runs) or "generic"
///     mergekit.config       = the model's config.json, compact (when the base had one), so that a
///                             single-file linearized model runs without a config.json next to it
///
/// Directory outputs also keep config.json. Its task vector is θ − θ₀ of the `params` half; the
/// merge planner sees the halves through `half(_:of:)` views (no copy, the same mapped files).
/// The reference code's PyTorch checkpoints (`model.params.{i}` by parameter index) are not read.
public enum LinearizedCheckpoint {
    public enum Half: String, Sendable {
        /// θ₀, the point of linearization.
        case base = "params0."
        /// θ, the linearized model's parameters.
        case model = "params."

        public var prefix: String { rawValue }
    }

    public static let kindKey = "mergekit.kind"
    public static let kindValue = "linearized"
    public static let architectureKey = "mergekit.architecture"
    public static let configKey = "mergekit.config"
    /// `mergekit.architecture` of a CLIP image encoder (the engine evaluates these).
    public static let clipVision = "clip-vision"

    /// Whether `checkpoint` says it is linearized (`mergekit.kind`); views of one half do not.
    public static func isLinearized(_ checkpoint: Checkpoint) -> Bool {
        checkpoint.metadata?[kindKey] == kindValue
    }

    /// The metadata keys that describe a linearized checkpoint, from `metadata`, to copy into outputs.
    static func describingMetadata(_ metadata: [String: String]?) -> [String: String] {
        var result: [String: String] = [:]
        for key in [kindKey, architectureKey, configKey] { result[key] = metadata?[key] }
        return result
    }

    /// One half of a linearized checkpoint as an ordinary checkpoint: its tensors under their model
    /// names (the prefix removed), with the other half hidden, and the file's metadata without the
    /// linearized keys. Checks the layout first (`checkLayout`).
    public static func half(_ half: Half, of checkpoint: Checkpoint) throws(MergeKitError) -> Checkpoint {
        try checkLayout(checkpoint)
        let entries = checkpoint.entries.compactMap { entry -> Checkpoint.Entry? in
            guard entry.name.hasPrefix(half.prefix) else { return nil }
            let info = entry.info
            return Checkpoint.Entry(file: entry.file, info: TensorInfo(name: String(info.name.dropFirst(half.prefix.count)),
                                                                       dtype: info.dtype, shape: info.shape, begin: info.begin, end: info.end))
        }
        var metadata = checkpoint.metadata ?? [:]
        for key in [kindKey, architectureKey, configKey] { metadata[key] = nil }
        return Checkpoint(viewOf: checkpoint, entries: entries, metadata: metadata)
    }

    /// Every tensor is `params0.<name>` or `params.<name>`, and the two halves have the same names,
    /// shapes and dtypes.
    public static func checkLayout(_ checkpoint: Checkpoint) throws(MergeKitError) {
        let fix: MergeKitError.Text = "Rebuild it with \(term: .linearization()) or \(term: .tangentSpaceFineTuning)"
        guard !checkpoint.entries.isEmpty else {
            throw MergeKitError(.missingTensor, file: checkpoint.path, "is marked linearized but holds no tensors", fix: fix)
        }
        for entry in checkpoint.entries {
            let name = entry.name
            let (own, other): (Half, Half)
            if name.hasPrefix(Half.base.prefix) { (own, other) = (.base, .model) }
            else if name.hasPrefix(Half.model.prefix) { (own, other) = (.model, .base) }
            else {
                throw MergeKitError(.extraTensor, file: checkpoint.path, tensor: name,
                    "is neither params0.<name> (θ₀) nor params.<name> (θ); a linearized checkpoint holds only those", fix: fix)
            }
            let twinName = other.prefix + name.dropFirst(own.prefix.count)
            guard let twin = checkpoint.entry(named: twinName) else {
                throw MergeKitError(.missingTensor, file: checkpoint.path, tensor: twinName,
                    "is missing: \(name) has no counterpart in the other half", fix: fix)
            }
            if twin.info.shape != entry.info.shape || twin.info.dtype != entry.info.dtype {
                throw MergeKitError(.shapeMismatch, file: checkpoint.path, tensor: name,
                    "is \(entry.info.dtype.rawValue) \(entry.info.shape) but \(twinName) is \(twin.info.dtype.rawValue) \(twin.info.shape)",
                    fix: fix)
            }
        }
    }

    /// Checks that `checkpoint`'s θ₀ is `base`'s θ₀, tensor by tensor (names, shapes, dtypes, then
    /// the bytes): task vectors θ − θ₀ of models linearized around different points do not add.
    public static func checkSameBase(_ checkpoint: Checkpoint, as base: Checkpoint) throws(MergeKitError) {
        let mine = try half(.base, of: checkpoint), theirs = try half(.base, of: base)
        let fix: MergeKitError.Text = "Merge only models linearized around the base's θ₀ (the same \(term: .linearizationBase) or \(term: .fineTuningBase))"
        for entry in theirs.entries {
            let name = Half.base.prefix + entry.name
            guard let other = mine.entry(named: entry.name) else {
                throw MergeKitError(.missingTensor, file: checkpoint.path, tensor: name,
                    "is in the base's θ₀ (\(base.path)) but not in this linearized model's", fix: fix)
            }
            guard other.info.shape == entry.info.shape, other.info.dtype == entry.info.dtype else {
                throw MergeKitError(.shapeMismatch, file: checkpoint.path, tensor: name,
                    "is \(other.info.dtype.rawValue) \(other.info.shape) but the base (\(base.path)) has \(entry.info.dtype.rawValue) \(entry.info.shape)",
                    fix: fix)
            }
            // Values of a planned checkpoint are compared when its stage runs, once written.
            guard !entry.file.isPlanned && !other.file.isPlanned else { continue }
            let a = entry.file.bytes(of: entry.info), b = other.file.bytes(of: other.info)
            if a.count > 0 && memcmp(a.baseAddress!, b.baseAddress!, a.count) != 0 {
                throw MergeKitError(.baseMismatch, file: checkpoint.path, tensor: name,
                    "differs from the base's θ₀ (\(base.path)): this model is linearized around another point", fix: fix)
            }
        }
        if let extra = mine.entries.first(where: { theirs.entry(named: $0.name) == nil }) {
            throw MergeKitError(.extraTensor, file: checkpoint.path, tensor: Half.base.prefix + extra.name,
                "is not in the base's θ₀ (\(base.path))", fix: fix)
        }
    }

    /// Checks that `checkpoint`'s θ is its θ₀, byte for byte, as the base of a linearized merge
    /// must be. The merge writes θ₀ + merge(τ₁, …, τₙ) in the tangent space at the base's θ₀
    /// (f(x; θ₀) + J·(θ − θ₀) is linear in θ − θ₀): a base with θ ≠ θ₀ is itself a linearized
    /// fine-tune, and its own task vector θ − θ₀ would silently be left out. It belongs among the
    /// inputs, with the linearization point (θ = θ₀) as the base.
    public static func checkUnmoved(_ checkpoint: Checkpoint) throws(MergeKitError) {
        let theta0 = try half(.base, of: checkpoint), theta = try half(.model, of: checkpoint)
        for entry in theta0.entries {
            guard let moved = theta.entry(named: entry.name), !entry.file.isPlanned else { continue }
            let a = entry.file.bytes(of: entry.info), b = moved.file.bytes(of: moved.info)
            if a.count > 0 && memcmp(a.baseAddress!, b.baseAddress!, a.count) != 0 {
                throw MergeKitError(.baseMismatch, file: checkpoint.path, tensor: Half.model.prefix + entry.name,
                    "differs from \(Half.base.prefix + entry.name): this base is a linearized fine-tune (θ ≠ θ₀), and a linearized merge writes θ₀ + merge(τ₁, …, τₙ) around its θ₀, which would leave out its own task vector θ − θ₀",
                    fix: "Pass it \(term: .asAModel) (its task vector is then merged with the others), and \(term: .asBase) the linearization point with θ = θ₀ (\(term: .linearization(base: "PRETRAINED", output: "BASE-LIN")))")
            }
        }
    }

    /// The architecture and config metadata of a linearized model of `checkpoint` (an ordinary
    /// checkpoint): "clip-vision" when it holds a CLIP image encoder, and its config.json, compact.
    static func describingMetadata(of checkpoint: Checkpoint) -> [String: String] {
        var metadata = [kindKey: kindValue]
        let isCLIP = checkpoint.tensorNames.contains { $0.hasSuffix(CLIPVisionParameters.anchorName) && !$0.contains("text_model") }
        metadata[architectureKey] = isCLIP ? clipVision : "generic"
        let directory = checkpoint.directory ?? FileSystem.parentDirectory(of: checkpoint.path)
        if let bytes = try? FileSystem.readFile(FileSystem.join(directory, "config.json")),
           let json = try? JSONParser.parse(bytes) {
            metadata[configKey] = json.serialized()
        }
        return metadata
    }

    /// The config of a linearized CLIP image encoder: `mergekit.config`, else config.json in its
    /// directory or next to its file.
    public static func config(of checkpoint: Checkpoint) throws(MergeKitError) -> CLIPVisionConfig {
        if let text = checkpoint.metadata?[configKey] {
            let json: JSONValue
            do {
                json = try JSONParser.parse(Array(text.utf8))
            } catch {
                throw MergeKitError(.metadataInvalid, file: checkpoint.path, "has a \(configKey) that is not valid JSON (\(error.description))",
                    fix: "Rebuild it with \(term: .linearization())")
            }
            return try CLIPVisionConfig(json: json, file: checkpoint.path)
        }
        return try CLIPVisionConfig.load(path: try CLIPVisionModel.configPath(for: checkpoint))
    }

    /// The linearized CLIP image encoder stored in `checkpoint`: the base at θ₀ and Δθ = θ − θ₀.
    /// Its tensors are checked against config.json before anything is allocated; tensors the
    /// model does not use are an error unless `allowUnused` (then listed in `ignoredTensors`).
    public static func model(_ checkpoint: Checkpoint, threads: Int? = nil, allowUnused: Bool = false) throws(MergeKitError) -> LinearizedCLIPVisionModel {
        let (theta0, theta, unused) = try parameters(checkpoint, config: try clipConfig(of: checkpoint), allowUnused: allowUnused)
        var model = try LinearizedCLIPVisionModel(base: CLIPVisionModel(parameters: theta0, threads: threads), finetuned: theta,
                                                  file: checkpoint.path)
        model.ignoredTensors = unused
        return model
    }

    /// The config of a linearized checkpoint the engine can run: it must say it is linearized and
    /// not of another architecture (`mergekit.architecture`).
    static func clipConfig(of checkpoint: Checkpoint) throws(MergeKitError) -> CLIPVisionConfig {
        guard isLinearized(checkpoint) else {
            let detail = CheckpointKind.hasLinearizedNames(checkpoint)
                ? "holds params0.* and params.* tensors but lacks the \(kindKey) = \(kindValue) metadata of a linearized checkpoint"
                : "is not a linearized checkpoint (no \(kindKey) = \(kindValue))"
            throw MergeKitError(.invalidArgument, file: checkpoint.path, "\(detail)",
                fix: "Make one with \(term: .linearization(base: "B", model: "F", output: "OUT"))")
        }
        if let architecture = checkpoint.metadata?[architectureKey], architecture != clipVision {
            throw MergeKitError(.invalidArgument, file: checkpoint.path,
                "is a linearized \(architecture) model; the engine runs CLIP image encoders (\(clipVision))")
        }
        return try config(of: checkpoint)
    }

    /// θ₀ and θ of a linearized CLIP image encoder with `config`. The halves have one layout
    /// (`checkLayout`), so checking θ₀'s against config.json checks both, before either is
    /// allocated; messages and unused tensors carry the real (prefixed) names.
    static func parameters(_ checkpoint: Checkpoint, config: CLIPVisionConfig,
                           allowUnused: Bool) throws(MergeKitError) -> (theta0: CLIPVisionParameters, theta: CLIPVisionParameters, unused: [String]) {
        let base = try half(.base, of: checkpoint), model = try half(.model, of: checkpoint)
        let unused = try inHalf(.base) { () throws(MergeKitError) in
            try CLIPVisionParameters.check(base, config: config, allowUnused: allowUnused).unused
        }
        return (try CLIPVisionParameters.load(from: base, config: config, allowUnused: true),
                try CLIPVisionParameters.load(from: model, config: config, allowUnused: true),
                unused.flatMap { [Half.base.prefix + $0, Half.model.prefix + $0] })
    }

    /// Runs `body` on a half's view, naming the tensor of any error by its real name in the file.
    static func inHalf<T>(_ half: Half, _ body: () throws(MergeKitError) -> T) throws(MergeKitError) -> T {
        do {
            return try body()
        } catch {
            var error = error
            if let tensor = error.tensor { error.tensor = half.prefix + tensor }
            throw error
        }
    }
}
