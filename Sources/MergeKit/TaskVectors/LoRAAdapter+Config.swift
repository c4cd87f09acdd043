extension LoRAAdapter {
    /// The config's patterns compiled for `PythonRegex`, spliced into the expressions PEFT builds
    /// around them.
    struct Matchers: Sendable {
        /// `rank_pattern` / `alpha_pattern`: `(.*\.)?(key)$`, for `re.match`.
        let rank: [PatternKey<Int>]
        let alpha: [PatternKey<Double>]
        /// A string `target_modules` / `exclude_modules`, for `re.fullmatch`.
        let target: PythonRegex?
        let exclude: PythonRegex?
        /// `(?:^|.*?\.)P\.(?P<idx>\d+)\.` per `layers_pattern` P, or the default `.*?\.[^.]*\.(?P<idx>\d+)\.`.
        let layers: [PythonRegex]
    }

    /// A `rank_pattern` / `alpha_pattern` key and its value. Keys made only of letters, digits, `_`,
    /// `-` and `.` (module names, as PEFT and extract-lora write them) skip the regex: for them
    /// `re.match(r"(.*\.)?(key)$", name)` holds exactly when the name, less one final newline, ends
    /// in `key.count` characters that equal the key's (a `.` in the key matching any character but
    /// a newline) preceded by nothing or by a `.` with no newline before it.
    struct PatternKey<Value: Sendable>: Sendable {
        let key: String
        let regex: PythonRegex
        let value: Value
        private let plain: [Unicode.Scalar]?

        init(key: String, regex: PythonRegex, value: Value) {
            self.key = key
            self.regex = regex
            self.value = value
            let scalars = Array(key.unicodeScalars)
            plain = scalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) }
                ? scalars : nil
        }

        /// `re.match(r"(.*\.)?(key)$", name) is not None`.
        func matches(_ name: String) -> Bool {
            guard let plain else { return regex.matchesStart(name) }
            let n = Array(name.unicodeScalars)
            func fits(end: Int) -> Bool {
                let start = end - plain.count
                guard start >= 0 else { return false }
                for (k, c) in plain.enumerated() where c == "." ? n[start + k] == "\n" : n[start + k] != c { return false }
                return start == 0 || (n[start - 1] == "." && !n[..<(start - 1)].contains("\n"))
            }
            return fits(end: n.count) || (n.last == "\n" && fits(end: n.count - 1))
        }
    }

    /// Module names that `"all-linear"` leaves out: PEFT excludes the model's output layer
    /// (`get_output_embeddings()`), or for sequence classification its head. MergeKit has no
    /// module objects and goes by the names transformers gives them.
    static func isOutputLayer(_ name: String, taskType: String?) -> Bool {
        name == "lm_head" || name == "embed_out" || (taskType == "SEQ_CLS" && (name == "score" || name == "classifier"))
    }

    /// Parses and checks `adapter_config.json` (`bytes`, read from `file`): the values, PEFT's own
    /// refusals, the features MergeKit cannot merge, and every pattern.
    public static func parseConfig(_ bytes: [UInt8], file configPath: String) throws(MergeKitError) -> Config {
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw MergeKitError(.invalidArgument, file: configPath, "is not valid JSON (\(error.description))",
                fix: "Restore the adapter's config from where it was saved")
        }
        func bad(_ key: String, _ what: String, fix: MergeKitError.Text = "Fix adapter_config.json (PEFT's LoraConfig)") -> MergeKitError {
            MergeKitError(.invalidArgument, file: configPath, "\"\(key)\" \(what)", fix: fix)
        }
        func present(_ key: String) -> JSONValue? {
            guard let value = json[key], value != .null else { return nil }
            return value
        }
        guard json.objectMembers != nil else { throw bad("(root)", "must be a JSON object") }
        if let type = present("peft_type") {
            guard type.stringValue == "LORA" else {
                throw MergeKitError(.invalidArgument, file: configPath,
                    "has peft_type \(type.stringValue.map { "\"\($0)\"" } ?? type.kindName); MergeKit reads LoRA adapters only",
                    fix: "Merge other PEFT adapters with PEFT (merge_and_unload) and \(term: .passResultAsModel)")
            }
        }
        if json["use_dora"] == .bool(true) {
            throw MergeKitError(.invalidArgument, file: configPath, "is a DoRA adapter (use_dora: true), which is not a low-rank delta",
                fix: "Merge it with PEFT (merge_and_unload) and \(term: .passResultAsModel)")
        }
        try refuseUnmergeableFeatures(json, configPath: configPath)
        guard let r = json["r"]?.nonNegativeInt, r > 0 else { throw bad("r", "must be a positive integer") }
        guard let alpha = json["lora_alpha"]?.doubleValue, alpha.isFinite else { throw bad("lora_alpha", "must be a finite number") }
        func flag(_ key: String) throws(MergeKitError) -> Bool {
            switch json[key] {
            case nil, .null?: return false
            case .bool(let value)?: return value
            default: throw bad(key, "must be true or false")
            }
        }
        func compile(_ key: String, _ what: String, _ text: String, spliced: String) throws(MergeKitError) -> PythonRegex {
            do {
                return try PythonRegex(spliced)
            } catch {
                throw bad(key, "\(what) \"\(text)\" is not a pattern MergeKit can match (PEFT matches it as \(spliced)): \(error.message)",
                    fix: "Write the pattern without backreferences, lookaround, atomic groups or inline flags, in at most \(PythonRegex.maximumPatternLength) characters (MergeKit matches patterns in linear time)")
            }
        }

        // rank_pattern / alpha_pattern.
        var rankPattern: [(key: String, value: Int)] = [], alphaPattern: [(key: String, value: Double)] = []
        var rankRegexes: [PatternKey<Int>] = [], alphaRegexes: [PatternKey<Double>] = []
        for name in ["rank_pattern", "alpha_pattern"] {
            guard let value = present(name) else { continue }
            guard let members = value.objectMembers else { throw bad(name, "must be an object of module pattern → value") }
            for member in members {
                let regex = try compile(name, "has the key", member.key, spliced: "(.*\\.)?(\(member.key))$")
                if name == "rank_pattern" {
                    guard let v = member.value.nonNegativeInt, v > 0 else { throw bad(name, "value for \"\(member.key)\" must be a positive integer") }
                    rankPattern.append((member.key, v))
                    rankRegexes.append(PatternKey(key: member.key, regex: regex, value: v))
                } else {
                    guard let v = member.value.doubleValue, v.isFinite else { throw bad(name, "value for \"\(member.key)\" must be a number") }
                    alphaPattern.append((member.key, v))
                    alphaRegexes.append(PatternKey(key: member.key, regex: regex, value: v))
                }
            }
        }

        // target_modules / exclude_modules.
        func selector(_ key: String) throws(MergeKitError) -> ModuleSelector? {
            guard let value = present(key) else { return nil }
            if let text = value.stringValue {
                return key == "target_modules" && text.lowercased() == "all-linear" ? .allLinear : .pattern(text)
            }
            guard let items = value.arrayValue else { throw bad(key, "must be a list of module names or a regular expression (a string)") }
            var names: [String] = []
            for item in items {
                guard let name = item.stringValue else { throw bad(key, "must list module names (strings); it holds \(item.kindName)") }
                names.append(name)
            }
            return .names(names)
        }
        if let parameters = present("target_parameters"), parameters.arrayValue?.isEmpty != true {
            throw bad("target_parameters", "adapts parameters rather than modules, which MergeKit does not read",
                fix: "Merge the adapter with PEFT (merge_and_unload) and \(term: .passResultAsModel)")
        }
        guard let targetModules = try selector("target_modules") else {
            throw bad("target_modules", "is missing: PEFT would fall back to its default for the model type, which MergeKit does not guess",
                fix: "Set \"target_modules\" to the modules the adapter was trained on, e.g. [\"q_proj\", \"v_proj\"] (PEFT saves it)")
        }
        if targetModules == .names([]) || targetModules == .pattern("") {
            throw bad("target_modules", "is empty: PEFT refuses the adapter (“No `target_modules` passed”)",
                fix: "List the modules the adapter was trained on, e.g. [\"q_proj\", \"v_proj\"]")
        }
        let excludeModules = try selector("exclude_modules").flatMap { $0 == .names([]) || $0 == .pattern("") ? nil : $0 }

        // layers_to_transform / layers_pattern, with PEFT's LoraConfig checks.
        let layersValue = present("layers_to_transform"), patternValue = present("layers_pattern")
        if case .names = targetModules {} else {
            if layersValue != nil {
                throw bad("layers_to_transform", "cannot be used when \"target_modules\" is a string; PEFT refuses the adapter",
                    fix: "Remove layers_to_transform, or make target_modules a list")
            }
            if patternValue != nil {
                throw bad("layers_pattern", "cannot be used when \"target_modules\" is a string; PEFT refuses the adapter",
                    fix: "Remove layers_pattern, or make target_modules a list")
            }
        }
        var layers: [Int]? = nil
        if let layersValue {
            func index(_ v: JSONValue) throws(MergeKitError) -> Int {
                guard case .number(let text) = v, let n = Int(text) else {
                    throw bad("layers_to_transform", "must be a layer index or a list of layer indices (integers)")
                }
                return n
            }
            if let items = layersValue.arrayValue {
                var list: [Int] = []
                for item in items { list.append(try index(item)) }
                layers = list.isEmpty ? nil : list
            } else {
                layers = [try index(layersValue)]
            }
        }
        var layersPattern: [String]? = nil
        if let patternValue {
            if let text = patternValue.stringValue {
                layersPattern = [text]
            } else if let items = patternValue.arrayValue {
                var list: [String] = []
                for item in items {
                    guard let text = item.stringValue else { throw bad("layers_pattern", "must be a string or a list of strings") }
                    list.append(text)
                }
                layersPattern = list
            } else {
                throw bad("layers_pattern", "must be a string or a list of strings")
            }
            if layersPattern?.isEmpty == true || layersPattern == [""] { layersPattern = nil }
            if layersPattern != nil && layersValue == nil {
                throw bad("layers_pattern", "is set without \"layers_to_transform\"; PEFT refuses the adapter",
                    fix: "Add layers_to_transform (the layer indices to adapt) or remove layers_pattern")
            }
        }

        var target: PythonRegex? = nil, exclude: PythonRegex? = nil
        if case .pattern(let text) = targetModules { target = try compile("target_modules", "is the regular expression", text, spliced: text) }
        if case .pattern(let text)? = excludeModules { exclude = try compile("exclude_modules", "is the regular expression", text, spliced: text) }
        var layerRegexes: [PythonRegex] = []
        if let layersPattern {
            for p in layersPattern {
                layerRegexes.append(try compile("layers_pattern", "has the pattern", p, spliced: "(?:^|.*?\\.)\(p)\\.(?P<idx>\\d+)\\."))
            }
            for (p, regex) in zip(layersPattern, layerRegexes) where regex.groupIndex(named: "idx") == nil {
                throw bad("layers_pattern", "has the pattern \"\(p)\", which leaves PEFT no layer index")
            }
        } else {
            layerRegexes = [try! PythonRegex(".*?\\.[^.]*\\.(?P<idx>\\d+)\\.")]
        }
        return Config(r: r, loraAlpha: alpha, rankPattern: rankPattern, alphaPattern: alphaPattern,
                      fanInFanOut: try flag("fan_in_fan_out"), useRSLoRA: try flag("use_rslora"),
                      baseModelNameOrPath: json["base_model_name_or_path"]?.stringValue,
                      taskType: json["task_type"]?.stringValue,
                      targetModules: targetModules, excludeModules: excludeModules,
                      layersToTransform: layers, layersPattern: layersPattern,
                      matchers: Matchers(rank: rankRegexes, alpha: alphaRegexes, target: target, exclude: exclude, layers: layerRegexes))
    }

    /// Config features whose merge is not s·B·A of the saved factors (or that PEFT cannot load
    /// from this file): refused, naming the key.
    private static func refuseUnmergeableFeatures(_ json: JSONValue, configPath: String) throws(MergeKitError) {
        let viaPEFT: MergeKitError.Text = "Merge the adapter with PEFT (merge_and_unload) and \(term: .passResultAsModel)"
        func set(_ key: String) -> JSONValue? {
            guard let value = json[key] else { return nil }
            switch value {
            case .null, .bool(false): return nil
            case .array(let items) where items.isEmpty: return nil
            case .object(let members) where members.isEmpty: return nil
            default: return value
            }
        }
        let features: [(key: String, what: String)] = [
            ("modules_to_save", "replaces whole modules with trained copies"),
            ("trainable_token_indices", "trains rows of the embedding outside the LoRA factors"),
            ("lora_bias", "trains the biases of the adapted layers"),
            ("layer_replication", "replicates layers, which changes the model's structure"),
            ("alora_invocation_tokens", "is an activated LoRA (aLoRA), applied only after its invocation tokens"),
            ("arrow_config", "routes between several adapters (Arrow)"),
            ("use_bdlora", "is a block-diagonal LoRA (BD-LoRA)"),
            ("kasa_config", "is a KaSA adapter"),
            ("velora_config", "is a VeLoRA adapter"),
            ("monteclora_config", "is a MonteCLoRA adapter"),
            ("use_qalora", "is a QA-LoRA adapter"),
        ]
        for (key, what) in features where set(key) != nil {
            throw MergeKitError(.invalidArgument, file: configPath, "\"\(key)\" is set: the adapter \(what), which MergeKit does not merge", fix: viaPEFT)
        }
        if let bias = json["bias"]?.stringValue, bias != "none" {
            throw MergeKitError(.invalidArgument, file: configPath, "\"bias\" is \"\(bias)\": the adapter trains biases, which MergeKit does not merge", fix: viaPEFT)
        }
        // Initialisations that PEFT re-runs when it loads the adapter and that rewrite the base
        // weights (or are LoRA variants): merge_and_unload() then differs from θ₀ + s·B·A.
        switch json["init_lora_weights"] {
        case nil, .null?, .bool?: break
        case .string(let name)? where name == "eva" || name == "orthogonal" || name.lowercased() == "gaussian": break
        case let value?:
            throw MergeKitError(.invalidArgument, file: configPath,
                "\"init_lora_weights\" is \(value.stringValue.map { "\"\($0)\"" } ?? value.kindName): PEFT re-runs this initialisation when it loads the adapter (PiSSA, OLoRA, CorDA, LoftQ and LoRA-GA rewrite the base weights), so its merge is not θ₀ + s·B·A",
                fix: "Convert the adapter to plain LoRA when saving it (save_pretrained(..., path_initial_model_for_weight_conversion=...)), or merge it with PEFT and \(term: .passResultAsModel)")
        }
    }
}

extension LoRAAdapter.Config {
    /// PEFT's `check_target_module_exists` for module `name`. `linear` says whether the module is a
    /// Linear/Conv1D layer, which only `"all-linear"` asks.
    public func select(_ name: String, linear: Bool) -> LoRAAdapter.Selection {
        switch excludeModules {
        case .pattern?:
            if matchers.exclude!.fullMatch(name) { return .excluded }
        case .names(let list)?:
            if list.contains(where: { name == $0 || name.hasSuffix("." + $0) }) { return .excluded }
        case .allLinear?, nil:
            break
        }
        switch targetModules {
        case .pattern:
            return matchers.target!.fullMatch(name) ? .targeted : .unmatched
        case .allLinear:
            return linear && !LoRAAdapter.isOutputLayer(name, taskType: taskType) ? .targeted : .unmatched
        case .names(let list):
            if list.contains(name) { return .targeted }
            guard list.contains(where: { name.hasSuffix("." + $0) }) else { return .unmatched }
            guard let layers = layersToTransform else { return .targeted }
            for regex in matchers.layers {
                guard let match = regex.match(name) else { continue }
                guard let index = match.group(named: "idx").flatMap(Self.decimal) else { return .unmatched }
                return layers.contains(index) ? .targeted : .unmatched
            }
            return .unmatched
        }
    }

    /// Python's `int()` of a `\d+` match (any Unicode decimal digits); nil when it overflows.
    private static func decimal(_ text: String) -> Int? {
        var value = 0
        for scalar in text.unicodeScalars {
            guard let digit = scalar.properties.numericValue, scalar.properties.numericType == .decimal else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.addingReportingOverflow(Int(digit))
            if o1 || o2 { return nil }
            value = next
        }
        return value
    }

    /// r for module `name`: the first `rank_pattern` key (file order) whose `(.*\.)?(key)$` matches
    /// at the start of the name, else a key equal to the name, else `r` (PEFT's `get_pattern_key`).
    public func rank(for name: String) -> Int {
        matchers.rank.first { $0.matches(name) }?.value ?? rankPattern.first { $0.key == name }?.value ?? r
    }

    /// lora_alpha for module `name`, as `rank(for:)` finds r.
    public func alpha(for name: String) -> Double {
        matchers.alpha.first { $0.matches(name) }?.value ?? alphaPattern.first { $0.key == name }?.value ?? loraAlpha
    }
}
