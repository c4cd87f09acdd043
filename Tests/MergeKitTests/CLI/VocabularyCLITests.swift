import Foundation
import Testing
@testable import MergeKit

/// merge-cli with merged vocabularies: a union recipe runs and says what it assumed, a recipe whose
/// vocabularies differ exits 1 naming the fix, and a merge subcommand says to use a recipe.
@Suite("merge-cli: vocabularies")
struct VocabularyCLITests {
    static let folder = TestSupport.fixture("mergekit_goldens/vocab")

    @Test("run: the README's union recipe writes the tokenizer files and notes the model without a tokenizer; a mismatch exits 1")
    func runRecipes() throws {
        let dir = TestSupport.temporaryDirectory("vocabulary-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try CLI.run(["run", "union_linear.yml", "-o", dir + "/out"], in: Self.folder)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("note: models/notok has no tokenizer.json; its vocabulary is taken to be the base's"), "\(run.stderr)")
        #expect(Set(TestSupport.listing(dir + "/out")).isSuperset(of: ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"]))
        let dryRun = try CLI.run(["run", "union_linear.yml", "-o", dir + "/other", "--dry-run"], in: Self.folder)
        #expect(dryRun.status == 0 && dryRun.stdout.contains("vocabulary: the union of the models' (tokenizer_source union): 55 tokens"), "\(dryRun.stdout)")

        try "merge_method: linear\nbase_model: \(Self.folder)/models/base\nmodels: [{model: \(Self.folder)/models/base}, {model: \(Self.folder)/models/chat}]\n"
            .write(toFile: dir + "/mismatch.yml", atomically: true, encoding: .utf8)
        let mismatch = try CLI.run(["run", dir + "/mismatch.yml", "-o", dir + "/never"])
        #expect(mismatch.status == 1)
        #expect(mismatch.stderr.contains("line 3 of") && mismatch.stderr.contains("has 42 vocabulary rows") && mismatch.stderr.contains("tokenizer_source: base"),
                "\(mismatch.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/never"))
    }

    @Test("A merge subcommand given models of different vocabularies names the tokens and points at a recipe's tokenizer_source")
    func subcommand() throws {
        let dir = TestSupport.temporaryDirectory("vocabulary-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try CLI.run(["task-arithmetic", "--base", Self.folder + "/models/base", "--model", Self.folder + "/models/chat", "-o", dir + "/out"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("tensor 'model.embed_tokens.weight'") && run.stderr.contains("\"<|im_start|>\" (40)")
                && run.stderr.contains("a recipe that gives tokenizer_source: base"), "\(run.stderr)")
    }
}
