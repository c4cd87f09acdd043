/// The output's vocabulary, built as mergekit builds it (`TokenizerSettings.Source`), and where
/// each model's tokens lie in its own.
///
/// A model's vocabulary is its tokenizer's token → id map (`ModelTokenizer.vocabulary`, added
/// tokens included) restricted to ids below its limit — the rows its embedding has, or fewer when
/// its config.json's `vocab_size` says so: tokens past it have no row (mergekit strips them).
///
/// - **base**: the base's vocabulary, as is.
/// - **union**: the base's vocabulary, then the tokens the other models add, as added tokens at
///   the end: first every model's ordinary tokens the base lacks (in the recipe's order of the
///   models, each model's by id; plain added tokens, as transformers' `add_tokens` makes them),
///   then the added tokens of every model (same order) the output still lacks, each with the
///   settings of the first model that has it. mergekit puts the same tokens in the same two
///   groups, but orders each group by hash order (it differs from run to run); here it is fixed.
///   A token that is an added token in any model goes to the second group.
/// - **a model**: that model's whole vocabulary.
///
/// Tokens named under `tokens:` that the vocabulary lacks are added after these (plain). The
/// tensors get `rowCount` rows: the vocabulary padded up to a multiple of `pad_to_multiple_of`.
/// Every id of the vocabulary must be used once (0 to n − 1), or rows cannot be laid out.
struct OutputVocabulary: Sendable {
    /// One model's tokenizer and limit (nil tokenizer: the base's vocabulary).
    struct Model {
        let tokenizer: ModelTokenizer?
        let limit: Int
    }

    /// Tokens by output id.
    let tokens: [String]
    /// Output id by token.
    let ids: [String: Int]
    /// Rows of the output's vocabulary tensors (the vocabulary, padded).
    let rowCount: Int
    /// The tokenizer the output's tokenizer files are written from.
    let source: ModelTokenizer
    /// The source's tokens kept: ids below this.
    let kept: Int
    /// The tokens appended to the source's, as added-token entries with their output ids.
    let appended: [ModelTokenizer.AddedToken]

    /// The output vocabulary. `base` is the base's tokenizer and limit, `models` every other
    /// model's in the recipe's order, `named` the tokenizer of a model source.
    static func build(source: TokenizerSettings.Source, base: ModelTokenizer, baseLimit: Int, models: [Model], named: ModelTokenizer?,
                      extra: [String], padToMultipleOf pad: Int?) throws(MergeKitError) -> OutputVocabulary {
        let sourceTokenizer: ModelTokenizer, kept: Int
        switch source {
        case .base, .union: (sourceTokenizer, kept) = (base, baseLimit)
        case .model: (sourceTokenizer, kept) = (named!, Int.max)
        }
        let own = sourceTokenizer.tokens(below: kept)
        var tokens = [String?](repeating: nil, count: own.count)
        for (token, id) in own.sorted(by: { ($0.value, $0.key) < ($1.value, $1.key) }) {
            guard id < tokens.count, tokens[id] == nil else {
                let missing = tokens.firstIndex(where: { $0 == nil }) ?? own.count
                throw MergeKitError(.tokenizerInvalid, file: sourceTokenizer.path,
                    id < tokens.count ? "gives id \(id) to two tokens (\"\(tokens[id]!)\" and \"\(token)\")"
                                      : "uses id \(id) but not id \(missing): its \(own.count) tokens do not have the ids 0 to \(own.count - 1), so they cannot be laid out as rows",
                    fix: "Restore the tokenizer from the model's source")
            }
            tokens[id] = token
        }
        var output = tokens.map { $0! }
        var ids = Dictionary(uniqueKeysWithValues: output.enumerated().map { ($1, $0) })
        var appended: [ModelTokenizer.AddedToken] = []
        func append(_ token: ModelTokenizer.AddedToken) {
            ids[token.content] = output.count
            appended.append(token.moved(to: output.count))
            output.append(token.content)
        }
        if source == .union {
            let tokenizers = models.compactMap { model in model.tokenizer.map { ($0, model.limit) } }
            var addedContents = Set<String>()
            for (tokenizer, limit) in [(base, baseLimit)] + tokenizers {
                for token in tokenizer.addedTokens where token.id < limit { addedContents.insert(token.content) }
            }
            for (tokenizer, limit) in tokenizers {
                for (token, _) in tokenizer.tokens(below: limit).sorted(by: { ($0.value, $0.key) < ($1.value, $1.key) })
                where ids[token] == nil && !addedContents.contains(token) {
                    append(.plain(token, id: 0))
                }
            }
            for (tokenizer, limit) in tokenizers {
                for token in tokenizer.addedTokens.sorted(by: { $0.id < $1.id }) where token.id < limit && ids[token.content] == nil {
                    append(token)
                }
            }
        }
        for token in extra where ids[token] == nil { append(.plain(token, id: 0)) }
        let rowCount = pad.map { (output.count + $0 - 1) / $0 * $0 } ?? output.count
        return OutputVocabulary(tokens: output, ids: ids, rowCount: rowCount, source: sourceTokenizer, kept: kept, appended: appended)
    }

    /// For each output token, its row in a model whose vocabulary is `vocabulary` (−1: it lacks it).
    func rows(in vocabulary: [String: Int]) -> [Int32] {
        tokens.map { token in vocabulary[token].map { Int32($0) } ?? -1 }
    }
}
