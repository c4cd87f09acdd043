/// A recipe parameter's value, in mergekit's vocabulary:
///
/// - a scalar (`0.5`, `true`, `"weighted"`);
/// - a **gradient**: a list of numbers interpolated piecewise-linearly across the layers —
///   layer i of n gets t = i/(n − 1) (t = 0 for tensors outside the layers, such as embeddings;
///   in a slice, i and n count the slice's layers, as mergekit counts them; `LayerLayout` tells
///   which tensors form a layer), and the value at position t·(k − 1) of the k-point list;
/// - a list of **conditions** `{filter: "self_attn", value: 0.3}`: the first whose filter is a
///   substring of the tensor name (or that has no filter, or `"*"`) gives the value, which may
///   itself be a scalar or a gradient.
public indirect enum ParameterSetting: Sendable, Equatable, CustomStringConvertible {
    case number(Double)
    case bool(Bool)
    case string(String)
    case gradient([Double])
    case conditions([Condition])

    public struct Condition: Sendable, Equatable {
        public let filter: String?
        public let value: ParameterSetting
    }

    /// The scalar value for `tensor` at layer position `t` ∈ [0, 1] (nil when no condition matches).
    public func value(for tensor: String, t: Double) -> ParameterSetting? {
        switch self {
        case .number, .bool, .string:
            return self
        case .gradient(let values):
            guard !values.isEmpty else { return nil }
            let scaled = t * Double(values.count - 1)
            let i0 = min(values.count - 1, Int(scaled.rounded(.down)))
            let i1 = min(values.count - 1, i0 + 1)
            let fraction = scaled - Double(i0)
            return .number((1 - fraction) * values[i0] + fraction * values[i1])
        case .conditions(let conditions):
            for condition in conditions where condition.filter == nil || condition.filter == "*" || tensor.contains(condition.filter!) {
                return condition.value.value(for: tensor, t: t)
            }
            return nil
        }
    }

    /// This value where it gives one, else `fallback`: only a list of conditions can give none (no
    /// filter matches), and then falls through to `fallback`, as mergekit falls through a recipe's
    /// scopes (a slice's parameters, its module's, the recipe's).
    func fallingBack(to fallback: ParameterSetting) -> ParameterSetting {
        guard case .conditions(let conditions) = self else { return self }
        return .conditions(conditions + [Condition(filter: nil, value: fallback)])
    }

    /// Parameters given in nested scopes (`scopes` from the innermost, e.g. a slice's, to the
    /// outermost, the recipe's) as one set: each value falls back to the next scope's
    /// (`fallingBack(to:)`).
    static func layered(_ scopes: [[String: ParameterSetting]]) -> [String: ParameterSetting] {
        var result: [String: ParameterSetting] = [:]
        for scope in scopes.reversed() {
            for (key, value) in scope { result[key] = result[key].map { value.fallingBack(to: $0) } ?? value }
        }
        return result
    }

    /// Every scalar in this value: itself, each number of a gradient, each condition's scalars.
    var leaves: [ParameterSetting] {
        switch self {
        case .number, .bool, .string: return [self]
        case .gradient(let values): return values.map { .number($0) }
        case .conditions(let conditions): return conditions.flatMap(\.value.leaves)
        }
    }

    /// The description, strings in quotes with escapes (for messages: a value may hold anything).
    public var quoted: String {
        if case .string(let text) = self { return String(reflecting: text) }
        return description
    }

    public var number: Double? {
        if case .number(let v) = self { return v }
        return nil
    }

    public var description: String {
        switch self {
        case .number(let v): return MethodParameter.format(v)
        case .bool(let b): return "\(b)"
        case .string(let s): return s
        case .gradient(let values): return "\(values)"
        case .conditions(let conditions):
            return "[" + conditions.map { "\($0.filter.map { "filter \($0): " } ?? "")\($0.value)" }.joined(separator: ", ") + "]"
        }
    }

    var json: JSONValue {
        switch self {
        case .number(let v): return .double(v)
        case .bool(let b): return .bool(b)
        case .string(let s): return .string(s)
        case .gradient(let values): return .array(values.map { .double($0) })
        case .conditions(let conditions):
            return .array(conditions.map { c in
                .object((c.filter.map { [JSONMember("filter", .string($0))] } ?? []) + [JSONMember("value", c.value.json)])
            })
        }
    }
}
