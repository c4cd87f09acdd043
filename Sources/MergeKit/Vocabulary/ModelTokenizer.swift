/// A model's tokenizer, as far as merging vocabularies needs it: its `tokenizer.json` (the file
/// a fast tokenizer is saved as) read into the token → id map that transformers' `get_vocab()`
/// returns — the model's vocabulary (BPE, WordPiece and WordLevel: an object of token → id;
/// Unigram: a list of [token, score], the id being the position) with the added tokens over it —
/// and the added tokens' entries, kept as written to carry their settings (`special`,
/// `normalized`, `lstrip`, ...) into another tokenizer.
///
/// The file is parsed with the strict, depth-bounded `JSONParser`, after `FileSystem.readFile`
/// has bounded its size; every id must be a whole number below 2³¹ and every token a string.
struct ModelTokenizer: Sendable {
    /// One entry of `added_tokens`.
    struct AddedToken: Sendable, Equatable {
        let id: Int
        let content: String
        /// The entry as written (its `id` is replaced when it moves to another tokenizer).
        let entry: [JSONMember]

        var special: Bool { JSONValue.object(entry)["special"] == .bool(true) }

        /// The entry transformers' `add_tokens` writes for a plain token: not special, normalized.
        static func plain(_ content: String, id: Int) -> AddedToken {
            AddedToken(id: id, content: content, entry: [
                JSONMember("id", .int(id)), JSONMember("content", .string(content)), JSONMember("single_word", .bool(false)),
                JSONMember("lstrip", .bool(false)), JSONMember("rstrip", .bool(false)), JSONMember("normalized", .bool(true)),
                JSONMember("special", .bool(false)),
            ])
        }

        /// The same token under id `id`.
        func moved(to id: Int) -> AddedToken {
            AddedToken(id: id, content: content, entry: entry.map { $0.key == "id" ? JSONMember("id", .int(id)) : $0 })
        }
    }

    /// The file read.
    let path: String
    /// The model's type (`BPE`, `WordPiece`, `WordLevel`, `Unigram`; as written).
    let modelType: String
    /// The model's own vocabulary (without the added tokens), by id.
    let modelVocabulary: [String: Int]
    /// `added_tokens`, as listed.
    let addedTokens: [AddedToken]
    /// Token → id as transformers' `get_vocab()` gives it: the model's vocabulary, an added token's
    /// id replacing a model token's of the same content.
    let vocabulary: [String: Int]
    /// The file's bytes, parsed again (`json()`) only for the tokenizer the output is written
    /// from: a large tokenizer's parsed form takes many times its size, and a union reads several.
    let bytes: [UInt8]

    /// The tokenizer file of a model directory.
    static let fileName = "tokenizer.json"

    /// Reads `bytes` (the contents of `path`).
    init(bytes: [UInt8], path: String) throws(MergeKitError) {
        self.path = path
        func invalid(_ detail: String) -> MergeKitError {
            MergeKitError(.tokenizerInvalid, file: path, detail,
                          fix: "Restore the tokenizer from the model's source (save it with transformers' save_pretrained)")
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw invalid("is not valid JSON (\(error.description))")
        }
        guard case .object = json, case .object(let model)? = json["model"] else {
            throw invalid("has no \"model\" object, so it is not a tokenizer saved by the tokenizers library")
        }
        func id(_ value: JSONValue?, _ what: String) throws(MergeKitError) -> Int {
            guard let n = value?.nonNegativeInt, n < Int(Int32.max) else {
                throw invalid("\(what) has id \(value.map { $0.serialized() } ?? "none"), not a whole number from 0 to \(Int32.max - 1)")
            }
            return n
        }
        let modelObject = JSONValue.object(model)
        var vocabulary: [String: Int] = [:]
        switch modelObject["vocab"] {
        case .object(let members)?:
            vocabulary.reserveCapacity(members.count)
            for member in members { vocabulary[member.key] = try id(member.value, "token \"\(member.key)\"") }
        case .array(let pieces)?:
            vocabulary.reserveCapacity(pieces.count)
            for (i, piece) in pieces.enumerated() {
                guard let token = piece.arrayValue?.first?.stringValue else {
                    throw invalid("model.vocab entry \(i) is \(piece.kindName), not a [token, score] pair")
                }
                if vocabulary[token] == nil { vocabulary[token] = i }
            }
        default:
            throw invalid("has no model.vocab (an object of token ids, or a Unigram model's list of [token, score] pairs)")
        }
        modelType = modelObject["type"]?.stringValue ?? (modelObject["vocab"]?.arrayValue != nil ? "Unigram" : "BPE")
        modelVocabulary = vocabulary
        var added: [AddedToken] = []
        switch json["added_tokens"] {
        case nil, .null?:
            break
        case .array(let entries)?:
            for (i, entry) in entries.enumerated() {
                guard case .object(let members) = entry, let content = entry["content"]?.stringValue else {
                    throw invalid("added_tokens entry \(i) is not an object with a string \"content\"")
                }
                added.append(AddedToken(id: try id(entry["id"], "added token \"\(content)\""), content: content, entry: members))
            }
        case let other?:
            throw invalid("added_tokens is \(other.kindName), not a list")
        }
        addedTokens = added
        for token in added { vocabulary[token.content] = token.id }
        self.vocabulary = vocabulary
        self.bytes = bytes
    }

    /// The whole file, parsed (it parsed when the tokenizer was read).
    func json() -> JSONValue {
        guard let json = try? JSONParser.parse(bytes) else { preconditionFailure("\(path) parsed when it was read") }
        return json
    }

    /// Reads `tokenizer.json` of `checkpoint`'s directory; nil when it has none. A file with the
    /// bytes of one of `known` is not parsed again (fine-tunes mostly ship their base's tokenizer,
    /// and a large one takes a second to parse): that tokenizer is returned under this path.
    static func read(_ checkpoint: Checkpoint, known: [ModelTokenizer] = []) throws(MergeKitError) -> ModelTokenizer? {
        guard let bytes = try checkpoint.companionBytes(fileName) else { return nil }
        let path = FileSystem.join(checkpoint.directory ?? checkpoint.path, fileName)
        if let same = known.first(where: { $0.bytes == bytes }) { return same.at(path) }
        return try ModelTokenizer(bytes: bytes, path: path)
    }

    private init(_ other: ModelTokenizer, path: String) {
        self.path = path
        modelType = other.modelType
        modelVocabulary = other.modelVocabulary
        addedTokens = other.addedTokens
        vocabulary = other.vocabulary
        bytes = other.bytes
    }

    /// The same tokenizer, read from `path`.
    func at(_ path: String) -> ModelTokenizer { ModelTokenizer(self, path: path) }

    /// The tokens with ids below `limit`, by id (a model's tokens beyond its embedding's rows are
    /// not its vocabulary: mergekit strips them).
    func tokens(below limit: Int) -> [String: Int] {
        vocabulary.filter { $0.value < limit }
    }

    /// Whether `content` is one of the added tokens.
    func isAdded(_ content: String) -> Bool {
        addedTokens.contains { $0.content == content }
    }
}
