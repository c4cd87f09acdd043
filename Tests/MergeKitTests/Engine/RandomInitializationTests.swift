import Foundation
import Testing
@testable import MergeKit

/// Random encoders and heads (`RandomInitialization`), class-mean heads (`TaskHead.prototypes`) and
/// their files.
@Suite("random initialisation and class-mean heads")
struct RandomInitializationTests {
    static let config = CLIPVisionConfig(hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 3, numAttentionHeads: 4,
                                         imageSize: 8, patchSize: 2, projectionDim: 32)

    static func std(_ values: [Float]) -> Double {
        let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
        return (values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count)).squareRoot()
    }

    @Test("every tensor has transformers' CLIP standard deviation (D, L and the factor as in _init_weights); biases 0, LayerNorm weights 1")
    func standardDeviations() {
        let c = Self.config
        let p = RandomInitialization.encoder(config: c, seed: 3, factor: 2, initializerRange: 0.05)
        let d = 64.0, l = 3.0, f = 2.0
        let expected: [(String, Double)] = [
            ("vision_model.embeddings.class_embedding", f / d.squareRoot()),
            ("vision_model.embeddings.patch_embedding.weight", 0.05 * f),
            ("vision_model.embeddings.position_embedding.weight", 0.05 * f),
            ("vision_model.encoder.layers.1.self_attn.q_proj.weight", f / d.squareRoot() / (2 * l).squareRoot()),
            ("vision_model.encoder.layers.1.self_attn.k_proj.weight", f / d.squareRoot() / (2 * l).squareRoot()),
            ("vision_model.encoder.layers.1.self_attn.v_proj.weight", f / d.squareRoot() / (2 * l).squareRoot()),
            ("vision_model.encoder.layers.1.self_attn.out_proj.weight", f / d.squareRoot()),
            ("vision_model.encoder.layers.2.mlp.fc1.weight", f / (2 * d).squareRoot()),
            ("vision_model.encoder.layers.2.mlp.fc2.weight", f / d.squareRoot() / (2 * l).squareRoot()),
            ("visual_projection.weight", f / d.squareRoot()),
        ]
        for (name, target) in expected {
            let values = p.values(of: name)!
            // ≥ 64 samples: the sample std is within 25 % of σ (the smallest, class_embedding, has 64).
            #expect(abs(Self.std(values) / target - 1) < 0.25, "\(name): \(Self.std(values)) vs \(target)")
        }
        for tensor in p.tensors {
            let values = p.values(of: tensor.name)!
            if tensor.name.hasSuffix(".bias") { #expect(values.allSatisfy { $0 == 0 }, "\(tensor.name)") }
            if tensor.name.contains("norm") && tensor.name.hasSuffix(".weight") { #expect(values.allSatisfy { $0 == 1 }, "\(tensor.name)") }
        }
        #expect(p.names == CLIPVisionParameters(config: c).names)
    }

    @Test("a tensor's values depend on the seed and its name only")
    func streams() {
        let a = RandomInitialization.encoder(config: Self.config, seed: 7)
        let b = RandomInitialization.encoder(config: Self.config, seed: 7)
        #expect(a.flat == b.flat)
        let other = RandomInitialization.encoder(config: Self.config, seed: 8)
        #expect(a.values(of: "visual_projection.weight") != other.values(of: "visual_projection.weight"))
        // Another layer count changes the layers' σ, not the embeddings' draws.
        var deeper = Self.config
        deeper.numHiddenLayers = 5
        let c = RandomInitialization.encoder(config: deeper, seed: 7)
        #expect(c.values(of: "vision_model.embeddings.class_embedding") == a.values(of: "vision_model.embeddings.class_embedding"))
        #expect(c.values(of: "vision_model.encoder.layers.0.self_attn.out_proj.weight")
                == a.values(of: "vision_model.encoder.layers.0.self_attn.out_proj.weight"))
    }

    @Test("a random head's rows have length --scale; the same seed gives the same head")
    func randomHead() {
        let head = RandomInitialization.head(classes: 5, dimension: 32, seed: 1, scale: 14.5)
        for c in 0..<5 {
            let norm = (0..<32).reduce(0.0) { $0 + Double(head.weight[c * 32 + $1] * head.weight[c * 32 + $1]) }.squareRoot()
            #expect(abs(norm - 14.5) < 1e-4)
        }
        #expect(RandomInitialization.head(classes: 5, dimension: 32, seed: 1, scale: 14.5).weight == head.weight)
        #expect(RandomInitialization.head(classes: 5, dimension: 32, seed: 2, scale: 14.5).weight != head.weight)
    }

    @Test("an encoder saved as a directory loads back with the same values and config; a head file reads back")
    func saving() throws {
        let dir = TestSupport.temporaryDirectory("init")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = RandomInitialization.encoder(config: Self.config, seed: 2)
        try p.save(directory: dir + "/model", metadata: ["mergekit.init": "x"])
        let model = try CLIPVisionModel(path: dir + "/model")
        #expect(model.parameters.flat == p.flat && model.parameters.config == Self.config)
        #expect(try Checkpoint(path: dir + "/model").metadata?["mergekit.init"] == "x")
        #expect(throws: MergeKitError.self) { try p.save(directory: dir + "/model.safetensors") }
        let head = RandomInitialization.head(classes: 3, dimension: 32, seed: 0, scale: 100)
        try head.save(to: dir + "/head.safetensors")
        let read = try TaskHead(path: dir + "/head.safetensors")
        #expect(read.weight == head.weight && read.classes == 3 && read.dimension == 32)
        // Never over an existing output without overwrite.
        #expect(throws: MergeKitError.self) { try head.save(to: dir + "/head.safetensors") }
    }

    /// A labelled dataset of `labels.count` random 8×8 images.
    static func dataset(_ labels: [Int], in dir: String) -> String {
        var random = TestRandom(seed: 5)
        let path = dir + "/data.safetensors"
        TestSupport.writeCheckpoint(path, [
            (TensorSpec(name: "pixel_values", dtype: .F32, shape: [labels.count, 3, 8, 8]), (0..<(labels.count * 192)).map { _ in random.normal() }),
            (TensorSpec(name: "labels", dtype: .I64, shape: [labels.count]), labels.map(Double.init)),
        ])
        return path
    }

    @Test("a class-mean head's row c is the normalised mean of the normalised embeddings of class c, × scale, for any batch size")
    func prototypes() throws {
        let dir = TestSupport.temporaryDirectory("prototypes")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let labels = [0, 2, 1, 2, 0, 1, 1, 2, 0]
        let data = try ImageDataset(path: Self.dataset(labels, in: dir))
        let model = CLIPVisionModel(parameters: RandomInitialization.encoder(config: Self.config, seed: 4))
        let head = try TaskHead.prototypes(of: model, data: data, scale: 50, batchSize: 4)
        #expect(head.classes == 3 && head.dimension == 32)
        let embeddings = model.forward(pixels: data.pixels(0..<labels.count), batch: labels.count)
        for c in 0..<3 {
            var mean = [Double](repeating: 0, count: 32)
            for (i, label) in labels.enumerated() where label == c {
                let row = embeddings[(i * 32)..<((i + 1) * 32)].map(Double.init)
                let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
                for j in 0..<32 { mean[j] += row[j] / norm }
            }
            let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for j in 0..<32 { #expect(abs(Double(head.weight[c * 32 + j]) - 50 * mean[j] / norm) < 1e-4) }
        }
        let whole = try TaskHead.prototypes(of: model, data: data, scale: 50, batchSize: 9)
        for (x, y) in zip(whole.weight, head.weight) { #expect(abs(x - y) < 1e-5) }
        // More classes than labels: the extra class has no image; fewer: a label out of range.
        #expect(throws: MergeKitError.self) { try TaskHead.prototypes(of: model, data: data, classes: 4, scale: 50) }
        do {
            _ = try TaskHead.prototypes(of: model, data: data, classes: 4, scale: 50)
        } catch {
            #expect(error.file == data.path && error.tensor == "labels" && error.description.contains("no image of class 3"))
        }
        #expect(throws: MergeKitError.self) { try TaskHead.prototypes(of: model, data: data, classes: 2, scale: 50) }
    }
}
