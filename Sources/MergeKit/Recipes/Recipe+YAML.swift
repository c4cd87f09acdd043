import Foundation
import Yams

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
