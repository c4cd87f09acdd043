import Foundation
import Testing
@testable import MergeKit

/// Memory estimates before allocating: measured activations equal what the passes allocate, the
/// budget is read from /proc and the cgroups, and commands refuse (or reduce a default batch)
/// instead of aborting in malloc.
@Suite("Engine memory estimates")
struct EngineMemoryTests {
    static var head: String { EngineFixtures.path("quick/head.safetensors") }
    static var data: String { EngineFixtures.path("quick/data.safetensors") }

    @Test("The measured activations equal what forward, JVP and backward passes allocate", arguments: [1, 3, 8])
    func clipPasses(_ b: Int) throws {
        let model = try EngineFixtures.model("quick/base", threads: 1)
        let c = model.config, e = model.embeddingSize
        let pixels = try EngineFixtures.dataset("quick").pixels(0..<b)
        var embeddings = [Float](repeating: 0, count: b * e), tangent = embeddings
        let direction = try model.parameters.direction(from: Checkpoint(path: EngineFixtures.path("quick/tau.safetensors")))
        pixels.withUnsafeBufferPointer { px in
            let x = px.baseAddress!
            let forward = ShardPass(c, batch: b, keepActivations: false)
            model.forward(forward, pixels: x, embeddings: &embeddings)
            #expect(EngineMemory.forwardFloats(c, b) == forward.workspace.floatCount)

            let primal = ShardPass(c, batch: b, keepActivations: false), tangents = ShardPass(c, batch: b, keepActivations: false, tangent: true)
            model.jvp(primal, tangents, direction: direction.directionViews, pixels: x, embeddings: &embeddings, tangent: &tangent)
            #expect(EngineMemory.jvpFloats(c, b) == primal.workspace.floatCount + tangents.workspace.floatCount)

            for inputGradient in [false, true] {
                let pass = ShardPass(c, batch: b, keepActivations: true)
                model.forward(pass, pixels: x, embeddings: &embeddings)
                let gradient = CLIPVisionParameters(zerosLike: model.parameters)
                var dPixels = [Float](repeating: 0, count: pixels.count)
                let dEmbeddings = [Float](repeating: 0.1, count: b * e)
                if inputGradient {
                    model.backward(pass, gradient: gradient.views, dEmbeddings: dEmbeddings, dPixels: &dPixels)
                } else {
                    model.backward(pass, gradient: gradient.views, dEmbeddings: dEmbeddings, dPixels: nil)
                }
                #expect(EngineMemory.gradientFloats(c, b, inputGradient: inputGradient) == pass.workspace.floatCount)
            }
        }
    }

    @Test("The measured activations equal what WEMoE's forward and training passes allocate", arguments: [1, 3, 10])
    func wemoePasses(_ b: Int) throws {
        let parameters = try WEMoEFixtures.upscaled()
        let model = WEMoEModel(parameters: parameters, threads: 1)
        let c = model.config, e = model.embeddingSize, t = parameters.experts
        let pixels = try WEMoEFixtures.dataset(0).pixels(0..<b)
        var embeddings = [Float](repeating: 0, count: b * e)
        let routing = FloatBuffer(count: c.numHiddenLayers * b * t)
        pixels.withUnsafeBufferPointer { px in
            let forward = WEMoEShardPass(parameters, batch: b, keepActivations: false, backward: false, chunk: model.mixingChunk)
            model.forward(forward, pixels: px.baseAddress!, embeddings: &embeddings, batchReduce: false, routing: routing.pointer)
            #expect(EngineMemory.wemoeForwardFloats(c, experts: t, routerDepth: 2, b) == forward.pass.workspace.floatCount + routing.count)

            let training = WEMoEShardPass(parameters, batch: b, keepActivations: true, backward: true, chunk: 1)
            model.forward(training, pixels: px.baseAddress!, embeddings: &embeddings, batchReduce: true, routing: nil)
            let gradient = FloatBuffer(count: parameters.routers.count)
            let dEmbeddings = [Float](repeating: 0.1, count: b * e)
            model.backward(training, gradient: gradient.pointer, dEmbeddings: dEmbeddings, batchReduce: true)
            #expect(EngineMemory.wemoeTrainingFloats(c, experts: t, routerDepth: 2, b) == training.pass.workspace.floatCount)
        }
    }

    @Test("Shards beyond the measured size are extrapolated exactly; shards split as the model splits a batch")
    func shards() throws {
        let c = try EngineFixtures.model("quick/base").config
        for size in [65, 100, 257] {
            #expect(EngineMemory.perShard(size) { EngineMemory.forwardFloats(c, $0) } == EngineMemory.forwardFloats(c, size))
            #expect(EngineMemory.perShard(size) { EngineMemory.wemoeForwardFloats(c, experts: 3, routerDepth: 2, $0) }
                    == EngineMemory.wemoeForwardFloats(c, experts: 3, routerDepth: 2, size))
        }
        let model = try EngineFixtures.model("quick/base")
        for threads in 1...5 {
            model.threads = threads
            for batch in 1...20 {
                let expected = model.shardRanges(batch: batch).map(\.count).sorted()
                let estimated = EngineMemory.shards(batch: batch).flatMap { Array(repeating: $0.size, count: $0.count) }.sorted()
                #expect(estimated == expected, "batch \(batch), \(threads) threads")
                // Passes built as threads take shards: the `threads` largest at once.
                let alive = expected.reversed().prefix(threads).reduce(0) { $0 + EngineMemory.forwardFloats(c, $1) }
                #expect(EngineMemory.inFlight(batch: batch, threads: threads) { EngineMemory.forwardFloats(c, $0) } == alive)
            }
        }
        // A batch so large that its floats overflow an Int saturates instead of trapping.
        let huge = EngineMemory.evaluation(config: c, hasProjection: true, form: .plain, batch: Int.max / 2, threads: 2, classes: 4)
        #expect(huge.bytes == .max)
    }

    @Test("The budget: MemAvailable capped by the tightest cgroup headroom, v1 or v2, inactive file pages reclaimable")
    func budget() {
        let meminfo = "MemTotal:       24731408 kB\nMemFree:  100 kB\nMemAvailable:   8000000 kB\n"
        func budget(_ files: [String: String]) -> MemoryBudget? { MemoryBudget.available { files[$0] } }
        #expect(budget([:]) == nil)
        #expect(budget(["/proc/meminfo": meminfo]) == MemoryBudget(bytes: 8_192_000_000, source: "MemAvailable in /proc/meminfo"))
        // v2: the process's group has no limit, its parent 4 GB with 3 GB in use, 1 GB of it inactive file pages.
        let v2 = ["/proc/meminfo": meminfo, "/proc/self/cgroup": "0::/jobs/a\n",
                  "/sys/fs/cgroup/jobs/a/memory.max": "max\n", "/sys/fs/cgroup/jobs/a/memory.current": "100\n",
                  "/sys/fs/cgroup/jobs/memory.max": "4000000000\n", "/sys/fs/cgroup/jobs/memory.current": "3000000000\n",
                  "/sys/fs/cgroup/jobs/memory.stat": "anon 1\ninactive_file 1000000000\n"]
        #expect(budget(v2) == MemoryBudget(bytes: 2_000_000_000, source: "the memory limit of cgroup /sys/fs/cgroup/jobs"))
        // v1: the memory controller's line; an unlimited value (near 2⁶³) is no limit.
        let v1 = ["/proc/meminfo": meminfo, "/proc/self/cgroup": "5:cpu:/x\n4:memory:/process_api/p\n",
                  "/sys/fs/cgroup/memory/process_api/p/memory.limit_in_bytes": "1000000000\n",
                  "/sys/fs/cgroup/memory/process_api/p/memory.usage_in_bytes": "400000000\n",
                  "/sys/fs/cgroup/memory/process_api/p/memory.stat": "cache 5\ntotal_inactive_file 100000000\n",
                  "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
                  "/sys/fs/cgroup/memory/memory.usage_in_bytes": "5994680320\n"]
        #expect(budget(v1) == MemoryBudget(bytes: 700_000_000, source: "the memory limit of cgroup /sys/fs/cgroup/memory/process_api/p"))
        // The process's own limits: RLIMIT_AS less what is mapped, RLIMIT_DATA less the data segment.
        let status = ["/proc/meminfo": meminfo, "/proc/self/status": "Name: x\nVmSize:   500000 kB\nVmData:  100000 kB\n"]
        #expect(MemoryBudget.available(addressSpaceLimit: 2_000_000_000, read: { status[$0] })
                == MemoryBudget(bytes: 1_488_000_000, source: "the process's RLIMIT_AS (ulimit -v)"))
        #expect(MemoryBudget.available(addressSpaceLimit: 9_000_000_000, dataLimit: 1_000_000_000, read: { status[$0] })
                == MemoryBudget(bytes: 897_600_000, source: "the process's RLIMIT_DATA (ulimit -d)"))
        // This machine: something positive when /proc/meminfo exists.
        if FileManager.default.fileExists(atPath: "/proc/meminfo") { #expect((MemoryBudget.available()?.bytes ?? 0) > 0) }
    }

    @Test("The batch: as asked when it fits; the largest that fits when not chosen; otherwise an error with the way out")
    func batchDecision() throws {
        let c = try EngineFixtures.model("quick/base").config
        func estimate(_ b: Int) -> MemoryEstimate {
            EngineMemory.evaluation(config: c, hasProjection: true, form: .plain, batch: b, threads: 1, classes: 4)
        }
        let budget = MemoryBudget(bytes: estimate(3).bytes + 1, source: "test")
        #expect(try EngineMemory.batch(3, chosen: true, command: "eval", budget: budget, estimate: estimate) == 3)
        #expect(try EngineMemory.batch(32, chosen: false, command: "eval", budget: budget, estimate: estimate) == 3)
        #expect(try EngineMemory.batch(32, chosen: true, command: "eval", budget: nil, estimate: estimate) == 32)
        do {
            _ = try EngineMemory.batch(32, chosen: true, command: "eval", budget: budget, estimate: estimate)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .insufficientMemory && error.description.contains("eval in batches of 32 needs about"))
            #expect(error.description.contains("available (test)") && error.fix?.contains("Use a batch size of 3 or less") == true, "\(error)")
            #expect(error.description.contains("activations of a batch of 32 images"))
        }
        let tiny = MemoryBudget(bytes: 1000, source: "test")
        do {
            _ = try EngineMemory.batch(32, chosen: false, command: "eval", budget: tiny, estimate: estimate)
            Issue.record("accepted")
        } catch {
            #expect(error.fix?.contains("Even a batch of 1 needs") == true && error.fix?.contains(MemoryBudget.variable) == true)
        }
        #expect(MemoryEstimate.format(41_234_567_890) == "41 GB" && MemoryEstimate.format(1_500_000) == "1.5 MB" && MemoryEstimate.format(12) == "12 bytes")
    }

    /// A CLIP encoder on 224-pixel images in 1-pixel patches (50 177 tokens): one image's attention
    /// matrix alone is 10 GB, while its weights are 800 kB.
    static func patchOneModel(_ dir: String) throws -> (model: String, data: String, head: String) {
        let config = CLIPVisionConfig(hiddenSize: 4, intermediateSize: 4, numHiddenLayers: 1, numAttentionHeads: 1,
                                      imageSize: 224, patchSize: 1, projectionDim: 4)
        let layout = CLIPVisionParameters.layout(config, prefix: "vision_model.", projectionName: "visual_projection.weight")
        try FileManager.default.createDirectory(atPath: dir + "/model", withIntermediateDirectories: true)
        TestSupport.writeCheckpoint(dir + "/model/model.safetensors", layout.map {
            (TensorSpec(name: $0.name, dtype: .F32, shape: $0.shape), [Double](repeating: 0.01, count: $0.count))
        })
        try config.json.serialized(indent: 2).write(toFile: dir + "/model/config.json", atomically: true, encoding: .utf8)
        TestSupport.writeCheckpoint(dir + "/data.safetensors", [
            (TensorSpec(name: "pixel_values", dtype: .F32, shape: [2, 3, 224, 224]), [Double](repeating: 0.5, count: 2 * 3 * 224 * 224)),
            (TensorSpec(name: "labels", dtype: .I64, shape: [2]), [0, 1]),
        ])
        TestSupport.writeCheckpoint(dir + "/head.safetensors", [(TensorSpec(name: "weight", dtype: .F32, shape: [2, 4]), [1, 0, 0, 0, 0, 1, 0, 0])])
        return (dir + "/model", dir + "/data.safetensors", dir + "/head.safetensors")
    }

    @Test("eval of an encoder whose one image needs 10 GB of attention is refused with the estimate, never an abort in malloc")
    func patchOne() throws {
        let dir = TestSupport.temporaryDirectory("patch1")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (model, data, head) = try Self.patchOneModel(dir)
        let result = try CLI.run(["eval", "--model", model, "--head", head, "--data", data, "--threads", "1"],
                                 environment: [MemoryBudget.variable: "8GB"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("eval in batches of 32 needs about") && result.stderr.contains("more than the 8.0 GB available (MERGEKIT_MEMORY_BUDGET)"),
                "\(result.stderr)")
        #expect(result.stderr.contains("Even a batch of 1 needs 10 GB"), "\(result.stderr)")
        // Without a set budget, under `ulimit -v` (6 GB of address space): the limit is the budget,
        // and the command refuses instead of aborting in malloc.
        let limited = try CLI.run(["eval", "--model", model, "--head", head, "--data", data, "--threads", "1"], after: "ulimit -v 6000000",
                                  environment: [MemoryBudget.variable: nil])
        let message = limited.stderr
        #expect(limited.status == 1, "\(message)")
        // (The machine's own MemAvailable could be lower still; then it is named instead.)
        #expect((message.contains("available (the process's RLIMIT_AS (ulimit -v))") || message.contains("MemAvailable"))
                && message.contains("Even a batch of 1 needs 10 GB"), "\(message)")

        let bad = try CLI.run(["eval", "--model", model, "--head", head, "--data", data], environment: [MemoryBudget.variable: "lots"])
        #expect(bad.status == 64 && bad.stderr.contains("MERGEKIT_MEMORY_BUDGET is \"lots\", not a size"), "\(bad.stderr)")
    }

    @Test("eval without --batch-size runs in the largest batch that fits and says so; an explicit batch that does not fit is refused")
    func evalBatch() throws {
        let file = try EncoderCheckpoint(try Checkpoint(path: EngineFixtures.path("quick/base")))
        let classes = try TaskHead(path: Self.head).classes
        let fits = EngineMemory.evaluation(config: file.config, hasProjection: true, form: .plain, batch: 3, threads: 1, classes: classes).bytes
        let environment = [MemoryBudget.variable: String(fits)]
        let arguments = ["eval", "--model", EngineFixtures.path("quick/base"), "--head", Self.head, "--data", Self.data, "--threads", "1"]
        let reference = try CLI.run(arguments)
        let reduced = try CLI.run(arguments, environment: environment)
        #expect(reduced.status == 0 && reduced.stderr.contains("using batches of 3 (accuracy and losses agree up to rounding)"), "\(reduced.stderr)")
        #expect(reduced.stdout.prefix(40) == reference.stdout.prefix(40), "\(reduced.stdout) vs \(reference.stdout)")
        let json = try CLI.run(arguments + ["--json", "--quiet"], environment: environment)
        #expect(try JSONParser.parse(Array(json.stdout.utf8))["batch_size"]?.nonNegativeInt == 3 && json.stderr.isEmpty)
        let explicit = try CLI.run(arguments + ["--batch-size", "8"], environment: environment)
        #expect(explicit.status == 1 && explicit.stderr.contains("Pass --batch-size 3 or less"), "\(explicit.stderr)")
    }

    @Test("finetune, wemoe, wemoe-train and disentanglement refuse work beyond the budget before allocating it")
    func otherOperations() throws {
        let out = TestSupport.temporaryDirectory("memory-out")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let base = EngineFixtures.path("quick/base")
        let tiny = MemoryBudget(bytes: 100_000, source: "test")
        // (A batch beyond the dataset's 8 images is clamped to 8, so the estimate is of 8.)
        let finetune = try FineTuningJob(base: base, head: Self.head, data: Self.data, output: out + "/ft.safetensors")
        var options = FineTuning.Options()
        options.batchSize = 1_000_000_000
        let huge = try #require(throws: MergeKitError.self) {
            try EngineMemory.batch(finetune.batchSize(options), chosen: true, command: "finetune", budget: tiny) {
                finetune.memory(batch: $0, linearized: false, threads: 1)
            }
        }
        #expect(huge.detail.hasPrefix("finetune in batches of 8 needs about") && huge.description.contains("100 kB"), "\(huge)")
        let upscaling = try WEMoEUpscaling(base: base, experts: [WEMoEFixtures.path("experts/task0")], output: out + "/moe.safetensors")
        let wemoe = try #require(throws: MergeKitError.self) {
            try upscaling.write(scale: 0.3, routerDepth: 2, seed: 0, exactStart: false, budget: tiny)
        }
        #expect(wemoe.code == .insufficientMemory && wemoe.detail.hasPrefix("wemoe needs about") && wemoe.description.contains("100 kB"), "\(wemoe)")
        #expect(!FileManager.default.fileExists(atPath: out + "/moe.safetensors"))
        try WEMoEFixtures.upscaled().save(to: out + "/moe.safetensors")
        let adaptation = try WEMoEAdaptation(model: out + "/moe.safetensors", data: [WEMoEFixtures.path("task0/data.safetensors")],
                                             heads: [WEMoEFixtures.path("task0/head.safetensors")], output: out + "/trained.safetensors")
        let train = try #require(throws: MergeKitError.self) {
            try EngineMemory.batch(16, chosen: true, command: "wemoe-train", budget: tiny, estimate: adaptation.memory)
        }
        #expect(train.detail.hasPrefix("wemoe-train in batches of") && train.fix?.contains("Even a batch of 1") == true, "\(train)")
        // disentanglement's default batch is reduced to what fits, like eval's.
        let xi = try DisentanglementJob(base: base, inputs: [.init(path: EngineFixtures.path("quick/finetuned"), isModel: true),
                                                             .init(path: EngineFixtures.path("quick/tau.safetensors"), isModel: false)],
                                        heads: [Self.head, Self.head], data: [Self.data, Self.data], linearized: true)
        let fits = MemoryBudget(bytes: xi.memory(batch: 2, threads: 1).bytes, source: "test")
        #expect(try EngineMemory.batch(64, chosen: false, command: "disentanglement", budget: fits) { xi.memory(batch: $0, threads: 1) } == 2)
    }
}
