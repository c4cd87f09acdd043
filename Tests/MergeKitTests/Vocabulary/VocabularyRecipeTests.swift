import Foundation
import Testing
@testable import MergeKit

/// Recipes with vocabularies beyond mergekit's goldens: a chat template alone, a merged
/// vocabulary read by a later document of a multi-document recipe, what `--dry-run` says.
@Suite("Vocabularies: recipes")
struct VocabularyRecipeTests {
    static let models = TestSupport.fixture("mergekit_goldens/vocab/models")

    static func withDirectory<T>(_ body: (String) throws -> T) throws -> T { try VocabularyGoldenTests.withDirectory(body) }

    static func bytes(_ path: String) throws -> [UInt8] { try FileSystem.readFile(path) }

    @Test("chat_template without tokenizer_source: the base's tokenizer files with the template; the vocabularies must still match")
    func templateAlone() throws {
        try Self.withDirectory { dir in
            let recipe = try Recipe.parse("""
                merge_method: task_arithmetic
                base_model: \(Self.models)/base
                models: [{model: \(Self.models)/notok}]
                chat_template: chatml
                """, path: dir + "/recipe.yml")
            _ = try MergeRun.run(try recipe.plan(output: dir + "/out").plans, threads: 2)
            let chatml = try #require(ChatTemplates.named.first { $0.name == "chatml" }?.template)
            #expect(try String(contentsOfFile: dir + "/out/chat_template.jinja", encoding: .utf8) == chatml)
            let config = try JSONParser.parse(Self.bytes(dir + "/out/tokenizer_config.json"))
            let baseConfig = try JSONParser.parse(Self.bytes(Self.models + "/base/tokenizer_config.json"))
            #expect(config["chat_template"]?.stringValue == chatml && baseConfig["chat_template"]?.stringValue != chatml)
            #expect(config["added_tokens_decoder"] == baseConfig["added_tokens_decoder"])
            #expect(try Self.bytes(dir + "/out/tokenizer.json") == Self.bytes(Self.models + "/base/tokenizer.json"))
            #expect(try JSONParser.parse(Self.bytes(dir + "/out/config.json"))["vocab_size"] == .int(40))
            // A template does not merge vocabularies.
            let mismatched = try Recipe.parse("""
                merge_method: task_arithmetic
                base_model: \(Self.models)/base
                models: [{model: \(Self.models)/chat}]
                chat_template: chatml
                """, path: dir + "/mismatched.yml")
            let error = #expect(throws: MergeKitError.self) { try mismatched.plan(output: dir + "/other") }
            #expect(error?.code == .vocabularyMismatch && error?.description.contains("line 3 of") == true, "\(String(describing: error))")
        }
    }

    @Test("chat_template: auto in a slices recipe keeps every vocabulary tensor; the base's template when only it has one")
    func templateInSlices() throws {
        try Self.withDirectory { dir in
            let recipe = try Recipe.parse("""
                merge_method: linear
                slices:
                  - sources:
                      - {model: \(Self.models)/base, layer_range: [0, 1], parameters: {weight: 0.5}}
                      - {model: \(Self.models)/notok, layer_range: [0, 1], parameters: {weight: 0.5}}
                chat_template: auto
                """, path: dir + "/recipe.yml")
            _ = try MergeRun.run(try recipe.plan(output: dir + "/out").plans, threads: 2)
            let names = try Checkpoint(path: dir + "/out").tensorNames
            #expect(names.contains("model.embed_tokens.weight") && names.contains("lm_head.weight") && names.count == 12)
            let baseConfig = try JSONParser.parse(Self.bytes(Self.models + "/base/tokenizer_config.json"))
            #expect(try String(contentsOfFile: dir + "/out/chat_template.jinja", encoding: .utf8) == baseConfig["chat_template"]?.stringValue)
        }
    }

    @Test("A later document reads an intermediate's merged vocabulary (its tokenizer as planned): the same output as the stages run by hand")
    func stagedUnion() throws {
        try Self.withDirectory { dir in
            let first = """
                name: chatty
                merge_method: task_arithmetic
                base_model: \(Self.models)/base
                models: [{model: \(Self.models)/chat, parameters: {weight: 1.0}}]
                tokenizer_source: union
                """
            func second(_ chatty: String) -> String {
                """
                merge_method: task_arithmetic
                base_model: \(Self.models)/base
                models:
                  - {model: \(chatty), parameters: {weight: 0.5}}
                  - {model: \(Self.models)/code, parameters: {weight: 0.5}}
                tokenizer_source: union
                """
            }
            _ = try MergeRun.run(try Recipe.parse(first, path: dir + "/one.yml").plan(output: dir + "/chatty").plans, threads: 2)
            _ = try MergeRun.run(try Recipe.parse(second(dir + "/chatty"), path: dir + "/two.yml").plan(output: dir + "/hand").plans, threads: 2)
            let file = try RecipeFile.parse(first + "\n---\n" + second("chatty"), path: dir + "/both.yml")
            _ = try MergeRun.run(try file.plan(output: dir + "/staged"), threads: 2)
            for name in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
                #expect(try Self.bytes(dir + "/staged/" + name) == Self.bytes(dir + "/hand/" + name), "\(name)")
            }
            #expect(try VocabularyGoldenTests.vocabulary(ofTokenizerIn: dir + "/staged").count == 55)
        }
    }

    @Test("A base whose tokenizer has tokens past its vocab_size: tokenizer_source base writes its tokenizer without them (mergekit strips them)")
    func strippedBase() throws {
        try Self.withDirectory { dir in
            let recipe = try Recipe.parse("""
                merge_method: task_arithmetic
                base_model: \(Self.models)/chat
                models: [{model: \(Self.models)/base}]
                tokenizer_source: base
                """, path: dir + "/recipe.yml")
            _ = try MergeRun.run(try recipe.plan(output: dir + "/out").plans, threads: 2)
            let chat = try VocabularyGoldenTests.vocabulary(ofTokenizerIn: Self.models + "/chat")
            let written = try VocabularyGoldenTests.vocabulary(ofTokenizerIn: dir + "/out")
            #expect(chat["<|extra|>"] == 42 && written["<|extra|>"] == nil)
            #expect(written == chat.filter { $0.value < 42 })
            let config = try JSONParser.parse(Self.bytes(dir + "/out/tokenizer_config.json"))
            #expect(config["added_tokens_decoder"]?.objectMembers?.map(\.key) == ["0", "1", "2", "40", "41"])
            #expect(try JSONParser.parse(Self.bytes(dir + "/out/config.json"))["vocab_size"] == .int(42))
            // The base's rows where it lacks chat's two tokens: chat's own rows (a token only one model has).
            let out = TestSupport.values(try Checkpoint(path: dir + "/out"))["model.embed_tokens.weight"]!
            let own = TestSupport.values(try Checkpoint(path: Self.models + "/chat"))["model.embed_tokens.weight"]!
            #expect(out.info.shape == [42, 4] && Array(out.values[160..<168]) == Array(own.values[160..<168]))
        }
    }

    @Test("--dry-run names the output vocabulary; a single-file output gets a note that the tokenizer files are not written")
    func description() throws {
        try Self.withDirectory { dir in
            let recipe = try Recipe.parse("""
                merge_method: linear
                base_model: \(Self.models)/base
                models: [{model: \(Self.models)/base}, {model: \(Self.models)/chat}, {model: \(Self.models)/code}]
                tokenizer: {source: union, pad_to_multiple_of: 8}
                """, path: dir + "/recipe.yml")
            let run = try recipe.plan(output: dir + "/out")
            let text = PlanDescription.text(run.plans[0])
            #expect(text.contains("vocabulary: the union of the models' (tokenizer_source union): 55 tokens (40 of its source tokenizer's, 15 added), padded to 56 rows"), "\(text)")
            #expect(text.contains("model.embed_tokens.weight [56, 4]"))
            #expect(PlanDescription.json(run.plans[0])["vocabulary"]?.stringValue?.hasPrefix("the union") == true)
            let single = try recipe.plan(output: dir + "/out.safetensors")
            #expect(single.notes.contains { $0.contains("is a single .safetensors file, so the tokenizer files") })
        }
    }
}
