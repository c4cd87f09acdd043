import Yams

/// The recipe's vocabulary keys (`TokenizerSettings`): `tokenizer_source:`, the `tokenizer:` block
/// and `chat_template:`, read as mergekit's schema reads them (the block's source defaults to
/// `union`; giving both `tokenizer_source` and `tokenizer` is an error, as in mergekit).
extension RecipeParser {
    /// `tokenizer_source: base | union | PATH`.
    mutating func tokenizerSource(_ node: Node, into settings: inout TokenizerSettings) {
        guard case .scalar = node, let text = node.string, !text.isEmpty else {
            problem(node, "tokenizer_source must be base, union or the path of a model whose tokenizer the output takes")
            return
        }
        settings.source = Self.source(text)
        settings.sourceLine = line(node)
    }

    /// `tokenizer: {source, tokens, pad_to_multiple_of}`.
    mutating func tokenizerBlock(_ node: Node, into settings: inout TokenizerSettings) {
        guard case .mapping(let mapping) = node else {
            problem(node, "tokenizer must be a mapping {source: union, tokens: {...}, pad_to_multiple_of: N}")
            return
        }
        settings.source = .union
        settings.sourceLine = line(node)
        for (keyNode, value) in pairs(mapping) {
            switch keyNode.string ?? "" {
            case "source":
                tokenizerSource(value, into: &settings)
            case "pad_to_multiple_of":
                guard case .scalar = value, value.string != "null", let number = ParameterSetting(scalar: value)?.number,
                      number == number.rounded(), number >= 1, number <= Double(TokenizerSettings.maximumPadMultiple) else {
                    problem(value, "pad_to_multiple_of must be a whole number from 1 to \(TokenizerSettings.maximumPadMultiple)",
                            fix: "Give e.g. pad_to_multiple_of: 64 (the vocabulary is padded up to a multiple of it)")
                    continue
                }
                settings.padToMultipleOf = Int(number)
                settings.padLine = line(value)
            case "tokens":
                guard case .mapping(let tokens) = value else {
                    problem(value, "tokens must map each token to {source: ..., force: ...}")
                    continue
                }
                for (tokenNode, rule) in pairs(tokens) {
                    guard case .scalar = tokenNode, let token = tokenNode.string, !token.isEmpty else {
                        problem(tokenNode, "a token under tokens must be a non-empty string")
                        continue
                    }
                    if let rule = tokenRule(token, rule, line: line(tokenNode)) { settings.tokens.append(rule) }
                }
            default:
                let key = keyNode.string ?? "?"
                problem(keyNode, "unknown key \"\(key)\" in tokenizer" + suggestion(key, ["source", "tokens", "pad_to_multiple_of"]),
                        fix: "The tokenizer block takes source, tokens and pad_to_multiple_of")
            }
        }
    }

    /// `chat_template: auto | NAME | TEMPLATE`.
    mutating func chatTemplate(_ node: Node, into settings: inout TokenizerSettings) {
        guard case .scalar = node, let text = node.string, !text.isEmpty else {
            problem(node, "chat_template must be auto, a template's name (\(ChatTemplates.names.joined(separator: ", "))) or the template's Jinja text")
            return
        }
        settings.chatTemplate = text
        settings.chatTemplateLine = line(node)
    }

    /// One `tokens:` entry: `{source: PATH | {kind: zero} | {kind: model_token, model: PATH, token_id: N | token: TEXT}, force: BOOL}`.
    private mutating func tokenRule(_ token: String, _ node: Node, line tokenLine: Int) -> TokenizerSettings.TokenRule? {
        guard case .mapping(let mapping) = node else {
            problem(node, "tokens: \(token) must be a mapping {source: ..., force: ...}")
            return nil
        }
        var source: TokenizerSettings.EmbeddingSource?, force = false, fine = true
        for (keyNode, value) in pairs(mapping) {
            switch keyNode.string ?? "" {
            case "source":
                if case .scalar = value, value.tag.description == Tag.Name.null.rawValue { continue }
                if case .scalar = value, let text = value.string {
                    source = .model(text)
                } else if let parsed = embeddingSource(value, token: token) {
                    source = parsed
                } else {
                    fine = false
                }
            case "force":
                guard case .scalar = value, let flag = ParameterSetting(scalar: value), case .bool(let b) = flag else {
                    problem(value, "force must be true or false")
                    fine = false
                    continue
                }
                force = b
            default:
                let key = keyNode.string ?? "?"
                problem(keyNode, "unknown key \"\(key)\" for token \(token)" + suggestion(key, ["source", "force"]),
                        fix: "A token takes source and force")
                fine = false
            }
        }
        return fine ? TokenizerSettings.TokenRule(token: token, source: source, force: force, line: tokenLine) : nil
    }

    /// `{kind: zero}` or `{kind: model_token, model: PATH, token_id: N}` / `{..., token: TEXT}`.
    private mutating func embeddingSource(_ node: Node, token: String) -> TokenizerSettings.EmbeddingSource? {
        guard case .mapping(let mapping) = node else {
            problem(node, "the source of token \(token) must be a model's path, {kind: zero} or {kind: model_token, model: PATH, token: TEXT}")
            return nil
        }
        let members = pairs(mapping)
        func value(_ key: String) -> Node? { members.first { $0.key.string == key }?.value }
        let allowed: [String]
        var result: TokenizerSettings.EmbeddingSource?
        switch value("kind")?.string {
        case "zero":
            allowed = ["kind"]
            result = .zero
        case "model_token":
            allowed = ["kind", "model", "token_id", "token"]
            guard let model = value("model")?.string, !model.isEmpty else {
                problem(node, "a model_token source needs model: PATH")
                return nil
            }
            var id: Int?
            if let idNode = value("token_id") {
                guard let number = ParameterSetting(scalar: idNode)?.number, number == number.rounded(), number >= 0, number < Double(Int32.max) else {
                    problem(idNode, "token_id must be a row of the model's vocabulary (a whole number ≥ 0)")
                    return nil
                }
                id = Int(number)
            }
            let text = value("token")?.string
            if (id == nil) == (text == nil) {
                problem(node, "a model_token source takes exactly one of token_id and token")
                return nil
            }
            result = .modelToken(model: model, tokenID: id, token: text)
        default:
            problem(value("kind") ?? node, "the source's kind must be zero or model_token (or give a model's path as the source)")
            return nil
        }
        for (key, _) in members where !allowed.contains(key.string ?? "") {
            problem(key, "unknown key \"\(key.string ?? "?")\" in the source of token \(token)", fix: "Allowed: " + allowed.joined(separator: ", "))
            return nil
        }
        return result
    }

    static func source(_ text: String) -> TokenizerSettings.Source {
        switch text {
        case "base": return .base
        case "union": return .union
        default: return .model(text)
        }
    }
}
