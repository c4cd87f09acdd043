/// A PEFT LoRA adapter read as a task vector.
///
/// An adapter is a directory holding `adapter_config.json` and `adapter_model.safetensors`
/// (what `PeftModel.save_pretrained` writes). For every targeted module it stores two factors,
/// A (r × in) and B (out × r), and its task vector is PEFT's `merge_and_unload()` delta:
///
///     τ_W = s · B·A,   s = lora_alpha / r   (lora_alpha / √r with use_rslora)
///
/// with r and lora_alpha taken per module from `rank_pattern` / `alpha_pattern` when a pattern
/// matches (PEFT's rule: the first pattern key k, in file order, with the module name matching the
/// regular expression `(.*\.)?(k)$`), else from `r` / `lora_alpha`. Every tensor the adapter does not
/// target has τ = 0.
///
/// **Orientation.** A Linear weight is stored [out, in], so τ_W = s·B·A. With `fan_in_fan_out: true`
/// (GPT-2's Conv1D, weights stored [in, out]) and for embeddings (`lora_embedding_A` r × vocab,
/// `lora_embedding_B` dim × r, weight [vocab, dim]) the stored weight is the transpose:
/// τ_W = s·(B·A)ᵀ = s·Aᵀ·Bᵀ.
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
/// partner, factors whose rank disagrees with the config, and non-float factors. Whether every
/// target exists in the base with τ's shape is checked when a merge is planned (`MergePlan`).
public final class LoRAAdapter: Sendable {
    /// The parts of `adapter_config.json` that decide the delta.
    public struct Config: Sendable {
        public let r: Int
        public let loraAlpha: Double
        /// (regex key, rank) in file order.
        public let rankPattern: [(key: String, value: Int)]
        /// (regex key, alpha) in file order.
        public let alphaPattern: [(key: String, value: Double)]
        public let fanInFanOut: Bool
        public let useRSLoRA: Bool
        public let baseModelNameOrPath: String?
        public let taskType: String?
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
        /// τ_W = s·(B·A)ᵀ (fan_in_fan_out or an embedding) instead of s·B·A.
        public let transposed: Bool

        /// The shape of τ_W as the base stores the weight.
        public var deltaShape: [Int] {
            transposed ? [a.info.shape[1], b.info.shape[0]] : [b.info.shape[0], a.info.shape[1]]
        }
    }

    public static let configFileName = "adapter_config.json"
    public static let weightsFileName = "adapter_model.safetensors"
    /// The prefix PEFT gives every saved key (`PeftModel` → `LoraModel` → the transformers model).
    public static let keyPrefix = "base_model.model."

    /// The adapter directory as the user gave it.
    public let path: String
    /// `adapter_model.safetensors`, opened and validated.
    public let weights: Checkpoint
    public let config: Config
    /// Targeted modules, sorted by target tensor name.
    public let modules: [Module]
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
                fix: "Pass a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) to --lora")
        }
        let configPath = FileSystem.join(path, Self.configFileName)
        let weightsPath = FileSystem.join(path, Self.weightsFileName)
        // Something other than a regular file (a FIFO, a directory) is named as what it is.
        guard FileSystem.kind(of: configPath) != .missing else {
            throw MergeKitError(.fileNotFound, file: configPath, "does not exist",
                fix: "A PEFT LoRA adapter directory holds adapter_config.json and adapter_model.safetensors (PeftModel.save_pretrained)")
        }
        try FileSystem.requireRegularFile(configPath)
        guard FileSystem.kind(of: weightsPath) != .missing else {
            let hasBin = FileSystem.exists(FileSystem.join(path, "adapter_model.bin"))
            throw MergeKitError(.fileNotFound, file: weightsPath, "does not exist",
                fix: hasBin ? "Convert adapter_model.bin to safetensors (save_pretrained(..., safe_serialization=True))"
                            : "A PEFT LoRA adapter directory holds adapter_config.json and adapter_model.safetensors")
        }
        try FileSystem.requireRegularFile(weightsPath)
        let config = try Self.parseConfig(configPath)
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
            let rank = a.info.shape[0]
            guard b.info.shape[1] == rank else {
                throw MergeKitError(.shapeMismatch, file: weightsPath, tensor: b.name,
                    "has shape \(b.info.shape) but \(a.name) has \(a.info.shape): B's columns must equal A's rows (the rank)",
                    fix: "The adapter file is inconsistent; save it again with PEFT")
            }
            let configuredRank = Self.patternValue(config.rankPattern, module: name) ?? config.r
            guard configuredRank == rank else {
                throw MergeKitError(.shapeMismatch, file: weightsPath, tensor: a.name,
                    "has rank \(rank) but \(Self.configFileName) gives module \(name) r = \(configuredRank)",
                    fix: "Fix r / rank_pattern in \(configPath) (PEFT would refuse to load this adapter too)")
            }
            let alpha = Self.patternValue(config.alphaPattern, module: name) ?? config.loraAlpha
            let scale = config.useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)
            modules.append(Module(name: name, target: name + ".weight", a: a, b: b, rank: rank, alpha: alpha,
                                  scale: scale, transposed: slot.embedding || config.fanInFanOut))
        }
        modules.sort { $0.target < $1.target }
        self.modules = modules
        self.savedBaseLayers = savedBaseLayers
        byTarget = Dictionary(uniqueKeysWithValues: modules.enumerated().map { ($1.target, $0) })
    }

    /// The module whose delta applies to base tensor `name`, if the adapter targets it.
    public func module(forTarget name: String) -> Module? {
        byTarget[name].map { modules[$0] }
    }

    /// Whether the saved copy of base tensor `entry.name` holds exactly the base's values.
    func savedBaseLayerMatches(_ entry: Checkpoint.Entry) -> Bool {
        guard let saved = savedBaseLayers[entry.name] else { return true }
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

    private static func unsupportedKeyFix(_ key: String) -> String {
        if key.hasSuffix("lora_magnitude_vector") || key.contains(".lora_magnitude_vector.") {
            return "DoRA adapters are not a low-rank delta: merge the adapter with PEFT (merge_and_unload) and pass the result with --model"
        }
        if key.hasSuffix(".bias") {
            return "Adapters that train biases (bias != \"none\", lora_bias) are not supported: merge the adapter with PEFT (merge_and_unload) and pass the result with --model"
        }
        if !key.hasPrefix(keyPrefix) {
            return "PEFT saves every key as \(keyPrefix)<module>.lora_A.weight / .lora_B.weight; re-save the adapter with PeftModel.save_pretrained"
        }
        return "Full tensors (modules_to_save, trainable tokens) are not LoRA factors: merge the adapter with PEFT (merge_and_unload) and pass the result with --model"
    }

    /// PEFT's `get_pattern_key`: the value of the first key (file order) such that the module
    /// name matches `(.*\.)?(key)$`.
    static func patternValue<V>(_ patterns: [(key: String, value: V)], module: String) -> V? {
        for (key, value) in patterns {
            guard let regex = try? Regex("(.*\\.)?(\(key))") else { continue }
            if (try? regex.wholeMatch(in: module)) != nil { return value }
        }
        return nil
    }

    private static func parseConfig(_ configPath: String) throws(MergeKitError) -> Config {
        let bytes = try FileSystem.readFile(configPath)
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw MergeKitError(.invalidArgument, file: configPath, "is not valid JSON (\(error.description))",
                fix: "Restore the adapter's config from where it was saved")
        }
        func bad(_ key: String, _ what: String) -> MergeKitError {
            MergeKitError(.invalidArgument, file: configPath, "\"\(key)\" \(what)",
                fix: "Fix adapter_config.json (PEFT's LoraConfig)")
        }
        guard json.objectMembers != nil else { throw bad("(root)", "must be a JSON object") }
        if let type = json["peft_type"], type != .null {
            guard type.stringValue == "LORA" else {
                throw MergeKitError(.invalidArgument, file: configPath,
                    "has peft_type \(type.stringValue.map { "\"\($0)\"" } ?? type.kindName); MergeKit reads LoRA adapters only",
                    fix: "Merge other PEFT adapters with PEFT (merge_and_unload) and pass the result with --model")
            }
        }
        if json["use_dora"] == .bool(true) {
            throw MergeKitError(.invalidArgument, file: configPath, "is a DoRA adapter (use_dora: true), which is not a low-rank delta",
                fix: "Merge it with PEFT (merge_and_unload) and pass the result with --model")
        }
        guard let r = json["r"]?.nonNegativeInt, r > 0 else { throw bad("r", "must be a positive integer") }
        guard let alpha = json["lora_alpha"]?.doubleValue, alpha.isFinite else { throw bad("lora_alpha", "must be a finite number") }
        func flag(_ key: String) throws(MergeKitError) -> Bool {
            switch json[key] {
            case nil, .null?: return false
            case .bool(let value)?: return value
            default: throw bad(key, "must be true or false")
            }
        }
        var rankPattern: [(key: String, value: Int)] = []
        var alphaPattern: [(key: String, value: Double)] = []
        for (name, into) in [("rank_pattern", 0), ("alpha_pattern", 1)] {
            guard let value = json[name], value != .null else { continue }
            guard let members = value.objectMembers else { throw bad(name, "must be an object of module pattern → value") }
            for member in members {
                guard (try? Regex("(.*\\.)?(\(member.key))")) != nil else {
                    throw bad(name, "has the key \"\(member.key)\", which is not a valid regular expression")
                }
                if into == 0 {
                    guard let v = member.value.nonNegativeInt, v > 0 else { throw bad(name, "value for \"\(member.key)\" must be a positive integer") }
                    rankPattern.append((member.key, v))
                } else {
                    guard let v = member.value.doubleValue, v.isFinite else { throw bad(name, "value for \"\(member.key)\" must be a number") }
                    alphaPattern.append((member.key, v))
                }
            }
        }
        return Config(r: r, loraAlpha: alpha, rankPattern: rankPattern, alphaPattern: alphaPattern,
                      fanInFanOut: try flag("fan_in_fan_out"), useRSLoRA: try flag("use_rslora"),
                      baseModelNameOrPath: json["base_model_name_or_path"]?.stringValue,
                      taskType: json["task_type"]?.stringValue)
    }
}
