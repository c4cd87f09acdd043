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
public struct Recipe: Sendable {
    public struct Input: Sendable {
        public enum Kind: String, Sendable { case model, taskVector = "task_vector", lora }
        public let kind: Kind
        public let path: String
        public let parameters: [String: ParameterSetting]
        public let line: Int
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

    static let topLevelKeys = ["merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "sweep"]
    /// mergekit keys MergeKit does not implement (reported as such, not as typos).
    static let unsupportedKeys = ["slices", "modules", "tokenizer_source", "tokenizer", "chat_template", "base_model_lora"]
    static let dtypeNames: [String: DType] = ["float32": .F32, "float16": .F16, "bfloat16": .BF16, "float64": .F64,
                                             "fp32": .F32, "fp16": .F16, "bf16": .BF16]

    /// Parses `path`. Schema problems are kept and reported by `plan` together with the problems
    /// found against the method and the checkpoints; unreadable YAML throws at once.
    public static func load(path: String) throws(MergeKitError) -> Recipe {
        let bytes = try FileSystem.readFile(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw MergeKitError(.invalidArgument, file: path, "is not UTF-8 text", fix: "Save the recipe as UTF-8 YAML or JSON")
        }
        return try parse(text, path: path)
    }

    /// Parses recipe `text` (named `path` in messages).
    public static func parse(_ text: String, path: String) throws(MergeKitError) -> Recipe {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw MergeKitError(.invalidArgument, file: path, "is empty", fix: "Write a recipe with merge_method and models")
            }
            root = node
        } catch let error as MergeKitError {
            throw error
        } catch {
            throw MergeKitError(.invalidArgument, file: path, "is not valid YAML or JSON (\(error))", fix: "Fix the syntax at the position shown")
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
        var seen = Set<String>()
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else { problem(keyNode, "keys must be strings"); continue }
            guard seen.insert(key).inserted else { problem(keyNode, "\"\(key)\" appears twice"); continue }
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
                (parameters, parameterLines) = settings(value, context: "parameters")
            case "dtype", "out_dtype":
                guard let name = value.string, let d = Recipe.dtypeNames[name.lowercased()] else {
                    problem(value, "\(key) must be one of float32, float16, bfloat16, float64")
                    continue
                }
                if key == "dtype" { dtype = d } else { outDType = d }
            case "sweep":
                guard case .mapping(let axes) = value else { problem(value, "sweep must map parameter names to lists or ranges"); continue }
                for (axisKey, axisValue) in axes {
                    guard let name = axisKey.string else { problem(axisKey, "sweep keys must be parameter names"); continue }
                    if let values = sweepValues(axisValue) { sweep.append((name, values)) }
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
        if method.isEmpty && !mapping.contains(where: { $0.key.string == "merge_method" }) {
            problem(root, "merge_method is missing", fix: "Add e.g. merge_method: ties")
        }
        if inputs.isEmpty && !mapping.contains(where: { $0.key.string == "models" }) {
            problem(root, "models is missing", fix: "List the fine-tuned models under models:")
        }
        return Recipe(path: path, text: text, method: method, methodLine: methodLine, baseModel: base, baseLine: baseLine,
                      inputs: inputs, parameters: parameters, parameterLines: parameterLines, dtype: dtype,
                      outDType: outDType, sweep: sweep, schemaProblems: problems.items)
    }

    mutating func input(_ node: Node) -> Recipe.Input? {
        guard case .mapping(let mapping) = node else {
            problem(node, "each models entry must be a mapping {model: PATH, parameters: {...}}")
            return nil
        }
        var kind: Recipe.Input.Kind?, path: String?, parameters: [String: ParameterSetting] = [:]
        for (keyNode, value) in mapping {
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
                parameters = settings(value, context: "parameters").0
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

    mutating func settings(_ node: Node, context: String) -> ([String: ParameterSetting], [String: Int]) {
        guard case .mapping(let mapping) = node else {
            problem(node, "\(context) must be a mapping of parameter names to values")
            return ([:], [:])
        }
        var result: [String: ParameterSetting] = [:], lines: [String: Int] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else { problem(keyNode, "parameter names must be strings"); continue }
            if let setting = self.setting(value) {
                result[key] = setting
                lines[key] = line(keyNode)
            }
        }
        return (result, lines)
    }

    mutating func setting(_ node: Node) -> ParameterSetting? {
        switch node {
        case .scalar:
            if let b = node.bool, node.string.map({ ["true", "false", "yes", "no"].contains($0.lowercased()) }) == true { return .bool(b) }
            if let v = node.float { return .number(v) }
            if let s = node.string { return .string(s) }
            problem(node, "unreadable value")
            return nil
        case .sequence(let sequence):
            if sequence.allSatisfy({ $0.float != nil && $0.mapping == nil }) {
                return .gradient(sequence.map { $0.float! })
            }
            var conditions: [ParameterSetting.Condition] = []
            for element in sequence {
                guard case .mapping(let m) = element, let valueNode = m.first(where: { $0.key.string == "value" })?.value else {
                    problem(element, "a list value must be numbers (a gradient) or {filter: ..., value: ...} conditions")
                    return nil
                }
                for (k, _) in m where !["filter", "value"].contains(k.string ?? "") {
                    problem(k, "unknown key \"\(k.string ?? "?")\" in a condition (use filter and value)")
                }
                let filter = m.first(where: { $0.key.string == "filter" })?.value.string
                guard let value = setting(valueNode) else { return nil }
                conditions.append(ParameterSetting.Condition(filter: filter, value: value))
            }
            return .conditions(conditions)
        case .mapping:
            problem(node, "a parameter value must be a number, a string, a list of numbers or a list of conditions")
            return nil
        }
    }

    /// A sweep axis: a list of values, or "start:stop:step" (inclusive, e.g. "0:1:0.05").
    mutating func sweepValues(_ node: Node) -> [ParameterSetting]? {
        if case .sequence(let sequence) = node {
            let values = sequence.compactMap { setting($0) }
            if values.isEmpty { problem(node, "a sweep axis needs at least one value") }
            return values.isEmpty ? nil : values
        }
        if let text = node.string, let grid = SweepGrid.parse(text) { return grid.map { .number($0) } }
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

/// Grids for sweeps: "start:stop:step" (inclusive of stop, within rounding) or "a,b,c".
public enum SweepGrid {
    public static func parse(_ text: String) -> [Double]? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.contains(":") {
            let parts = trimmed.split(separator: ":").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 3, let start = parts[0], let stop = parts[1], let step = parts[2],
                  step > 0, stop >= start, (stop - start) / step < 100_000 else { return nil }
            let count = Int(((stop - start) / step + 1e-9).rounded(.down)) + 1
            // Values are computed as start + i·step and rounded to 12 digits, so 0:1:0.05 gives 0.05, not 0.05000000000000001.
            return (0..<count).map { (((start + Double($0) * step) * 1e12).rounded() / 1e12) }
        }
        let values = trimmed.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { return nil }
        return values.map { $0! }
    }
}
