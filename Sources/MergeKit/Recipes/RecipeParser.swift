import Foundation
import Yams

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
        var modules: [Recipe.Module] = []
        var parameters: [String: ParameterSetting] = [:], parameterLines: [String: Int] = [:]
        var dtype: DType?, outDType: DType?
        var sweep: [(name: String, values: [ParameterSetting])] = []
        var name: String?, nameLine = 0
        var tokenizer = TokenizerSettings()
        var evaluation: SweepEvaluation?, evaluationNode: Node?
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
            case "slices":
                if let slices = self.slices(value) {
                    modules = [Recipe.Module(name: nil, slices: slices, parameters: [:], parameterLines: [:], line: line(keyNode))]
                }
            case "modules":
                modules = self.modules(value)
            case "parameters":
                (parameters, parameterLines) = settings(value, context: "parameters", perModel: false)
            case "dtype", "out_dtype":
                guard let name = value.string, let d = Recipe.dtypeNames[name.lowercased()] else {
                    problem(value, "\(key) must be one of float32, float16, bfloat16, float64")
                    continue
                }
                if key == "dtype" { dtype = d } else { outDType = d }
            case "name":
                guard let text = value.string, case .scalar = value else { problem(value, "name must be a string"); continue }
                if let reason = RecipeGraph.nameProblem(text) {
                    problem(value, "name \"\(text)\" \(reason)", fix: "Name the document with letters, digits, - and _ (it names its output in the work directory)")
                }
                name = text
                nameLine = line(value)
            case "sweep":
                guard case .mapping(let axes) = value else { problem(value, "sweep must map parameter names to lists or ranges"); continue }
                for (axisKey, axisValue) in self.pairs(axes) {
                    guard let name = axisKey.string else { problem(axisKey, "sweep keys must be parameter names"); continue }
                    if let values = sweepValues(axisValue, name: name) { sweep.append((name, values)) }
                }
            case "eval":
                evaluation = self.evaluation(value)
                evaluationNode = keyNode
            case "tokenizer_source":
                tokenizerSource(value, into: &tokenizer)
            case "tokenizer":
                tokenizerBlock(value, into: &tokenizer)
            case "chat_template":
                chatTemplate(value, into: &tokenizer)
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
        // mergekit takes exactly one of models, slices and modules.
        let forms = pairs.filter { ["models", "slices", "modules"].contains($0.key.string ?? "") }
        if forms.isEmpty {
            problem(root, "models is missing", fix: "List the fine-tuned models under models: (or the layers under slices:)")
        } else if forms.count > 1 {
            problem(forms[1].key, "give one of models, slices and modules, not \(forms.map { $0.key.string ?? "" }.joined(separator: " and "))",
                    fix: "A recipe merges whole models (models:) or stacks layer ranges (slices:, or modules: per module)")
        }
        let sources = pairs.filter { ["tokenizer_source", "tokenizer"].contains($0.key.string ?? "") }
        if sources.count > 1 {
            problem(sources[1].key, "give tokenizer_source or tokenizer, not both (as in mergekit)",
                    fix: "Write the source under tokenizer: {source: ...}, or drop the tokenizer block")
        }
        if let evaluationNode, sweep.isEmpty {
            problem(evaluationNode, "eval scores a sweep's points, but the recipe has no sweep: section",
                    fix: "Add a sweep: section (e.g. sweep: {lambda: \"0:1:0.1\"}), or score one model with merge-cli eval")
        }
        var recipe = Recipe(path: path, text: text, method: method, methodLine: methodLine, baseModel: base, baseLine: baseLine,
                            inputs: inputs, modules: modules, parameters: parameters, parameterLines: parameterLines, dtype: dtype,
                            outDType: outDType, sweep: sweep, schemaProblems: problems.items, sites: sites)
        recipe.name = name
        recipe.nameLine = nameLine
        recipe.tokenizer = tokenizer.isEmpty ? nil : tokenizer
        recipe.evaluation = evaluation.map { evaluation in
            var resolved = evaluation
            resolved.tasks = evaluation.tasks.map {
                .init(name: $0.name, isDefaultName: $0.isDefaultName, head: recipe.resolvedPath($0.head), data: recipe.resolvedPath($0.data))
            }
            return resolved
        }
        recipe.line = line(root)
        return recipe
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
                guard let p = modelPath(value, key: keyNode.string!) else { continue }
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

    /// A `model:` (or `task_vector:`, `lora:`) value: a path (or, in a multi-document recipe, a
    /// document's name, or MODEL+ADAPTER: `ModelReference`).
    mutating func modelPath(_ value: Node, key: String) -> String? {
        guard let p = value.string else { problem(value, "\(key) must be a path"); return nil }
        return p
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
    /// " (did you mean …?)" for a misspelt key: the nearest candidate within a few edits, unless
    /// the word is only the first part of a candidate (`base` for `base_model`), which is meant
    /// more often than a near spelling of a short key (`base` → `name`).
    func suggestion(_ word: String, _ candidates: [String]) -> String {
        let nearest = candidates.min(by: { editDistance(word, $0) < editDistance(word, $1) })
        let abbreviated = candidates.first { $0.hasPrefix(word + "_") }
        if let nearest, editDistance(word, nearest) <= 1 { return " (did you mean \"\(nearest)\"?)" }
        if let abbreviated { return " (did you mean \"\(abbreviated)\"?)" }
        guard let best = nearest, editDistance(word, best) <= max(2, best.count / 3) else { return "" }
        return " (did you mean \"\(best)\"?)"
    }
}
