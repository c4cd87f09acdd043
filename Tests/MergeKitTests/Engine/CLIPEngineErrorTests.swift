import Foundation
import Testing
@testable import MergeKit

/// Every user mistake the engine can meet is reported with the file, the tensor when there is
/// one, and a fix.
@Suite("CLIP engine errors")
struct CLIPEngineErrorTests {
    /// A copy of quick/base in a temporary directory, with `edit` applied to its tensors (name →
    /// values, in file order) and `config` replacing config.json when given.
    static func modifiedModel(_ label: String, config: String? = nil,
                              edit: (inout [(TensorSpec, [Double])]) -> Void = { _ in }) throws -> String {
        let dir = TestSupport.temporaryDirectory(label)
        let source = try Checkpoint(path: EngineFixtures.path("quick/base"))
        let values = TestSupport.values(source)
        var tensors = source.entries.map { entry in
            (TensorSpec(name: entry.name, dtype: entry.info.dtype, shape: entry.info.shape), values[entry.name]!.values)
        }
        edit(&tensors)
        TestSupport.writeCheckpoint(dir + "/model.safetensors", tensors)
        let configText = try config ?? String(contentsOfFile: EngineFixtures.path("quick/base/config.json"), encoding: .utf8)
        try configText.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        return dir
    }

    static func loadError(_ path: String) -> MergeKitError? {
        do {
            _ = try CLIPVisionModel(path: path)
            return nil
        } catch {
            return error
        }
    }

    /// The quick fixture's config.json with `key` set to the JSON text `value`.
    static func config(_ key: String, _ value: String) throws -> String {
        try EngineTestFiles.config([(key, value)])
    }

    @Test("A missing encoder tensor is named, with the checkpoint and a fix")
    func missingTensor() throws {
        let name = "vision_model.encoder.layers.1.mlp.fc2.bias"
        let dir = try Self.modifiedModel("missing") { $0.removeAll { $0.0.name == name } }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try #require(Self.loadError(dir))
        #expect(error.code == .missingTensor)
        #expect(error.tensor == name)
        #expect(error.file?.hasPrefix(dir) == true)
        #expect(error.fix != nil)
        #expect(error.description.contains(name) && error.description.contains("config.json"))
    }

    @Test("Weights that do not fit config.json are a shape mismatch naming the tensor and both shapes")
    func shapeMismatch() throws {
        let dir = try Self.modifiedModel("shape", config: try Self.config("intermediate_size", "48"))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try #require(Self.loadError(dir))
        #expect(error.code == .shapeMismatch)
        #expect(error.tensor == "vision_model.encoder.layers.0.mlp.fc1.weight")
        #expect(error.description.contains("[64, 32]") && error.description.contains("[48, 32]"))
        #expect(error.fix != nil)
    }

    @Test("Integer weights are refused by name")
    func integerWeights() throws {
        let name = "vision_model.post_layernorm.bias"
        let dir = try Self.modifiedModel("dtype") { tensors in
            let i = tensors.firstIndex { $0.0.name == name }!
            tensors[i].0 = TensorSpec(name: name, dtype: .I32, shape: tensors[i].0.shape)
            tensors[i].1 = tensors[i].1.map { $0.rounded() }
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try #require(Self.loadError(dir))
        #expect(error.code == .dtypeMismatch)
        #expect(error.tensor == name)
    }

    @Test("A bad config.json is reported with its path and the offending key",
          arguments: [("num_attention_heads", "5", "not a multiple of num_attention_heads"),
                      ("hidden_act", "\"relu\"", "hidden_act \"relu\" is not supported"),
                      ("patch_size", "64", "larger than image_size"),
                      ("hidden_size", "\"wide\"", "hidden_size is a string"),
                      ("layer_norm_eps", "-1", "layer_norm_eps"),
                      ("num_hidden_layers", "0", "num_hidden_layers is 0")] + EngineConfigTests.hostile)
    func badConfig(_ key: String, _ value: String, _ message: String) throws {
        let dir = try Self.modifiedModel("config", config: try Self.config(key, value))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try #require(Self.loadError(dir))
        #expect(error.code == .invalidArgument)
        #expect(error.file == dir + "/config.json")
        #expect(error.description.contains(message), "\(error.description)")
        #expect(error.fix != nil)
    }

    @Test("config.json that is missing, not JSON, or of another model is reported")
    func unusableConfig() throws {
        let dir = try Self.modifiedModel("noconfig")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        #expect(Self.loadError(dir)?.code == .fileNotFound)
        #expect(Self.loadError(dir)?.file == dir + "/config.json")
        try "{ not json".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        #expect(Self.loadError(dir)?.description.contains("is not valid JSON") == true)
        try "{\"model_type\": \"llama\", \"hidden_size\": 32}".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        let other = try #require(Self.loadError(dir))
        #expect(other.description.contains("model_type \"llama\"") && other.fix?.contains("CLIP") == true)
    }

    @Test("A checkpoint without an image encoder is refused")
    func notAnEncoder() throws {
        let dir = try Self.modifiedModel("noencoder") { $0.removeAll { $0.0.name.hasSuffix("patch_embedding.weight") } }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try #require(Self.loadError(dir))
        #expect(error.code == .missingTensor)
        #expect(error.description.contains("holds no CLIP image encoder"))
    }

    /// A dataset file with the given tensors.
    static func dataset(_ tensors: [(TensorSpec, [Double])]) -> String {
        let path = TestSupport.temporaryDirectory("data") + "/data.safetensors"
        TestSupport.writeCheckpoint(path, tensors)
        return path
    }

    static func datasetError(_ path: String) -> MergeKitError? {
        do {
            _ = try ImageDataset(path: path)
            return nil
        } catch {
            return error
        }
    }

    @Test("Malformed datasets are reported with the tensor and the expected format")
    func badDatasets() throws {
        let pixels = (TensorSpec(name: "pixel_values", dtype: .F32, shape: [2, 3, 32, 32]), [Double](repeating: 0.5, count: 2 * 3 * 32 * 32))
        let labels = (TensorSpec(name: "labels", dtype: .I64, shape: [2]), [1.0, 0.0])
        let cases: [([(TensorSpec, [Double])], String, MergeKitError.Code)] = [
            ([labels], "pixel_values", .missingTensor),
            ([pixels], "labels", .missingTensor),
            ([(TensorSpec(name: "pixel_values", dtype: .F32, shape: [2, 3, 1024]), pixels.1), labels], "pixel_values", .shapeMismatch),
            ([pixels, (TensorSpec(name: "labels", dtype: .F32, shape: [2]), [1, 0])], "labels", .shapeMismatch),
            ([pixels, (TensorSpec(name: "labels", dtype: .I64, shape: [3]), [1, 0, 0])], "labels", .shapeMismatch),
            ([pixels, (TensorSpec(name: "labels", dtype: .I64, shape: [2]), [1, -1])], "labels", .invalidArgument),
        ]
        for (tensors, tensor, code) in cases {
            let path = Self.dataset(tensors)
            defer { try? FileManager.default.removeItem(atPath: FileSystem.parentDirectory(of: path)) }
            let error = try #require(Self.datasetError(path), "\(tensors.map(\.0))")
            #expect(error.code == code, "\(error)")
            #expect(error.tensor == tensor && error.file == path, "\(error)")
            #expect(error.fix?.contains("pixel_values [N, C, H, W]") == true)
        }
    }

    @Test("A dataset, head and model that do not fit together are refused before evaluating")
    func mismatchedEvaluation() throws {
        let model = try EngineFixtures.model("quick/base")
        let head = try TaskHead(path: EngineFixtures.path("quick/head.safetensors"))
        // Images of the gelu model's size (30×30) for the quick model (32×32).
        let wrongSize = try EngineFixtures.dataset("gelu")
        do {
            _ = try Evaluation.run(model, head: head, data: wrongSize, batchSize: 4)
            Issue.record("images of the wrong size were accepted")
        } catch {
            #expect(error.code == .shapeMismatch && error.tensor == "pixel_values" && error.description.contains("3×30×30"))
        }
        // Labels beyond the head's classes.
        let path = Self.dataset([(TensorSpec(name: "pixel_values", dtype: .F32, shape: [1, 3, 32, 32]), [Double](repeating: 0, count: 3072)),
                                 (TensorSpec(name: "labels", dtype: .I64, shape: [1]), [Double(head.classes)])])
        defer { try? FileManager.default.removeItem(atPath: FileSystem.parentDirectory(of: path)) }
        do {
            _ = try Evaluation.run(model, head: head, data: ImageDataset(path: path), batchSize: 4)
            Issue.record("a label beyond the head's classes was accepted")
        } catch {
            #expect(error.code == .invalidArgument && error.tensor == "labels" && error.description.contains("has \(head.classes) classes"))
        }
        // A head for another embedding width.
        let geluHead = try TaskHead(path: EngineFixtures.path("gelu/head.safetensors"))
        let quickData = try EngineFixtures.dataset("quick")
        do {
            _ = try Evaluation.run(model, head: geluHead, data: quickData, batchSize: 4)
            Issue.record("a head of the wrong width was accepted")
        } catch {
            #expect(error.code == .shapeMismatch && error.description.contains("12-dimensional embeddings") && error.fix != nil)
            #expect(error.file == EngineFixtures.path("gelu/head.safetensors") && error.tensor == "weight")
        }
    }

    @Test("Heads without a [classes, embedding] float matrix are refused")
    func badHeads() throws {
        let dir = TestSupport.temporaryDirectory("head")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        TestSupport.writeCheckpoint(dir + "/vector.safetensors", [(TensorSpec(name: "weight", dtype: .F32, shape: [4]), [1, 2, 3, 4])])
        TestSupport.writeCheckpoint(dir + "/two.safetensors", [(TensorSpec(name: "a", dtype: .F32, shape: [2, 2]), [1, 2, 3, 4]),
                                                               (TensorSpec(name: "b", dtype: .F32, shape: [2, 2]), [1, 2, 3, 4])])
        for (file, code, tensor) in [("vector", MergeKitError.Code.shapeMismatch, "weight"), ("two", .missingTensor, "weight")] {
            do {
                _ = try TaskHead(path: dir + "/\(file).safetensors")
                Issue.record("\(file) was accepted as a head")
            } catch {
                #expect(error.code == code && error.tensor == tensor && error.file == dir + "/\(file).safetensors" && error.fix != nil)
            }
        }
    }

    @Test("Directions and linearization need the model's architecture")
    func directionsAndLinearization() throws {
        let quick = try EngineFixtures.model("quick/base")
        let gelu = try EngineFixtures.model("gelu/model")
        let geluDirection = try Checkpoint(path: EngineFixtures.path("gelu/direction.safetensors"))
        // gelu's direction names tensors that quick also has, but with other shapes.
        #expect(throws: MergeKitError.self) { try quick.parameters.direction(from: geluDirection) }
        let head = try Checkpoint(path: EngineFixtures.path("quick/head.safetensors"))
        do {
            _ = try quick.parameters.direction(from: head)
            Issue.record("a file without encoder tensors was accepted as a direction")
        } catch {
            #expect(error.code == .missingTensor && error.fix != nil)
        }
        do {
            _ = try LinearizedCLIPVisionModel(base: quick, finetuned: gelu.parameters, file: "gelu/model")
            Issue.record("a model of another architecture was linearized")
        } catch {
            #expect(error.code == .shapeMismatch && error.file == "gelu/model")
        }
    }
}
