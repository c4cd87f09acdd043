import Foundation
import Testing
@testable import MergeKit

/// Merged vocabularies (`tokenizer_source`, the `tokenizer:` block, `chat_template`) against
/// mergekit 0.1.5's own outputs (Fixtures/mergekit_goldens/make_vocab_goldens.py): tiny
/// Llama-shaped models with small BPE tokenizers, recipes planned and run through the library.
///
/// mergekit orders the tokens a union adds by hash order, so rows are compared token by token:
/// the output's vocabulary (read from the tokenizer.json written) must hold exactly mergekit's
/// tokens, and each token's embedding and head rows must be mergekit's rows for it.
@Suite("Vocabularies: mergekit goldens")
struct VocabularyGoldenTests {
    static let folder = TestSupport.fixture("mergekit_goldens/vocab")

    /// Token → id of the tokenizer.json in `directory` (the model's vocabulary, then the added tokens).
    static func vocabulary(ofTokenizerIn directory: String) throws -> [String: Int] {
        let tokenizer = try ModelTokenizer(bytes: FileSystem.readFile(directory + "/tokenizer.json"), path: directory)
        return tokenizer.vocabulary
    }

    /// Token → id of a golden (written from mergekit's tokenizer.json by the script).
    static func goldenVocabulary(_ name: String) throws -> [String: Int] {
        let json = try JSONParser.parse(FileSystem.readFile(folder + "/\(name)/vocabulary.json"))
        return Dictionary(uniqueKeysWithValues: (json.objectMembers ?? []).map { ($0.key, $0.value.nonNegativeInt!) })
    }

    /// Runs `name`'s recipe into `dir`/out (`SliceRecipeTests.run`); returns the output.
    static func run(_ name: String, in dir: String) throws -> String {
        try SliceRecipeTests.run(name, from: folder, in: dir)
    }

    /// The output equals mergekit's: the same tensors, the same vocabulary (as a set of tokens),
    /// each token's rows of every vocabulary tensor and every other tensor within `tolerance`
    /// (float32 rounding: an average is formed here as θ₀ + Σwτ/Σw, in mergekit as Σwθ/Σw), the
    /// padding rows, and config.json's vocab_size and tie_word_embeddings (`tied`, when given, in
    /// place of mergekit's: an output that stores a head says false). Returns the output.
    @discardableResult
    static func expectGolden(_ name: String, in dir: String, tolerance: Double = 5e-7, tied: Bool? = nil,
                             sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let output = try run(name, in: dir)
        let mine = TestSupport.values(try Checkpoint(path: output))
        let golden = TestSupport.values(try Checkpoint(path: folder + "/\(name)"))
        let ours = try vocabulary(ofTokenizerIn: output), theirs = try goldenVocabulary(name)
        #expect(Set(ours.keys) == Set(theirs.keys), "vocabulary", sourceLocation: sourceLocation)
        #expect(mine.keys.sorted() == golden.keys.sorted(), "tensors", sourceLocation: sourceLocation)
        for (tensor, expected) in golden {
            guard let actual = mine[tensor] else { continue }
            #expect(actual.info.shape == expected.info.shape, "\(tensor) shape", sourceLocation: sourceLocation)
            guard actual.info.shape == expected.info.shape else { continue }
            if VocabularyTensors.isVocabulary(tensor) {
                let width = expected.info.shape.dropFirst().reduce(1, *)
                func row(_ values: [Double], _ i: Int) -> [Double] { Array(values[(i * width)..<((i + 1) * width)]) }
                for (token, id) in theirs {
                    guard let mineID = ours[token] else { continue }
                    let error = maxAbsError(row(actual.values, mineID), row(expected.values, id))
                    #expect(error <= tolerance, "\(tensor) row of \(token): off by \(error)", sourceLocation: sourceLocation)
                }
                for i in theirs.count..<expected.info.shape[0] {
                    let error = maxAbsError(row(actual.values, i), row(expected.values, i))
                    #expect(error <= tolerance, "\(tensor) padding row \(i): off by \(error)", sourceLocation: sourceLocation)
                }
            } else {
                let error = maxAbsError(actual.values, expected.values)
                #expect(error <= tolerance, "\(tensor): off by \(error)", sourceLocation: sourceLocation)
            }
        }
        let config = try JSONParser.parse(FileSystem.readFile(output + "/config.json"))
        let expected = try JSONParser.parse(FileSystem.readFile(folder + "/\(name)/config.json"))
        #expect(config["vocab_size"] != nil && config["vocab_size"] == expected["vocab_size"], "vocab_size", sourceLocation: sourceLocation)
        #expect(config["tie_word_embeddings"] == (tied.map { .bool($0) } ?? expected["tie_word_embeddings"]), "tie_word_embeddings",
                sourceLocation: sourceLocation)
        return output
    }

    @discardableResult
    static func withDirectory<T>(_ body: (String) throws -> T) throws -> T {
        let dir = TestSupport.temporaryDirectory("vocabulary")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try body(dir)
    }

    @Test("tokenizer_source: union with linear (the README's example): every model's tokens; a model without a tokenizer has the base's")
    func unionLinear() throws {
        try Self.withDirectory { dir in
            let output = try Self.expectGolden("union_linear", in: dir)
            // The base's tokens keep their ids; the other models' follow: ordinary tokens first
            // (plain added tokens), then their added tokens with their own settings.
            let base = try Self.vocabulary(ofTokenizerIn: Self.folder + "/models/base")
            let ours = try Self.vocabulary(ofTokenizerIn: output)
            #expect(base.allSatisfy { ours[$0.key] == $0.value })
            let written = try ModelTokenizer(bytes: FileSystem.readFile(output + "/tokenizer.json"), path: output)
            let added = written.addedTokens.filter { $0.id >= 40 }
            #expect(added.map(\.content).suffix(4) == ["<|im_start|>", "<|im_end|>", "<pad>", "<tool>"])
            #expect(added.prefix(added.count - 4).allSatisfy { !$0.special })
            #expect(added.first { $0.content == "<|im_start|>" }?.special == true)
            #expect(added.first { $0.content == "<|extra|>" } == nil, "a token past chat's vocab_size has no row")
            // transformers 4's added_tokens_decoder kept in step.
            let config = try JSONParser.parse(FileSystem.readFile(output + "/tokenizer_config.json"))
            #expect(config["added_tokens_decoder"]?.objectMembers?.map(\.key) == written.addedTokens.map { String($0.id) })
        }
    }

    @Test("tokenizer_source: union with task_arithmetic")
    func unionTaskArithmetic() throws { try Self.withDirectory { try Self.expectGolden("union_task_arithmetic", in: $0) } }

    @Test("tokenizer_source: base with ties: the base's vocabulary and tokenizer files, each model's rows placed by token")
    func baseTies() throws {
        try Self.withDirectory { dir in
            let output = try Self.expectGolden("base_ties", in: dir)
            #expect(try Self.vocabulary(ofTokenizerIn: output) == Self.goldenVocabulary("base_ties"))
            // Nothing added: the base's tokenizer files are copied as they are.
            for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
                #expect(try FileSystem.readFile(output + "/" + name) == FileSystem.readFile(Self.folder + "/models/base/" + name), "\(name)")
            }
        }
    }

    @Test("tokenizer_source: a model: its vocabulary (every id another), its tokenizer files")
    func modelSource() throws {
        try Self.withDirectory { dir in
            let output = try Self.expectGolden("model_source", in: dir)
            #expect(try Self.vocabulary(ofTokenizerIn: output) == Self.goldenVocabulary("model_source"))
            for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
                #expect(try FileSystem.readFile(output + "/" + name) == FileSystem.readFile(Self.folder + "/models/code/" + name), "\(name)")
            }
        }
    }

    @Test("The tokenizer block: tokens from a model, from a model's token (forced), from a row id, zeros; pad_to_multiple_of")
    func tokensBlock() throws { try Self.withDirectory { try Self.expectGolden("tokens_block", in: $0) } }

    @Test("pad_to_multiple_of with the base's vocabulary: the padding rows are each model's mean row")
    func padBase() throws { try Self.withDirectory { try Self.expectGolden("pad_base", in: $0) } }

    @Test("Tied embeddings (no lm_head): the union of two tied models has no head, and stays tied")
    func tiedUnion() throws { try Self.withDirectory { try Self.expectGolden("tied_union", in: $0) } }

    @Test("A tied model merged with an untied base: its embedding serves as its head")
    func mixedTied() throws { try Self.withDirectory { try Self.expectGolden("mixed_tied", in: $0) } }

    @Test("Without tokenizer_source, a tied model merged with an untied base: its embedding is its head")
    func tiedModelPlain() throws { try Self.withDirectory { try Self.expectGolden("tied_model_plain", in: $0) } }

    @Test("A tied base merged with models storing a head (with and without tokenizer_source): mergekit's merged head, stored, and the output untied")
    func tiedBase() throws {
        try Self.withDirectory { dir in
            // mergekit keeps the base's tie_word_embeddings: true, so transformers would tie the head it wrote to the embedding.
            for name in ["tied_base_plain", "tied_base_union"] {
                let expected = try JSONParser.parse(FileSystem.readFile(Self.folder + "/\(name)/config.json"))
                #expect(expected["tie_word_embeddings"] == .bool(true))
                try FileManager.default.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true)
                let output = try Self.expectGolden(name, in: dir + "/" + name, tied: false)
                #expect(try Checkpoint(path: output).entry(named: "lm_head.weight") != nil)
            }
        }
    }

    @Test("A union without a base model: each model keeps its own rows, a token one model has is its row for the other")
    func unionNoBase() throws { try Self.withDirectory { try Self.expectGolden("union_no_base", in: $0) } }

    /// Row `token` (by the directory's own tokenizer) of tensor `tensor` of the model in `directory`.
    static func row(in directory: String, _ tensor: String, _ token: String) throws -> [Double] {
        let id = try #require(vocabulary(ofTokenizerIn: directory)[token])
        let values = try #require(TestSupport.values(try Checkpoint(path: directory))[tensor])
        let width = values.info.shape[1]
        return Array(values.values[(id * width)..<((id + 1) * width)])
    }

    @Test("Tokens two of four models have (not the base): every model lacking one gets the mean of their rows, a tied model's head being its embedding")
    func unionMean() throws {
        try Self.withDirectory { dir in
            let output = try Self.expectGolden("union_mean", in: dir)
            // Linear with weights 1: the base and code take the fill, so the output row is the mean itself.
            for token in ["<|im_start|>", "<|im_end|>"] {
                let embed = zip(try Self.row(in: Self.folder + "/models/chat", "model.embed_tokens.weight", token),
                                try Self.row(in: Self.folder + "/models/tied_chat", "model.embed_tokens.weight", token)).map { ($0 + $1) / 2 }
                let head = zip(try Self.row(in: Self.folder + "/models/chat", "lm_head.weight", token),
                               try Self.row(in: Self.folder + "/models/tied_chat", "model.embed_tokens.weight", token)).map { ($0 + $1) / 2 }
                #expect(maxAbsError(try Self.row(in: output, "model.embed_tokens.weight", token), embed) < 1e-6, "\(token)")
                #expect(maxAbsError(try Self.row(in: output, "lm_head.weight", token), head) < 1e-6, "\(token)")
            }
        }
    }

    @Test("Without a base: a token two of three models have gets their mean for the third")
    func unionMeanNoBase() throws { try Self.withDirectory { try Self.expectGolden("union_mean_no_base", in: $0) } }

    @Test("Slices: a merged slice's vocabulary tensors from its own sources (the base, not among them, gives no rows)")
    func slicesUnion() throws { try Self.withDirectory { try Self.expectGolden("slices_union", in: $0) } }

    @Test("Slices: a frankenmerge's embedding from its first slice's model, its head from its last's, zeros for the tokens each lacks")
    func slicesFranken() throws { try Self.withDirectory { try Self.expectGolden("slices_franken", in: $0) } }

    @Test("Slices: one slice merging two tied models stays tied, without a head")
    func slicesTied() throws { try Self.withDirectory { try Self.expectGolden("slices_tied", in: $0) } }

    @Test("Slices: a tied model's embedding then an untied model's head: the head is written and the output untied")
    func slicesTiedFranken() throws { try Self.withDirectory { try Self.expectGolden("slices_tied_franken", in: $0) } }

    @Test("chat_template: auto takes the template most models carry (mergekit's choice)")
    func chatAuto() throws {
        try Self.withDirectory { dir in
            let output = try Self.expectGolden("chat_auto", in: dir)
            let golden = try String(contentsOfFile: Self.folder + "/chat_auto/chat_template.jinja", encoding: .utf8)
            #expect(try String(contentsOfFile: output + "/chat_template.jinja", encoding: .utf8) == golden)
            let config = try JSONParser.parse(FileSystem.readFile(output + "/tokenizer_config.json"))
            #expect(config["chat_template"]?.stringValue == golden)
        }
    }

    @Test("chat_template: chatml writes MergeKit's ChatML template to chat_template.jinja and tokenizer_config.json")
    func chatNamed() throws {
        try Self.withDirectory { dir in
            let output = try Self.expectGolden("chat_named", in: dir)
            let chatml = try #require(ChatTemplates.named.first { $0.name == "chatml" }?.template)
            #expect(try String(contentsOfFile: output + "/chat_template.jinja", encoding: .utf8) == chatml)
            let config = try JSONParser.parse(FileSystem.readFile(output + "/tokenizer_config.json"))
            #expect(config["chat_template"]?.stringValue == chatml)
            #expect(FileManager.default.fileExists(atPath: Self.folder + "/chat_named/chat_template.jinja"), "mergekit writes one too")
        }
    }
}
