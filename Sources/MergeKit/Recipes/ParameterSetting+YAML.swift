import Foundation
import Yams

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
