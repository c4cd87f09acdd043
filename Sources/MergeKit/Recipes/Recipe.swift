import Foundation
import Yams

/// A merge recipe: a YAML (or JSON) file in mergekit's vocabulary.
///
/// ```yaml
/// merge_method: ties
/// base_model: path/to/base
/// models:
///   - model: path/to/finetuned-a
///     parameters: {weight: 1.0, density: 0.5}
///   - task_vector: path/to/tau-b.safetensors      # a MergeKit extension
///     parameters:
///       weight: [{filter: self_attn, value: 0.5}, {value: 1.0}]
///   - lora: path/to/peft-adapter                  # a MergeKit extension: τ = (α/r)·B·A
/// parameters: {lambda: 1.0, normalize: true}
/// dtype: float32
/// out_dtype: bfloat16
/// sweep: {lambda: "0:1:0.05"}                        # a MergeKit extension
/// ```
///
/// Loading validates the whole schema and reports every problem at once, each with its line.
/// YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`) are resolved as mergekit's loader (PyYAML)
/// resolves them; the text is bounded before it is parsed (`RecipeLimits`).
public struct Recipe: Sendable {
    public struct Input: Sendable {
        public enum Kind: String, Sendable { case model, taskVector = "task_vector", lora }
        public let kind: Kind
        public let path: String
        public let parameters: [String: ParameterSetting]
        public let line: Int

        public init(kind: Kind, path: String, parameters: [String: ParameterSetting] = [:], line: Int = 0) {
            self.kind = kind
            self.path = path
            self.parameters = parameters
            self.line = line
        }
    }

    /// One value given for a parameter (a scalar, or one number of a list), where it was given:
    /// recipes check each against its parameter's rule, reporting each at its own line.
    struct ValueSite: Sendable {
        let parameter: String
        let value: ParameterSetting
        let line: Int
        /// Given in a models entry (not under `parameters` or `sweep`).
        let perModel: Bool
    }

    /// The recipe file and its text (copied into the output).
    public let path: String
    public let text: String
    public let method: String
    public let methodLine: Int
    public let baseModel: String?
    public let baseLine: Int
    public let inputs: [Input]
    public let parameters: [String: ParameterSetting]
    public let parameterLines: [String: Int]
    public let dtype: DType?
    public let outDType: DType?
    /// Sweep axes in file order: parameter name and its values.
    public let sweep: [(name: String, values: [ParameterSetting])]
    /// Schema problems found while parsing, reported with planning's (so that every problem is
    /// reported at once).
    let schemaProblems: [MergeKitError]
    /// Every value given for a parameter, with its line.
    let sites: [ValueSite]

    init(path: String, text: String, method: String, methodLine: Int, baseModel: String?, baseLine: Int, inputs: [Input],
         parameters: [String: ParameterSetting], parameterLines: [String: Int], dtype: DType?, outDType: DType?,
         sweep: [(name: String, values: [ParameterSetting])], schemaProblems: [MergeKitError], sites: [ValueSite]) {
        self.path = path
        self.text = text
        self.method = method
        self.methodLine = methodLine
        self.baseModel = baseModel
        self.baseLine = baseLine
        self.inputs = inputs
        self.parameters = parameters
        self.parameterLines = parameterLines
        self.dtype = dtype
        self.outDType = outDType
        self.sweep = sweep
        self.schemaProblems = schemaProblems
        self.sites = sites
    }

    /// A recipe built from values rather than parsed (the `sweep` command builds its recipe from
    /// its flags this way, so no flag's text can become recipe syntax). It is validated and planned
    /// like a parsed one; problems have no line. `text`, written to directory outputs as
    /// recipe.yml, is the recipe emitted as YAML (every string quoted), which parses back to it.
    public init(method: String, baseModel: String?, inputs: [Input], parameters: [String: ParameterSetting] = [:],
                sweep: [(name: String, values: [ParameterSetting])] = [], path: String) {
        var sites: [ValueSite] = []
        for (name, setting) in parameters.sorted(by: { $0.key < $1.key }) {
            sites += setting.leaves.map { ValueSite(parameter: name, value: $0, line: 0, perModel: false) }
        }
        for input in inputs {
            for (name, setting) in input.parameters.sorted(by: { $0.key < $1.key }) {
                sites += setting.leaves.map { ValueSite(parameter: name, value: $0, line: 0, perModel: true) }
            }
        }
        for axis in sweep {
            sites += axis.values.flatMap(\.leaves).map { ValueSite(parameter: axis.name, value: $0, line: 0, perModel: false) }
        }
        self.init(path: path, text: Self.yaml(method: method, baseModel: baseModel, inputs: inputs, parameters: parameters, sweep: sweep),
                  method: method, methodLine: 0, baseModel: baseModel, baseLine: 0, inputs: inputs, parameters: parameters,
                  parameterLines: Dictionary(uniqueKeysWithValues: parameters.keys.map { ($0, 0) }), dtype: nil, outDType: nil,
                  sweep: sweep, schemaProblems: [], sites: sites)
    }

    static let topLevelKeys = ["merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "sweep"]
    /// mergekit keys MergeKit does not implement (reported as such, not as typos).
    static let unsupportedKeys = ["slices", "modules", "tokenizer_source", "tokenizer", "chat_template", "base_model_lora"]
    static let dtypeNames: [String: DType] = ["float32": .F32, "float16": .F16, "bfloat16": .BF16, "float64": .F64,
                                             "fp32": .F32, "fp16": .F16, "bf16": .BF16]

    /// Parses `path`. Schema problems are kept and reported by `plan` together with the problems
    /// found against the method and the checkpoints; unreadable YAML throws at once.
    public static func load(path: String) throws(MergeKitError) -> Recipe {
        let bytes = try RecipeLimits.readFile(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw MergeKitError(.invalidArgument, file: path, "is not UTF-8 text", fix: "Save the recipe as UTF-8 YAML or JSON")
        }
        return try parse(text, path: path)
    }

    /// Parses recipe `text` (named `path` in messages).
    public static func parse(_ text: String, path: String) throws(MergeKitError) -> Recipe {
        try RecipeLimits.check(text, path: path)
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw MergeKitError(.invalidArgument, file: path, "is empty", fix: "Write a recipe with merge_method and models")
            }
            root = node
        } catch let error as MergeKitError {
            throw error
        } catch {
            // The parser quotes the offending line; a hostile one can be a megabyte long.
            var reason = "\(error)"
            if reason.count > 400 { reason = String(reason.prefix(400)) + "…" }
            throw MergeKitError(.invalidArgument, file: path, "is not valid YAML or JSON (\(reason))", fix: "Fix the syntax at the position shown")
        }
        var parser = RecipeParser(path: path)
        guard let recipe = parser.recipe(root, text: text) else {
            try parser.problems.throwIfAny()
            throw MergeKitError(.invalidArgument, file: path, "is not a recipe")
        }
        return recipe
    }
}

/// Walks a recipe's YAML tree, collecting problems with their lines.
struct RecipeParser {
    let path: String
    var problems = ProblemList()
    /// Every value given for a parameter, with its line.
    var sites: [Recipe.ValueSite] = []

    init(path: String) { self.path = path }

    mutating func problem(_ node: Node?, _ detail: String, fix: String? = nil) {
        let line = node?.mark.map { "line \($0.line): " } ?? ""
        problems.add(MergeKitError(.invalidArgument, file: path, line + detail, fix: fix))
    }

    func line(_ node: Node?) -> Int { node?.mark?.line ?? 0 }

    mutating func recipe(_ root: Node, text: String) -> Recipe? {
        guard case .mapping(let mapping) = root else {
            problem(root, "the recipe must be a mapping with merge_method, base_model and models")
            return nil
        }
        var method = "", methodLine = 0, base: String?, baseLine = 0
        var inputs: [Recipe.Input] = []
        var parameters: [String: ParameterSetting] = [:], parameterLines: [String: Int] = [:]
        var dtype: DType?, outDType: DType?
        var sweep: [(name: String, values: [ParameterSetting])] = []
        let pairs = self.pairs(mapping)
        for (keyNode, value) in pairs {
            guard let key = keyNode.string else { problem(keyNode, "keys must be strings"); continue }
            switch key {
            case "merge_method":
                if let name = value.string, !name.isEmpty { method = name; methodLine = line(value) }
                else { problem(value, "merge_method must be a method name") }
            case "base_model":
                if let p = value.string { base = p; baseLine = line(value) } else { problem(value, "base_model must be a path") }
            case "models":
                guard case .sequence(let sequence) = value, !sequence.isEmpty else {
                    problem(value, "models must be a non-empty list of {model: PATH, parameters: {...}}")
                    continue
                }
                for entry in sequence { if let input = self.input(entry) { inputs.append(input) } }
            case "parameters":
                (parameters, parameterLines) = settings(value, context: "parameters", perModel: false)
            case "dtype", "out_dtype":
                guard let name = value.string, let d = Recipe.dtypeNames[name.lowercased()] else {
                    problem(value, "\(key) must be one of float32, float16, bfloat16, float64")
                    continue
                }
                if key == "dtype" { dtype = d } else { outDType = d }
            case "sweep":
                guard case .mapping(let axes) = value else { problem(value, "sweep must map parameter names to lists or ranges"); continue }
                for (axisKey, axisValue) in self.pairs(axes) {
                    guard let name = axisKey.string else { problem(axisKey, "sweep keys must be parameter names"); continue }
                    if let values = sweepValues(axisValue, name: name) { sweep.append((name, values)) }
                }
            default:
                if Recipe.unsupportedKeys.contains(key) {
                    problem(keyNode, "\"\(key)\" (a mergekit feature) is not supported by MergeKit",
                            fix: "Merge whole models with base_model and models; see the README's recipe section")
                } else {
                    problem(keyNode, "unknown key \"\(key)\"" + suggestion(key, Recipe.topLevelKeys),
                            fix: "Allowed keys: " + Recipe.topLevelKeys.joined(separator: ", "))
                }
            }
        }
        if method.isEmpty && !pairs.contains(where: { $0.key.string == "merge_method" }) {
            problem(root, "merge_method is missing", fix: "Add e.g. merge_method: ties")
        }
        if inputs.isEmpty && !pairs.contains(where: { $0.key.string == "models" }) {
            problem(root, "models is missing", fix: "List the fine-tuned models under models:")
        }
        return Recipe(path: path, text: text, method: method, methodLine: methodLine, baseModel: base, baseLine: baseLine,
                      inputs: inputs, parameters: parameters, parameterLines: parameterLines, dtype: dtype,
                      outDType: outDType, sweep: sweep, schemaProblems: problems.items, sites: sites)
    }

    /// A mapping's pairs as mergekit's loader (PyYAML's `flatten_mapping` and `construct_mapping`)
    /// sees them, with YAML merge keys resolved: a plain `<<` key's value, a mapping or a list of
    /// mappings (themselves resolved first), supplies pairs placed before the mapping's own; where
    /// keys repeat the later pair wins, so the mapping's own keys win over merged ones, a later
    /// `<<` over an earlier one, and in `<<: [*a, *b]` the earlier mapping (`a`) over the later.
    /// Each key keeps the position of its first pair. A key written twice in one mapping (not
    /// through `<<`) is reported: PyYAML would silently keep the second.
    mutating func pairs(_ mapping: Node.Mapping) -> [(key: Node, value: Node)] {
        var merged: [(key: Node, value: Node)] = [], own: [(key: Node, value: Node)] = []
        var seen = Set<String>()
        for (key, value) in mapping {
            if case .scalar = key, key.tag.description == Tag.Name.merge.rawValue {
                switch value {
                case .mapping(let source):
                    merged += pairs(source)
                case .sequence(let sources):
                    var lists: [[(key: Node, value: Node)]] = []
                    for source in sources {
                        guard case .mapping(let m) = source else {
                            problem(source, "a merge key (<<) lists mappings to merge in, not \(kind(of: source))")
                            continue
                        }
                        lists.append(pairs(m))
                    }
                    for list in lists.reversed() { merged += list }
                case .scalar:
                    problem(value, "a merge key (<<) takes a mapping or a list of mappings (e.g. <<: *defaults), not a scalar")
                }
                continue
            }
            if let name = key.string, case .scalar = key, !seen.insert(name).inserted {
                problem(key, "\"\(name)\" appears twice")
                continue
            }
            own.append((key, value))
        }
        guard !merged.isEmpty else { return own }
        var result: [(key: Node, value: Node)] = []
        var position: [String: Int] = [:]
        for pair in merged + own {
            guard case .scalar = pair.key, let name = pair.key.string else { result.append(pair); continue }
            if let i = position[name] { result[i].value = pair.value } else { position[name] = result.count; result.append(pair) }
        }
        return result
    }

    func kind(of node: Node) -> String {
        switch node {
        case .scalar: return "a scalar"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }

    mutating func input(_ node: Node) -> Recipe.Input? {
        guard case .mapping(let mapping) = node else {
            problem(node, "each models entry must be a mapping {model: PATH, parameters: {...}}")
            return nil
        }
        var kind: Recipe.Input.Kind?, path: String?, parameters: [String: ParameterSetting] = [:]
        for (keyNode, value) in pairs(mapping) {
            switch keyNode.string ?? "" {
            case "model", "task_vector", "lora":
                if kind != nil { problem(keyNode, "give one of model, task_vector or lora, not several"); continue }
                kind = Recipe.Input.Kind(rawValue: keyNode.string!)
                guard let p = value.string else { problem(value, "\(keyNode.string!) must be a path"); continue }
                if p.contains("+") && !FileManager.default.fileExists(atPath: p) {
                    problem(value, "\"\(p)\" looks like mergekit's model+lora syntax, which is not supported",
                            fix: "Give the adapter as its own entry, lora: ADAPTER_DIR (its τ is added to the base)")
                }
                path = p
            case "parameters":
                parameters = settings(value, context: "parameters", perModel: true).0
            default:
                let key = keyNode.string ?? "?"
                problem(keyNode, "unknown key \"\(key)\" in a models entry" + suggestion(key, ["model", "task_vector", "lora", "parameters"]))
            }
        }
        guard let kind, let path else {
            problem(node, "a models entry needs model: PATH (or task_vector: PATH, or lora: ADAPTER_DIR)")
            return nil
        }
        return Recipe.Input(kind: kind, path: path, parameters: parameters, line: line(node))
    }

    mutating func settings(_ node: Node, context: String, perModel: Bool) -> ([String: ParameterSetting], [String: Int]) {
        guard case .mapping(let mapping) = node else {
            problem(node, "\(context) must be a mapping of parameter names to values")
            return ([:], [:])
        }
        var result: [String: ParameterSetting] = [:], lines: [String: Int] = [:]
        for (keyNode, value) in pairs(mapping) {
            guard let key = keyNode.string else { problem(keyNode, "parameter names must be strings"); continue }
            if let setting = self.setting(value, name: key, perModel: perModel) {
                result[key] = setting
                lines[key] = line(keyNode)
            }
        }
        return (result, lines)
    }

    /// A parameter's value; every scalar in it (each number of a gradient, each condition's value)
    /// is recorded with its own line, to be checked against the parameter's rule.
    mutating func setting(_ node: Node, name: String, perModel: Bool) -> ParameterSetting? {
        func site(_ value: ParameterSetting, _ node: Node) {
            sites.append(Recipe.ValueSite(parameter: name, value: value, line: line(node), perModel: perModel))
        }
        switch node {
        case .scalar:
            guard let value = ParameterSetting(scalar: node) else { problem(node, "unreadable value"); return nil }
            site(value, node)
            return value
        case .sequence(let sequence):
            guard !sequence.isEmpty else {
                problem(node, "\(name): [] is empty; give a number, a list of numbers (a gradient over the layers) or a list of {filter, value} conditions")
                return nil
            }
            let numbers = sequence.compactMap { ParameterSetting(scalar: $0)?.number }
            if numbers.count == sequence.count {
                for (element, number) in zip(sequence, numbers) { site(.number(number), element) }
                return .gradient(numbers)
            }
            var conditions: [ParameterSetting.Condition] = []
            for element in sequence {
                guard case .mapping(let m) = element else {
                    problem(element, "a list value must be numbers (a gradient) or {filter: ..., value: ...} conditions")
                    return nil
                }
                let members = pairs(m)
                guard let valueNode = members.first(where: { $0.key.string == "value" })?.value else {
                    problem(element, "a condition needs a value: {filter: ..., value: ...}")
                    return nil
                }
                for (k, _) in members where !["filter", "value"].contains(k.string ?? "") {
                    problem(k, "unknown key \"\(k.string ?? "?")\" in a condition (use filter and value)")
                }
                let filter = members.first(where: { $0.key.string == "filter" })?.value.string
                guard let value = setting(valueNode, name: name, perModel: perModel) else { return nil }
                conditions.append(ParameterSetting.Condition(filter: filter, value: value))
            }
            return .conditions(conditions)
        case .mapping:
            problem(node, "a parameter value must be a number, a string, a list of numbers or a list of conditions")
            return nil
        }
    }

    /// A sweep axis: a list of values, or "start:stop:step" (inclusive, e.g. "0:1:0.05").
    mutating func sweepValues(_ node: Node, name: String) -> [ParameterSetting]? {
        if case .sequence(let sequence) = node {
            let values = sequence.compactMap { setting($0, name: name, perModel: false) }
            if values.isEmpty { problem(node, "a sweep axis needs at least one value") }
            return values.isEmpty ? nil : values
        }
        if let text = node.string {
            switch SweepGrid.values(text) {
            case .success(let grid):
                for value in grid { sites.append(Recipe.ValueSite(parameter: name, value: .number(value), line: line(node), perModel: false)) }
                return grid.map { .number($0) }
            case .failure(let failure):
                problem(node, "sweep \(name): \(failure.reason)")
                return nil
            }
        }
        problem(node, "a sweep axis must be a list or \"start:stop:step\" (e.g. \"0:1:0.05\")")
        return nil
    }

    /// " (did you mean …?)" for a close spelling.
    func suggestion(_ word: String, _ candidates: [String]) -> String {
        guard let best = candidates.min(by: { editDistance(word, $0) < editDistance(word, $1) }),
              editDistance(word, best) <= max(2, best.count / 3) else { return "" }
        return " (did you mean \"\(best)\"?)"
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}

extension ParameterSetting {
    /// A scalar's value as recipes read it: true/false/yes/no, a number (a plain scalar YAML
    /// resolves as an int or a float, including .nan and .inf), else the text. (Yams converts
    /// any text with a colon to a number when asked, so the resolved type decides.)
    init?(scalar node: Node) {
        guard case .scalar(let scalar) = node else { return nil }
        let type = node.tag.description
        if let b = node.bool, ["true", "false", "yes", "no"].contains(scalar.string.lowercased()) { self = .bool(b) }
        else if type == Tag.Name.float.rawValue || type == Tag.Name.int.rawValue, let v = node.float { self = .number(v) }
        else { self = .string(scalar.string) }
    }

    /// `text` read as the plain (unquoted) scalar it would be in a recipe: a bool, a number or a
    /// string. Only the one value is read: no YAML structure, so no text can add keys.
    public init(scalarText text: String) {
        self = ParameterSetting(scalar: .scalar(.init(text))) ?? .string(text)
    }
}

extension Recipe {
    /// The recipe written as YAML: keys in a fixed order, every string double-quoted (so that no
    /// path or value is read back as anything else), numbers in the form YAML 1.1 loaders
    /// (PyYAML, Yams) read as floats.
    static func yaml(method: String, baseModel: String?, inputs: [Input], parameters: [String: ParameterSetting],
                     sweep: [(name: String, values: [ParameterSetting])]) -> String {
        func string(_ text: String) -> Node { .scalar(.init(text, Tag(.str), .doubleQuoted)) }
        // Keys such as merge_method or lambda stay plain; anything a loader could read as another type is quoted.
        func key(_ text: String) -> Node {
            let plain = !text.isEmpty && text.allSatisfy { ("a"..."z").contains($0) || $0 == "_" }
                && !["y", "n", "yes", "no", "on", "off", "true", "false", "null"].contains(text)
            return .scalar(.init(text, Tag(.str), plain ? .plain : .doubleQuoted))
        }
        func number(_ value: Double) -> Node {
            var text: String
            if value.isNaN { text = ".nan" } else if value.isInfinite { text = value < 0 ? "-.inf" : ".inf" } else {
                text = MethodParameter.format(value)
                if let e = text.firstIndex(where: { $0 == "e" }), !text[..<e].contains(".") { text.insert(contentsOf: ".0", at: e) }
            }
            return .scalar(.init(text, Tag(.float), .plain))
        }
        func value(_ setting: ParameterSetting) -> Node {
            switch setting {
            case .number(let v): return number(v)
            case .bool(let b): return .scalar(.init(b ? "true" : "false", Tag(.bool), .plain))
            case .string(let s): return string(s)
            case .gradient(let values): return .sequence(.init(values.map(number), Tag(.seq), .flow))
            case .conditions(let conditions):
                return .sequence(.init(conditions.map { c in
                    .mapping(.init((c.filter.map { [(key("filter"), string($0))] } ?? []) + [(key("value"), value(c.value))], Tag(.map), .flow))
                }, Tag(.seq), .block))
            }
        }
        func settings(_ settings: [String: ParameterSetting]) -> Node {
            .mapping(.init(settings.sorted { $0.key < $1.key }.map { (key($0.key), value($0.value)) }, Tag(.map), .block))
        }
        var pairs: [(Node, Node)] = [(key("merge_method"), string(method))]
        if let baseModel { pairs.append((key("base_model"), string(baseModel))) }
        pairs.append((key("models"), .sequence(.init(inputs.map { input in
            var entry: [(Node, Node)] = [(key(input.kind.rawValue), string(input.path))]
            if !input.parameters.isEmpty { entry.append((key("parameters"), settings(input.parameters))) }
            return .mapping(.init(entry, Tag(.map), .block))
        }, Tag(.seq), .block))))
        if !parameters.isEmpty { pairs.append((key("parameters"), settings(parameters))) }
        if !sweep.isEmpty {
            pairs.append((key("sweep"), .mapping(.init(sweep.map { (key($0.name), .sequence(.init($0.values.map(value), Tag(.seq), .flow))) },
                                                       Tag(.map), .block))))
        }
        return (try? Yams.serialize(node: .mapping(.init(pairs, Tag(.map), .block)), allowUnicode: true)) ?? ""
    }
}
