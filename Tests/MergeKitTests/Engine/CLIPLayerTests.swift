import Foundation
import Testing
@testable import MergeKit

/// Small known-answer cases for the engine's building blocks, before the golden fixtures.
@Suite("CLIP engine layers")
struct CLIPLayerTests {
    @Test("exp, sigmoid and the normal CDF agree with libm across their range")
    func elementary() {
        var worstExp = 0.0, worstCDF = 0.0, worstDensity = 0.0
        for i in -1600...1600 {
            let x = Float(i) / 20  // −80 … 80
            let e = Double(VectorMath.exp(x)), reference = Foundation.exp(Double(x))
            worstExp = max(worstExp, abs(e - reference) / reference)
            if abs(x) <= 10 {
                let (cdf, density) = VectorMath.normalCDFAndDensity(x)
                worstCDF = max(worstCDF, abs(Double(cdf) - 0.5 * erfc(-Double(x) / 2.0.squareRoot())))
                worstDensity = max(worstDensity, abs(Double(density) - Foundation.exp(-Double(x) * Double(x) / 2) / (2 * Double.pi).squareRoot()))
            }
        }
        #expect(worstExp <= 3e-7, "exp relative error \(worstExp)")
        #expect(worstCDF <= 3e-7, "Φ absolute error \(worstCDF)")
        #expect(worstDensity <= 1e-7, "φ absolute error \(worstDensity)")
        #expect(VectorMath.exp(0) == 1)
        #expect(VectorMath.exp(-1000) > 0 && VectorMath.exp(-1000) < 1e-37)
        #expect(VectorMath.exp(1000).isFinite)
        #expect(VectorMath.sigmoid(0) == 0.5)
        #expect(VectorMath.sigmoid(-200) >= 0 && VectorMath.sigmoid(200) == 1)
    }

    @Test("QuickGELU and GELU values and derivatives at known points")
    func activations() {
        let xs: [Float] = [0, 1, -1, 10, -10]
        for kind in CLIPActivation.allCases {
            var y = [Float](repeating: .nan, count: xs.count), dy = y
            Activation.forward(kind, &y, xs, count: xs.count)
            Activation.derivativeTimes(kind, &dy, xs, [Float](repeating: 1, count: xs.count), count: xs.count)
            let reference: [Double] = xs.map { x in
                let v = Double(x)
                return kind == .quickGELU ? v / (1 + Foundation.exp(-1.702 * v)) : 0.5 * v * erfc(-v / 2.0.squareRoot())
            }
            for i in xs.indices { #expect(abs(Double(y[i]) - reference[i]) <= 1e-6 * max(1, abs(reference[i])), "\(kind) f(\(xs[i])) = \(y[i])") }
            #expect(dy[0] == 0.5, "\(kind): f′(0) = ½")
            #expect(abs(dy[3] - 1) < 1e-5 && abs(dy[4]) < 1e-5, "\(kind): f′ → 1 on the right, 0 on the left")
            // f′ against a central difference in Double at x = 1.
            let h = 1e-4
            func f(_ v: Double) -> Double { kind == .quickGELU ? v / (1 + Foundation.exp(-1.702 * v)) : 0.5 * v * erfc(-v / 2.0.squareRoot()) }
            #expect(abs(Double(dy[1]) - (f(1 + h) - f(1 - h)) / (2 * h)) < 1e-6)
        }
    }

    @Test("LayerNorm of [1, 2, 3, 4]")
    func layerNorm() {
        var gamma: [Float] = [1, 2, 1, 1], beta: [Float] = [0, 0, 0, 1]
        let x: [Float] = [1, 2, 3, 4]
        var y = [Float](repeating: 0, count: 4), mean: [Float] = [0], rstd: [Float] = [0]
        gamma.withUnsafeMutableBufferPointer { g in
            beta.withUnsafeMutableBufferPointer { b in
                LayerNorm.forward(&y, mean: &mean, rstd: &rstd, x, LayerNormParameters(weight: g.baseAddress!, bias: b.baseAddress!, dim: 4),
                                  rows: 1, eps: 0)
            }
        }
        let s = 1.25.squareRoot()  // biased variance of 1…4
        #expect(mean == [2.5])
        #expect(abs(Double(rstd[0]) - 1 / s) < 1e-7)
        let expected = [-1.5 / s, 2 * -0.5 / s, 0.5 / s, 1.5 / s + 1]
        for i in 0..<4 { #expect(abs(Double(y[i]) - expected[i]) < 1e-6) }
    }

    @Test("softmax and its Jacobian product")
    func softmax() {
        var row: [Float] = [0, Float(Foundation.log(2.0)), Float(Foundation.log(3.0))]
        Attention.softmax(&row, count: 3)
        for (p, e) in zip(row, [1.0 / 6, 2.0 / 6, 3.0 / 6]) { #expect(abs(Double(p) - e) < 1e-7) }
        var large: [Float] = [1000, 1000]
        Attention.softmax(&large, count: 2)
        #expect(large == [0.5, 0.5])
        // J·1 = 0: softmax ignores a common shift.
        var ones: [Float] = [1, 1, 1]
        Attention.softmaxProduct(probabilities: row, &ones, count: 3)
        #expect(ones.allSatisfy { abs($0) < 1e-7 })
    }

    @Test("Attention with zero queries averages the values")
    func uniformAttention() {
        let shape = EncoderShape(config: CLIPVisionConfig(hiddenSize: 4, intermediateSize: 4, numHiddenLayers: 1, numAttentionHeads: 2,
                                                          imageSize: 2, patchSize: 1, projectionDim: 1), batch: 1)
        let workspace = Workspace()
        let act = SelfAttentionActivations(workspace, shape)
        let n = shape.rows * shape.width  // 5 tokens × 4
        act.q.update(repeating: 0, count: n)
        for i in 0..<n { act.k[i] = Float(i % 7); act.v[i] = Float(i) }
        Attention.forward(act, shape)
        for t in 0..<shape.tokens {
            for c in 0..<4 {
                let mean = (0..<shape.tokens).map { Float($0 * 4 + c) }.reduce(0, +) / Float(shape.tokens)
                #expect(abs(act.context[t * 4 + c] - mean) < 1e-5)
            }
        }
    }

    @Test("Folding patches is the adjoint of unfolding them, also when patches do not tile the image")
    func unfoldFoldAdjoint() {
        let config = CLIPVisionConfig(hiddenSize: 4, intermediateSize: 4, numHiddenLayers: 1, numAttentionHeads: 1,
                                      imageSize: 10, patchSize: 3, projectionDim: 1)  // 3×3 grid, 1 pixel row/column unused
        var random = TestRandom(seed: 5)
        let batch = 2
        let x = random.normals(batch * config.pixelsPerImage)
        let p = random.normals(batch * config.numPatches * config.patchInputs)
        var unfolded = [Float](repeating: 0, count: p.count)
        var folded = [Float](repeating: .nan, count: x.count)
        PatchEmbedding.unfold(&unfolded, x, batch: batch, config: config)
        PatchEmbedding.fold(&folded, p, batch: batch, config: config)
        let left = zip(unfolded, p).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let right = zip(x, folded).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(left - right) < 1e-4 * (abs(left) + 1))
        #expect(folded.allSatisfy { !$0.isNaN })
        // Pixel (c 0, row 9, col 0) lies outside every patch.
        #expect(folded[9 * 10] == 0)
        // Patch (1, 2) entry (c 2, u 1, v 0) is pixel (c 2, row 4, col 6).
        let patchEntry: Int = (1 * 3 + 2) * 27 + (2 * 3 + 1) * 3
        let pixel: Int = (2 * 10 + 4) * 10 + 6
        #expect(unfolded[patchEntry] == x[pixel])
    }

    @Test("Cross-entropy and entropy of uniform logits")
    func losses() {
        let logits = [Float](repeating: 3, count: 2 * 4)
        let ce = ClassificationLoss.crossEntropy(labels: [0, 3]).evaluate(logits: logits, batch: 2, classes: 4)
        #expect(abs(ce.value - Foundation.log(4.0)) < 1e-12)
        #expect(ce.gradient.map { Double($0) } == [-0.375, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, -0.375])
        let entropy = ClassificationLoss.entropy.evaluate(logits: logits, batch: 2, classes: 4)
        #expect(abs(entropy.value - Foundation.log(4.0)) < 1e-12)
        #expect(entropy.gradient.allSatisfy { abs($0) < 1e-7 }, "entropy is maximal: zero gradient")
    }

    @Test("The head's backward pass matches a central difference")
    func headBackward() {
        var random = TestRandom(seed: 9)
        let head = TaskHead(weight: random.normals(3 * 5), classes: 3, dimension: 5)
        let e = random.normals(2 * 5), v = random.normals(2 * 5)
        let dz = random.normals(2 * 3)
        let de = head.backward(embeddings: e, logitGradient: dz, batch: 2)
        func value(_ x: [Float]) -> Double {
            zip(head.logits(embeddings: x, batch: 2), dz).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        let h: Float = 1e-2
        let fd = (value(zip(e, v).map { $0 + h * $1 }) - value(zip(e, v).map { $0 - h * $1 })) / (2 * Double(h))
        let analytic = zip(de, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(fd - analytic) < 1e-3 * max(1, abs(analytic)), "\(fd) vs \(analytic)")
    }

    @Test("CLIPModel and CLIPVisionModel checkpoints load: nested vision_config, other towers ignored, no projection")
    func checkpointLayouts() throws {
        let source = try Checkpoint(path: EngineFixtures.path("quick/base"))
        let values = TestSupport.values(source)
        let data = try EngineFixtures.dataset("quick")
        let pixels = data.pixels(0..<data.count)
        let reference = try EngineFixtures.model("quick/base")
        let expected = reference.forward(pixels: pixels, batch: data.count)
        let dir = TestSupport.temporaryDirectory("layouts")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func tensors(_ include: (String) -> Bool) -> [(TensorSpec, [Double])] {
            source.entries.filter { include($0.name) }.map {
                (TensorSpec(name: $0.name, dtype: .F32, shape: $0.info.shape), values[$0.name]!.values)
            }
        }
        let vision = try String(contentsOfFile: EngineFixtures.path("quick/base/config.json"), encoding: .utf8)

        // A CLIPModel: text tower and logit_scale next to the vision tower, the config nested.
        try FileManager.default.createDirectory(atPath: dir + "/clip", withIntermediateDirectories: true)
        TestSupport.writeCheckpoint(dir + "/clip/model.safetensors", tensors { _ in true } + [
            (TensorSpec(name: "logit_scale", dtype: .F32, shape: []), [2.6592]),
            (TensorSpec(name: "text_model.embeddings.token_embedding.weight", dtype: .F32, shape: [3, 2]), [1, 2, 3, 4, 5, 6]),
        ])
        try "{\"model_type\": \"clip\", \"projection_dim\": 16, \"text_config\": {}, \"vision_config\": \(vision)}"
            .write(toFile: dir + "/clip/config.json", atomically: true, encoding: .utf8)
        let clip = try CLIPVisionModel(path: dir + "/clip")
        #expect(clip.forward(pixels: pixels, batch: data.count) == expected)

        // A CLIPVisionModel: no visual_projection; the embedding is post_layernorm's class token.
        try FileManager.default.createDirectory(atPath: dir + "/vision", withIntermediateDirectories: true)
        TestSupport.writeCheckpoint(dir + "/vision/model.safetensors", tensors { $0 != "visual_projection.weight" })
        try vision.write(toFile: dir + "/vision/config.json", atomically: true, encoding: .utf8)
        let pooledModel = try CLIPVisionModel(path: dir + "/vision")
        #expect(pooledModel.embeddingSize == 32 && pooledModel.parameters.projectionName == nil)
        let pooled = pooledModel.forward(pixels: pixels, batch: data.count)
        let projection = try #require(values["visual_projection.weight"]?.values)  // [16, 32]
        var projected: [Double] = []
        for b in 0..<data.count {
            for o in 0..<16 { projected.append((0..<32).reduce(0.0) { $0 + projection[o * 32 + $1] * Double(pooled[b * 32 + $1]) }) }
        }
        expectClose(expected, projected, tolerance: 1e-6, normwise: true, "projection of the pooled output")
    }
}
