import Foundation
import Testing
@testable import MergeKit

/// `finetune` (ordinary and linearized) and `wemoe-train` stop at the first non-finite loss, gradient
/// or updated parameter: exit 1, an error naming the step and the batch, and no output file or
/// temporary left; plus the batch-size and step-count rules the two commands share.
@Suite("Training stops on non-finite values")
struct NonFiniteTrainingTests {
    /// The quick fixture's data with pixel [5, 1, 3, 4] set to `value`, written into `dir`.
    static func poisoned(_ value: Double, into dir: String) throws -> String {
        let values = TestSupport.values(try Checkpoint(path: EngineFixtures.path("quick/data.safetensors")))
        let pixels = try #require(values["pixel_values"]), labels = try #require(values["labels"])
        var poisoned = pixels.values
        poisoned[((5 * 3 + 1) * 32 + 3) * 32 + 4] = value
        let path = dir + "/data-\(value).safetensors"
        TestSupport.writeCheckpoint(path, [(TensorSpec(name: "labels", dtype: .I64, shape: labels.info.shape), labels.values),
                                           (TensorSpec(name: "pixel_values", dtype: .F32, shape: pixels.info.shape), poisoned)])
        return path
    }

    /// A WEMoE model of the quick base with two experts, written into `dir`.
    static func wemoe(into dir: String) throws -> String {
        _ = try WEMoEUpscaling(base: EngineFixtures.path("quick/base"), experts: [EngineFixtures.path("quick/finetuned"), EngineFixtures.path("quick/base")],
                               output: dir + "/moe.safetensors").write(scale: 0.3, routerDepth: 2, seed: 0, exactStart: false, budget: nil)
        return dir + "/moe.safetensors"
    }

    enum Trainer: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case finetune, linearized, wemoe
        var testDescription: String { rawValue }
    }

    /// merge-cli for `trainer` on `data` with `extra` arguments, writing `dir/out/model.safetensors`.
    static func train(_ trainer: Trainer, data: String, _ extra: [String], in dir: String) throws -> CLI.Output {
        let output = ["-o", dir + "/out/model.safetensors", "--steps", "3", "--batch-size", "4", "--seed", "1"]
        switch trainer {
        case .finetune, .linearized:
            return try CLI.run(["finetune", "--base", "quick/base", "--head", "quick/head.safetensors", "--data", data]
                               + (trainer == .linearized ? ["--linearized"] : []) + output + extra, in: EngineFixtures.path(""))
        case .wemoe:
            return try CLI.run(["wemoe-train", "--model", try wemoe(into: dir), "--head", "quick/head.safetensors", "--data", data] + output + extra,
                               in: EngineFixtures.path(""))
        }
    }

    @Test("A NaN or Inf pixel stops training with exit 1, naming the step, the batch and the image; nothing is written",
          arguments: Trainer.allCases, [Double.nan, .infinity])
    func badPixel(_ trainer: Trainer, value: Double) throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: false)
        let run = try Self.train(trainer, data: try Self.poisoned(value, into: dir), [], in: dir)
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("training stopped at step ") && run.stderr.contains("on the batch of images "), "\(run.stderr)")
        #expect(run.stderr.contains("image 5 holds NaN or Inf pixels"), "\(run.stderr)")
        #expect(TestSupport.listing(dir + "/out") == [], "something was written")
    }

    @Test("A learning rate that makes the model diverge (--lr 1e30) stops training at the first NaN loss or overflow; nothing is written",
          arguments: Trainer.allCases)
    func divergence(_ trainer: Trainer) throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: false)
        let run = try Self.train(trainer, data: "quick/data.safetensors", ["--lr", "1e30", "--json"] + (trainer == .wemoe ? [] : ["--warmup-steps", "0"]), in: dir)
        #expect(run.status == 1, "\(run.stderr)")
        if trainer == .linearized {
            // f_lin is linear in θ, so its loss stays finite while θ grows until the update overflows.
            #expect(run.stderr.contains("training stopped at step 2: the update made the parameter"), "\(run.stderr)")
        } else {
            #expect(run.stderr.contains("training stopped at step 2: the ") && run.stderr.contains("is NaN on the batch of images "), "\(run.stderr)")
            #expect(run.stderr.contains("their pixels are finite, so the model diverged. Lower --lr; nothing was written"), "\(run.stderr)")
        }
        #expect(!run.stdout.contains("\"loss\": null") && !run.stdout.contains("\"losses\""), "a non-finite loss was printed: \(run.stdout)")
        #expect(TestSupport.listing(dir + "/out") == [], "something was written")
    }

    @Test("An update that overflows a parameter (--lr 1e38) stops fine-tuning at that step, naming the tensor", arguments: [false, true])
    func overflow(linearized: Bool) throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: false)
        let run = try Self.train(linearized ? .linearized : .finetune, data: "quick/data.safetensors", ["--lr", "1e38", "--warmup-steps", "0"], in: dir)
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("tensor 'vision_model.") && run.stderr.contains("training stopped at step 1: the update made the parameter"),
                "\(run.stderr)")
        #expect(TestSupport.listing(dir + "/out") == [])
    }

    @Test("The library throws .nonFiniteValue and keeps θ as it was when a step's loss is not finite")
    func library() throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = FineTuning.Options()
        (o.steps, o.batchSize, o.learningRate, o.warmupSteps) = (2, 8, 1e-3, 1)
        let base = try EngineFixtures.model("quick/base", threads: 2)
        let before = base.parameters.flat
        var training = try FineTuning(base: base, head: TaskHead(path: EngineFixtures.path("quick/head.safetensors")),
                                      data: ImageDataset(path: try Self.poisoned(.nan, into: dir)), options: o)
        do {
            try training.train()
            Issue.record("a NaN pixel did not stop fine-tuning")
        } catch {
            #expect(error.code == .nonFiniteValue && error.detail.hasPrefix("training stopped at step 1: the loss is NaN"), "\(error)")
        }
        #expect(training.step == 0 && base.parameters.flat == before)

        let tasks = [WEMoETask(data: try UnlabeledImages(path: try Self.poisoned(.infinity, into: dir)),
                               head: try TaskHead(path: EngineFixtures.path("quick/head.safetensors")))]
        let model = try WEMoEModel(path: try Self.wemoe(into: dir), threads: 2)
        do {
            _ = try WEMoETraining.run(model, tasks: tasks, options: WEMoETrainingOptions(steps: 2, batchSize: 8))
            Issue.record("an Inf pixel did not stop WEMoE training")
        } catch {
            #expect(error.code == .nonFiniteValue && error.detail.hasPrefix("training stopped at step 1: the entropy is NaN"), "\(error)")
        }
    }

    // MARK: Shared rules

    @Test("--steps 0 is refused by finetune and wemoe-train alike (exit 64, the same words)")
    func zeroSteps() throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for trainer in [Trainer.finetune, .wemoe] {
            let run = try Self.train(trainer, data: "quick/data.safetensors", ["--steps", "0"], in: dir)
            #expect(run.status == 64 && run.stderr.contains("--steps must be at least 1, not 0"), "\(trainer): \(run.stderr)")
        }
        #expect(throws: MergeKitError.self) { try WEMoETrainingOptions(steps: 0).validate() }
        #expect(throws: MergeKitError.self) { try WEMoETrainingOptions(batchSize: 0).validate() }
    }
}
