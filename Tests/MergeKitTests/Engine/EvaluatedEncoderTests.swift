import Foundation
import Testing
@testable import MergeKit

/// Which encoder an evaluation runs, decided by the library from the checkpoints.
@Suite("Evaluated encoder")
struct EvaluatedEncoderTests {
    static var base: String { EngineFixtures.path("quick/base") }
    static var finetuned: String { EngineFixtures.path("quick/finetuned") }

    @Test("A model runs as it is, a linearized checkpoint around its own θ₀, a WEMoE model with per-image routing")
    func byKind() throws {
        let dir = TestSupport.temporaryDirectory("evaluated")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let linearized = try LinearizedCheckpointTests.linearize("quick/base", "quick/finetuned", into: dir, "lin.safetensors").path
        try WEMoEFixtures.upscaled(depth: 1).save(to: dir + "/moe.safetensors")

        let plain = try EvaluatedEncoder(model: Self.finetuned)
        #expect(plain.form == .plain && plain.hasProjection && plain.embeddingSize == plain.config.projectionDim)
        #expect(try plain.load(threads: 1) is CLIPVisionModel)

        let linear = try EvaluatedEncoder(model: linearized)
        #expect(linear.form == .linearized && linear.config == plain.config)
        #expect(try linear.load(threads: 1) is LinearizedCLIPVisionModel)

        let moe = try EvaluatedEncoder(model: dir + "/moe.safetensors")
        #expect(moe.form == .wemoe(experts: 3, routerDepth: 1))
        #expect(try moe.load(threads: 1) is WEMoEModel)
    }

    @Test("An ordinary fine-tune linearized around a given base computes f(x; θ₀) + J·(θ − θ₀), also from a bare weights file")
    func aroundABase() throws {
        let data = try EngineFixtures.dataset("quick")
        let pixels = data.pixels(0..<data.count)
        let reference = try LinearizedCLIPVisionModel(base: EngineFixtures.model("quick/base", threads: 1),
                                                      finetuned: EngineFixtures.model("quick/finetuned").parameters)
            .forward(pixels: pixels, batch: data.count)
        // A directory with its config.json, and the weights file alone (read with the base's layout).
        for model in [Self.finetuned, Self.finetuned + "/model.safetensors"] {
            let chosen = try EvaluatedEncoder(model: model, linearizedAround: Self.base)
            let baseConfig = try EncoderCheckpoint(try Checkpoint(path: Self.base)).config
            #expect(chosen.form == .linearized && chosen.config == baseConfig)
            let encoder = try chosen.load(threads: 1)
            #expect(encoder is LinearizedCLIPVisionModel)
            expectClose(encoder.forward(pixels: pixels, batch: data.count), reference.map(Double.init), tolerance: 0, "\(model)")
        }
    }

    @Test("A fine-tune whose config.json describes another architecture than the base's is refused, naming that config")
    func otherArchitecture() throws {
        let model = EngineFixtures.path("gelu/model")
        let error = try #require(throws: MergeKitError.self) { try EvaluatedEncoder(model: model, linearizedAround: Self.base) }
        #expect(error.code == .shapeMismatch && error.file == model + "/config.json", "\(error)")
        #expect(error.fix == "the model must be a fine-tune of the base" && error.terms.map(\.key) == ["model-of-base"])
    }

    @Test("Missing files are named; unused tensors are reported per file, the base's first, only when allowed")
    func unusedAndMissing() throws {
        let missing = EngineFixtures.path("quick/nothing")
        let error = try #require(throws: MergeKitError.self) { try EvaluatedEncoder(model: missing) }
        #expect(error.code == .fileNotFound && error.file == missing, "\(error)")

        let dir = TestSupport.temporaryDirectory("evaluated-unused")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let extra = dir + "/extra.safetensors"
        EngineTestFiles.rewrite(try Checkpoint(path: Self.finetuned), to: extra, metadata: ["format": "pt"]) { tensors in
            tensors.append((TensorSpec(name: "unused.weight", dtype: .F32, shape: [2]), [1, 2]))
        }
        let refused = try #require(throws: MergeKitError.self) { try EvaluatedEncoder(model: extra, linearizedAround: Self.base) }
        #expect(refused.code == .extraTensor && refused.tensor == "unused.weight" && !refused.description.contains("--"), "\(refused)")
        var heard: [(String, [String])] = []
        let chosen = try EvaluatedEncoder(model: extra, linearizedAround: Self.base, allowUnused: true) { heard.append(($0, $1)) }
        #expect(chosen.form == .linearized)
        #expect(heard.map(\.0) == [Self.base, extra] && heard[0].1.isEmpty && heard[1].1 == ["unused.weight"])
    }
}
