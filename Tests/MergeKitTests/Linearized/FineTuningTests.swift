import Foundation
import Testing
@testable import MergeKit

/// Ordinary and linear fine-tuning: the linearized gradient against central differences of the
/// linearized loss, whole runs against PyTorch (Fixtures/clip/make_finetune_fixtures.py: AdamW,
/// clipping and the cosine schedule of the reference code, float64), the schedule, seeding, and
/// `merge-cli finetune`.
@Suite("Fine-tuning")
struct FineTuningTests {
    static func setup(linearized: Bool, theta: String? = nil, options: FineTuning.Options = .init()) throws -> FineTuning {
        var o = options
        o.linearized = linearized
        let base = try EngineFixtures.model("quick/base", threads: 1)
        let start = try theta.map { try EngineFixtures.model($0).parameters }
        return try FineTuning(base: base, theta: start, head: TaskHead(path: EngineFixtures.path("quick/head.safetensors")),
                              data: EngineFixtures.dataset("quick"), options: o)
    }

    static func dot(_ a: CLIPVisionParameters, _ b: CLIPVisionParameters) -> (value: Double, scale: Double) {
        zip(a.flat, b.flat).reduce((0.0, 0.0)) { ($0.0 + Double($1.0) * Double($1.1), $0.1 + abs(Double($1.0) * Double($1.1))) }
    }

    @Test("The linearized loss gradient equals central differences of L(f(x; θ₀) + J·(θ − θ₀)) away from θ₀",
          arguments: CLIPFiniteDifferenceTests.groups)
    func linearizedGradient(_ group: CLIPFiniteDifferenceTests.Group) throws {
        // θ = the fine-tuned fixture, so that the upstream gradient depends on the tangent J·(θ − θ₀).
        let training = try Self.setup(linearized: true, theta: "quick/finetuned")
        let data = training.data
        let pixels = data.pixels(0..<data.count)
        let v = CLIPFiniteDifferenceTests.direction(training.theta, group, seed: 21)
        let gradient = training.lossAndGradient(pixels: pixels, labels: data.labels).gradient
        func loss(_ s: Float) -> Double {
            let shifted = training.theta.copy()
            shifted.add(v, scale: s)
            let direction = shifted.copy()
            direction.add(training.base.parameters, scale: -1)
            let e = LinearizedCLIPVisionModel(base: training.base, direction: direction).forward(pixels: pixels, batch: data.count)
            let logits = training.head.logits(embeddings: e, batch: data.count)
            return ClassificationLoss.crossEntropy(labels: data.labels).evaluate(logits: logits, batch: data.count, classes: training.head.classes).value
        }
        let (analytic, scale) = Self.dot(gradient, v)
        let h: Float = 1e-3
        let fd = (loss(h) - loss(-h)) / (2 * Double(h))
        #expect(scale > 0)
        #expect(abs(analytic - fd) <= 2e-4 * scale, "\(group): analytic \(analytic), fd \(fd), scale \(scale)")
        print("[finetune] fd linearized grad \(group): \(abs(analytic - fd) / scale)")
    }

    @Test("At θ = θ₀ the linearized gradient is the ordinary one; away from it, it is not")
    func linearizedVersusOrdinary() throws {
        let data = try EngineFixtures.dataset("quick")
        let pixels = data.pixels(0..<data.count)
        let ordinary = try Self.setup(linearized: false).lossAndGradient(pixels: pixels, labels: data.labels)
        let atBase = try Self.setup(linearized: true).lossAndGradient(pixels: pixels, labels: data.labels)
        #expect(abs(ordinary.loss - atBase.loss) <= 1e-6 * ordinary.loss)
        expectClose(atBase.gradient.flat, ordinary.gradient.flat.map(Double.init), tolerance: 1e-5, normwise: true, "gradient at θ₀")
        let away = try Self.setup(linearized: true, theta: "quick/finetuned").lossAndGradient(pixels: pixels, labels: data.labels)
        #expect(normwiseError(away.gradient.flat, ordinary.gradient.flat.map(Double.init)) > 1e-3)
    }

    @Test("Whole runs match PyTorch's AdamW + clip_grad_norm_ + cosine_lr, ordinary and linearized", arguments: [false, true])
    func matchesPyTorch(linearized: Bool) throws {
        let settings = try JSONParser.parse(FileSystem.readFile(EngineFixtures.path("quick/finetune.json")))
        var o = FineTuning.Options()
        o.steps = try #require(settings["steps"]?.nonNegativeInt)
        o.batchSize = try #require(settings["batch_size"]?.nonNegativeInt)
        o.learningRate = try #require(settings["lr"]?.doubleValue)
        o.weightDecay = try #require(settings["weight_decay"]?.doubleValue)
        o.warmupSteps = try #require(settings["warmup_steps"]?.nonNegativeInt)
        o.clipNorm = try #require(settings["clip_norm"]?.doubleValue)
        o.epsilon = try #require(settings["eps"]?.doubleValue)
        var training = try Self.setup(linearized: linearized, options: o)
        let expected = try EngineFixtures.tensors("quick/finetune.safetensors")
        let mode = linearized ? "linear" : "standard"
        var losses: [Float] = [], norms: [Float] = []
        for _ in 0..<o.steps {
            let step = try training.train()
            losses.append(Float(step.loss))
            norms.append(Float(step.gradientNorm))
        }
        expectClose(losses, expected[mode + ".loss"], tolerance: 1e-5, normwise: true, "\(mode) losses")
        expectClose(norms, expected[mode + ".grad_norm"], tolerance: 1e-5, normwise: true, "\(mode) gradient norms")
        let theta0 = try EngineFixtures.model("quick/base").parameters
        var worst = 0.0
        for tensor in theta0.tensors {
            let delta = zip(training.theta.values(of: tensor.name)!, theta0.values(of: tensor.name)!).map { $0 - $1 }
            let reference = try #require(expected["\(mode).delta.\(tensor.name)"], "\(tensor.name)")
            if tensor.name.hasSuffix("k_proj.bias") {
                // softmax ignores k's bias: its gradient is 0 in exact arithmetic, rounding noise in
                // float32, and Adam's g/(|g| + ε) turns noise into steps of up to lr. Only bounded.
                #expect(delta.allSatisfy { abs(Double($0)) <= 1.01 * o.learningRate * Double(o.steps) }, "\(tensor.name)")
                continue
            }
            worst = max(worst, expectClose(delta, reference, tolerance: 1e-3, normwise: true, "\(mode) θ − θ₀ of \(tensor.name)"))
        }
        print("[finetune] \(mode) vs PyTorch: losses \(losses), worst θ − θ₀ error \(worst)")
    }

    @Test("The schedule: linear warm-up to lr, then cosine decay to 0")
    func schedule() {
        var o = FineTuning.Options()
        o.steps = 10
        o.warmupSteps = 4
        o.learningRate = 1
        #expect(o.learningRate(at: 0) == 0.25)
        #expect(o.learningRate(at: 3) == 1)
        #expect(o.learningRate(at: 4) == 1)
        #expect(abs(o.learningRate(at: 7) - 0.5) < 1e-12)
        #expect(abs(o.learningRate(at: 9) - 0.5 * (1 + cos(Double.pi * 5 / 6))) < 1e-12)
        o.warmupSteps = 0
        #expect(o.learningRate(at: 0) == 1)
        var bad = FineTuning.Options()
        bad.batchSize = 0
        #expect(throws: MergeKitError.self) { try bad.validate() }
    }

    @Test("The same seed gives the same run; another seed another batch order")
    func seeding() throws {
        var o = FineTuning.Options()
        o.steps = 3
        o.batchSize = 3
        o.learningRate = 1e-3
        o.warmupSteps = 1
        func run(_ seed: UInt64) throws -> [Float] {
            o.seed = seed
            var training = try Self.setup(linearized: true, options: o)
            for _ in 0..<o.steps { try training.train() }
            return training.theta.flat
        }
        let a = try run(1), b = try run(1), c = try run(2)
        #expect(a == b)
        #expect(a != c)
        // Every epoch is a permutation.
        #expect(FineTuning.permutation(10, seed: 5, epoch: 0).sorted() == Array(0..<10))
        #expect(FineTuning.permutation(10, seed: 5, epoch: 0) != FineTuning.permutation(10, seed: 5, epoch: 1))
    }

    @Test("merge-cli finetune --linearized --json prints every step once the output is written; a bad --lr exits 64 naming the flag")
    func command() throws {
        let dir = TestSupport.temporaryDirectory("finetune")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = EngineFixtures.path("")
        let run = try CLI.run(["finetune", "--linearized", "--base", "quick/base", "--head", "quick/head.safetensors",
                               "--data", "quick/data.safetensors", "--steps", "3", "--batch-size", "4", "--lr", "1e-3",
                               "--warmup-steps", "1", "--seed", "7", "-o", dir + "/lin", "--json"], in: fixtures)
        #expect(run.status == 0, "\(run.stderr)")
        let document = try JSONParser.parse(Array(run.stdout.utf8))
        guard case .array(let steps)? = document["steps"] else { Issue.record("no steps in \(run.stdout)"); return }
        #expect(steps.count == 3 && steps[2]["step"]?.nonNegativeInt == 3 && document["linearized"] == .bool(true))
        let written = try Checkpoint(path: dir + "/lin")
        #expect(document["output"] == .string(dir + "/lin") && LinearizedCheckpoint.isLinearized(written))
        let bad = try CLI.run(["finetune", "--base", "quick/base", "--head", "quick/head.safetensors", "--data", "quick/data.safetensors",
                               "--lr", "0", "-o", dir + "/x"], in: fixtures)
        #expect(bad.status == 64 && bad.stderr.contains("--lr must be a positive number, not 0.0"), "\(bad.stderr)")
    }
}
