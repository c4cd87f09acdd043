import Foundation
import Testing
@testable import MergeKit

/// Models with tied embeddings (`tie_word_embeddings`, no stored head) merged with models that
/// store their head, without merging vocabularies: subcommands, task-vector outputs and slices
/// (`VocabularyTensors.presentingTiedHeads`, `Recipe.tiedHeads`). The models are the vocabulary
/// goldens' (base and notok: untied, 40 tokens; tied_base: tied, the base's tokenizer; tied_chat:
/// tied, 42 tokens). Expected values are formed here from the input files by the rule each test
/// names (the rules are checked against mergekit's outputs in `VocabularyGoldenTests`).
@Suite("Vocabularies: tied heads")
struct TiedHeadTests {
    static let models = TestSupport.fixture("mergekit_goldens/vocab/models")

    static func tensor(_ path: String, _ name: String) throws -> [Double] {
        try #require(TestSupport.values(try Checkpoint(path: path))[name]).values
    }

    static func config(_ path: String) throws -> JSONValue {
        try JSONParser.parse(FileSystem.readFile(path + "/config.json"))
    }

    /// Runs a recipe `text` into `dir`/out; returns the output.
    static func run(_ text: String, in dir: String) throws -> String {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let recipe = try Recipe.parse(text, path: dir + "/recipe.yml")
        _ = try MergeRun.run(try recipe.plan(output: dir + "/out").plans, threads: 2)
        return dir + "/out"
    }

    @Test("merge-cli task-arithmetic: a tied model's embedding is its head (τ = E − H₀); a tied base gets the merged head and an untied config")
    func subcommands() throws {
        let dir = TestSupport.temporaryDirectory("tied-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = Self.models + "/base", tied = Self.models + "/tied_base", notok = Self.models + "/notok"
        let run = try CLI.run(["task-arithmetic", "--base", base, "--model", tied, "--scale", "0.5", "-o", dir + "/a"])
        #expect(run.status == 0, "\(run.stderr)")
        let h0 = try Self.tensor(base, "lm_head.weight"), e = try Self.tensor(tied, "model.embed_tokens.weight")
        #expect(maxAbsError(try Self.tensor(dir + "/a", "lm_head.weight"), zip(h0, e).map { $0 + 0.5 * ($1 - $0) }) < 1e-6)
        #expect(try Self.config(dir + "/a")["tie_word_embeddings"] == .bool(false))

        let reverse = try CLI.run(["task-arithmetic", "--base", tied, "--model", notok, "--scale", "0.5", "-o", dir + "/b"])
        #expect(reverse.status == 0, "\(reverse.stderr)")
        let h = try Self.tensor(notok, "lm_head.weight")
        #expect(maxAbsError(try Self.tensor(dir + "/b", "lm_head.weight"), zip(e, h).map { $0 + 0.5 * ($1 - $0) }) < 1e-6)
        let config = try Self.config(dir + "/b")
        #expect(config["tie_word_embeddings"] == .bool(false) && config["vocab_size"] == .int(40))
        #expect(try Self.config(tied)["tie_word_embeddings"] == .bool(true))
    }

    @Test("Task vectors: a tied model's head τ against an untied base; a tied base keeps no head, so a model's stored head is refused")
    func taskVectors() throws {
        let dir = TestSupport.temporaryDirectory("tied-tv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Checkpoint(path: Self.models + "/base"), tied = try Checkpoint(path: Self.models + "/tied_base")
        let plan = try MergePlan(base: base, inputs: [MergeInput(kind: .model, checkpoint: tied)], method: try TaskArithmetic(scale: 1),
                                 output: OutputSpec(path: dir + "/tau.safetensors", emit: .taskVector))
        _ = try MergeRun.run([plan], threads: 2)
        let h0 = try Self.tensor(Self.models + "/base", "lm_head.weight"), e = try Self.tensor(Self.models + "/tied_base", "model.embed_tokens.weight")
        #expect(maxAbsError(try Self.tensor(dir + "/tau.safetensors", "lm_head.weight"), zip(e, h0).map { $0 - $1 }) < 1e-6)

        let notok = try Checkpoint(path: Self.models + "/notok")
        let error = #expect(throws: MergeKitError.self) {
            try MergePlan(base: tied, inputs: [MergeInput(kind: .model, checkpoint: notok)], method: try TaskArithmetic(scale: 1),
                          output: OutputSpec(path: dir + "/other.safetensors", emit: .taskVector))
        }
        #expect(error?.code == .extraTensor && error?.description.contains("lm_head.weight") == true, "\(String(describing: error))")
    }

    @Test("A model saved without its head (config.json: tie_word_embeddings false) is not taken to tie it")
    func headless() throws {
        let dir = TestSupport.temporaryDirectory("tied-headless")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: Self.models + "/tied_base", toPath: dir + "/headless")
        let text = try String(contentsOfFile: dir + "/headless/config.json", encoding: .utf8)
        try text.replacingOccurrences(of: "\"tie_word_embeddings\": true", with: "\"tie_word_embeddings\": false")
            .write(toFile: dir + "/headless/config.json", atomically: true, encoding: .utf8)
        let run = try CLI.run(["task-arithmetic", "--base", Self.models + "/base", "--model", dir + "/headless", "-o", dir + "/out"])
        #expect(run.status == 1 && run.stderr.contains("tensor 'lm_head.weight'") && run.stderr.contains("not in this model"), "\(run.stderr)")
        let headless = try Checkpoint(path: dir + "/headless")
        #expect(VocabularyTensors.tiedHead("lm_head.weight", in: headless) == nil)
        #expect(VocabularyTensors.tiedHead("lm_head.weight", in: try Checkpoint(path: Self.models + "/tied_base"))?.name == "model.embed_tokens.weight")
    }

    @Test("A model with another architecture's head is not taken to tie the base's; models without a config stacked stay without a head")
    func otherHeads() throws {
        let dir = TestSupport.temporaryDirectory("tied-other")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ path: String, _ names: [String]) {
            try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let layer = ["model.layers.0.input_layernorm.weight": [2], "model.layers.0.mlp.up_proj.weight": [3, 2], "model.norm.weight": [2]]
            let tensors = (names.map { ($0, [4, 2]) } + layer.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }).map { name, shape in
                (TensorSpec(name: name, dtype: .F32, shape: shape), (0..<shape.reduce(1, *)).map { Double($0) / 10 + Double(name.count) })
            }
            TestSupport.writeCheckpoint(path + "/model.safetensors", tensors)
        }
        write(dir + "/base", ["model.embed_tokens.weight", "lm_head.weight"])
        write(dir + "/other", ["model.embed_tokens.weight", "embed_out.weight"])
        let run = try CLI.run(["task-arithmetic", "--base", dir + "/base", "--model", dir + "/other", "-o", dir + "/out"])
        #expect(run.status == 1 && run.stderr.contains("tensor 'lm_head.weight'") && run.stderr.contains("tensor 'embed_out.weight'"), "\(run.stderr)")
        #expect(VocabularyTensors.tiedHead("lm_head.weight", in: try Checkpoint(path: dir + "/other")) == nil)

        // Two headless models (no config.json) stacked: nothing says they tie a head, so none is made.
        write(dir + "/a", ["model.embed_tokens.weight"])
        write(dir + "/b", ["model.embed_tokens.weight"])
        let stacked = try Self.run("""
            merge_method: passthrough
            slices:
              - sources: [{model: \(dir)/a, layer_range: [0, 1]}]
              - sources: [{model: \(dir)/b, layer_range: [0, 1]}]
            """, in: dir + "/stack")
        #expect(try Checkpoint(path: stacked).entry(named: "lm_head.weight") == nil)
    }

    @Test("Slices: a head from a tied model after an untied model's embedding is that model's embedding; the config stays untied")
    func frankenUntiedThenTied() throws {
        try VocabularyGoldenTests.withDirectory { dir in
            let output = try Self.run("""
                merge_method: passthrough
                slices:
                  - sources: [{model: \(Self.models)/notok, layer_range: [0, 1]}]
                  - sources: [{model: \(Self.models)/tied_base, layer_range: [0, 1]}]
                """, in: dir)
            #expect(try Self.tensor(output, "lm_head.weight") == Self.tensor(Self.models + "/tied_base", "model.embed_tokens.weight"))
            #expect(try Self.tensor(output, "model.embed_tokens.weight") == Self.tensor(Self.models + "/notok", "model.embed_tokens.weight"))
            #expect(try Self.config(output)["tie_word_embeddings"] == .bool(false))
        }
    }

    @Test("Slices: an untied model's head after a tied model's embedding is stored, and the config (the tied model's) says untied")
    func frankenTiedThenUntied() throws {
        try VocabularyGoldenTests.withDirectory { dir in
            let output = try Self.run("""
                merge_method: passthrough
                slices:
                  - sources: [{model: \(Self.models)/tied_base, layer_range: [0, 1]}]
                  - sources: [{model: \(Self.models)/notok, layer_range: [0, 1]}]
                """, in: dir)
            #expect(try Self.tensor(output, "lm_head.weight") == Self.tensor(Self.models + "/notok", "lm_head.weight"))
            #expect(try Self.config(output)["tie_word_embeddings"] == .bool(false))
        }
    }

    @Test("Slices: a tied model stacked on itself stays tied; two tied models stacked get the last one's embedding as a stored head")
    func tiedStacks() throws {
        try VocabularyGoldenTests.withDirectory { dir in
            let tied = Self.models + "/tied_base"
            let same = try Self.run("""
                merge_method: passthrough
                slices:
                  - sources: [{model: \(tied), layer_range: [0, 1]}]
                  - sources: [{model: \(tied), layer_range: [0, 1]}]
                """, in: dir + "/same")
            #expect(try Checkpoint(path: same).entry(named: "lm_head.weight") == nil)
            #expect(try Self.config(same)["tie_word_embeddings"] == .bool(true))
            // A scale on one slice makes its head another merge than the embedding.
            let scaled = try Self.run("""
                merge_method: passthrough
                slices:
                  - sources: [{model: \(tied), layer_range: [0, 1]}]
                  - sources: [{model: \(tied), layer_range: [0, 1], parameters: {scale: 0.5}}]
                """, in: dir + "/scaled")
            #expect(try Self.tensor(scaled, "lm_head.weight") == Self.tensor(tied, "model.embed_tokens.weight").map { $0 * 0.5 })
            #expect(try Self.config(scaled)["tie_word_embeddings"] == .bool(false))
        }
    }

    @Test("Slices: one slice merging an untied and a tied model merges the head with the tied model's embedding")
    func mergedSlice() throws {
        try VocabularyGoldenTests.withDirectory { dir in
            let output = try Self.run("""
                merge_method: linear
                slices:
                  - sources:
                      - {model: \(Self.models)/base, layer_range: [0, 1], parameters: {weight: 0.5}}
                      - {model: \(Self.models)/tied_base, layer_range: [0, 1], parameters: {weight: 0.5}}
                """, in: dir)
            let h = try Self.tensor(Self.models + "/base", "lm_head.weight"), e = try Self.tensor(Self.models + "/tied_base", "model.embed_tokens.weight")
            #expect(maxAbsError(try Self.tensor(output, "lm_head.weight"), zip(h, e).map { ($0 + $1) / 2 }) < 1e-6)
            #expect(try Self.config(output)["tie_word_embeddings"] == .bool(false))
        }
    }
}
