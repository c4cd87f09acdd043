import Yams

/// The layer-wise parts of a recipe (`slices:`, `modules:`), in mergekit's schema: a slice has
/// `sources` (each a `model` with a `layer_range: [start, end]` and optional `parameters`) and
/// optionally its own `base_model` and `parameters` (`residual_weight`, which mergekit reads and
/// never uses, is accepted); a module has `slices` or `models` (not both) and optional `parameters`.
extension RecipeParser {
    static let sliceKeys = ["sources", "base_model", "parameters", "residual_weight"]
    static let sourceKeys = ["model", "layer_range", "parameters"]
    static let moduleKeys = ["slices", "models", "parameters"]

    mutating func slices(_ node: Node) -> [Recipe.Slice]? {
        guard case .sequence(let sequence) = node, !sequence.isEmpty else {
            problem(node, "slices must be a non-empty list of {sources: [{model: PATH, layer_range: [START, END]}, ...]}")
            return nil
        }
        let slices = sequence.compactMap { slice($0) }
        return slices.count == sequence.count ? slices : nil
    }

    mutating func slice(_ node: Node) -> Recipe.Slice? {
        guard case .mapping(let mapping) = node else {
            problem(node, "each slice must be a mapping {sources: [...], parameters: {...}}")
            return nil
        }
        var sources: [Recipe.Slice.Source]?, base: String?
        var parameters: [String: ParameterSetting] = [:], lines: [String: Int] = [:]
        var fine = true
        for (keyNode, value) in pairs(mapping) {
            switch keyNode.string ?? "" {
            case "sources":
                guard case .sequence(let sequence) = value, !sequence.isEmpty else {
                    problem(value, "sources must be a non-empty list of {model: PATH, layer_range: [START, END]}")
                    fine = false
                    continue
                }
                let parsed = sequence.compactMap { source($0) }
                if parsed.count == sequence.count { sources = parsed } else { fine = false }
            case "base_model":
                if let p = value.string { base = p } else { problem(value, "base_model must be a path"); fine = false }
            case "parameters":
                (parameters, lines) = settings(value, context: "parameters", perModel: false)
            case "residual_weight":
                if ParameterSetting(scalar: value)?.number == nil { problem(value, "residual_weight must be a number"); fine = false }
            default:
                let key = keyNode.string ?? "?"
                problem(keyNode, "unknown key \"\(key)\" in a slice" + suggestion(key, Self.sliceKeys),
                        fix: "A slice has " + Self.sliceKeys.joined(separator: ", "))
                fine = false
            }
        }
        guard fine else { return nil }
        guard let sources else {
            problem(node, "a slice needs sources: [{model: PATH, layer_range: [START, END]}, ...]")
            return nil
        }
        return Recipe.Slice(sources: sources, baseModel: base, parameters: parameters, parameterLines: lines, line: line(node),
                            fromModels: false)
    }

    mutating func source(_ node: Node) -> Recipe.Slice.Source? {
        guard case .mapping(let mapping) = node else {
            problem(node, "each source must be a mapping {model: PATH, layer_range: [START, END]}")
            return nil
        }
        var path: String?, range: (Int, Int)?, parameters: [String: ParameterSetting] = [:]
        var fine = true
        for (keyNode, value) in pairs(mapping) {
            switch keyNode.string ?? "" {
            case "model":
                if let p = modelPath(value, key: "model") { path = p } else { fine = false }
            case "layer_range":
                if let r = layerRange(value) { range = r } else { fine = false }
            case "parameters":
                parameters = settings(value, context: "parameters", perModel: true).0
            default:
                let key = keyNode.string ?? "?"
                problem(keyNode, "unknown key \"\(key)\" in a slice's source" + suggestion(key, Self.sourceKeys),
                        fix: "A source has " + Self.sourceKeys.joined(separator: ", "))
                fine = false
            }
        }
        guard fine else { return nil }
        guard let path, let range else {
            problem(node, "a source needs model: PATH and layer_range: [START, END]" + (path == nil ? "" : " (layer_range is missing)"))
            return nil
        }
        return Recipe.Slice.Source(path: path, start: range.0, end: range.1, parameters: parameters, line: line(node))
    }

    /// `[START, END]`: two whole numbers (layers START to END − 1); the range itself is checked
    /// against the model when it is opened.
    mutating func layerRange(_ node: Node) -> (Int, Int)? {
        let fix = "Write layer_range: [START, END] with whole numbers: layers START to END − 1, e.g. [0, 16]"
        guard case .sequence(let sequence) = node, sequence.count == 2 else {
            problem(node, "layer_range must be a list of two layer indices [START, END]", fix: fix)
            return nil
        }
        let bounds = sequence.compactMap { element -> Int? in
            guard let v = ParameterSetting(scalar: element)?.number, v == v.rounded(), abs(v) < 1e9 else { return nil }
            return Int(v)
        }
        guard bounds.count == 2 else {
            problem(node, "layer_range must hold two whole numbers", fix: fix)
            return nil
        }
        return (bounds[0], bounds[1])
    }

    mutating func modules(_ node: Node) -> [Recipe.Module] {
        guard case .mapping(let mapping) = node, !mapping.isEmpty else {
            problem(node, "modules must map module names to {slices: [...]} or {models: [...]}")
            return []
        }
        var modules: [Recipe.Module] = []
        for (keyNode, value) in pairs(mapping) {
            guard let name = keyNode.string else { problem(keyNode, "module names must be strings"); continue }
            if let module = module(name, value) { modules.append(module) }
        }
        return modules
    }

    mutating func module(_ name: String, _ node: Node) -> Recipe.Module? {
        guard case .mapping(let mapping) = node else {
            problem(node, "module \(name) must be a mapping {slices: [...]} or {models: [...]}")
            return nil
        }
        var slices: [Recipe.Slice]?
        var parameters: [String: ParameterSetting] = [:], lines: [String: Int] = [:]
        var given: [Node] = []
        var fine = true
        for (keyNode, value) in pairs(mapping) {
            switch keyNode.string ?? "" {
            case "slices":
                given.append(keyNode)
                if let s = self.slices(value) { slices = s } else { fine = false }
            case "models":
                given.append(keyNode)
                guard case .sequence(let sequence) = value, !sequence.isEmpty else {
                    problem(value, "models must be a non-empty list of {model: PATH, parameters: {...}}")
                    fine = false
                    continue
                }
                var sources: [Recipe.Slice.Source] = []
                for entry in sequence {
                    guard let input = self.input(entry) else { fine = false; continue }
                    guard input.kind == .model else {
                        problem(entry, "a module's models entry takes model: PATH (task vectors and LoRA adapters merge whole models, under models:)")
                        fine = false
                        continue
                    }
                    sources.append(Recipe.Slice.Source(path: input.path, start: nil, end: nil, parameters: input.parameters, line: input.line))
                }
                slices = [Recipe.Slice(sources: sources, baseModel: nil, parameters: [:], parameterLines: [:], line: line(value), fromModels: true)]
            case "parameters":
                (parameters, lines) = settings(value, context: "parameters", perModel: false)
            default:
                let key = keyNode.string ?? "?"
                problem(keyNode, "unknown key \"\(key)\" in module \(name)" + suggestion(key, Self.moduleKeys),
                        fix: "A module has " + Self.moduleKeys.joined(separator: ", "))
                fine = false
            }
        }
        if given.count != 1 {
            problem(given.count > 1 ? given[1] : node, "module \(name) needs one of slices and models" + (given.count > 1 ? ", not both" : ""))
            return nil
        }
        guard fine, let slices else { return nil }
        return Recipe.Module(name: name, slices: slices, parameters: parameters, parameterLines: lines, line: line(node))
    }
}
