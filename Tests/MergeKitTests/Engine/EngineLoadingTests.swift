import Foundation
import Testing
@testable import MergeKit
#if canImport(Glibc)
import Glibc
#endif

/// Loading checks every expected tensor against the checkpoint's header before allocating, and
/// refuses tensors the model would silently ignore unless --allow-unused.
@Suite("Engine loading checks")
struct EngineLoadingTests {
    static var head: String { EngineFixtures.path("quick/head.safetensors") }
    static var data: String { EngineFixtures.path("quick/data.safetensors") }

    @Test("A config.json that does not fit the weights is refused before the parameters are allocated (peak RSS of eval)",
          arguments: [([("hidden_size", "4096")], "has shape [32] but the model's config.json implies [4096]"),
                      ([("hidden_size", "2048"), ("intermediate_size", "8192"), ("num_hidden_layers", "12")], "implies [2048]")])
    func checksBeforeAllocating(_ changes: [(String, String)], _ message: String) throws {
        let dir = try CLIPEngineErrorTests.modifiedModel("rss", config: try EngineTestFiles.config(changes))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (result, peak) = try CLI.runMeasuringPeak(["eval", "--model", dir, "--head", Self.head, "--data", Self.data, "--quiet"])
        #expect(result.status == 1 && result.stderr.contains(message), "\(result.stderr)")
        // The parameters the config claims take hundreds of MB; the process itself about 50.
        #expect(peak < 150_000_000, "peak RSS \(peak) bytes")
    }

    @Test("An empty config.json (ViT-B/32's defaults) on small weights is refused without allocating ViT-B/32")
    func emptyConfig() throws {
        let dir = try CLIPEngineErrorTests.modifiedModel("rss-empty", config: "{}")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (result, peak) = try CLI.runMeasuringPeak(["eval", "--model", dir, "--head", Self.head, "--data", Self.data, "--quiet"])
        #expect(result.status == 1 && result.stderr.contains("implies [768]"), "\(result.stderr)")
        #expect(peak < 150_000_000, "peak RSS \(peak) bytes")
    }

    /// The quick base with `config` changed, as a directory.
    static func model(_ label: String, _ changes: [(String, String)] = [],
                      edit: (inout [(TensorSpec, [Double])]) -> Void = { _ in }) throws -> String {
        try CLIPEngineErrorTests.modifiedModel(label, config: try EngineTestFiles.config(changes), edit: edit)
    }

    @Test("num_hidden_layers 1 on two-layer weights: the second layer is an error, or ignored with a warning when allowed")
    func unusedLayer() throws {
        let dir = try Self.model("unused-layer", [("num_hidden_layers", "1")])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try CLIPVisionModel(path: dir)
            Issue.record("a two-layer checkpoint ran as one layer")
        } catch {
            #expect(error.code == .extraTensor && error.tensor?.hasPrefix("vision_model.encoder.layers.1.") == true, "\(error)")
            #expect(error.description.contains("and 15 more") && error.fix?.contains("or allow unused tensors to ignore such tensors") == true)
        }
        let allowed = try CLIPVisionModel(path: dir, allowUnused: true)
        #expect(allowed.parameters.ignoredTensors.count == 16 && allowed.parameters.ignoredTensors.allSatisfy { $0.contains("layers.1.") })

        let refused = try CLI.run(["eval", "--model", dir, "--head", Self.head, "--data", Self.data])
        #expect(refused.status == 1 && refused.stderr.contains("layers.1.") && refused.stderr.contains("--allow-unused"), "\(refused.stderr)")
        let warned = try CLI.run(["eval", "--model", dir, "--head", Self.head, "--data", Self.data, "--allow-unused"])
        #expect(warned.status == 0 && warned.stderr.contains("warning: \(dir): ignoring 16 tensors the model does not use"), "\(warned.stderr)")
    }

    @Test("Every engine operation loading a model refuses unused tensors unless allowed, then reports them per file")
    func everyOperation() throws {
        let dir = try Self.model("unused-commands", [("num_hidden_layers", "1")])
        let out = TestSupport.temporaryDirectory("unused-out")
        defer { for d in [dir, out] { try? FileManager.default.removeItem(atPath: d) } }
        var heard: [String: [String]] = [:]
        func ignored(_ file: String, _ tensors: [String]) { heard[file, default: []] += tensors }
        var options = FineTuning.Options()
        (options.steps, options.batchSize) = (1, 2)
        // Each operation, checked (and run) with or without allowing unused tensors.
        let operations: [(name: String, run: (Bool) throws(MergeKitError) -> Void)] = [
            ("finetune", { (allow) throws(MergeKitError) in
                let job = try FineTuningJob(base: dir, head: Self.head, data: Self.data, output: out + "/ft.safetensors", allowUnused: allow,
                                            ignored: ignored)
                var training = try job.start(options: options, threads: 1)
                _ = try training.train()
                _ = try job.write(training)
            }),
            ("wemoe", { (allow) throws(MergeKitError) in
                _ = try WEMoEUpscaling(base: dir, experts: [dir], output: out + "/moe.safetensors", allowUnused: allow, ignored: ignored)
                    .write(scale: 0.3, routerDepth: 2, seed: 0, exactStart: false, budget: nil)
            }),
            ("disentanglement", { (allow) throws(MergeKitError) in
                _ = try DisentanglementJob(base: dir, inputs: [.init(path: dir, isModel: true), .init(path: dir, isModel: true)],
                                           heads: [Self.head, Self.head], data: [Self.data, Self.data], allowUnused: allow, ignored: ignored)
                    .run(alphas: [0, 1], batchSize: 8, threads: 1, ignored: ignored)
            }),
        ]
        for (name, run) in operations {
            heard = [:]
            do throws(MergeKitError) {
                try run(false)
                Issue.record("\(name) accepted unused tensors")
            } catch {
                #expect(error.code == .extraTensor && error.file == dir && error.fix?.contains("allow unused tensors") == true,
                        "\(name): \(error)")
            }
            heard = [:]
            try run(true)
            #expect(heard[dir]?.count ?? 0 >= 16 && heard[dir]!.allSatisfy { $0.contains("layers.1.") }, "\(name): \(heard)")
        }
        // WEMoE adaptation: a WEMoE model with a further expert in layer 1 only.
        try WEMoEFixtures.upscaled().save(to: out + "/moe3.safetensors")
        let moe = try Checkpoint(path: out + "/moe3.safetensors")
        EngineTestFiles.rewrite(moe, to: out + "/extra.safetensors", metadata: moe.metadata) { tensors in
            for name in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
                let source = tensors.first { $0.0.name == "vision_model.encoder.layers.1.mlp.task_vectors.0." + name }!
                tensors.append((TensorSpec(name: "vision_model.encoder.layers.1.mlp.task_vectors.3." + name, dtype: .F32, shape: source.0.shape), source.1))
            }
        }
        func adaptation(allow: Bool) throws(MergeKitError) -> WEMoEAdaptation {
            try WEMoEAdaptation(model: out + "/extra.safetensors", data: [WEMoEFixtures.path("task0/data.safetensors")],
                                heads: [WEMoEFixtures.path("task0/head.safetensors")], output: out + "/trained.safetensors",
                                allowUnused: allow, ignored: ignored)
        }
        let refused = try #require(throws: MergeKitError.self) { try adaptation(allow: false) }
        #expect(refused.description.contains("task_vectors.3.") && refused.description.contains("same 3 experts"), "\(refused)")
        heard = [:]
        let allowed = try adaptation(allow: true)
        #expect(heard[out + "/extra.safetensors"]?.count == 4 && allowed.experts == 3)
        let trained = try allowed.load(threads: 1)
        #expect(try allowed.train(trained, options: WEMoETrainingOptions(steps: 1)).count == 1)
    }

    @Test("Tensors of no tower the engine knows are refused; other towers and position_ids are not")
    func otherTensors() throws {
        let extra = try Self.model("unused-head") { $0.append((TensorSpec(name: "classifier.weight", dtype: .F32, shape: [2, 16]), Array(repeating: 0.5, count: 32))) }
        let buffers = try Self.model("position-ids") {
            $0.append((TensorSpec(name: "vision_model.embeddings.position_ids", dtype: .I64, shape: [1, 17]), (0..<17).map(Double.init)))
            $0.append((TensorSpec(name: "text_projection.weight", dtype: .F32, shape: [2, 2]), [1, 2, 3, 4]))
        }
        defer { for d in [extra, buffers] { try? FileManager.default.removeItem(atPath: d) } }
        #expect(CLIPEngineErrorTests.loadError(extra)?.tensor == "classifier.weight")
        #expect(CLIPEngineErrorTests.loadError(buffers) == nil)
        // A task-vector file with a tensor this encoder lacks.
        let base = try EngineFixtures.model("quick/base")
        let vector = TestSupport.temporaryDirectory("unused-tv") + "/tv.safetensors"
        defer { try? FileManager.default.removeItem(atPath: FileSystem.parentDirectory(of: vector)) }
        EngineTestFiles.rewrite(try Checkpoint(path: EngineFixtures.path("quick/tau.safetensors")), to: vector, metadata: nil) {
            $0.append((TensorSpec(name: "vision_model.encoder.layers.2.mlp.fc2.bias", dtype: .F32, shape: [32]), Array(repeating: 0, count: 32)))
        }
        #expect(throws: MergeKitError.self) { try base.parameters.direction(from: Checkpoint(path: vector)) }
        let allowed = try base.parameters.direction(from: Checkpoint(path: vector), allowUnused: true)
        #expect(allowed.ignoredTensors == ["vision_model.encoder.layers.2.mlp.fc2.bias"])
    }

    @Test("A linearized checkpoint's unused tensors are named with their params0./params. prefix")
    func linearizedUnused() throws {
        let dir = TestSupport.temporaryDirectory("unused-lin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lin = try LinearizedCheckpointTests.linearize("quick/base", "quick/finetuned", into: dir, "lin")
        try EngineTestFiles.config([("num_hidden_layers", "1")]).write(toFile: dir + "/lin/config.json", atomically: true, encoding: .utf8)
        var metadata = lin.metadata ?? [:]
        metadata[LinearizedCheckpoint.configKey] = nil
        try FileManager.default.createDirectory(atPath: dir + "/one", withIntermediateDirectories: true)
        EngineTestFiles.rewrite(lin, to: dir + "/one/model.safetensors", metadata: metadata)
        try FileManager.default.copyItem(atPath: dir + "/lin/config.json", toPath: dir + "/one/config.json")
        do {
            _ = try LinearizedCheckpoint.model(try Checkpoint(path: dir + "/one"))
            Issue.record("accepted")
        } catch {
            #expect(error.tensor?.hasPrefix("params0.vision_model.encoder.layers.1.") == true, "\(error)")
        }
        let model = try LinearizedCheckpoint.model(try Checkpoint(path: dir + "/one"), allowUnused: true)
        #expect(model.ignoredTensors.count == 32 && model.ignoredTensors.contains("params.vision_model.encoder.layers.1.mlp.fc1.weight"))
    }
}

extension CLI {
    /// Runs merge-cli like `run` with `--json` and returns its peak resident set size in bytes, as
    /// the process reports it in its JSON document (VmHWM: `wait4`'s ru_maxrss would include the
    /// test runner's peak, which survives the fork and exec).
    static func runMeasuringPeak(_ arguments: [String], environment: [String: String?] = [:]) throws -> (Output, Int) {
        let output = try run(arguments + ["--json"], environment: environment)
        let document = try JSONParser.parse(Array(output.stdout.utf8))
        let peak = try #require(document["peak_memory_bytes"]?.nonNegativeInt, "no peak_memory_bytes in \(output.stdout)")
        return (output, peak)
    }
}
