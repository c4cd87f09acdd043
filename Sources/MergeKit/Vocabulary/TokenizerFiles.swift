/// The tokenizer files of an output whose vocabulary was merged (`OutputVocabulary`) or whose chat
/// template was set, made from the source tokenizer's files (the base's, or the model's a model
/// source names). Only the files that change are made; the others are copied as they are.
///
/// - `tokenizer.json`: the source's, its tokens past the kept ids removed (the base's tokens
///   beyond its vocabulary size: added tokens, and for a BPE model its vocabulary entries and the
///   merges that use them), the appended tokens added to `added_tokens` with their output ids;
/// - `tokenizer_config.json`: its `added_tokens_decoder` (transformers 4 writes one) kept in
///   step, and the chat template under `chat_template`;
/// - `added_tokens.json` (a slow tokenizer's): kept in step when the source has one;
/// - `chat_template.jinja`: the chat template, which transformers reads before
///   tokenizer_config.json's (both are written, so any version reads the same template).
///
/// JSON files are parsed with the bounded parser and written back in their members' order, two
/// spaces per level, as the tokenizers library and transformers write them.
enum TokenizerFiles {
    /// The files of one tokenizer (a model source's replace all of the base's).
    static let names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
                        "vocab.json", "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "spm.model", "source.spm",
                        "target.spm", "bpe.codes", "entity_vocab.json", "tekken.json", "chat_template.jinja"]

    /// The files that change, by name. `files` reads one of the source's files (nil: it has none).
    static func write(vocabulary: OutputVocabulary?, files: (String) throws(MergeKitError) -> [UInt8]?, template: String?)
        throws(MergeKitError) -> [String: [UInt8]] {
        var written: [String: [UInt8]] = [:]
        var removed = Set<Int>()
        if let vocabulary {
            let source = vocabulary.source
            removed = Set(source.addedTokens.filter { $0.id >= vocabulary.kept }.map(\.id))
            let strippedModel = source.modelVocabulary.filter { $0.value >= vocabulary.kept }
            for id in strippedModel.values { removed.insert(id) }
            if !vocabulary.appended.isEmpty || !removed.isEmpty {
                written["tokenizer.json"] = try tokenizerJSON(vocabulary, stripping: Set(strippedModel.keys))
            }
            if let bytes = try files("added_tokens.json"), !vocabulary.appended.isEmpty || !removed.isEmpty {
                guard case .object(let members)? = try? JSONParser.parse(bytes) else {
                    throw MergeKitError(.tokenizerInvalid, file: "added_tokens.json", "is not a JSON object of token ids", fix: "Restore it from the model's source")
                }
                let kept = members.filter { ($0.value.nonNegativeInt ?? 0) < vocabulary.kept }
                written["added_tokens.json"] = serialized(.object(kept + vocabulary.appended.map { JSONMember($0.content, .int($0.id)) }))
            }
        }
        if let bytes = try files("tokenizer_config.json") {
            guard case .object(var members)? = try? JSONParser.parse(bytes) else {
                throw MergeKitError(.tokenizerInvalid, file: "tokenizer_config.json", "is not a JSON object", fix: "Restore it from the model's source")
            }
            var changed = false
            if let vocabulary, let index = members.firstIndex(where: { $0.key == "added_tokens_decoder" }),
               case .object(let decoder) = members[index].value, !vocabulary.appended.isEmpty || !removed.isEmpty {
                let kept = decoder.filter { Int($0.key).map { !removed.contains($0) } ?? true }
                let appended = vocabulary.appended.map { token in
                    JSONMember(String(token.id), .object(token.entry.filter { $0.key != "id" }.sorted { $0.key < $1.key }))
                }
                members[index].value = .object(kept + appended)
                changed = true
            }
            if let template {
                if let index = members.firstIndex(where: { $0.key == "chat_template" }) {
                    members[index].value = .string(template)
                } else {
                    members.append(JSONMember("chat_template", .string(template)))
                }
                changed = true
            }
            if changed { written["tokenizer_config.json"] = serialized(.object(members)) }
        }
        if let template { written["chat_template.jinja"] = Array(template.utf8) }
        return written
    }

    /// The source's tokenizer.json with `stripping` (model-vocabulary tokens past the kept ids)
    /// removed and the appended tokens added.
    private static func tokenizerJSON(_ vocabulary: OutputVocabulary, stripping: Set<String>) throws(MergeKitError) -> [UInt8] {
        let source = vocabulary.source
        guard case .object(var members) = source.json() else { preconditionFailure("a tokenizer's JSON is an object") }
        let kept = source.addedTokens.filter { $0.id < vocabulary.kept }
        let added = JSONValue.array((kept + vocabulary.appended).map { .object($0.entry) })
        if let index = members.firstIndex(where: { $0.key == "added_tokens" }) {
            members[index].value = added
        } else {
            members.append(JSONMember("added_tokens", added))
        }
        if !stripping.isEmpty {
            guard source.modelType == "BPE", let index = members.firstIndex(where: { $0.key == "model" }),
                  case .object(var model) = members[index].value else {
                throw MergeKitError(.tokenizerInvalid, file: source.path,
                    "has \(stripping.count) token(s) past the model's vocabulary size (\(vocabulary.kept) rows) in its \(source.modelType) vocabulary; MergeKit removes such tokens only from BPE vocabularies (as mergekit)",
                    fix: "Use a tokenizer that matches the model's embedding, or set vocab_size in config.json to the tokenizer's size")
            }
            for i in model.indices {
                switch (model[i].key, model[i].value) {
                case ("vocab", .object(let vocab)):
                    model[i].value = .object(vocab.filter { !stripping.contains($0.key) })
                case ("merges", .array(let merges)):
                    model[i].value = .array(merges.filter { merge in
                        let parts: [String]
                        switch merge {
                        case .string(let text): parts = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
                        case .array(let pair): parts = pair.compactMap(\.stringValue)
                        default: parts = []
                        }
                        return !parts.contains(where: stripping.contains)
                    })
                default:
                    continue
                }
            }
            members[index].value = .object(model)
        }
        return serialized(.object(members))
    }

    private static func serialized(_ value: JSONValue) -> [UInt8] {
        Array((value.serialized(indent: 2) + "\n").utf8)
    }
}
