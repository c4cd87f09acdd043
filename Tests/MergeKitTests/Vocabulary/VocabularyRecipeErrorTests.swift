import Foundation
import Testing
@testable import MergeKit

/// What recipes with vocabularies refuse before any work, each problem at its recipe line, and
/// the neighbouring cases they accept. The models are the vocabulary goldens' (base: 40 tokens;
/// chat: base + <|im_start|> <|im_end|>, 42 rows; code: another BPE vocabulary, 47 rows; notok:
/// the base's rows without a tokenizer).
@Suite("Vocabularies: errors before work")
struct VocabularyRecipeErrorTests {
    static let models = TestSupport.fixture("mergekit_goldens/vocab/models")

    /// Copies the fixture models into `dir`/models (to be changed by a test).
    static func copyModels(to dir: String) throws -> String {
        let copy = dir + "/models"
        try FileManager.default.copyItem(atPath: models, toPath: copy)
        return copy
    }

    /// Expects exactly the problems matching `expected` (`RecipeProblems`).
    static func expect(_ text: String, in dir: String? = nil, _ expected: [[String]], emit: EmitKind = .model,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        RecipeProblems.expect(text, in: dir, expected, emit: emit, sourceLocation: sourceLocation)
    }

    @Test("Without tokenizer_source, vocabularies of different sizes are an error naming the sizes and tokens, suggesting tokenizer_source: base")
    func mismatchWithoutSource() throws {
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            models:
              - model: \(Self.models)/chat
              - model: \(Self.models)/code
            """, [["\(Self.models)/chat: tensor 'model.embed_tokens.weight': line 4 of", "has 42 vocabulary rows", "the base (\(Self.models)/base) has 40",
                   "2 tokens the base's lacks: \"<|im_start|>\" (40), \"<|im_end|>\" (41)", "tokenizer_source: base"],
                  ["\(Self.models)/code: tensor 'model.embed_tokens.weight': line 5 of", "has 47 vocabulary rows", "tokens the base's lacks: \"<pad>\" (0)", "it lacks",
                   "tokenizer_source: base"]])
        // The same models merge once a source is given; a model of the base's size merges without one.
        let dir = TestSupport.temporaryDirectory("vocabulary-accepts")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for text in ["merge_method: task_arithmetic\nbase_model: \(Self.models)/base\nmodels: [{model: \(Self.models)/chat}]\ntokenizer_source: base\n",
                     "merge_method: task_arithmetic\nbase_model: \(Self.models)/base\nmodels: [{model: \(Self.models)/notok}]\n"] {
            let run = try Recipe.parse(text, path: dir + "/recipe.yml").plan(output: dir + "/out")
            #expect(run.plans.count == 1)
        }
    }

    @Test("The recipe's keys: tokenizer_source and tokenizer together, the block's keys, pad_to_multiple_of, token sources, chat_template")
    func schema() {
        let head = "merge_method: linear\nmodels: [{model: \(Self.models)/base}]\n"
        Self.expect(head + "tokenizer_source: union\ntokenizer: {source: base}\n", [["line 4:", "give tokenizer_source or tokenizer, not both"]])
        Self.expect(head + """
            tokenizer:
              sorce: union
              pad_to_multiple_of: 0
              tokens:
                a: {source: {kind: model_token, model: x, token: a, token_id: 1}}
                b: {source: {kind: nothing}}
                c: {source: {kind: zero, model: x}}
                d: {force: maybe}
                e: 3
            chat_template: ""
            """, [["line 4:", "unknown key \"sorce\" in tokenizer (did you mean \"source\"?)"],
                  ["line 5:", "pad_to_multiple_of must be a whole number from 1"],
                  ["line 7:", "takes exactly one of token_id and token"],
                  ["line 8:", "kind must be zero or model_token"],
                  ["line 9:", "unknown key \"model\" in the source of token c"],
                  ["line 10:", "force must be true or false"],
                  ["line 11:", "tokens: e must be a mapping"],
                  ["line 12:", "chat_template must be auto, a template's name"]])
        // The keys are no longer refused as unsupported mergekit features.
        Self.expect(head + "base_model_lora: x\n", [["\"base_model_lora\" (a mergekit feature) is not supported"]])
    }

    @Test("Parsed settings: the block's source defaults to union; tokens in order with their sources")
    func parsed() throws {
        let recipe = try Recipe.parse("""
            merge_method: linear
            models: [{model: m}]
            tokenizer:
              pad_to_multiple_of: 64
              tokens:
                "<a>": {source: m}
                "<b>": {source: {kind: model_token, model: m, token_id: 3}, force: true}
                "<c>": {source: {kind: zero}}
                "<d>": {source: {kind: model_token, model: m, token: "</s>"}}
                "<e>": {force: false}
            chat_template: llama3
            """, path: "recipe.yml")
        let settings = try #require(recipe.tokenizer)
        #expect(settings.source == .union && settings.padToMultipleOf == 64 && settings.chatTemplate == "llama3")
        #expect(settings.tokens.map(\.token) == ["<a>", "<b>", "<c>", "<d>", "<e>"])
        #expect(settings.tokens.map(\.source) == [.model("m"), .modelToken(model: "m", tokenID: 3, token: nil), .zero,
                                                  .modelToken(model: "m", tokenID: nil, token: "</s>"), nil])
        #expect(settings.tokens.map(\.force) == [false, true, false, false, false])
        #expect(try Recipe.parse("merge_method: linear\nmodels: [{model: m}]\ntokenizer_source: some/model\n", path: "r.yml").tokenizer?.source == .model("some/model"))
        #expect(try Recipe.parse("merge_method: linear\nmodels: [{model: m}]\n", path: "r.yml").tokenizer == nil)
    }

    @Test("Tokenizers a source needs: the base's, a model's of other rows, a model source's; an unknown source")
    func missingTokenizers() throws {
        let dir = TestSupport.temporaryDirectory("vocabulary-missing")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let models = try Self.copyModels(to: dir)
        try FileManager.default.removeItem(atPath: models + "/base/tokenizer.json")
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(models)/base
            models: [{model: \(models)/chat}]
            tokenizer_source: union
            """, in: dir, [["\(models)/base/tokenizer.json: line 2 of", "does not exist: tokenizer_source union needs the base model's tokenizer"]])
        // A model without a tokenizer, of the base's rows, would take the base's vocabulary: only the base's is missing.
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(models)/base
            models: [{model: \(models)/notok}, {model: \(models)/code}]
            tokenizer_source: union
            """, in: dir, [["\(models)/base/tokenizer.json: line 2 of", "does not exist: tokenizer_source union needs the base model's tokenizer"]])
        try FileManager.default.copyItem(atPath: Self.models + "/base/tokenizer.json", toPath: models + "/base/tokenizer.json")
        try FileManager.default.removeItem(atPath: models + "/chat/tokenizer.json")
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(models)/base
            models: [{model: \(models)/notok}, {model: \(models)/chat}]
            tokenizer_source: \(models)/chat
            """, in: dir, [["\(models)/chat/tokenizer.json: line 3 of", "does not exist, and the model's embedding has 42 rows (the base's has 40)"]])
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(models)/base
            models: [{model: \(models)/code}]
            tokenizer_source: \(models)/nowhere
            """, in: dir, [["line 4:", "tokenizer_source \"\(models)/nowhere\" is neither base, union, a model of this recipe nor a model directory"]])
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(models)/base
            models: [{model: \(models)/code}]
            tokenizer_source: \(models)/notok
            """, in: dir, [["\(models)/notok/tokenizer.json: line 4 of", "does not exist: tokenizer_source \(models)/notok names a model without a fast tokenizer"]])
        // A malformed tokenizer.json is named with what is wrong.
        try Data("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}".utf8).write(to: URL(fileURLWithPath: models + "/code/tokenizer.json"))
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(models)/base
            models: [{model: \(models)/code}]
            tokenizer_source: union
            """, in: dir, [["\(models)/code/tokenizer.json: line 3 of", "token \"a\" has id -1"]])
    }

    @Test("tokens: sources a tensor cannot take: a model not merged, a token a model lacks, a row past its vocabulary, no source")
    func tokenSources() {
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            models: [{model: \(Self.models)/chat}]
            tokenizer:
              source: union
              tokens:
                "<|im_start|>": {source: \(Self.models)/code}
                "<|im_end|>": {source: \(Self.models)/base}
                "<x>": {source: {kind: model_token, model: \(Self.models)/base, token: "<y>"}}
                "<z>": {source: {kind: model_token, model: \(Self.models)/chat, token_id: 42}}
                "<w>": {force: true}
                "<v>": {}
            """, [["line 7:", "token <|im_start|> takes its row from \"\(Self.models)/code\", which is not a model merged into this tensor"],
                  ["\(Self.models)/base: line 8 of", "does not have token <|im_end|>"],
                  ["line 9 of", "does not have token <y>, which token <x> takes its row from"],
                  ["line 10 of", "has 42 vocabulary rows, so it has no row 42 for token <z>"],
                  ["line 11:", "token <w> has no source, and force: true"],
                  ["line 12:", "token <v> has no source", "lack"]])
    }

    @Test("Inputs and outputs a merged vocabulary cannot have: a task vector, a LoRA adapter, a task-vector output; an unknown template")
    func inputsAndOutputs() throws {
        let dir = TestSupport.temporaryDirectory("vocabulary-inputs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Checkpoint(path: Self.models + "/base")
        TestSupport.writeCheckpoint(dir + "/tau.safetensors", base.entries.map { entry in
            (TensorSpec(name: entry.name, dtype: .F32, shape: entry.info.shape), Array(repeating: 0.001, count: entry.info.elementCount))
        }, metadata: ["format": "pt", TaskVectorFile.kindKey: TaskVectorFile.kindValue])
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            models: [{model: \(Self.models)/chat}, {task_vector: \(dir)/tau.safetensors}]
            tokenizer_source: union
            """, in: dir, [["line 3:", "tokenizer_source merges the vocabularies of models", "a task vector, which has no tokenizer"]])
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            models: [{model: \(Self.models)/chat}]
            tokenizer_source: union
            """, in: dir, [["line 4:", "no base gives its task vector"]], emit: .taskVector)
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            models: [{model: \(Self.models)/chat}]
            tokenizer_source: base
            chat_template: vicuna
            """, in: dir, [["line 5:", "chat_template \"vicuna\" is neither auto, a template's name nor a Jinja template", "chatml"]])
    }
}
