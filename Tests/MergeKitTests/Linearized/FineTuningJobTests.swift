import Foundation
import Testing
@testable import MergeKit

/// Fine-tuning from files (`FineTuningJob`) and the disentanglement error from files
/// (`DisentanglementJob`): the inputs checked first, the decisions the library makes (batch
/// clamp, linearization by the base's kind), the recorded recipe.
@Suite("Fine-tuning and disentanglement from files")
struct FineTuningJobTests {
    static var base: String { EngineFixtures.path("quick/base") }
    static var head: String { EngineFixtures.path("quick/head.safetensors") }
    static var data: String { EngineFixtures.path("quick/data.safetensors") }

    static func options(steps: Int, batch: Int, linearized: Bool = false) -> FineTuning.Options {
        var o = FineTuning.Options()
        (o.steps, o.batchSize, o.learningRate, o.warmupSteps, o.seed, o.linearized) = (steps, batch, 1e-3, 1, 7, linearized)
        return o
    }

    /// Runs `job` for its options' steps on `threads` threads and writes it.
    @discardableResult
    static func run(_ job: FineTuningJob, _ options: FineTuning.Options, threads: Int = 1) throws -> [FineTuning.Step] {
        var training = try job.start(options: options, threads: threads)
        let steps = try (0..<options.steps).map { _ in try training.train() }
        _ = try job.write(training)
        return steps
    }

    @Test("A linearized fine-tune is a linearized checkpoint around the base's θ₀ that evaluates linearized; the recipe is recorded")
    func linearized() throws {
        let dir = TestSupport.temporaryDirectory("finetune-job")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let job = try FineTuningJob(base: Self.base, head: Self.head, data: Self.data, output: dir + "/lin")
        #expect(job.inputs == [Self.base, Self.head, Self.data, Self.base + "/config.json"])
        let steps = try Self.run(job, Self.options(steps: 3, batch: 4, linearized: true))
        #expect(steps.count == 3 && steps.allSatisfy { $0.loss.isFinite })
        let lin = try Checkpoint(path: dir + "/lin")
        #expect(LinearizedCheckpoint.isLinearized(lin))
        let recipe = try JSONParser.parse(Array((try #require(lin.metadata?["mergekit.finetune"])).utf8))
        #expect(recipe["linearized"] == .bool(true) && recipe["steps"]?.nonNegativeInt == 3 && recipe["batch_size"]?.nonNegativeInt == 4)
        #expect(recipe["head"] == .string(Self.head) && recipe["data"] == .string(Self.data) && recipe["seed"] == .string("7"))
        #expect(lin.metadata?["mergekit.finetune.base"] == Self.base)
        try LinearizedCheckpoint.checkSameBase(lin, as: try LinearizedCheckpointTests.linearize("quick/base", nil, into: dir, "base-lin"))
        #expect(try LinearizedCheckpoint.model(lin).direction.flat.contains { $0 != 0 })
        #expect(try EvaluatedEncoder(model: dir + "/lin").form == .linearized)

        try Self.run(try FineTuningJob(base: Self.base, head: Self.head, data: Self.data, output: dir + "/ft.safetensors"),
                     Self.options(steps: 2, batch: 4))
        #expect(!LinearizedCheckpoint.isLinearized(try Checkpoint(path: dir + "/ft.safetensors")))
        #expect(try EvaluatedEncoder(model: dir + "/ft.safetensors", linearizedAround: Self.base).form == .linearized)
    }

    @Test("The batch is clamped to the dataset: 20 or 10⁹ on 8 images train exactly like 8, and record 8")
    func batchClamp() throws {
        let dir = TestSupport.temporaryDirectory("finetune-clamp")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var outputs: [Data] = []
        for size in [8, 20, 1_000_000_000] {
            let job = try FineTuningJob(base: Self.base, head: Self.head, data: Self.data, output: dir + "/\(size).safetensors")
            #expect(job.batchSize(Self.options(steps: 2, batch: size)) == 8)
            try Self.run(job, Self.options(steps: 2, batch: size))
            outputs.append(try Data(contentsOf: URL(fileURLWithPath: dir + "/\(size).safetensors")))
        }
        #expect(outputs[1] == outputs[0] && outputs[2] == outputs[0])
        let checkpoint = try Checkpoint(path: dir + "/1000000000.safetensors")
        #expect(checkpoint.metadata?["mergekit.finetune"]?.contains("\"batch_size\":8") == true)
    }

    @Test("Refused before any work: the output replacing an input, out-of-range settings in the library's words, memory beyond the budget")
    func refusals() throws {
        let dir = TestSupport.temporaryDirectory("finetune-refusals")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let overHead = try #require(throws: MergeKitError.self) {
            try FineTuningJob(base: Self.base, head: Self.head, data: Self.data, output: Self.head, overwrite: true)
        }
        #expect(overHead.code == .outputIsInput, "\(overHead)")
        let job = try FineTuningJob(base: Self.base, head: Self.head, data: Self.data, output: dir + "/x")
        var options = Self.options(steps: 2, batch: 4)
        options.learningRate = 0
        let rate = try #require(throws: MergeKitError.self) { try job.start(options: options) }
        #expect(rate.detail == "the learning rate must be a positive number, not 0.0" && rate.terms == [.learningRate])
        // A batch beyond the dataset is estimated as the dataset (8 images).
        let estimate = { (b: Int) in job.memory(batch: b, linearized: false, threads: 1) }
        let tiny = MemoryBudget(bytes: 100_000, source: "test")
        let memory = try #require(throws: MergeKitError.self) {
            try EngineMemory.batch(job.batchSize(Self.options(steps: 1, batch: 1_000_000_000)), chosen: true, command: "finetune",
                                   budget: tiny, estimate: estimate)
        }
        #expect(memory.code == .insufficientMemory && memory.detail.hasPrefix("finetune in batches of 8 needs about"), "\(memory)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
    }

    @Test("End to end: linear fine-tuning then task addition gives a lower ξ than ordinary fine-tuning on the same data")
    func disentanglement() throws {
        let dir = TestSupport.temporaryDirectory("disentangle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tasks = [DisentanglementTests.task(top: true, classes: 4, count: 32, seed: 31, directory: dir),
                     DisentanglementTests.task(top: false, classes: 4, count: 32, seed: 32, directory: dir)]
        var means: [Bool: Double] = [:]
        for linearized in [false, true] {
            var vectors: [String] = []
            for (t, task) in tasks.enumerated() {
                let out = FileSystem.join(dir, "\(linearized ? "lin" : "ft")-\(t)")
                var options = Self.options(steps: 40, batch: 16, linearized: linearized)
                (options.learningRate, options.warmupSteps, options.seed) = (3e-3, 4, 1)
                try Self.run(try FineTuningJob(base: Self.base, head: task.head, data: task.data, output: out), options)
                vectors.append(out)
            }
            let job = try DisentanglementJob(base: Self.base, inputs: vectors.map { DisentanglementJob.Input(path: $0, isModel: true) },
                                             heads: tasks.map(\.head), data: tasks.map(\.data), linearized: linearized)
            #expect(job.linearized == linearized)
            let result = try job.run(alphas: [0, 0.5, 1, 1.5, 2], batchSize: 64, threads: 1)
            #expect(result.linearized == linearized)
            means[linearized] = result.mean
        }
        print("[disentanglement] mean ξ over α ∈ {0, 0.5, 1, 1.5, 2}²: ordinary \(means[false]!), linear \(means[true]!)")
        #expect(means[true]! < means[false]!)
    }

    @Test("A linearized base makes the measurement linearized around its θ₀; a linearized task vector is read as θ − θ₀")
    func linearizedBase() throws {
        let dir = TestSupport.temporaryDirectory("disentangle-lin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let baseLin = try LinearizedCheckpointTests.linearize("quick/base", nil, into: dir, "base-lin").path
        let ftLin = try LinearizedCheckpointTests.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin").path
        let inputs = [DisentanglementJob.Input(path: ftLin, isModel: false), DisentanglementJob.Input(path: EngineFixtures.path("quick/finetuned"), isModel: true)]
        let onLinear = try DisentanglementJob(base: baseLin, inputs: inputs, heads: [Self.head, Self.head], data: [Self.data, Self.data])
        #expect(onLinear.linearized && onLinear.base.form == .linearized)
        let onPlain = try DisentanglementJob(base: Self.base, inputs: inputs, heads: [Self.head, Self.head], data: [Self.data, Self.data],
                                             linearized: true)
        // Both measure the same τ's around the same θ₀, linearized: the same ξ.
        let a = try onLinear.run(alphas: [0, 1], batchSize: 8, threads: 1), b = try onPlain.run(alphas: [0, 1], batchSize: 8, threads: 1)
        #expect(a == b)
        #expect(onLinear.memory(batch: 4, threads: 1).bytes == onPlain.memory(batch: 4, threads: 1).bytes)
    }
}
