import Foundation
import Testing
@testable import MergeKit

/// The engine against transformers + torch (Fixtures/clip/make_clip_fixtures.py): forward,
/// torch.func.jvp and autograd, references computed in float64 from the stored weights.
@Suite("CLIP engine vs PyTorch")
struct CLIPReferenceTests {
    static let tolerance = 1e-5

    struct Case: Sendable, CustomStringConvertible {
        let folder: String
        let model: String
        let direction: String
        var description: String { folder }
    }

    static let cases = [
        Case(folder: "quick", model: "quick/base", direction: "quick/tau.safetensors"),
        Case(folder: "gelu", model: "gelu/model", direction: "gelu/direction.safetensors"),
    ]

    @Test("Embeddings and logits match transformers' forward", arguments: cases)
    func forward(_ c: Case) throws {
        let model = try EngineFixtures.model(c.model)
        let expected = try EngineFixtures.tensors(c.folder + "/expected.safetensors")
        let data = try EngineFixtures.dataset(c.folder)
        let head = try TaskHead(path: EngineFixtures.path(c.folder + "/head.safetensors"))
        let embeddings = model.forward(pixels: data.pixels(0..<data.count), batch: data.count)
        let e1 = expectClose(embeddings, expected["embeddings"], tolerance: Self.tolerance, normwise: true, "\(c) embeddings")
        let e2 = expectClose(head.logits(embeddings: embeddings, batch: data.count), expected["logits"],
                             tolerance: Self.tolerance, normwise: true, "\(c) logits")
        print("[engine] \(c) forward: embeddings \(e1), logits \(e2)")
    }

    @Test("The fine-tuned model's embeddings match", arguments: [1, 3, 8])
    func finetuned(batchSize: Int) throws {
        let model = try EngineFixtures.model("quick/finetuned")
        let expected = try EngineFixtures.tensors("quick/expected.safetensors")
        let data = try EngineFixtures.dataset("quick")
        var embeddings: [Float] = []
        var start = 0
        while start < data.count {
            let range = start..<min(data.count, start + batchSize)
            embeddings += model.forward(pixels: data.pixels(range), batch: range.count)
            start = range.upperBound
        }
        expectClose(embeddings, expected["finetuned.embeddings"], tolerance: Self.tolerance, normwise: true, "finetuned, batches of \(batchSize)")
    }

    @Test("The JVP matches torch.func.jvp (full task vector; partial direction on a bf16 gelu model)", arguments: cases)
    func jvp(_ c: Case) throws {
        let model = try EngineFixtures.model(c.model)
        let expected = try EngineFixtures.tensors(c.folder + "/expected.safetensors")
        let data = try EngineFixtures.dataset(c.folder)
        let direction = try model.parameters.direction(from: Checkpoint(path: EngineFixtures.path(c.direction)))
        let (embeddings, tangent) = model.jvp(pixels: data.pixels(0..<data.count), batch: data.count, direction: direction)
        let e1 = expectClose(embeddings, expected["jvp.embeddings"], tolerance: Self.tolerance, normwise: true, "\(c) jvp primal")
        let e2 = expectClose(tangent, expected["jvp.tangent"], tolerance: Self.tolerance, normwise: true, "\(c) jvp tangent")
        print("[engine] \(c) jvp: primal \(e1), tangent \(e2)")
    }

    @Test("The linearized model's logits match f(x; θ₀) + J·(θ − θ₀) from PyTorch")
    func linearized() throws {
        let base = try EngineFixtures.model("quick/base")
        let finetuned = try EngineFixtures.model("quick/finetuned")
        let expected = try EngineFixtures.tensors("quick/expected.safetensors")
        let data = try EngineFixtures.dataset("quick")
        let head = try TaskHead(path: EngineFixtures.path("quick/head.safetensors"))
        let linear = try LinearizedCLIPVisionModel(base: base, finetuned: finetuned.parameters)
        let embeddings = linear.forward(pixels: data.pixels(0..<data.count), batch: data.count)
        expectClose(head.logits(embeddings: embeddings, batch: data.count), expected["linearized.logits"],
                    tolerance: Self.tolerance, normwise: true, "linearized logits")
        // The task-vector file gives the same direction as the difference of the checkpoints.
        let tau = try base.parameters.direction(from: Checkpoint(path: EngineFixtures.path("quick/tau.safetensors")))
        #expect(tau.flat == linear.direction.flat)
    }

    @Test("Gradients of cross-entropy and of the softmax entropy match autograd for every parameter and the input",
          arguments: cases)
    func gradients(_ c: Case) throws {
        let model = try EngineFixtures.model(c.model)
        let expected = try EngineFixtures.tensors(c.folder + "/expected.safetensors")
        let data = try EngineFixtures.dataset(c.folder)
        let head = try TaskHead(path: EngineFixtures.path(c.folder + "/head.safetensors"))
        for (name, loss) in [("ce", ClassificationLoss.crossEntropy(labels: data.labels)), ("entropy", .entropy)] {
            let result = model.lossGradients(pixels: data.pixels(0..<data.count), batch: data.count, head: head, loss: loss)
            let referenceLoss = try #require(expected["\(name).loss"]?.first)
            #expect(abs(result.loss - referenceLoss) <= 1e-5 * abs(referenceLoss), "\(c) \(name) loss \(result.loss) vs \(referenceLoss)")
            var worst = (0.0, "")
            for tensor in model.parameters.tensors {
                if tensor.name.hasSuffix("self_attn.k_proj.bias") {
                    // ∂L/∂b_k is 0 in exact arithmetic: b_k adds q_i·b_k/√d to every score of row i,
                    // and softmax ignores a per-row shift. Autograd's float64 value is ~1e-17, so a
                    // relative comparison is meaningless; check that ours is zero up to float32
                    // rounding on the scale of the same projection's weight gradient.
                    let weightName = String(tensor.name.dropLast("bias".count)) + "weight"
                    let scale = try #require(expected["\(name).grad.\(weightName)"]).map(abs).max() ?? 0
                    let ours = result.parameters.values(of: tensor.name)!.map { Double(abs($0)) }.max() ?? 0
                    #expect(scale > 0 && ours <= 1e-5 * scale, "\(c) \(name) ∂/∂\(tensor.name) is \(ours), not ≈ 0 (scale \(scale))")
                    continue
                }
                let error = expectClose(result.parameters.values(of: tensor.name)!, expected["\(name).grad.\(tensor.name)"],
                                        tolerance: Self.tolerance, normwise: true, "\(c) \(name) ∂/∂\(tensor.name)")
                if error > worst.0 { worst = (error, tensor.name) }
            }
            let input = expectClose(try #require(result.input), expected["\(name).grad.pixel_values"],
                                    tolerance: Self.tolerance, normwise: true, "\(c) \(name) ∂/∂pixels")
            print("[engine] \(c) \(name) gradients: worst parameter \(worst.0) (\(worst.1)), input \(input)")
        }
    }

    /// Each mode is bit-identical for every thread count (ThreadIndependenceTests); the two modes
    /// group the products differently (8 image shards against one tiled shard), so they differ by
    /// float32 rounding, and each is held to `tolerance` against the float64 reference above.
    @Test("The two parallelism modes agree to the engine's accuracy")
    func parallelism() throws {
        let images = try EngineFixtures.model("quick/base", threads: 3)
        let blas = try EngineFixtures.model("quick/base", threads: 3)
        blas.parallelism = .blas
        let data = try EngineFixtures.dataset("quick")
        let pixels = data.pixels(0..<data.count)
        let expected = images.forward(pixels: pixels, batch: data.count).map(Double.init)
        let forward = expectClose(blas.forward(pixels: pixels, batch: data.count), expected, tolerance: Self.tolerance, normwise: true, "forward")
        let head = try TaskHead(path: EngineFixtures.path("quick/head.safetensors"))
        let g1 = images.lossGradients(pixels: pixels, batch: data.count, head: head, loss: .entropy)
        let g2 = blas.lossGradients(pixels: pixels, batch: data.count, head: head, loss: .entropy)
        let parameters = expectClose(g2.parameters.flat, g1.parameters.flat.map(Double.init), tolerance: Self.tolerance, normwise: true, "gradients")
        let input = expectClose(g2.input!, g1.input!.map(Double.init), tolerance: Self.tolerance, normwise: true, "input gradient")
        print("[engine] blas vs images: forward \(forward), gradients \(parameters), input gradient \(input)")
    }
}
