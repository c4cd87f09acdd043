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

    // MARK: Commands

    /// stdout of a JSON-printing command without its timing fields and file names.
    static func numbers(_ stdout: String) throws -> JSONValue {
        guard case .object(let members) = try JSONParser.parse(Array(stdout.utf8)) else { return .null }
        return .object(members.filter { !["seconds", "images_per_second", "peak_memory_bytes", "model", "output"].contains($0.key) })
    }

    @Test("finetune (ordinary and linearized), eval and disentanglement: the same bytes and numbers for --threads 1, 2, 3")
    func fineTuningCommands() throws {
        let dir = TestSupport.temporaryDirectory("threads-finetune")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = EngineFixtures.path("")
        let common = ["--head", "quick/head.safetensors", "--data", "quick/data.safetensors"]
        var outputs: [String: [[UInt8]]] = [:], printed: [String: [JSONValue]] = [:]
        for threads in [1, 2, 3] {
            for (name, flags) in [("ordinary", [String]()), ("linearized", ["--linearized"])] {
                let out = "\(dir)/\(name)-\(threads).safetensors"
                let run = try CLI.run(["finetune", "--base", "quick/base"] + common + flags + [
                    "--steps", "3", "--batch-size", "6", "--lr", "1e-3", "--warmup-steps", "1", "--threads", "\(threads)", "-o", out, "--json",
                ], in: fixtures)
                #expect(run.status == 0, "\(run.stderr)")
                outputs[name, default: []].append(Array(try Data(contentsOf: URL(fileURLWithPath: out))))
                printed[name, default: []].append(try Self.numbers(run.stdout))
            }
            for (name, model) in [("eval", ["--model", "quick/finetuned"]), ("eval-linearized", ["--model", "quick/finetuned", "--base", "quick/base", "--linearized"])] {
                let run = try CLI.run(["eval"] + model + common + ["--batch-size", "5", "--threads", "\(threads)", "--json"], in: fixtures)
                #expect(run.status == 0, "\(run.stderr)")
                printed[name, default: []].append(try Self.numbers(run.stdout))
            }
            for flags in [[String](), ["--linearized"]] {
                let run = try CLI.run(["disentanglement", "--base", "quick/base", "--model", "quick/finetuned", "--model", "quick/finetuned",
                                       "--head", "quick/head.safetensors", "--head", "quick/head.safetensors", "--data", "quick/data.safetensors",
                                       "--data", "quick/data.safetensors", "--alphas=-1,0.5,2", "--batch-size", "5", "--threads", "\(threads)", "--json"] + flags,
                                      in: fixtures)
                #expect(run.status == 0, "\(run.stderr)")
                printed["disentanglement" + flags.joined(), default: []].append(try Self.numbers(run.stdout))
            }
        }
        for (name, files) in outputs.sorted(by: { $0.key < $1.key }) {
            #expect(files.allSatisfy { $0 == files[0] }, "finetune \(name): the output depends on --threads")
        }
        for (name, values) in printed.sorted(by: { $0.key < $1.key }) {
            #expect(values.allSatisfy { $0 == values[0] }, "\(name): the printed numbers depend on --threads: \(values)")
        }
    }

    @Test("wemoe, wemoe-train and eval of a WEMoE model: the same bytes and numbers for --threads 1, 2, 3, 4")
    func wemoeCommands() throws {
        let dir = TestSupport.temporaryDirectory("threads-wemoe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = WEMoEFixtures.path("")
        // wemoe has no --threads (upscaling runs on one thread); two runs give the same bytes.
        for name in ["moe", "again"] {
            let upscale = try CLI.run(["wemoe", "--base", "../clip/quick/base", "--model", "experts/task0", "--model", "experts/task1",
                                       "-o", dir + "/\(name).safetensors"], in: fixtures)
            #expect(upscale.status == 0, "\(upscale.stderr)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/moe.safetensors")) == Data(contentsOf: URL(fileURLWithPath: dir + "/again.safetensors")))
        var trained: [[UInt8]] = [], losses: [JSONValue] = [], evaluations: [JSONValue] = []
        for threads in [1, 2, 3, 4] {
            let out = "\(dir)/trained-\(threads).safetensors"
            let train = try CLI.run(["wemoe-train", "--model", dir + "/moe.safetensors", "--data", "task0/data.safetensors", "--head", "task0/head.safetensors",
                                     "--data", "task1/data.safetensors", "--head", "task1/head.safetensors", "--steps", "3", "--batch-size", "10",
                                     "--lr", "2e-3", "--threads", "\(threads)", "-o", out, "--json"], in: fixtures)
            #expect(train.status == 0, "\(train.stderr)")
            trained.append(Array(try Data(contentsOf: URL(fileURLWithPath: out))))
            losses.append(try Self.numbers(train.stdout)["losses"] ?? .null)
            let eval = try CLI.run(["eval", "--model", out, "--data", "task1/data.safetensors", "--head", "task1/head.safetensors",
                                    "--batch-size", "7", "--threads", "\(threads)", "--json"], in: fixtures)
            #expect(eval.status == 0, "\(eval.stderr)")
            evaluations.append(try Self.numbers(eval.stdout))
        }
        #expect(trained.allSatisfy { $0 == trained[0] }, "wemoe-train's output depends on --threads")
        #expect(losses.allSatisfy { $0 == losses[0] }, "wemoe-train's losses depend on --threads: \(losses)")
        #expect(evaluations.allSatisfy { $0 == evaluations[0] }, "eval of a WEMoE model depends on --threads: \(evaluations)")
    }
}
