import Foundation
import Testing
@testable import MergeKit

/// Fixtures of the WEMoE tests (Fixtures/wemoe, made by make_wemoe_fixtures.py with FusionBench's
/// own WeightEnsemblingMoE module).
enum WEMoEFixtures {
    static func path(_ relative: String) -> String { TestSupport.fixture("wemoe/" + relative) }
    static let tasks = 3

    static func base() throws -> CLIPVisionParameters { try CLIPVisionModel(path: EngineFixtures.path("quick/base")).parameters }
    static func expert(_ k: Int) throws -> CLIPVisionParameters { try CLIPVisionModel(path: path("experts/task\(k)")).parameters }
    static func dataset(_ k: Int) throws -> ImageDataset { try ImageDataset(path: path("task\(k)/data.safetensors")) }
    static func head(_ k: Int) throws -> TaskHead { try TaskHead(path: path("task\(k)/head.safetensors")) }

    /// Upscales the quick base with the three experts.
    static func upscaled(depth: Int = 2, scale: Float = 0.3, seed: UInt64 = 0) throws -> WEMoEParameters {
        try WEMoEParameters.upscale(base: try base(), experts: tasks, names: (0..<tasks).map { "task\($0)" }, scale: scale,
                                    routerDepth: depth, seed: seed) { t throws(MergeKitError) in
            try CLIPVisionModel(path: path("experts/task\(t)")).parameters
        }
    }

    /// The reference batch: the first two images of each task.
    static func referencePixels() throws -> [Float] {
        try (0..<tasks).flatMap { try dataset($0).pixels(0..<2) }
    }

    /// θ₀ + λ·Σₜ τₜ, the task-arithmetic model.
    static func taskArithmetic(scale: Float = 0.3) throws -> CLIPVisionParameters {
        let base = try base()
        let merged = base.copy()
        for k in 0..<tasks { merged.add(try CLIPVisionParameters.difference(try expert(k), base), scale: scale) }
        return merged
    }
}

@Suite("WEMoE")
struct WEMoETests {
    @Test("Forward outputs and routing weights match FusionBench's WeightEnsemblingMoE", arguments: [2, 0])
    func forwardMatchesFusionBench(depth: Int) throws {
        let model = try WEMoEModel(path: WEMoEFixtures.path("fusionbench/depth\(depth).safetensors"), threads: 1)
        #expect(model.parameters.experts == 3 && model.parameters.routerDepth == depth)
        let expected = TestSupport.values(try Checkpoint(path: WEMoEFixtures.path("fusionbench/expected_depth\(depth).safetensors")))
        let pixels = try WEMoEFixtures.referencePixels()
        let (embeddings, routing) = model.forwardWithRouting(pixels: pixels, batch: 6)
        expectClose(embeddings, expected["embeddings"]?.values, tolerance: 2e-5, normwise: true, "embeddings")
        expectClose(routing, expected["routing"]?.values, tolerance: 2e-5, normwise: true, "routing")
        // Sharded over images, and mixing several images' MLPs per GEMM, give the same result.
        model.threads = 3
        expectClose(model.forward(pixels: pixels, batch: 6), expected["embeddings"]?.values, tolerance: 2e-5, normwise: true, "embeddings, 3 shards")
        model.threads = 1
        model.mixingChunk = 4
        expectClose(model.forward(pixels: pixels, batch: 6), expected["embeddings"]?.values, tolerance: 2e-5, normwise: true, "embeddings, chunks of 4")
        let chunked = model.lossGradients(pixels: pixels, batch: 6, head: try WEMoEFixtures.head(0), loss: .entropy, batchReduce: false)
        model.mixingChunk = 1
        let single = model.lossGradients(pixels: pixels, batch: 6, head: try WEMoEFixtures.head(0), loss: .entropy, batchReduce: false)
        expectClose(chunked.gradient, single.gradient.map(Double.init), tolerance: 1e-5, normwise: true, "router gradients, chunks of 4 vs 1")
    }

    @Test("Router gradients of the entropy loss match FusionBench (per-sample and batch-reduced routing)", arguments: [2, 0])
    func gradientsMatchFusionBench(depth: Int) throws {
        let model = try WEMoEModel(path: WEMoEFixtures.path("fusionbench/depth\(depth).safetensors"), threads: 1)
        let expected = TestSupport.values(try Checkpoint(path: WEMoEFixtures.path("fusionbench/expected_depth\(depth).safetensors")))
        let pixels = try WEMoEFixtures.referencePixels()
        let head = try WEMoEFixtures.head(0)
        for (reduce, prefix) in [(false, "entropy"), (true, "reduced.entropy")] {
            let result = model.lossGradients(pixels: pixels, batch: 6, head: head, loss: .entropy, batchReduce: reduce)
            let loss = try #require(expected[prefix + ".loss"]?.values.first)
            #expect(abs(result.loss - loss) <= 1e-5 * abs(loss), "\(prefix) loss \(result.loss) vs \(loss)")
            let tensors = model.parameters.routerTensors
            #expect(tensors.count == model.config.numHiddenLayers * (depth == 2 ? 4 : 1))
            for tensor in tensors {
                expectClose(Array(result.gradient[tensor.range]), expected[prefix + ".grad." + tensor.name]?.values,
                            tolerance: 1e-4, normwise: true, "\(prefix) ∂L/∂\(tensor.name)")
            }
        }
    }

    @Test("Upscaling builds FusionBench's tensors: task-arithmetic remainder, base MLP, task vectors")
    func upscaleMatchesFusionBench() throws {
        let ours = try WEMoEFixtures.upscaled(depth: 2)
        let theirs = TestSupport.values(try Checkpoint(path: WEMoEFixtures.path("fusionbench/depth2.safetensors")))
        let tensors = ours.namedTensors()
        #expect(Set(tensors.map(\.name)) == Set(theirs.keys), "the key layout differs from FusionBench's state dict")
        for tensor in tensors where !tensor.name.contains(".gate.") {
            let values = Array(UnsafeBufferPointer(start: tensor.values, count: tensor.shape.reduce(1, *)))
            #expect(tensor.shape == theirs[tensor.name]?.info.shape, "\(tensor.name) shape")
            expectClose(values, theirs[tensor.name]?.values, tolerance: 1e-6, normwise: true, tensor.name)
        }
    }

    @Test("Before training, a WEMoE model computes the task-arithmetic (λ = 0.3) model", arguments: [2, 1, 0])
    func startsAtTaskArithmetic(depth: Int) throws {
        let parameters = try WEMoEFixtures.upscaled(depth: depth)
        let pixels = try (0..<3).flatMap { try WEMoEFixtures.dataset($0).pixels(0..<4) }
        let ta = CLIPVisionModel(parameters: try WEMoEFixtures.taskArithmetic(), threads: 1).forward(pixels: pixels, batch: 12)
        let ta64 = ta.map(Double.init)
        // FusionBench's random router weights N(0, 0.01²) move r by about 0.01 from λ: close, not equal.
        let model = WEMoEModel(parameters: parameters, threads: 1)
        let (initial, initialRouting) = model.forwardWithRouting(pixels: pixels, batch: 12)
        let drift = normwiseError(initial, ta64)
        let routingDrift = initialRouting.map { abs($0 - 0.3) }.max() ?? 0
        #expect(routingDrift < 0.1 && drift < 0.2, "default initialisation: routing within \(routingDrift) of λ, outputs \(drift) from task arithmetic")
        // With the routers' output weights zeroed, r = λ exactly.
        parameters.zeroRouterOutputWeights()
        let (exact, routing) = model.forwardWithRouting(pixels: pixels, batch: 12)
        expectClose(exact, ta64, tolerance: 1e-5, normwise: true, "WEMoE with r = λ vs task arithmetic")
        #expect(routing.allSatisfy { abs($0 - 0.3) < 1e-6 })
        if depth != 0 { #expect(drift > 0, "routers should start with random weights") }
    }

    @Test("Router gradients agree with central finite differences", arguments: [(2, false), (2, true), (1, false), (0, true)])
    func finiteDifferences(depth: Int, reduce: Bool) throws {
        let parameters = try WEMoEFixtures.upscaled(depth: depth, seed: 7)
        // Larger router weights than the initialisation, so every path carries signal.
        var random = TestRandom(seed: 99)
        let values = parameters.routerValues
        parameters.setRouterValues(zip(values, random.normals(values.count, scale: 0.3)).map { $0 * 10 + $1 * 0.1 })
        let model = WEMoEModel(parameters: parameters, threads: 1)
        let pixels = try (0..<3).flatMap { try WEMoEFixtures.dataset($0).pixels(2..<3) }
        let head = try WEMoEFixtures.head(1)
        let result = model.lossGradients(pixels: pixels, batch: 3, head: head, loss: .entropy, batchReduce: reduce)
        func loss() -> Double {
            model.lossGradients(pixels: pixels, batch: 3, head: head, loss: .entropy, batchReduce: reduce).loss
        }
        // Directional derivative along a random direction, and a few single coordinates.
        // A unit direction (ReLU kinks make large steps in many coordinates unreliable).
        let raw = random.normals(values.count)
        let norm = raw.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let direction = raw.map { $0 / norm }
        let base = parameters.routerValues
        let h: Float = 1e-2
        parameters.setRouterValues(zip(base, direction).map { $0 + h * $1 })
        let up = loss()
        parameters.setRouterValues(zip(base, direction).map { $0 - h * $1 })
        let down = loss()
        parameters.setRouterValues(base)
        let numeric = (up - down) / (2 * Double(h))
        let analytic = zip(result.gradient, direction).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(numeric - analytic) <= 2e-2 * max(abs(analytic), 1e-3), "directional derivative: numeric \(numeric), analytic \(analytic)")
        for tensor in parameters.routerTensors {
            let i = tensor.range.upperBound - 1  // last element: an output bias (depth ≥ 1) or the vector
            var shifted = base
            shifted[i] += h
            parameters.setRouterValues(shifted)
            let plus = loss()
            shifted[i] -= 2 * h
            parameters.setRouterValues(shifted)
            let minus = loss()
            parameters.setRouterValues(base)
            let fd = (plus - minus) / (2 * Double(h))
            #expect(abs(fd - Double(result.gradient[i])) <= 2e-2 * max(abs(fd), 1e-3), "\(tensor.name)[last]: numeric \(fd), analytic \(result.gradient[i])")
        }
    }

    @Test("Save and load round-trip; inspect reports a WEMoE model; bad files are named")
    func saveAndLoad() throws {
        let dir = TestSupport.temporaryDirectory("wemoe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let parameters = try WEMoEFixtures.upscaled(depth: 2)
        parameters.trainedSteps = 5
        try parameters.save(to: dir + "/moe.safetensors")
        try parameters.save(to: dir + "/moe", configSource: EngineFixtures.path("quick/base/config.json"))
        #expect(TestSupport.listing(dir + "/moe") == ["config.json", "model.safetensors"])
        for path in [dir + "/moe.safetensors", dir + "/moe"] {
            let loaded = try WEMoEParameters.load(path: path)
            #expect(loaded.experts == 3 && loaded.routerDepth == 2 && loaded.trainedSteps == 5 && loaded.initLambda == 0.3)
            #expect(loaded.expertNames == ["task0", "task1", "task2"])
            #expect(loaded.routerValues == parameters.routerValues)
            #expect(loaded.merged.flat == parameters.merged.flat)
            #expect(loaded.config == parameters.config)
            let summary = CheckpointSummary(try Checkpoint(path: path))
            #expect(summary.kind == "wemoe")
            #expect(summary.text.contains("WEMoE model: 3 experts, router depth 2"))
        }
        #expect(throws: MergeKitError.self) { try parameters.save(to: dir + "/moe.safetensors") }
        // A plain CLIP checkpoint is not a WEMoE model.
        #expect { try WEMoEParameters.load(path: EngineFixtures.path("quick/base")) } throws: { error in
            (error as? MergeKitError)?.description.contains("is not a WEMoE checkpoint") == true
        }
    }
}

@Suite("WEMoE test-time adaptation and CLI")
struct WEMoETrainingTests {
    static let taskArguments: [String] = (0..<3).flatMap { ["--data", "task\($0)/data.safetensors", "--head", "task\($0)/head.safetensors"] }

    @Test("Training lowers every task's entropy, changes only the routers, and is reproducible for a seed")
    func trainingLowersEntropy() throws {
        let tasks = try (0..<3).map { WEMoETask(data: try UnlabeledImages(path: WEMoEFixtures.path("task\($0)/data.safetensors")), head: try WEMoEFixtures.head($0)) }
        func entropies(_ model: WEMoEModel) -> [Double] {
            tasks.map { task in
                let logits = model.forward(pixels: task.data.pixels(Array(0..<task.data.count)), batch: task.data.count).withUnsafeBufferPointer {
                    task.head.logits(embeddings: Array($0), batch: task.data.count)
                }
                return ClassificationLoss.entropy.evaluate(logits: logits, batch: task.data.count, classes: task.head.classes).value
            }
        }
        var runs: [[Float]] = []
        for _ in 0..<2 {
            let parameters = try WEMoEFixtures.upscaled(depth: 2, seed: 3)
            let merged = parameters.merged.flat
            let model = WEMoEModel(parameters: parameters, threads: 1)
            let before = entropies(model)
            var steps = 0
            let losses = try WEMoETraining.run(model, tasks: tasks, options: WEMoETrainingOptions(steps: 40, learningRate: 2e-3, batchSize: 8, seed: 5)) { step, total, _ in
                #expect(total == 40)
                steps = step
            }
            #expect(steps == 40 && losses.count == 40 && parameters.trainedSteps == 40)
            let after = entropies(model)
            for k in 0..<3 { #expect(after[k] < before[k], "task \(k): entropy \(before[k]) → \(after[k])") }
            #expect(losses.suffix(5).reduce(0, +) < losses.prefix(5).reduce(0, +), "loss did not fall: \(losses)")
            #expect(parameters.merged.flat == merged, "only the routers may change")
            runs.append(parameters.routerValues)
        }
        #expect(runs[0] == runs[1], "the same seed must give the same routers")
    }

    @Test("End to end on the synthetic tasks: adaptation lowers entropy and beats task arithmetic's accuracy")
    func endToEnd() throws {
        let tasks = try (0..<3).map { WEMoETask(data: try UnlabeledImages(path: WEMoEFixtures.path("task\($0)/data.safetensors")), head: try WEMoEFixtures.head($0)) }
        func evaluate(_ encoder: any ImageEncoder) throws -> [EvaluationResult] {
            try (0..<3).map { try Evaluation.run(encoder, head: tasks[$0].head, data: try WEMoEFixtures.dataset($0), batchSize: 16) }
        }
        func meanEntropy(_ model: WEMoEModel, _ task: WEMoETask) -> Double {
            let n = task.data.count
            let logits = task.head.logits(embeddings: model.forward(pixels: task.data.pixels(Array(0..<n)), batch: n), batch: n)
            return ClassificationLoss.entropy.evaluate(logits: logits, batch: n, classes: task.head.classes).value
        }
        // Task arithmetic agrees with PyTorch's (Fixtures/wemoe/expected.json).
        let expected = try JSONParser.parse(try FileSystem.readFile(WEMoEFixtures.path("expected.json")))
        let taReference = expected["task_arithmetic"]?.arrayValue?.compactMap(\.doubleValue) ?? []
        let ta = try evaluate(CLIPVisionModel(parameters: try WEMoEFixtures.taskArithmetic(), threads: 1))
        #expect(ta.map(\.accuracy) == taReference)

        let model = WEMoEModel(parameters: try WEMoEFixtures.upscaled(depth: 2, seed: 0), threads: 1)
        let before = tasks.map { meanEntropy(model, $0) }
        _ = try WEMoETraining.run(model, tasks: tasks, options: WEMoETrainingOptions(steps: 100, learningRate: 1e-3, batchSize: 16, seed: 0))
        let after = tasks.map { meanEntropy(model, $0) }
        let trained = try evaluate(model)
        for k in 0..<3 { #expect(after[k] < 0.5 * before[k], "task \(k): entropy \(before[k]) → \(after[k])") }
        let taMean = ta.map(\.accuracy).reduce(0, +) / 3, trainedMean = trained.map(\.accuracy).reduce(0, +) / 3
        // Measured: task arithmetic 75 / 62.5 / 75 %, adapted WEMoE 93.75 / 93.75 / 100 %.
        #expect(trainedMean >= taMean + 0.15, "accuracy: task arithmetic \(ta.map(\.accuracy)), WEMoE \(trained.map(\.accuracy))")
    }

    @Test("Unlabeled inputs: a data file without labels trains; a file without pixel_values is named")
    func unlabeledInputs() throws {
        let dir = TestSupport.temporaryDirectory("wemoe-unlabeled")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try WEMoEFixtures.dataset(2)
        let pixels = source.pixels(0..<5)
        TestSupport.writeCheckpoint(dir + "/unlabeled.safetensors",
                                    [(TensorSpec(name: "pixel_values", dtype: .F32, shape: [5, 3, 32, 32]), pixels.map(Double.init))])
        let images = try UnlabeledImages(path: dir + "/unlabeled.safetensors")
        #expect(images.count == 5 && images.pixels([3, 1]) == Array(pixels[3 * 3072..<4 * 3072] + pixels[3072..<2 * 3072]))
        let model = WEMoEModel(parameters: try WEMoEFixtures.upscaled(depth: 1), threads: 1)
        let losses = try WEMoETraining.run(model, tasks: [WEMoETask(data: images, head: try WEMoEFixtures.head(2))],
                                           options: WEMoETrainingOptions(steps: 3, learningRate: 1e-3, batchSize: 4))
        #expect(losses.count == 3 && losses.allSatisfy(\.isFinite))
        TestSupport.writeCheckpoint(dir + "/empty.safetensors", [(TensorSpec(name: "labels", dtype: .F32, shape: [1]), [0])])
        #expect { try UnlabeledImages(path: dir + "/empty.safetensors") } throws: { error in
            let e = error as? MergeKitError
            return e?.tensor == "pixel_values" && e?.file == dir + "/empty.safetensors"
        }
    }

    @Test("Shuffled batches cover every image once per pass, the last batch smaller")
    func shuffledBatches() {
        var sampler = ShuffledBatches(count: 10, seed: 1)
        let pass = [sampler.next(4), sampler.next(4), sampler.next(4)]
        #expect(pass.map(\.count) == [4, 4, 2])
        #expect(pass.flatMap { $0 }.sorted() == Array(0..<10))
        #expect(sampler.next(4).count == 4)
    }

    static var experts: [String] { (0..<WEMoEFixtures.tasks).map { WEMoEFixtures.path("experts/task\($0)") } }

    @Test("An exact-start WEMoE model evaluates exactly like task arithmetic at λ = 0.3 (before training); random routers start off it")
    func exactStartIsTaskArithmetic() throws {
        let dir = TestSupport.temporaryDirectory("wemoe-exact")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = EngineFixtures.path("quick/base")
        let upscaling = try WEMoEUpscaling(base: base, experts: Self.experts, output: dir + "/moe")
        _ = try upscaling.write(scale: 0.3, routerDepth: 2, seed: 0, exactStart: true, budget: nil)
        _ = try LinearizedCheckpointTests.merge(base: try Checkpoint(path: base),
                                                try Self.experts.map { MergeInput(kind: .model, checkpoint: try Checkpoint(path: $0)) },
                                                method: try TaskArithmetic(scale: 0.3), into: dir + "/ta")
        for task in 0..<3 {
            let results = try [dir + "/moe", dir + "/ta"].map { model in
                try Evaluation.run(try EvaluatedEncoder(model: model).load(threads: 1), head: try WEMoEFixtures.head(task),
                                   data: try WEMoEFixtures.dataset(task), batchSize: 32)
            }
            #expect(results[0].correct == results[1].correct)
            #expect(abs(results[0].meanLoss - results[1].meanLoss) <= 1e-5 * abs(results[1].meanLoss),
                    "task \(task): WEMoE \(results[0].meanLoss) vs task arithmetic \(results[1].meanLoss)")
        }
        // Without the exact start the routers' random output weights move the start off task arithmetic.
        _ = try WEMoEUpscaling(base: base, experts: Self.experts, output: dir + "/random")
            .write(scale: 0.3, routerDepth: 2, seed: 0, exactStart: false, budget: nil)
        let routers = try Checkpoint(path: dir + "/random")
        let weight = try #require(routers.entry(named: "vision_model.encoder.layers.0.mlp.gate.fc2.weight"))
        #expect(Array(weight.file.bytes(of: weight.info)).contains { $0 != 0 })
    }

    @Test("Upscaling and adaptation from files: eval routes per image, training is reproducible and lowers the loss, bad inputs are refused")
    func upscaleAndAdapt() throws {
        let dir = TestSupport.temporaryDirectory("wemoe-files")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = EngineFixtures.path("quick/base")
        let upscaling = try WEMoEUpscaling(base: base, experts: Self.experts, output: dir + "/moe")
        #expect(upscaling.configPath == base + "/config.json" && upscaling.inputs == [base] + Self.experts + [base + "/config.json"])
        #expect(upscaling.memory(routerDepth: 2).bytes > upscaling.memory(routerDepth: 0).bytes)
        _ = try upscaling.write(scale: 0.3, routerDepth: 2, seed: 4, exactStart: false, budget: nil)
        #expect(TestSupport.listing(dir + "/moe") == ["config.json", "model.safetensors"])

        // eval's encoder for a WEMoE model is the WEMoE model, routed per image.
        let chosen = try EvaluatedEncoder(model: dir + "/moe")
        #expect(chosen.form == .wemoe(experts: 3, routerDepth: 2))
        let data = try WEMoEFixtures.dataset(1), head = try WEMoEFixtures.head(1)
        let expected = try Evaluation.run(try WEMoEModel(path: dir + "/moe", threads: 1), head: head, data: data, batchSize: 5)
        let evaluated = try Evaluation.run(try chosen.load(threads: 1), head: head, data: data, batchSize: 5)
        #expect(evaluated.correct == expected.correct && evaluated.meanLoss == expected.meanLoss)

        // Adaptation: the same seed gives the same losses and bytes; the loss falls (batches of 16 = every image).
        let tasks = (0..<3).map { WEMoEFixtures.path("task\($0)/data.safetensors") }
        let heads = (0..<3).map { WEMoEFixtures.path("task\($0)/head.safetensors") }
        var runs: [[Double]] = []
        for name in ["a", "b"] {
            let adaptation = try WEMoEAdaptation(model: dir + "/moe", data: tasks, heads: heads, output: dir + "/trained-\(name).safetensors")
            #expect(adaptation.experts == 3 && adaptation.routerDepth == 2 && adaptation.tasks.count == 3)
            let moe = try adaptation.load(threads: 1)
            let losses = try adaptation.train(moe, options: WEMoETrainingOptions(steps: 15, learningRate: 3e-3, batchSize: 16, seed: 2))
            #expect(losses.count == 15 && (losses.last ?? .infinity) < (losses.first ?? 0), "\(losses)")
            _ = try adaptation.write(moe)
            runs.append(losses)
        }
        #expect(runs[0] == runs[1])
        let a = try Checkpoint(path: dir + "/trained-a.safetensors"), b = try Checkpoint(path: dir + "/trained-b.safetensors")
        #expect(a.metadata?["wemoe.trained_steps"] == "15")
        expectCheckpointsMatch(a, b, ulps: 0)

        // Refused before any work: an existing output, an expert of another architecture, a head that does not fit.
        let exists = try #require(throws: MergeKitError.self) { try WEMoEUpscaling(base: base, experts: [Self.experts[0]], output: dir + "/moe") }
        #expect(exists.code == .outputExists && exists.fix?.contains("allow overwriting") == true, "\(exists)")
        let other = EngineFixtures.path("gelu/model")
        let architecture = try #require(throws: MergeKitError.self) { try WEMoEUpscaling(base: base, experts: [other], output: dir + "/x") }
        #expect(architecture.code == .shapeMismatch && architecture.file == other && architecture.fix == "Every expert must be a fine-tune of the base")
        let otherHead = EngineFixtures.path("gelu/head.safetensors")
        let mismatch = try #require(throws: MergeKitError.self) {
            try WEMoEAdaptation(model: dir + "/moe", data: [tasks[0]], heads: [otherHead], output: dir + "/x")
        }
        #expect(mismatch.file == otherHead, "\(mismatch)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
    }

    @Test("merge-cli wemoe and wemoe-train: summary lines, outputs, JSON losses, argument errors (exit 64)")
    func commandLine() throws {
        let dir = TestSupport.temporaryDirectory("wemoe-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = WEMoEFixtures.path("")
        let upscale = try CLI.run(["wemoe", "--base", "../clip/quick/base", "--model", "experts/task0", "--model", "experts/task1",
                                   "--model", "experts/task2", "--seed", "4", "-o", dir + "/moe"], in: fixtures)
        #expect(upscale.status == 0, "\(upscale.stderr)")
        #expect(upscale.stderr.contains("WEMoE with 3 experts, router depth 2"))
        #expect(TestSupport.listing(dir + "/moe") == ["config.json", "model.safetensors"])
        let train = try CLI.run(["wemoe-train", "--model", dir + "/moe"] + WEMoETrainingTests.taskArguments
                                + ["--steps", "3", "--lr", "3e-3", "--batch-size", "16", "--seed", "2", "--json", "-o", dir + "/trained.safetensors"],
                                in: fixtures)
        #expect(train.status == 0, "\(train.stderr)")
        let json = try JSONParser.parse(Array(train.stdout.utf8))
        #expect(json["losses"]?.arrayValue?.count == 3 && json["steps"]?.nonNegativeInt == 3 && json["output"] == .string(dir + "/trained.safetensors"))
        #expect(try Checkpoint(path: dir + "/trained.safetensors").metadata?["wemoe.trained_steps"] == "3")

        // Argument errors.
        let unpaired = try CLI.run(["wemoe-train", "--model", dir + "/moe", "--data", "task0/data.safetensors", "-o", dir + "/x"], in: fixtures)
        #expect(unpaired.status == 64 && unpaired.stderr.contains("one --head per --data"))
        let depth = try CLI.run(["wemoe", "--base", "../clip/quick/base", "--model", "experts/task0", "--router-depth", "3", "-o", dir + "/y"], in: fixtures)
        #expect(depth.status == 64 && depth.stderr.contains("--router-depth must be 0, 1 or 2"))
    }
}
