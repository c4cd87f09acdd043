import Foundation
import Testing
@testable import MergeKit

/// Fine-tuning (ordinary and linearized) and WEMoE training stop at the first non-finite loss,
/// gradient or updated parameter: an error naming the step and the batch, and no output file or
/// temporary left (merge-cli: exit 1); plus the step-count rule finetune and wemoe-train share.
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

    /// Trains as `trainer`'s command does (3 steps in batches of 4, seed 1; `learningRate` and
    /// `warmupSteps` when given) on `data` (a path in Fixtures/clip), writing `dir/out/model.safetensors`.
    static func train(_ trainer: Trainer, data: String, learningRate: Double? = nil, warmupSteps: Int? = nil, in dir: String) throws {
        let output = dir + "/out/model.safetensors"
        let head = EngineFixtures.path("quick/head.safetensors"), data = data.hasPrefix("/") ? data : EngineFixtures.path(data)
        switch trainer {
        case .finetune, .linearized:
            // finetune: the job checks the inputs, trains step by step, then writes.
            let job = try FineTuningJob(base: EngineFixtures.path("quick/base"), head: head, data: data, output: output)
            var options = FineTuning.Options()
            (options.steps, options.batchSize, options.seed, options.linearized) = (3, 4, 1, trainer == .linearized)
            if let learningRate { options.learningRate = learningRate }
            if let warmupSteps { options.warmupSteps = warmupSteps }
            var training = try job.start(options: options)
            for _ in 0..<options.steps { _ = try training.train() }
            _ = try job.write(training)
        case .wemoe:
            // wemoe-train: the adaptation checks the inputs, loads the model, trains, then writes.
            let adaptation = try WEMoEAdaptation(model: try wemoe(into: dir), data: [data], heads: [head], output: output)
            let moe = try adaptation.load()
            _ = try adaptation.train(moe, options: WEMoETrainingOptions(steps: 3, learningRate: Float(learningRate ?? 1e-4), batchSize: 4, seed: 1))
            _ = try adaptation.write(moe)
        }
    }

    /// What training as `train` does throws; nothing may be written.
    static func failure(_ trainer: Trainer, data: String, learningRate: Double? = nil, warmupSteps: Int? = nil, in dir: String) throws -> MergeKitError {
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: false)
        let error = try #require(throws: MergeKitError.self, "\(trainer) trained") {
            try train(trainer, data: data, learningRate: learningRate, warmupSteps: warmupSteps, in: dir)
        }
        #expect(error.code == .nonFiniteValue, "\(error)")
        #expect(TestSupport.listing(dir + "/out") == [], "something was written")
        return error
    }

    @Test("A NaN or Inf pixel stops training, naming the step, the batch and the image; nothing is written",
          arguments: Trainer.allCases, [Double.nan, .infinity])
    func badPixel(_ trainer: Trainer, value: Double) throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try Self.failure(trainer, data: try Self.poisoned(value, into: dir), in: dir)
        #expect(error.description.contains("training stopped at step ") && error.description.contains("on the batch of images "), "\(error)")
        #expect(error.description.contains("image 5 holds NaN or Inf pixels"), "\(error)")
    }

    @Test("A learning rate that makes the model diverge (1e30) stops training at the first NaN loss or overflow; nothing is written",
          arguments: Trainer.allCases)
    func divergence(_ trainer: Trainer) throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try Self.failure(trainer, data: "quick/data.safetensors", learningRate: 1e30, warmupSteps: trainer == .wemoe ? nil : 0, in: dir)
        if trainer == .linearized {
            // f_lin is linear in θ, so its loss stays finite while θ grows until the update overflows.
            #expect(error.description.contains("training stopped at step 2: the update made the parameter"), "\(error)")
        } else {
            #expect(error.description.contains("training stopped at step 2: the ") && error.description.contains("is NaN on the batch of images "), "\(error)")
            #expect(error.description.contains("their pixels are finite, so the model diverged") && error.fix?.hasSuffix("; nothing was written") == true
                    && error.uses(.learningRate), "\(error)")
        }
    }

    @Test("merge-cli finetune and wemoe-train exit 1 on divergence, naming --lr, and print no JSON for the run", arguments: [Trainer.finetune, .wemoe])
    func divergenceCommand(_ trainer: Trainer) throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: false)
        let common = ["--head", "quick/head.safetensors", "--data", "quick/data.safetensors", "-o", dir + "/out/model.safetensors",
                      "--steps", "3", "--batch-size", "4", "--seed", "1", "--lr", "1e30", "--json"]
        let run = trainer == .wemoe
            ? try CLI.run(["wemoe-train", "--model", try Self.wemoe(into: dir)] + common, in: EngineFixtures.path(""))
            : try CLI.run(["finetune", "--base", "quick/base", "--warmup-steps", "0"] + common, in: EngineFixtures.path(""))
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("so the model diverged. Lower --lr; nothing was written"), "\(run.stderr)")
        #expect(!run.stdout.contains("\"loss\": null") && !run.stdout.contains("\"losses\""), "a non-finite loss was printed: \(run.stdout)")
        #expect(TestSupport.listing(dir + "/out") == [], "something was written")
    }

    @Test("An update that overflows a parameter (lr 1e38) stops fine-tuning at that step, naming the tensor", arguments: [false, true])
    func overflow(linearized: Bool) throws {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try Self.failure(linearized ? .linearized : .finetune, data: "quick/data.safetensors", learningRate: 1e38, warmupSteps: 0, in: dir)
        #expect(error.tensor?.hasPrefix("vision_model.") == true && error.description.contains("training stopped at step 1: the update made the parameter"),
                "\(error)")
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
        for arguments in [["finetune", "--base", "quick/base"], ["wemoe-train", "--model", try Self.wemoe(into: dir)]] {
            let run = try CLI.run(arguments + ["--head", "quick/head.safetensors", "--data", "quick/data.safetensors", "-o", dir + "/out/model.safetensors",
                                               "--steps", "0", "--batch-size", "4", "--seed", "1"], in: EngineFixtures.path(""))
            #expect(run.status == 64 && run.stderr.contains("--steps must be at least 1, not 0"), "\(arguments[0]): \(run.stderr)")
        }
        #expect(throws: MergeKitError.self) { try WEMoETrainingOptions(steps: 0).validate() }
        #expect(throws: MergeKitError.self) { try WEMoETrainingOptions(batchSize: 0).validate() }
    }
}
