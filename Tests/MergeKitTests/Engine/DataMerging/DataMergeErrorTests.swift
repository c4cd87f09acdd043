import Foundation
import Testing
@testable import MergeKit

/// The mistakes a user can make with `regmean` and `fisher`, each refused before any work with a
/// message naming the file, the tensor and the fix.
@Suite("Merges from data: errors")
struct DataMergeErrorTests {
    let models = DataMergeFixtures.models, data = DataMergeFixtures.data, heads = DataMergeFixtures.heads

    func refused(models: [String]? = nil, data: [String]? = nil, heads: [String] = [], base: String? = nil, output: String? = nil)
        -> MergeKitError? {
        do {
            _ = try DataMergeInputs(models: models ?? self.models, data: data ?? self.data, heads: heads, base: base,
                                    output: output ?? TestSupport.temporaryDirectory("datamerge-errors") + "/merged")
            return nil
        } catch {
            return error
        }
    }

    @Test("Fewer than two models, or a dataset or head missing for a model")
    func counts() {
        #expect(refused(models: [models[0]], data: [data[0]])?.code == .invalidArgument)
        let error = refused(data: Array(data.prefix(2)))
        #expect(error?.code == .invalidArgument && error?.detail.contains("3 models, 2 datasets") == true, "\(String(describing: error))")
        #expect(refused(heads: Array(heads.prefix(1)))?.fix?.contains("one head per model") == true)
    }

    @Test("A model of another architecture is named with the size that differs")
    func architecture() {
        let other = TestSupport.fixture("clip/quick/base")
        let error = refused(models: [models[0], other, models[2]])
        #expect(error?.code == .shapeMismatch && error?.file == other, "\(String(describing: error))")
        #expect(error?.detail.contains("hidden_size 32") == true && error?.detail.contains(models[0]) == true, "\(String(describing: error))")
        #expect(error?.fix?.contains("one pre-trained model") == true)
        // The base too.
        #expect(refused(base: other)?.file == other)
    }

    @Test("A model without visual_projection beside models with one")
    func projection() throws {
        let directory = TestSupport.temporaryDirectory("datamerge-errors")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bare = try DataMergeSynthetic.edited(models[1], into: directory, name: "bare") { name, values in
            name == "visual_projection.weight" ? nil : values
        }
        let error = refused(models: [models[0], bare, models[2]])
        #expect(error?.code == .missingTensor && error?.file == bare && error?.tensor == "visual_projection.weight", "\(String(describing: error))")
    }

    @Test("A task vector or a WEMoE model in place of a fine-tuned model")
    func kinds() throws {
        let directory = TestSupport.temporaryDirectory("datamerge-errors")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let tau = directory + "/tau.safetensors"
        let values = TestSupport.values(try Checkpoint(path: models[1] + "/model.safetensors"))
        TestSupport.writeCheckpoint(tau, values.sorted { $0.key < $1.key }.map { (TensorSpec(name: $0.key, dtype: .F32, shape: $0.value.info.shape), $0.value.values) },
                                    metadata: ["format": "pt", TaskVectorFile.kindKey: TaskVectorFile.kindValue])
        let error = refused(models: [models[0], tau, models[2]])
        #expect(error?.code == .invalidArgument && error?.file == tau && error?.detail.contains("task vector") == true, "\(String(describing: error))")
        #expect(error?.fix?.contains("Apply it to its base first") == true)
        let wemoe = TestSupport.fixture("wemoe/fusionbench/depth0.safetensors")
        #expect(refused(models: [models[0], wemoe, models[2]])?.file == wemoe)
    }

    @Test("Data: missing, of another image size, or holding NaN pixels (named by image)")
    func dataProblems() throws {
        let missing = TestSupport.temporaryDirectory("datamerge-errors") + "/none.safetensors"
        #expect(refused(data: [data[0], missing, data[2]])?.code == .fileNotFound)
        let wrongSize = TestSupport.fixture("clip/quick/data.safetensors")
        let error = refused(data: [data[0], data[1], wrongSize])
        #expect(error?.code == .shapeMismatch && error?.file == wrongSize && error?.tensor == "pixel_values"
                && error?.detail.contains("3×32×32") == true && error?.detail.contains("3×16×16") == true, "\(String(describing: error))")

        let directory = TestSupport.temporaryDirectory("datamerge-errors")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let nanData = directory + "/nan.safetensors"
        var pixels = TestSupport.values(try Checkpoint(path: data[1]))["pixel_values"]!.values
        pixels[7 * 768 + 5] = .nan
        TestSupport.writeCheckpoint(nanData, [(TensorSpec(name: "pixel_values", dtype: .F32, shape: [10, 3, 16, 16]), pixels)])
        let inputs = try DataMergeInputs(models: models, data: [data[0], nanData, data[2]], heads: heads, output: directory + "/m")
        for run in [{ _ = try RegMean.run(inputs, options: RegMeanOptions()) } as () throws -> Void,
                    { _ = try FisherMerging.run(inputs, options: FisherOptions()) }] {
            let error = #expect(throws: MergeKitError.self) { try run() }
            #expect(error?.code == .nonFiniteValue && error?.file == nanData && error?.detail.contains("image 7") == true, "\(String(describing: error))")
        }
    }

    @Test("A head for another embedding size")
    func head() {
        let wrong = TestSupport.fixture("clip/quick/head.safetensors")
        let error = refused(heads: [heads[0], wrong, heads[2]])
        #expect(error?.code == .shapeMismatch && error?.file == wrong && error?.tensor == "weight", "\(String(describing: error))")
    }

    @Test("An output that would replace an input")
    func output() {
        #expect(refused(output: models[1])?.code == .outputIsInput)
        #expect(refused(output: data[2])?.code == .outputIsInput)
    }

    @Test("A model holding NaN: RegMean names the model and the layer; Fisher the model, the tensor and the images")
    func nanWeights() throws {
        let directory = TestSupport.temporaryDirectory("datamerge-errors")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let broken = try DataMergeSynthetic.edited(models[2], into: directory, name: "broken") { name, values in
            guard name == "vision_model.encoder.layers.1.mlp.fc1.bias" else { return values }
            var v = values
            v[0] = .nan
            return v
        }
        let inputs = try DataMergeInputs(models: [models[0], models[1], broken], data: data, heads: heads, output: directory + "/m")
        let regmean = #expect(throws: MergeKitError.self) { try RegMean.run(inputs, options: RegMeanOptions()) }
        #expect(regmean?.code == .nonFiniteValue && regmean?.file == broken && regmean?.tensor == "vision_model.encoder.layers.1.mlp.fc2.weight",
                "\(String(describing: regmean))")
        let fisher = #expect(throws: MergeKitError.self) { try FisherMerging.run(inputs, options: FisherOptions()) }
        #expect(fisher?.code == .nonFiniteValue && fisher?.file == broken && fisher?.detail.contains("image") == true, "\(String(describing: fisher))")
        #expect(!FileManager.default.fileExists(atPath: directory + "/m"))
    }

    @Test("Options out of range are argument errors")
    func options() {
        #expect(throws: MergeKitError.self) { try RegMeanOptions(alpha: 1.5).validate() }
        #expect(throws: MergeKitError.self) { try RegMeanOptions(samples: 0).validate() }
        #expect(throws: MergeKitError.self) { try RegMeanOptions(batchSize: 0).validate() }
        #expect(throws: MergeKitError.self) { try RegMeanOptions(others: .taskArithmetic(scale: .nan)).validate() }
        #expect(throws: MergeKitError.self) { try FisherOptions(epsilon: 0).validate() }
        #expect(throws: MergeKitError.self) { try FisherOptions(samples: -1).validate() }
        #expect(throws: Never.self) { try RegMeanOptions(alpha: 0).validate() }
    }
}
