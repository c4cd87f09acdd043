import Foundation

/// How finely a data-driven merge scales the task vectors.
public enum CoefficientGranularity: String, Sendable, CaseIterable {
    /// One coefficient per task: θ = θ₀ + Σₜ λₜ τₜ (task-wise AdaMerging; aTLAS without blocks).
    case taskWise = "task-wise"
    /// One coefficient per task per parameter tensor ("layer" in AdaMerging's code, "parameter
    /// block" in aTLAS's): θ_l = θ₀_l + Σₜ λₜₗ τₜₗ for every tensor l of the encoder, in
    /// state-dict order (the order of FusionBench's `named_parameters()` and of aTLAS's
    /// `make_functional` parameter list).
    case layerWise = "layer-wise"
}

/// The learned coefficients of a data-driven merge (AdaMerging, aTLAS): λ [tasks, blocks], with
/// the tensors each block covers, so that they can be applied again without data.
///
/// JSON (`json`, `init(json:file:)`):
///
///     {"method": "adamerging", "granularity": "layer-wise", "linearized": false,
///      "base": "…", "models": ["…", …], "tensors": ["vision_model.embeddings.class_embedding", …],
///      "coefficients": [[λ₁₁, λ₁₂, …], …],        // one row per model; one value per tensor
///      "steps": 1000, "losses": [first, last]}
///
/// (`tensors` is absent and each row has one value when task-wise). `recipe` writes the same
/// merge as a mergekit-style task-arithmetic recipe, λ as per-model `weight` conditions on the
/// exact tensor names, that `merge-cli run` merges without data.
public struct MergingCoefficients: Sendable, Equatable {
    public var method: String
    public var granularity: CoefficientGranularity
    /// Whether the task vectors are those of linearized models (θ = params.*).
    public var linearized: Bool
    /// The base and the models, as given.
    public var base: String
    public var models: [String]
    /// The encoder's tensor names, in order (the blocks of a layer-wise merge; empty task-wise).
    public var tensors: [String]
    /// λ, row-major [models, blocks] (blocks = 1 task-wise, `tensors.count` layer-wise).
    public var values: [Float]
    /// Optimiser steps taken, and the loss of the first and last.
    public var steps: Int
    public var losses: [Double]

    public init(method: String, granularity: CoefficientGranularity, linearized: Bool, base: String, models: [String],
                tensors: [String], values: [Float], steps: Int = 0, losses: [Double] = []) {
        precondition(values.count == models.count * (granularity == .taskWise ? 1 : tensors.count))
        (self.method, self.granularity, self.linearized, self.base, self.models) = (method, granularity, linearized, base, models)
        (self.tensors, self.values, self.steps, self.losses) = (tensors, values, steps, losses)
    }

    /// Coefficients per model.
    public var blocks: Int { granularity == .taskWise ? 1 : tensors.count }

    /// λ of model `task` on tensor `tensor` (an index into `tensors`).
    public func value(task: Int, tensor: Int) -> Float {
        values[task * blocks + (granularity == .taskWise ? 0 : tensor)]
    }

    public var json: JSONValue {
        var members = [
            JSONMember("method", .string(method)),
            JSONMember("granularity", .string(granularity.rawValue)),
            JSONMember("linearized", .bool(linearized)),
            JSONMember("base", .string(base)),
            JSONMember("models", .array(models.map { .string($0) })),
        ]
        if granularity == .layerWise { members.append(JSONMember("tensors", .array(tensors.map { .string($0) }))) }
        let b = blocks
        members.append(JSONMember("coefficients", .array((0..<models.count).map { t in
            .array((0..<b).map { .double(Double(values[t * b + $0])) })
        })))
        members.append(JSONMember("steps", .int(steps)))
        members.append(JSONMember("losses", .array(losses.map { .double($0) })))
        return .object(members)
    }

    /// Reads coefficients written by `json` (from `file`, for messages).
    public init(json: JSONValue, file: String) throws(MergeKitError) {
        func bad(_ what: String) -> MergeKitError {
            MergeKitError(.invalidArgument, file: file, "is not a coefficients file: \(what)",
                          fix: "Pass the JSON that adamerging or atlas wrote with --coefficients-out")
        }
        guard let object = json.objectMembers else { throw bad("it holds \(json.kindName), not an object") }
        func member(_ key: String) -> JSONValue? { object.first { $0.key == key }?.value }
        guard let granularityText = member("granularity")?.stringValue, let granularity = CoefficientGranularity(rawValue: granularityText) else {
            throw bad("\"granularity\" must be \"task-wise\" or \"layer-wise\"")
        }
        guard let models = member("models")?.arrayValue?.compactMap(\.stringValue), !models.isEmpty else {
            throw bad("\"models\" must be a non-empty list of paths")
        }
        let tensors = member("tensors")?.arrayValue?.compactMap(\.stringValue) ?? []
        if granularity == .layerWise && tensors.isEmpty { throw bad("a layer-wise file needs \"tensors\"") }
        guard let rows = member("coefficients")?.arrayValue, rows.count == models.count else {
            throw bad("\"coefficients\" must hold one row per model (\(models.count))")
        }
        let blocks = granularity == .taskWise ? 1 : tensors.count
        var values: [Float] = []
        for (t, row) in rows.enumerated() {
            guard let numbers = row.arrayValue?.compactMap(\.doubleValue), numbers.count == blocks,
                  numbers.allSatisfy(\.isFinite) else {
                throw bad("row \(t) of \"coefficients\" must hold \(blocks) finite number\(blocks == 1 ? "" : "s")")
            }
            values += numbers.map { Float($0) }
        }
        self.init(method: member("method")?.stringValue ?? "", granularity: granularity,
                  linearized: { if case .bool(let b) = member("linearized") { return b } else { return false } }(),
                  base: member("base")?.stringValue ?? "", models: models, tensors: tensors, values: values,
                  steps: member("steps")?.nonNegativeInt ?? 0,
                  losses: member("losses")?.arrayValue?.compactMap(\.doubleValue) ?? [])
    }

    /// Reads a coefficients file.
    public init(path: String) throws(MergeKitError) {
        let bytes = try FileSystem.readFile(path, limit: 1 << 28)
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw MergeKitError(.invalidArgument, file: path, "is not valid JSON (\(error.description))",
                                fix: "Pass the JSON that adamerging or atlas wrote with --coefficients-out")
        }
        try self.init(json: json, file: path)
    }

    /// A mergekit-style recipe (YAML) that merges θ = θ₀ + Σₜ λₜₗ τₜₗ without data: task
    /// arithmetic at λ = 1 with each model's λₜₗ as `weight` conditions on the exact tensor names
    /// (conditions match by substring, and no encoder tensor's name is part of another's), falling
    /// back to 0 (the base's value) for every other tensor.
    public var recipe: String {
        func quoted(_ s: String) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        func number(_ x: Float) -> String { "\(x)" }
        var lines = ["# \(method) (\(granularity.rawValue)\(linearized ? ", linearized" : "")): θ = θ₀ + Σ λ·τ, learned on data",
                     "merge_method: task_arithmetic", "base_model: \(quoted(base))", "parameters:", "  lambda: 1.0", "models:"]
        for (t, model) in models.enumerated() {
            lines.append("  - model: \(quoted(model))")
            lines.append("    parameters:")
            if granularity == .taskWise {
                lines.append("      weight: \(number(values[t]))")
                continue
            }
            lines.append("      weight:")
            for (l, name) in tensors.enumerated() {
                lines.append("        - {filter: \(quoted(name)), value: \(number(values[t * blocks + l]))}")
            }
            lines.append("        - {value: 0.0}")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
