import Foundation
import Testing
@testable import MergeKit

/// The fixtures of the merges that learn from data (Fixtures/datamerge, made by
/// make_datamerge_fixtures.py with FusionBench's implementations).
enum DataMergeFixtures {
    static func path(_ relative: String) -> String { TestSupport.fixture("datamerge/" + relative) }

    static let tasks = 3
    static var models: [String] { (0..<tasks).map { path("experts/task\($0)") } }
    static var data: [String] { (0..<tasks).map { path("task\($0)/data.safetensors") } }
    static var heads: [String] { (0..<tasks).map { path("task\($0)/head.safetensors") } }

    /// The checked inputs of the three fixture tasks, written to a fresh temporary output.
    static func inputs(heads: Bool = false, base: Bool = false) throws -> DataMergeInputs {
        try DataMergeInputs(models: models, data: data, heads: heads ? self.heads : [], base: base ? path("base") : nil,
                            output: TestSupport.temporaryDirectory("datamerge") + "/merged")
    }

    /// A golden merged model by name (`regmean`, `regmean_plusplus`, `fisher_fusionbench`, `fisher_labels`).
    static func golden(_ name: String) throws -> [String: [Double]] {
        TestSupport.values(try Checkpoint(path: path("golden/\(name).safetensors"))).mapValues(\.values)
    }

    /// The largest |merged − golden| of each tensor relative to the golden tensor's largest |value|.
    static func relativeErrors(_ merged: CLIPVisionParameters, _ golden: [String: [Double]]) -> [String: Double] {
        var errors: [String: Double] = [:]
        for tensor in merged.tensors {
            guard let expected = golden[tensor.name], let actual = merged.values(of: tensor.name) else {
                errors[tensor.name] = .infinity
                continue
            }
            let scale = expected.map(abs).max() ?? 0
            let worst = zip(actual, expected).map { abs(Double($0) - $1) }.max() ?? 0
            errors[tensor.name] = scale > 0 ? worst / scale : worst
        }
        return errors
    }
}

/// Models, data and heads written to a temporary directory for the tests that need other shapes
/// than the fixtures (several Gram tiles, more images) or a deliberate defect.
enum DataMergeSynthetic {
    /// hidden 32, MLP 288 (fc2's Gram spans two 256-wide tiles), 2 layers, 2 heads, image 8,
    /// patch 4 (5 tokens), projection 8.
    static let config = CLIPVisionConfig(hiddenSize: 32, intermediateSize: 288, numHiddenLayers: 2, numAttentionHeads: 2,
                                         numChannels: 3, imageSize: 8, patchSize: 4, projectionDim: 8)

    struct Tasks {
        let directory: String
        let base: String
        let models: [String]
        let data: [String]
        let heads: [String]

        func inputs(heads withHeads: Bool = false, output: String = "merged") throws -> DataMergeInputs {
            try DataMergeInputs(models: models, data: data, heads: withHeads ? heads : [], output: directory + "/" + output)
        }
    }

    /// A random encoder with `config` (LayerNorm scales 1 + N(0, 0.2), biases N(0, 0.1), linear
    /// weights N(0, 1/fan_in)) and `tasks` perturbed copies of it (30 % of each tensor's RMS), each
    /// with `images` random images and a random 4-class head.
    static func tasks(_ tasks: Int = 3, images: Int = 9, config c: CLIPVisionConfig = config, seed: UInt64 = 7) -> Tasks {
        let directory = TestSupport.temporaryDirectory("datamerge-synthetic")
        var random = TestRandom(seed: seed)
        let layout = CLIPVisionParameters.layout(c, prefix: "vision_model.", projectionName: "visual_projection.weight")
        let base = layout.map { tensor -> [Double] in
            let name = tensor.name
            return (0..<tensor.count).map { _ in
                let r = random.normal()
                if name.contains("norm") || name.contains("layrnorm") { return name.hasSuffix("weight") ? 1 + 0.2 * r : 0.1 * r }
                if name.hasSuffix("bias") { return 0.1 * r }
                if name.contains("class_embedding") || name.contains("position_embedding") { return 0.5 * r }
                return r / Double(tensor.shape.dropFirst().reduce(1, *)).squareRoot()
            }
        }
        func write(_ values: [[Double]], to folder: String) {
            try! FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            TestSupport.writeCheckpoint(folder + "/model.safetensors",
                                        zip(layout, values).map { (TensorSpec(name: $0.name, dtype: .F32, shape: $0.shape), $1) })
            try! Data(c.json.serialized(indent: 2).utf8).write(to: URL(fileURLWithPath: folder + "/config.json"))
        }
        write(base, to: directory + "/base")
        var models: [String] = [], data: [String] = [], heads: [String] = []
        for t in 0..<tasks {
            let expert = base.map { values -> [Double] in
                let rms = (values.reduce(0) { $0 + $1 * $1 } / Double(values.count)).squareRoot()
                return values.map { $0 + 0.3 * rms * random.normal() }
            }
            models.append(directory + "/expert\(t)")
            write(expert, to: models[t])
            data.append(directory + "/data\(t).safetensors")
            let pixels = (0..<(images * c.pixelsPerImage)).map { _ in random.normal() + Double(t) * 0.5 }
            TestSupport.writeCheckpoint(data[t], [(TensorSpec(name: "pixel_values", dtype: .F32, shape: [images, 3, c.imageSize, c.imageSize]), pixels),
                                                  (TensorSpec(name: "labels", dtype: .I64, shape: [images]), (0..<images).map { Double($0 % 4) })])
            heads.append(directory + "/head\(t).safetensors")
            TestSupport.writeCheckpoint(heads[t], [(TensorSpec(name: "weight", dtype: .F32, shape: [4, c.projectionDim]),
                                                   (0..<(4 * c.projectionDim)).map { _ in 3 * random.normal() })])
        }
        return Tasks(directory: directory, base: directory + "/base", models: models, data: data, heads: heads)
    }

    /// A copy of the checkpoint directory `source` in `directory`/`name` with `edit` applied to its
    /// tensors (name → values; return nil to drop a tensor).
    static func edited(_ source: String, into directory: String, name: String,
                       _ edit: (String, [Double]) -> [Double]?) throws -> String {
        let folder = directory + "/" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let checkpoint = try Checkpoint(path: source)
        let values = TestSupport.values(checkpoint)
        let tensors = checkpoint.entries.compactMap { entry -> (TensorSpec, [Double])? in
            guard let edited = edit(entry.name, values[entry.name]!.values) else { return nil }
            return (TensorSpec(name: entry.name, dtype: entry.info.dtype, shape: entry.info.shape), edited)
        }
        TestSupport.writeCheckpoint(folder + "/model.safetensors", tensors)
        try FileManager.default.copyItem(atPath: source + "/config.json", toPath: folder + "/config.json")
        return folder
    }
}
