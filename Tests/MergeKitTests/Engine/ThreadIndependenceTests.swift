import Foundation
import Synchronization
import Testing
@testable import MergeKit

/// The promise that the engine's results, and everything trained or evaluated with it, are the same
/// bits for any thread count: every pass in both parallelism modes, fine-tuning (ordinary and
/// linearized), WEMoE evaluation and training, and the commands (output bytes, printed numbers).
@Suite("Results do not depend on the thread count")
struct ThreadIndependenceTests {
    static let threadCounts = [1, 2, 3, 4]

    /// `count` images of the quick fixture, cycling through its 8.
    static func pixels(_ count: Int) throws -> [Float] {
        let data = try EngineFixtures.dataset("quick")
        return (0..<count).flatMap { data.pixels($0 % data.count..<$0 % data.count + 1) }
    }

    /// Forward, JVP and gradient outputs of the quick model, flattened, with `threads` threads.
    static func engineOutputs(_ mode: EngineParallelism, threads: Int, batch: Int) throws -> [String: [Float]] {
        let model = try EngineFixtures.model("quick/base", threads: threads)
        model.parallelism = mode
        let pixels = try Self.pixels(batch)
        let direction = try EngineFixtures.model("quick/finetuned").parameters
        direction.add(model.parameters, scale: -1)
        let (primal, tangent) = model.jvp(pixels: pixels, batch: batch, direction: direction)
        let head = try TaskHead(path: EngineFixtures.path("quick/head.safetensors"))
        let g = model.lossGradients(pixels: pixels, batch: batch, head: head, loss: .entropy)
        return ["forward": model.forward(pixels: pixels, batch: batch), "jvp primal": primal, "jvp tangent": tangent,
                "gradient": g.parameters.flat, "input gradient": g.input!, "loss": [Float(g.loss)]]
    }

    @Test("Forward, JVP and gradients are identical for 1–4 threads, in both modes and for batches of 1, 3, 8 and 20 images",
          arguments: EngineParallelism.allCases, [1, 3, 8, 20])
    func engine(_ mode: EngineParallelism, batch: Int) throws {
        let reference = try Self.engineOutputs(mode, threads: 1, batch: batch)
        for threads in Self.threadCounts.dropFirst() {
            let outputs = try Self.engineOutputs(mode, threads: threads, batch: batch)
            for (name, values) in reference.sorted(by: { $0.key < $1.key }) {
                #expect(outputs[name] == values, "\(mode), batch \(batch): \(name) with \(threads) threads differs from 1 thread")
            }
        }
    }

    @Test("Image shards depend on the batch size only: min(batch, 8) near-equal contiguous slices")
    func shards() throws {
        for threads in Self.threadCounts {
            let model = try EngineFixtures.model("quick/base", threads: threads)
            for batch in [0, 1, 5, 8, 9, 30] {
                let ranges = model.shardRanges(batch: batch)
                #expect(ranges.count == CLIPVisionModel.shardCount(batch: batch) && ranges.count == max(1, min(batch, 8)))
                #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == batch)
                #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                #expect(ranges.allSatisfy { $0.count == batch / ranges.count || $0.count == batch / ranges.count + 1 })
            }
            model.parallelism = .blas
            #expect(model.shardRanges(batch: 30) == [0..<30])
        }
    }

    @Test("Kept buffers: gradients after other batches (other sizes, with and without the input gradient) equal a fresh model's")
    func keptBuffers() throws {
        let head = try TaskHead(path: EngineFixtures.path("quick/head.safetensors"))
        let fresh = try EngineFixtures.model("quick/base", threads: 2)
        let expected = fresh.lossGradients(pixels: try Self.pixels(20), batch: 20, head: head, loss: .entropy)
        let model = try EngineFixtures.model("quick/base", threads: 2)
        for batch in [20, 3, 20] {
            _ = model.lossGradients(pixels: try Self.pixels(batch).map { $0 * 0.5 }, batch: batch, head: head, loss: .entropy,
                                    inputGradient: batch == 3)
        }
        let again = model.lossGradients(pixels: try Self.pixels(20), batch: 20, head: head, loss: .entropy)
        #expect(again.parameters.flat == expected.parameters.flat && again.input == expected.input && again.loss == expected.loss)
    }

    @Test("Gradient shards: a power of two of at most 8, at least 256 rows each, from the batch and the tokens only")
    func gradientShards() throws {
        // ViT-B/32 (50 tokens): 16 images make 2 shards of 400 rows; 8 images (400 rows) one.
        for (batch, tokens, expected) in [(16, 50, 2), (8, 50, 1), (12, 50, 2), (32, 50, 4), (64, 50, 8), (1000, 50, 8),
                                          (16, 197, 8), (3, 197, 2), (0, 50, 1), (1, 5, 1), (600, 5, 8)] {
            let count = CLIPVisionModel.gradientShardCount(batch: batch, tokens: tokens)
            #expect(count == expected, "batch \(batch), \(tokens) tokens")
            #expect(count == 1 || (count <= min(batch, 8) && count & (count - 1) == 0 && batch * tokens / count >= 256))
        }
        for threads in Self.threadCounts {
            let model = try EngineFixtures.model("quick/base", threads: threads)
            let c = model.config
            for batch in [1, 5, 8, 9, 30, 200] {
                let ranges = model.gradientShardRanges(batch: batch)
                #expect(ranges.count == CLIPVisionModel.gradientShardCount(batch: batch, tokens: c.numTokens))
                #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == batch)
                #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
                // The memory estimate counts the same shards.
                let estimated = EngineMemory.shards(batch: batch, count: EngineMemory.gradientShards(c, batch: batch))
                    .flatMap { Array(repeating: $0.size, count: $0.count) }.sorted()
                #expect(estimated == ranges.map(\.count).sorted())
            }
            model.parallelism = .blas
            #expect(model.gradientShardRanges(batch: 30) == [0..<30])
        }
    }

    @Test("An engine pass never raises OpenBLAS's process-wide thread count (a concurrent caller would see it)",
          arguments: EngineParallelism.allCases)
    func openBLASStaysSingleThreaded(_ mode: EngineParallelism) throws {
        let model = try EngineFixtures.model("quick/base", threads: 4)
        model.parallelism = mode
        let seen = Mutex<Set<Int>>([])
        model.runShards(model.shardRanges(batch: 8)) { _, _ in seen.withLock { _ = $0.insert(BLAS.openBLASThreads) } }
        #expect(seen.withLock { $0 } == [1])
        #expect(BLAS.openBLASThreads == 1)
    }

    @Test("GEMM tiles: blocks of rows, else of columns, covering C exactly, fixed by the shape", arguments: [
        (1, 1), (128, 300), (129, 10), (800, 768), (8, 257), (8, 2_400_000), (100_000, 4), (3072, 768),
    ])
    func tiles(m: Int, n: Int) {
        let tiles = GEMMTiles(m: m, n: n)
        let extent = tiles.byRows ? m : n
        #expect(tiles.byRows == (m > 128 || n <= 256))
        #expect(tiles.count >= 1 && tiles.count <= GEMMTiles.maximumTiles)
        let ranges = (0..<tiles.count).map(tiles.range)
        #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == extent)
        #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound && !$0.isEmpty })
        if tiles.count > 1 { #expect(tiles.size >= (tiles.byRows ? GEMMTiles.minimumRows : GEMMTiles.minimumColumns)) }
    }

    @Test("A tiled product is the same for 1–4 threads and equals the product (every transpose, β = 0 and 1)",
          arguments: [(false, false), (true, false), (false, true), (true, true)])
    func tiledProduct(transposeA: Bool, transposeB: Bool) {
        var rng = TestRandom(seed: 41)
        for (m, n, k) in [(300, 40, 70), (20, 700, 33), (7, 9, 5)] {
            let a = rng.normals(m * k), b = rng.normals(k * n), c0 = rng.normals(m * n)
            let lda = transposeA ? m : k, ldb = transposeB ? k : n
            var expected = [Double](repeating: 0, count: m * n)
            for i in 0..<m {
                for j in 0..<n {
                    var sum = 0.0
                    for p in 0..<k {
                        sum += Double(transposeA ? a[p * lda + i] : a[i * lda + p]) * Double(transposeB ? b[j * ldb + p] : b[p * ldb + j])
                    }
                    expected[i * n + j] = 0.5 * sum + Double(c0[i * n + j])
                }
            }
            var results: [[Float]] = []
            for workers in Self.threadCounts {
                var c = c0
                BLAS.$productWorkers.withValue(workers) {
                    c.withUnsafeMutableBufferPointer { cp in
                        BLAS.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda,
                                  b: b, ldb: ldb, beta: 1, c: cp.baseAddress!, ldc: n)
                    }
                }
                results.append(c)
            }
            #expect(results.allSatisfy { $0 == results[0] }, "\(m)×\(n)×\(k): depends on the thread count")
            expectClose(results[0], expected, tolerance: 1e-5, normwise: true, "\(m)×\(n)×\(k) tiled product")
        }
    }

    // MARK: Training and evaluation

    @Test("Fine-tuning gives the same θ, losses and gradient norms for 1–4 threads (ordinary and linearized)", arguments: [false, true])
    func fineTuning(linearized: Bool) throws {
        var runs: [([Float], [Double])] = []
        for threads in Self.threadCounts {
            var o = FineTuning.Options()
            (o.steps, o.batchSize, o.learningRate, o.warmupSteps, o.linearized) = (3, 8, 1e-3, 1, linearized)
            let base = try EngineFixtures.model("quick/base", threads: threads)
            var training = try FineTuning(base: base, head: TaskHead(path: EngineFixtures.path("quick/head.safetensors")),
                                          data: EngineFixtures.dataset("quick"), options: o)
            var measured: [Double] = []
            for _ in 0..<o.steps {
                let step = try training.train()
                measured += [step.loss, step.gradientNorm]
            }
            runs.append((training.theta.flat, measured))
        }
        for (i, run) in runs.enumerated().dropFirst() {
            #expect(run.1 == runs[0].1, "losses and norms with \(Self.threadCounts[i]) threads differ from 1 thread")
            #expect(run.0 == runs[0].0, "θ with \(Self.threadCounts[i]) threads differs from 1 thread")
        }
    }

    @Test("WEMoE evaluation (per-image routing) and training (batch-averaged) are identical for 1–4 threads")
    func wemoe() throws {
        let tasks = try (0..<2).map { WEMoETask(data: try UnlabeledImages(path: WEMoEFixtures.path("task\($0)/data.safetensors")), head: try WEMoEFixtures.head($0)) }
        let pixels = tasks[0].data.pixels(Array(0..<tasks[0].data.count))
        var runs: [(embeddings: [Float], routing: [Float], losses: [Double], routers: [Float])] = []
        for threads in Self.threadCounts {
            let parameters = try WEMoEFixtures.upscaled(depth: 2, seed: 3)
            let model = WEMoEModel(parameters: parameters, threads: threads)
            let (embeddings, routing) = model.forwardWithRouting(pixels: pixels, batch: tasks[0].data.count)
            let losses = try WEMoETraining.run(model, tasks: tasks, options: WEMoETrainingOptions(steps: 3, learningRate: 2e-3, batchSize: 12, seed: 5))
            runs.append((embeddings, routing, losses, parameters.routerValues))
        }
        for (i, run) in runs.enumerated().dropFirst() {
            let threads = Self.threadCounts[i]
            #expect(run.embeddings == runs[0].embeddings && run.routing == runs[0].routing, "evaluation with \(threads) threads differs")
            #expect(run.losses == runs[0].losses && run.routers == runs[0].routers, "training with \(threads) threads differs")
        }
    }

    // MARK: Operations from files

    @Test("Fine-tuning (ordinary and linearized), evaluation and disentanglement from files: the same bytes and numbers for 1, 2, 3 threads")
    func fineTuningOperations() throws {
        let dir = TestSupport.temporaryDirectory("threads-finetune")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = EngineFixtures.path("quick/base"), finetuned = EngineFixtures.path("quick/finetuned")
        let head = EngineFixtures.path("quick/head.safetensors"), data = EngineFixtures.path("quick/data.safetensors")
        var outputs: [String: [Data]] = [:], numbers: [String: [[Double]]] = [:]
        for threads in [1, 2, 3] {
            for linearized in [false, true] {
                let name = linearized ? "linearized" : "ordinary", out = "\(dir)/\(name)-\(threads).safetensors"
                var o = FineTuning.Options()
                (o.steps, o.batchSize, o.learningRate, o.warmupSteps, o.linearized) = (3, 6, 1e-3, 1, linearized)
                let steps = try FineTuningJobTests.run(try FineTuningJob(base: base, head: head, data: data, output: out), o, threads: threads)
                outputs[name, default: []].append(try Data(contentsOf: URL(fileURLWithPath: out)))
                numbers[name, default: []].append(steps.flatMap { [$0.loss, $0.gradientNorm, $0.learningRate] })
            }
            for around in [nil, base] {
                let encoder = try EvaluatedEncoder(model: finetuned, linearizedAround: around).load(threads: threads)
                let result = try Evaluation.run(encoder, head: TaskHead(path: head), data: ImageDataset(path: data), batchSize: 5)
                numbers["eval \(around == nil ? "" : "linearized")", default: []].append([Double(result.correct), result.meanLoss])
            }
            for linearized in [false, true] {
                let job = try DisentanglementJob(base: base, inputs: [.init(path: finetuned, isModel: true), .init(path: finetuned, isModel: true)],
                                                 heads: [head, head], data: [data, data], linearized: linearized)
                let result = try job.run(alphas: [-1, 0.5, 2], batchSize: 5, threads: threads)
                numbers["disentanglement \(linearized)", default: []].append(Array(result.errors.joined()) + Array(result.taskErrors.joined().joined()))
            }
        }
        for (name, files) in outputs.sorted(by: { $0.key < $1.key }) {
            #expect(files.allSatisfy { $0 == files[0] }, "fine-tuning \(name): the output depends on the thread count")
        }
        for (name, values) in numbers.sorted(by: { $0.key < $1.key }) {
            #expect(values.allSatisfy { $0 == values[0] }, "\(name): the numbers depend on the thread count: \(values)")
        }
    }

    @Test("WEMoE upscaling, adaptation and evaluation from files: the same bytes and numbers for 1, 2, 3, 4 threads")
    func wemoeOperations() throws {
        let dir = TestSupport.temporaryDirectory("threads-wemoe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Upscaling runs on one thread; two runs give the same bytes.
        for name in ["moe", "again"] {
            _ = try WEMoEUpscaling(base: EngineFixtures.path("quick/base"), experts: (0..<2).map { WEMoEFixtures.path("experts/task\($0)") },
                                   output: dir + "/\(name).safetensors").write(scale: 0.3, routerDepth: 2, seed: 0, exactStart: false, budget: nil)
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/moe.safetensors")) == Data(contentsOf: URL(fileURLWithPath: dir + "/again.safetensors")))
        var trained: [Data] = [], losses: [[Double]] = [], evaluations: [[Double]] = []
        for threads in [1, 2, 3, 4] {
            let out = "\(dir)/trained-\(threads).safetensors"
            let adaptation = try WEMoEAdaptation(model: dir + "/moe.safetensors", data: (0..<2).map { WEMoEFixtures.path("task\($0)/data.safetensors") },
                                                 heads: (0..<2).map { WEMoEFixtures.path("task\($0)/head.safetensors") }, output: out)
            let moe = try adaptation.load(threads: threads)
            losses.append(try adaptation.train(moe, options: WEMoETrainingOptions(steps: 3, learningRate: 2e-3, batchSize: 10)))
            _ = try adaptation.write(moe)
            trained.append(try Data(contentsOf: URL(fileURLWithPath: out)))
            let result = try Evaluation.run(try EvaluatedEncoder(model: out).load(threads: threads), head: try WEMoEFixtures.head(1),
                                            data: try WEMoEFixtures.dataset(1), batchSize: 7)
            evaluations.append([Double(result.correct), result.meanLoss])
        }
        #expect(trained.allSatisfy { $0 == trained[0] }, "the adapted model depends on the thread count")
        #expect(losses.allSatisfy { $0 == losses[0] }, "the adaptation's losses depend on the thread count: \(losses)")
        #expect(evaluations.allSatisfy { $0 == evaluations[0] }, "evaluation of a WEMoE model depends on the thread count: \(evaluations)")
    }
}
