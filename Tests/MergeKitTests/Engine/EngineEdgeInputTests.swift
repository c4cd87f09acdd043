import Foundation
import Testing
@testable import MergeKit

/// Inputs at the edges: empty datasets, non-finite pixels and logits, one class or one expert,
/// heads of nothing, and α values wider than the table's columns.
@Suite("Engine edge inputs")
struct EngineEdgeInputTests {
    static var head: String { EngineFixtures.path("quick/head.safetensors") }
    static var data: String { EngineFixtures.path("quick/data.safetensors") }

    /// A dataset of `count` 3×32×32 images (pixel `poison` of image `poisoned` set to `value`).
    static func dataset(_ dir: String, count: Int, labels: [Double]? = nil, poisoned: Int? = nil, poison: Int = 0, value: Double = .nan) -> String {
        var pixels = [Double](repeating: 0.25, count: count * 3 * 32 * 32)
        if let poisoned { pixels[poisoned * 3 * 32 * 32 + poison] = value }
        let path = dir + "/data-\(count)-\(poisoned ?? -1).safetensors"
        TestSupport.writeCheckpoint(path, [(TensorSpec(name: "pixel_values", dtype: .F32, shape: [count, 3, 32, 32]), pixels),
                                           (TensorSpec(name: "labels", dtype: .I64, shape: [count]), labels ?? [Double](repeating: 0, count: count))])
        return path
    }

    @Test("An empty dataset is an error in eval, finetune, wemoe-train and disentanglement, never an accuracy of 0 or nan")
    func emptyData() throws {
        let dir = TestSupport.temporaryDirectory("empty-data")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let empty = Self.dataset(dir, count: 0)
        let model = try EngineFixtures.model("quick/base")
        do {
            _ = try Evaluation.run(model, head: try TaskHead(path: Self.head), data: try ImageDataset(path: empty), batchSize: 4)
            Issue.record("an empty dataset was evaluated")
        } catch {
            #expect(error.file == empty && error.description.contains("holds no images to evaluate on"))
        }
        let base = EngineFixtures.path("quick/base")
        try WEMoEFixtures.upscaled().save(to: dir + "/moe.safetensors")
        // Every operation refuses it when it checks its inputs, before loading the model.
        let encoder = try EvaluatedEncoder(model: base)
        let operations: [(body: () throws(MergeKitError) -> Void, message: String)] = [
            ({ () throws(MergeKitError) in
                try Evaluation.check(head: TaskHead(path: Self.head), data: ImageDataset(path: empty), config: encoder.config,
                                     embeddingSize: encoder.embeddingSize)
             }, "holds no images to evaluate on"),
            ({ () throws(MergeKitError) in _ = try FineTuningJob(base: base, head: Self.head, data: empty, output: dir + "/ft.safetensors") },
             "holds no images to fine-tune on"),
            ({ () throws(MergeKitError) in
                _ = try WEMoEAdaptation(model: dir + "/moe.safetensors", data: [empty], heads: [WEMoEFixtures.path("task0/head.safetensors")],
                                        output: dir + "/t.safetensors")
             }, "holds no images"),
            ({ () throws(MergeKitError) in
                _ = try DisentanglementJob(base: base, inputs: [.init(path: EngineFixtures.path("quick/finetuned"), isModel: true),
                                                               .init(path: EngineFixtures.path("quick/tau.safetensors"), isModel: false)],
                                           heads: [Self.head, Self.head], data: [Self.data, empty])
             }, "holds no images to measure disentanglement on"),
        ]
        for (body, message) in operations {
            do throws(MergeKitError) {
                try body()
                Issue.record("an empty dataset was accepted")
            } catch {
                #expect(error.file == empty && error.description.contains(message), "\(error)")
            }
        }
        // (merge-cli eval's exit 1 and its empty stdout on this error: CLIPEvaluationTests.commandErrors.)
    }

    @Test("A NaN or infinite pixel is an error naming the image, in eval and in disentanglement", arguments: [Double.nan, .infinity])
    func nonFinitePixels(_ value: Double) throws {
        let dir = TestSupport.temporaryDirectory("nan-pixels")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let poisoned = Self.dataset(dir, count: 7, poisoned: 5, poison: 1030, value: value)
        let model = try EngineFixtures.model("quick/base")
        do {
            _ = try Evaluation.run(model, head: try TaskHead(path: Self.head), data: try ImageDataset(path: poisoned), batchSize: 3)
            Issue.record("a non-finite pixel was evaluated")
        } catch {
            #expect(error.code == .nonFiniteValue && error.file == poisoned && error.tensor == "pixel_values")
            #expect(error.description.contains("image 5 holds \(Float(value)) (element 1030 of its 3×32×32 pixels)"), "\(error)")
        }
        // In batches of 2 as in 3: the error, never a result.
        let batched = try #require(throws: MergeKitError.self) {
            try Evaluation.run(model, head: try TaskHead(path: Self.head), data: try ImageDataset(path: poisoned), batchSize: 2)
        }
        #expect(batched.code == .nonFiniteValue && batched.description.contains("image 5 holds"), "\(batched)")
        let xi = try DisentanglementJob(base: EngineFixtures.path("quick/base"),
                                        inputs: [.init(path: EngineFixtures.path("quick/finetuned"), isModel: true),
                                                 .init(path: EngineFixtures.path("quick/tau.safetensors"), isModel: false)],
                                        heads: [Self.head, Self.head], data: [poisoned, Self.data], linearized: true)
        let error = try #require(throws: MergeKitError.self) { try xi.run(alphas: [0, 1], batchSize: 64, threads: 1) }
        #expect(error.code == .nonFiniteValue && error.file == poisoned && error.description.contains("image 5 holds"), "\(error)")
    }

    @Test("Non-finite logits from finite pixels (a NaN weight) are an error naming the image, not a nan loss")
    func nonFiniteLogits() throws {
        let dir = try CLIPEngineErrorTests.modifiedModel("nan-weight") { tensors in
            let i = tensors.firstIndex { $0.0.name == "vision_model.post_layernorm.bias" }!
            tensors[i].1[3] = .nan
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The encoder eval chooses for the directory, evaluated as eval does.
        let encoder = try EvaluatedEncoder(model: dir).load()
        let error = try #require(throws: MergeKitError.self) {
            try Evaluation.run(encoder, head: try TaskHead(path: Self.head), data: try ImageDataset(path: Self.data), batchSize: 32)
        }
        #expect(error.code == .nonFiniteValue && error.file == Self.data && error.description.contains("image 0 gets logit nan"), "\(error)")
        #expect(error.uses(.verification), "the fix names a checkpoint verification: \(error)")
    }

    @Test("Counts agree with their nouns: 1 expert, 1 class, 1 step")
    func singular() throws {
        let dir = TestSupport.temporaryDirectory("singular")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let wemoe = try CLI.run(["wemoe", "--base", EngineFixtures.path("quick/base"), "--model", WEMoEFixtures.path("experts/task0"),
                                 "-o", dir + "/moe.safetensors"])
        #expect(wemoe.status == 0 && wemoe.stderr.contains("WEMoE with 1 expert, router depth"), "\(wemoe.stderr)")
        var inspect = ""
        CheckpointSummary(try Checkpoint(path: dir + "/moe.safetensors")).writeText { inspect += $0 + "\n" }
        #expect(inspect.contains("kind: WEMoE model: 1 expert, router depth 2"), "\(inspect)")
        let train = try CLI.run(["wemoe-train", "--model", dir + "/moe.safetensors", "--data", WEMoEFixtures.path("task0/data.safetensors"),
                                 "--head", WEMoEFixtures.path("task0/head.safetensors"), "--steps", "1", "-o", dir + "/t.safetensors"])
        #expect(train.status == 0 && train.stderr.contains(": 1 step, loss"), "\(train.stderr)")
        // A one-class head and a label beyond it.
        TestSupport.writeCheckpoint(dir + "/one.safetensors", [(TensorSpec(name: "weight", dtype: .F32, shape: [1, 16]), [Double](repeating: 1, count: 16))])
        let data = Self.dataset(dir, count: 2, labels: [0, 1])
        let encoder = try EvaluatedEncoder(model: EngineFixtures.path("quick/base"))
        let eval = try #require(throws: MergeKitError.self) {
            try Evaluation.check(head: TaskHead(path: dir + "/one.safetensors"), data: ImageDataset(path: data), config: encoder.config,
                                 embeddingSize: encoder.embeddingSize)
        }
        #expect(eval.file == data && eval.description.contains("label 1 is 1 but the head has 1 class (0 only)"), "\(eval)")
    }

    @Test("A head with no classes or 0-dimensional embeddings is refused by name", arguments: [[0, 16], [4, 0]])
    func emptyHeads(_ shape: [Int]) throws {
        let dir = TestSupport.temporaryDirectory("empty-head")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        TestSupport.writeCheckpoint(dir + "/head.safetensors", [(TensorSpec(name: "weight", dtype: .F32, shape: shape), [])])
        do {
            _ = try TaskHead(path: dir + "/head.safetensors")
            Issue.record("accepted")
        } catch {
            #expect(error.code == .shapeMismatch && error.tensor == "weight")
            #expect(error.description.contains(shape[0] == 0 ? "a head with no classes" : "0-dimensional embeddings"), "\(error)")
        }
    }

    @Test("disentanglement's table keeps its columns aligned for any α", arguments: ["1e30,1", "-0.5,0,123456.75", "-1e-7,2"])
    func alignedTable(_ alphas: String) throws {
        let result = try CLI.run(["disentanglement", "--base", EngineFixtures.path("quick/base"), "--model", EngineFixtures.path("quick/finetuned"),
                                  "--task-vector", EngineFixtures.path("quick/tau.safetensors"), "--head", Self.head, "--head", Self.head,
                                  "--data", Self.data, "--data", Self.data, "--alphas=" + alphas, "--linearized", "--threads", "1"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let table = Array(lines.dropFirst().prefix(alphas.split(separator: ",").count + 1))
        // Every row as long as the header, and every column ends where the header's label ends.
        #expect(Set(table.map(\.count)).count == 1, "\(result.stdout)")
        let ends = table[0].indices.filter { i in table[0][i] != " " && (table[0].index(after: i) == table[0].endIndex || table[0][table[0].index(after: i)] == " ") }
        for row in table.dropFirst() {
            for end in ends { #expect(row[end] != " ", "\(result.stdout)") }
        }
        #expect(table[0].contains(alphas.hasPrefix("1e30") ? "1e+30" : "-"), "\(result.stdout)")
    }
}
