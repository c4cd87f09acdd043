/// What a recipe says about the output's vocabulary and tokenizer: mergekit's `tokenizer_source:`
/// (or its `tokenizer:` block, with `tokens:` and `pad_to_multiple_of:`) and `chat_template:`.
///
/// ```yaml
/// tokenizer_source: union            # base | union | PATH of a model whose tokenizer is used
/// # or:
/// tokenizer:
///   source: union                    # the default in this block
///   pad_to_multiple_of: 64           # rows after the vocabulary: the mean of the rows
///   tokens:
///     <|im_start|>:
///       source: path/to/chat-model   # that model's row for the token, for every model lacking it
///     <|im_end|>:
///       source: {kind: model_token, model: path/to/chat-model, token: "</s>"}   # or token_id: 2
///       force: true                  # also for the models that have the token
///     <pad>:
///       source: {kind: zero}
/// chat_template: chatml              # auto | a template's name | the Jinja text itself
/// ```
///
/// Without a source the models' vocabularies must be the base's (same rows); `chat_template`
/// alone still sets the output's template. `VocabularyMerge` applies the settings.
public struct TokenizerSettings: Sendable {
    /// Where the output vocabulary comes from.
    public enum Source: Sendable, Equatable {
        /// The base model's tokenizer (its tokens below its vocabulary size).
        case base
        /// The base's tokens, then every other model's tokens it lacks.
        case union
        /// The tokenizer of this model (a path, as the recipe writes it).
        case model(String)
    }

    /// Where a token's row comes from for the models that lack it (`tokens:`).
    public enum EmbeddingSource: Sendable, Equatable {
        /// Zeros.
        case zero
        /// This model's own row for the token (as the recipe writes the model).
        case model(String)
        /// Row `tokenID` of this model, or the row of `token` in its own vocabulary.
        case modelToken(model: String, tokenID: Int?, token: String?)
    }

    /// One `tokens:` entry.
    public struct TokenRule: Sendable, Equatable {
        public let token: String
        /// nil: none given (then every model must have the token, and `force` is false).
        public let source: EmbeddingSource?
        /// Every model gets the source's row, even one that has the token.
        public let force: Bool
        public let line: Int

        public init(token: String, source: EmbeddingSource?, force: Bool = false, line: Int = 0) {
            self.token = token
            self.source = source
            self.force = force
            self.line = line
        }
    }

    /// nil: the vocabularies are not merged (they must be the base's).
    public var source: Source?
    public var sourceLine = 0
    /// In the recipe's order.
    public var tokens: [TokenRule] = []
    public var padToMultipleOf: Int?
    public var padLine = 0
    /// `auto`, a template's name (`ChatTemplates.named`), or the template's text.
    public var chatTemplate: String?
    public var chatTemplateLine = 0

    public init(source: Source? = nil, tokens: [TokenRule] = [], padToMultipleOf: Int? = nil, chatTemplate: String? = nil) {
        self.source = source
        self.tokens = tokens
        self.padToMultipleOf = padToMultipleOf
        self.chatTemplate = chatTemplate
    }

    /// The largest `pad_to_multiple_of` accepted.
    static let maximumPadMultiple = 1 << 20

    /// Whether the settings change anything.
    var isEmpty: Bool { source == nil && chatTemplate == nil }

    /// The source as the recipe writes it.
    static func describe(_ source: Source) -> String {
        switch source {
        case .base: return "base"
        case .union: return "union"
        case .model(let path): return path
        }
    }
}
