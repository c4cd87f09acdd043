/// A PEFT LoRA adapter read as a task vector.
///
/// An adapter is a directory holding `adapter_config.json` and `adapter_model.safetensors`
/// (what `PeftModel.save_pretrained` writes), or, as PEFT wrote before safetensors (and still
/// with `safe_serialization=False`), `adapter_model.bin`: the same state dict by `torch.save`,
/// read as any PyTorch checkpoint is (`PyTorchArchive`, without running its pickle). When both
/// are there, the safetensors file is read, as PEFT reads it. For every targeted module it stores two factors,
/// A (r × in) and B (out × r), and its task vector is PEFT's `merge_and_unload()` delta:
///
///     τ_W = s · B·A,   s = lora_alpha / r   (lora_alpha / √r with use_rslora)
///
/// with r and lora_alpha taken per module from `rank_pattern` / `alpha_pattern` when a pattern
/// matches (PEFT's `get_pattern_key`: the first key k, in file order, such that
/// `re.match(r"(.*\.)?(k)$", name)`, the key spliced into the pattern as text), else from `r` /
/// `lora_alpha`. Every tensor the adapter does not target has τ = 0.
///
/// **Which modules.** PEFT adapts a module only when the config selects it (`check_target_module_exists`),
/// and `merge_and_unload()` merges only those: factors the file holds for other modules are loaded
/// as unexpected keys and ignored, so MergeKit ignores them too (`ignoredModules`). The rules, for
/// a module name such as `model.layers.0.self_attn.q_proj`:
///
/// - `exclude_modules` first: a string must `re.fullmatch` the name; a list entry must equal it or be
///   a dotted suffix of it (`.entry`). An excluded module is never targeted.
/// - `target_modules` as a string is a regular expression that must `re.fullmatch` the whole name
///   (`"q_proj"` selects nothing in a transformers model). `"all-linear"` (any case) selects every
///   Linear/Conv1D module but the output layer. As a list, an entry equal to the name selects it;
///   an entry that is a dotted suffix selects it subject to `layers_to_transform`.
/// - `layers_to_transform` (an index or a list; `[]` means all) keeps suffix-selected modules whose
///   layer index is listed. The index is the `idx` group of `re.match(r"(?:^|.*?\.)P\.(?P<idx>\d+)\.", name)`
///   for the first `layers_pattern` P (a string or a list) that matches, or of
///   `r".*?\.[^.]*\.(?P<idx>\d+)\."` without a pattern; no index, no module.
///
/// Patterns from the config are matched by `PythonRegex` (linear time, bounded size; backreferences
/// and lookaround are refused). What PEFT refuses is refused with the config file, the key and the
/// fix: `target_modules` `[]` or `""`; a string `target_modules` with `layers_to_transform` or
/// `layers_pattern`; `layers_pattern` without `layers_to_transform`; and, once a base is known
/// (`bind(to:)`), a config that selects no module of the base or selects one that is not a layer
/// LoRA adapts. Features whose merge is not s·B·A are refused too (DoRA, `modules_to_save`,
/// trainable tokens, `lora_bias`, layer replication, `target_parameters`, LoRA variants, and
/// initialisations that PEFT re-runs when it loads the adapter: PiSSA, OLoRA, CorDA, LoftQ and
/// LoRA-GA rewrite the base weights; MiCA is a variant). A missing `target_modules` is refused as
/// well, where PEFT would fall back to its default list for the model type, which MergeKit does
/// not guess.
///
/// **Orientation.** A Linear weight is stored [out, in], so τ_W = s·B·A. GPT-2's Conv1D stores
/// [in, out] and embeddings (`lora_embedding_A` r × vocab, `lora_embedding_B` dim × r, weight
/// [vocab, dim]) store the transpose: τ_W = s·(B·A)ᵀ = s·Aᵀ·Bᵀ. PEFT decides by the module's class
/// and overrides `fan_in_fan_out` (it warns and resets it to false on nn.Linear, to true on Conv1D);
/// MergeKit decides from the base weight's shape when a base is bound (`bind(to:)`, which documents
/// the rule for square weights).
///
/// **Key mapping.** PEFT saves the factors of module `<name>` (a name from the transformers model's
/// `named_modules()`, e.g. `model.layers.0.self_attn.q_proj`) as
///
///     base_model.model.<name>.lora_A.weight         ->  base tensor <name>.weight
///     base_model.model.<name>.lora_B.weight
///     base_model.model.<name>.lora_embedding_A      ->  base tensor <name>.weight (embeddings;
///     base_model.model.<name>.lora_embedding_B          a trailing `.weight` is accepted too)
///
/// PEFT also saves whole copies of targeted embedding layers (`save_embedding_layers`, the default when
/// an embedding or `lm_head` is targeted) as `base_model.model.<name>.base_layer.weight`. A copy equal
/// to the base's tensor adds nothing and is accepted (checked when a merge is planned); a different
/// one (a resized or retrained vocabulary) is refused.
///
/// Any other key (DoRA magnitudes, trained biases, `modules_to_save` copies) is refused when the
/// adapter is opened, naming the adapter file, the key and the way out; so are a factor without its
/// partner, non-float factors, and targeted factors whose rank disagrees with the config. Whether
/// every target exists in the base with τ's shape is checked when a merge is planned (`bind(to:)`).
public final class LoRAAdapter: Sendable {
    /// The parts of `adapter_config.json` that decide the delta.
    public struct Config: Sendable {
        public let r: Int
        public let loraAlpha: Double
        /// (regex key, rank) in file order.
        public let rankPattern: [(key: String, value: Int)]
        /// (regex key, alpha) in file order.
        public let alphaPattern: [(key: String, value: Double)]
        /// As written; PEFT overrides it per module class (see Orientation).
        public let fanInFanOut: Bool
        public let useRSLoRA: Bool
        public let baseModelNameOrPath: String?
        public let taskType: String?
        /// `target_modules`.
        public let targetModules: ModuleSelector
        /// `exclude_modules` (nil: none).
        public let excludeModules: ModuleSelector?
        /// `layers_to_transform` (an index becomes a one-element list; nil or `[]`: every layer).
        public let layersToTransform: [Int]?
        /// `layers_pattern` (a string becomes a one-element list; nil or empty: the default pattern).
        public let layersPattern: [String]?
        /// The patterns above, compiled.
        let matchers: Matchers
    }

    /// How `target_modules` / `exclude_modules` name modules.
    public enum ModuleSelector: Sendable, Equatable {
        /// A list: exact names or dotted suffixes.
        case names([String])
        /// A string: a regular expression for `re.fullmatch`.
        case pattern(String)
        /// `"all-linear"`: every Linear/Conv1D module but the output layer.
        case allLinear
    }

    /// Whether the config selects a module, as PEFT's `check_target_module_exists` answers.
    public enum Selection: Sendable, Equatable {
        case targeted, excluded, unmatched
    }

    /// One targeted module: its factors and how they combine.
    public struct Module: Sendable {
        /// The module name (`model.layers.0.self_attn.q_proj`).
        public let name: String
        /// The base tensor the delta applies to (`<name>.weight`).
        public let target: String
        /// r × in (lora_A) or r × vocab (lora_embedding_A).
        public let a: Checkpoint.Entry
        /// out × r (lora_B) or dim × r (lora_embedding_B).
        public let b: Checkpoint.Entry
        public let rank: Int
        public let alpha: Double
        /// s = alpha / r (alpha / √r with use_rslora).
        public let scale: Double
        /// Factors of an Embedding (`lora_embedding_A/B`).
        public let embedding: Bool
        /// τ_W = s·(B·A)ᵀ (a Conv1D or an embedding) instead of s·B·A.
        public let transposed: Bool

        /// The module with its orientation decided.
        func oriented(transposed: Bool) -> Module {
            Module(name: name, target: target, a: a, b: b, rank: rank, alpha: alpha, scale: scale, embedding: embedding, transposed: transposed)
        }

        /// The shape of τ_W as the base stores the weight.
        public var deltaShape: [Int] {
            transposed ? [a.info.shape[1], b.info.shape[0]] : [b.info.shape[0], a.info.shape[1]]
        }
    }

    public static let configFileName = "adapter_config.json"
    public static let weightsFileName = "adapter_model.safetensors"
    /// The weights file of an adapter saved with `safe_serialization=False` (`torch.save`).
    public static let pytorchWeightsFileName = "adapter_model.bin"
    /// The prefix PEFT gives every saved key (`PeftModel` → `LoraModel` → the transformers model).
    public static let keyPrefix = "base_model.model."

    /// The adapter directory as the user gave it.
    public let path: String
    /// `adapter_model.safetensors` (or `adapter_model.bin`), opened and validated.
    public let weights: Checkpoint
    public let config: Config
    /// The modules the config targets that have factors in the file, sorted by target tensor name.
    /// `transposed` is what the config claims (`fan_in_fan_out`, or an embedding); `bind(to:)`
    /// decides it from the base.
    public let modules: [Module]
    /// Modules with factors in the file that the config does not target: PEFT ignores them, and so
    /// does MergeKit (sorted).
    public let ignoredModules: [String]
    /// Whole copies of base weights the adapter carries (`<name>.base_layer.weight`), by base tensor name.
    public let savedBaseLayers: [String: Checkpoint.Entry]
    private let byTarget: [String: Int]

    /// Opens the adapter directory at `path`: parses the config, validates the weights file and
    /// pairs every A with its B.
    public init(path: String) throws(MergeKitError) {
        self.path = path
        guard FileSystem.kind(of: path) == .directory else {
            throw MergeKitError(FileSystem.exists(path) ? .notACheckpoint : .fileNotFound, file: path,
                FileSystem.exists(path) ? "is not a directory" : "does not exist",
                fix: "Pass a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) \(term: .asLoRA)")
        }
        let configPath = FileSystem.join(path, Self.configFileName)
        // Something other than a regular file (a FIFO, a directory) is named as what it is.
        guard FileSystem.kind(of: configPath) != .missing else {
            throw MergeKitError(.fileNotFound, file: configPath, "does not exist",
                fix: "A PEFT LoRA adapter directory holds adapter_config.json and adapter_model.safetensors (PeftModel.save_pretrained)")
        }
        try FileSystem.requireRegularFile(configPath)
        var weightsPath = FileSystem.join(path, Self.weightsFileName)
        if FileSystem.kind(of: weightsPath) == .missing {
            let pytorchPath = FileSystem.join(path, Self.pytorchWeightsFileName)
            guard FileSystem.kind(of: pytorchPath) != .missing else {
                throw MergeKitError(.fileNotFound, file: weightsPath, "does not exist, nor does \(Self.pytorchWeightsFileName)",
                    fix: "A PEFT LoRA adapter directory holds adapter_config.json and adapter_model.safetensors (or adapter_model.bin)")
            }
            weightsPath = pytorchPath
        }
        try FileSystem.requireRegularFile(weightsPath)
        let config = try Self.parseConfig(try FileSystem.readFile(configPath), file: configPath)
        self.config = config
        weights = try Checkpoint(path: weightsPath)

        // Pair the factors by module name.
        var factors: [String: (a: Checkpoint.Entry?, b: Checkpoint.Entry?, embedding: Bool)] = [:]
        var savedBaseLayers: [String: Checkpoint.Entry] = [:]
        for entry in weights.entries {
            let baseLayerSuffix = ".base_layer.weight"
            if entry.name.hasPrefix(Self.keyPrefix) && entry.name.hasSuffix(baseLayerSuffix) && entry.name.count > Self.keyPrefix.count + baseLayerSuffix.count {
                let module = entry.name.dropFirst(Self.keyPrefix.count).dropLast(baseLayerSuffix.count)
                savedBaseLayers[module + ".weight"] = entry
                continue
            }
            guard let (module, isA, embedding) = Self.parseKey(entry.name) else {
                throw MergeKitError(.extraTensor, file: weightsPath, tensor: entry.name,
                    "is not a LoRA factor MergeKit can read (it reads base_model.model.<module>.lora_A.weight / lora_B.weight and lora_embedding_A / lora_embedding_B)",
                    fix: Self.unsupportedKeyFix(entry.name))
            }
            var slot = factors[module] ?? (nil, nil, embedding)
            if slot.embedding != embedding {
                throw MergeKitError(.extraTensor, file: weightsPath, tensor: entry.name,
                    "mixes lora_A/lora_B and lora_embedding_A/lora_embedding_B factors for module \(module)",
                    fix: "Re-save the adapter with PEFT")
            }
            if isA { slot.a = entry } else { slot.b = entry }
            factors[module] = slot
        }
        var modules: [Module] = []
        var ignored: [String] = []
        for (name, slot) in factors.sorted(by: { $0.key < $1.key }) {
            let (aName, bName) = slot.embedding ? ("lora_embedding_A", "lora_embedding_B") : ("lora_A", "lora_B")
            guard let a = slot.a, let b = slot.b else {
                let present = (slot.a ?? slot.b)!
                throw MergeKitError(.missingTensor, file: weightsPath, tensor: present.name,
                    "has no partner: module \(name) needs both \(aName) and \(bName)",
                    fix: "The adapter file is incomplete; save it again with PEFT")
            }
            for entry in [a, b] {
                guard entry.info.dtype.isMergeable else {
                    throw MergeKitError(.dtypeMismatch, file: weightsPath, tensor: entry.name,
                        "is \(entry.info.dtype.rawValue); LoRA factors must be F32, F16, BF16 or F64",
                        fix: "Quantised adapters are not supported: dequantise and save the adapter in a float dtype")
                }
                guard entry.info.shape.count == 2 else {
                    throw MergeKitError(.shapeMismatch, file: weightsPath, tensor: entry.name,
                        "has shape \(entry.info.shape); LoRA factors of Linear, Conv1D and Embedding modules are 2-D",
                        fix: "Adapters of Conv2d layers are not supported")
                }
            }
            guard config.select(name, linear: !slot.embedding) == .targeted else {
                ignored.append(name)
                continue
            }
            let rank = a.info.shape[0]
            guard b.info.shape[1] == rank else {
                throw MergeKitError(.shapeMismatch, file: weightsPath, tensor: b.name,
                    "has shape \(b.info.shape) but \(a.name) has \(a.info.shape): B's columns must equal A's rows (the rank)",
                    fix: "The adapter file is inconsistent; save it again with PEFT")
            }
            let configuredRank = config.rank(for: name)
            guard configuredRank == rank else {
                throw MergeKitError(.shapeMismatch, file: weightsPath, tensor: a.name,
                    "has rank \(rank) but \(Self.configFileName) gives module \(name) r = \(configuredRank)",
                    fix: "Fix r / rank_pattern in \(configPath) (PEFT would refuse to load this adapter too)")
            }
            let alpha = config.alpha(for: name)
            let scale = config.useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)
            modules.append(Module(name: name, target: name + ".weight", a: a, b: b, rank: rank, alpha: alpha,
                                  scale: scale, embedding: slot.embedding, transposed: slot.embedding || config.fanInFanOut))
        }
        modules.sort { $0.target < $1.target }
        self.modules = modules
        ignoredModules = ignored
        self.savedBaseLayers = savedBaseLayers
        byTarget = Dictionary(uniqueKeysWithValues: modules.enumerated().map { ($1.target, $0) })
    }

    /// The module whose delta applies to base tensor `name`, if the adapter targets it.
    public func module(forTarget name: String) -> Module? {
        byTarget[name].map { modules[$0] }
    }

    /// Whether the saved copy of base tensor `entry.name` holds exactly the base's values. A
    /// planned base (a later stage of a multi-document recipe) is compared when the stage runs.
    func savedBaseLayerMatches(_ entry: Checkpoint.Entry) -> Bool {
        guard let saved = savedBaseLayers[entry.name], !entry.file.isPlanned else { return true }
        guard saved.info.shape == entry.info.shape, saved.info.dtype.isMergeable, entry.info.dtype.isMergeable else { return false }
        let a = saved.file.bytes(of: saved.info), b = entry.file.bytes(of: entry.info)
        if saved.info.dtype == entry.info.dtype { return a.elementsEqual(b) }
        let slab = 1 << 16
        var x = [Double](repeating: 0, count: slab), y = [Double](repeating: 0, count: slab)
        var lower = 0
        while lower < entry.info.elementCount {
            let n = min(slab, entry.info.elementCount - lower)
            Double.load(a.baseAddress! + lower * saved.info.dtype.byteWidth!, dtype: saved.info.dtype, count: n, into: &x)
            Double.load(b.baseAddress! + lower * entry.info.dtype.byteWidth!, dtype: entry.info.dtype, count: n, into: &y)
            if x[0..<n] != y[0..<n] { return false }
            lower += n
        }
        return true
    }

    /// (module name, is A, is an embedding) for a PEFT key, nil for anything else.
    static func parseKey(_ key: String) -> (String, Bool, Bool)? {
        guard key.hasPrefix(keyPrefix) else { return nil }
        let rest = String(key.dropFirst(keyPrefix.count))
        let suffixes: [(String, Bool, Bool)] = [
            (".lora_A.weight", true, false), (".lora_B.weight", false, false),
            (".lora_embedding_A", true, true), (".lora_embedding_B", false, true),
            (".lora_embedding_A.weight", true, true), (".lora_embedding_B.weight", false, true),
        ]
        for (suffix, isA, embedding) in suffixes where rest.hasSuffix(suffix) {
            let module = String(rest.dropLast(suffix.count))
            return module.isEmpty ? nil : (module, isA, embedding)
        }
        return nil
    }

    private static func unsupportedKeyFix(_ key: String) -> MergeKitError.Text {
        if key.hasSuffix("lora_magnitude_vector") || key.contains(".lora_magnitude_vector.") {
            return "DoRA adapters are not a low-rank delta: merge the adapter with PEFT (merge_and_unload) and \(term: .passResultAsModel)"
        }
        if key.hasSuffix(".bias") {
            return "Adapters that train biases (bias != \"none\", lora_bias) are not supported: merge the adapter with PEFT (merge_and_unload) and \(term: .passResultAsModel)"
        }
        if !key.hasPrefix(keyPrefix) {
            return "PEFT saves every key as \(keyPrefix)<module>.lora_A.weight / .lora_B.weight; re-save the adapter with PeftModel.save_pretrained"
        }
        return "Full tensors (modules_to_save, trainable tokens) are not LoRA factors: merge the adapter with PEFT (merge_and_unload) and \(term: .passResultAsModel)"
    }
}
