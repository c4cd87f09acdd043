/// The parameter values a method is built from, for one tensor: what the front end was given,
/// then the preset's defaults.
///
/// A value is looked up in the model's own parameters (recipes only), then the merge's, then the
/// preset: its fixed values first (they override whatever was given), then its defaults. Recipe
/// values may be gradients or filtered conditions, resolved here for `tensor` at layer position
/// `t`. The command line gives one value per parameter and no per-model values (`models` nil).
public struct MethodArguments: Sendable {
    let preset: MethodDescription.Preset
    let global: [String: ParameterSetting]
    /// Each model's parameters; nil on the command line.
    let models: [[String: ParameterSetting]]?
    let tensor: String
    let t: Double
    let seed: UInt64
    /// Whether the merge has a base model in mergekit's sense: a recipe's base_model (the command
    /// line always has one). Without it a recipe's first model anchors the task vectors, and the
    /// methods that combine the base with the models (`Kind.baseAmongModels`) work on the models
    /// alone.
    var hasBaseModel = true
    /// Each model's own name for the tensor, when it differs from `tensor` (a slice: layer i of
    /// the output is layer j of a source). A model's values — its own, then the merge's — are
    /// resolved for its name, as mergekit resolves per-model parameters for each input tensor.
    var modelTensors: [String]? = nil

    /// Whether the values come from the command line (one per parameter, nothing per model).
    var isCommandLine: Bool { models == nil }

    /// The value given for `key` (model first), not a default.
    func given(_ key: String, model: Int? = nil) -> ParameterSetting? {
        let name = model.flatMap { modelTensors?[$0] } ?? tensor
        if let model, let models, let s = models[model][key]?.value(for: name, t: t) { return s }
        return global[key]?.value(for: name, t: t)
    }

    /// The value in force: fixed by the preset, given, or the preset's default.
    func setting(_ key: String, model: Int? = nil) -> ParameterSetting? {
        preset.fixed[key] ?? given(key, model: model) ?? preset.defaults[key]
    }

    /// Whether `key` was given anywhere (for the merge or for a model).
    func has(_ key: String) -> Bool { global[key] != nil || (models ?? []).contains { $0[key] != nil } }

    /// A number (true and false count as 1 and 0); `fallback` when neither given nor defaulted.
    func number(_ key: String, model: Int? = nil, fallback: Double = 0) -> Double {
        if let value = Self.number(given(key, model: model)) { return value }
        return Self.number(preset.defaults[key]) ?? fallback
    }

    static func number(_ setting: ParameterSetting?) -> Double? {
        switch setting {
        case .number(let v)?: return v
        case .bool(let b)?: return b ? 1 : 0
        default: return nil
        }
    }

    /// true or false (a number counts as true unless 0); the preset's default for anything else.
    func bool(_ key: String) -> Bool {
        Self.bool(preset.fixed[key] ?? given(key)) ?? Self.bool(preset.defaults[key]) ?? false
    }

    static func bool(_ setting: ParameterSetting?) -> Bool? {
        switch setting {
        case .bool(let b)?: return b
        case .number(let v)?: return v != 0
        default: return nil
        }
    }

    /// `merge`: as given; else, under a preset with mergekit's convention, `normalized` or `sum`
    /// as a given `normalize` says; else the preset's default.
    func aggregation() throws(MergeKitError) -> TaskVectorMerge.Aggregation {
        if preset.normalizeSelectsMerge && given("merge") == nil, let normalize = Self.bool(given("normalize")) {
            return normalize ? .normalized : .sum
        }
        return try choice("merge")
    }

    /// One value per model in a recipe, one for all on the command line; models without one
    /// get the merge's value, then `absent` (the preset's default when nil).
    func perModel(_ key: String, absent: Double? = nil) -> TaskVectorMerge.PerInput {
        guard let models else { return .init(number(key)) }
        return .init(models.indices.map { model in
            if let absent, Self.number(given(key, model: model)) == nil { return absent }
            return number(key, model: model)
        })
    }

    /// The models' weights (1 where not given).
    func weights() -> [Double] { (models ?? []).indices.map { number("weight", model: $0, fallback: 1) } }

    /// A word of `E` (a recipe may write `task_arithmetic` for `task-arithmetic`): fixed, given or
    /// the preset's default.
    func choice<E: MethodChoice>(_ key: String, _ type: E.Type = E.self) throws(MergeKitError) -> E {
        guard let s = setting(key) else { preconditionFailure("\(key) has no default in preset \(preset.name)") }
        let text: String
        switch s {
        case .string(let v): text = v
        default: throw invalid(key, s.description, E.words)
        }
        guard let value = E(rawValue: text) ?? E(rawValue: text.replacingOccurrences(of: "_", with: "-")) else {
            throw invalid(key, String(reflecting: text), E.words)
        }
        return value
    }

    func invalid(_ name: String, _ value: String, _ allowed: [String]) -> MergeKitError {
        MergeKitError(.invalidArgument, "\(name) = \(value) is not one of \(allowed.joined(separator: ", "))",
                      fix: "Use one of \(allowed.joined(separator: ", "))")
    }
}
