import Foundation
import Testing
@testable import MergeKit

/// Linearized checkpoints: the format, `linearize`, merging with task-vector methods, and their
/// evaluation f(x; θ₀) + J·(θ − θ₀) against the PyTorch references of Fixtures/clip
/// (make_clip_fixtures.py: `jvp.*` are torch.func.jvp along τ = finetuned − base at the base,
/// `linearized.logits` the head on f(x; θ₀) + J·τ).
@Suite("Linearized checkpoints")
struct LinearizedCheckpointTests {
    static let tolerance = 1e-5

    /// Writes the linearized model of `model` (or θ = θ₀) around `base` into `directory/name`.
    static func linearize(_ base: String, _ model: String?, into directory: String, _ name: String) throws -> Checkpoint {
        let output = FileSystem.join(directory, name)
        let plan = try MergePlan.linearizing(base: Checkpoint(path: EngineFixtures.path(base)),
                                             model: model.map { try Checkpoint(path: EngineFixtures.path($0)) },
                                             output: OutputSpec(path: output))
        _ = try MergeExecutor.run(plan, threads: 1)
        return try Checkpoint(path: output)
    }

    static func merge(base: Checkpoint, _ inputs: [MergeInput], method: any MergeMethod, into path: String,
                      emit: EmitKind = .model) throws -> Checkpoint {
        _ = try MergeExecutor.run(MergePlan(base: base, inputs: inputs, method: method, output: OutputSpec(path: path, emit: emit)), threads: 1)
        return try Checkpoint(path: path)
    }

    /// Embeddings of the quick data through a linearized checkpoint.
    static func embeddings(_ checkpoint: Checkpoint) throws -> [Float] {
        let model = try LinearizedCheckpoint.model(checkpoint, threads: 1)
        let data = try EngineFixtures.dataset("quick")
        return model.forward(pixels: data.pixels(0..<data.count), batch: data.count)
    }

    @Test("linearize writes params0.* = θ₀ and params.* = θ byte for byte, with the metadata and config")
    func format() throws {
        let dir = TestSupport.temporaryDirectory("linearize")
        let lin = try Self.linearize("quick/base", "quick/finetuned", into: dir, "lin")
        #expect(LinearizedCheckpoint.isLinearized(lin))
        let metadata = try #require(lin.metadata)
        #expect(metadata[LinearizedCheckpoint.architectureKey] == "clip-vision")
        #expect(metadata[LinearizedCheckpoint.configKey]?.contains("\"hidden_size\":32") == true)
        #expect(FileManager.default.fileExists(atPath: FileSystem.join(dir, "lin/config.json")))
        let base = try Checkpoint(path: EngineFixtures.path("quick/base"))
        let finetuned = try Checkpoint(path: EngineFixtures.path("quick/finetuned"))
        #expect(lin.entries.count == 2 * base.entries.count)
        for entry in base.entries {
            let theta0 = try #require(lin.entry(named: "params0." + entry.name))
            let theta = try #require(lin.entry(named: "params." + entry.name))
            let ft = try #require(finetuned.entry(named: entry.name))
            #expect(Array(theta0.file.bytes(of: theta0.info)) == Array(entry.file.bytes(of: entry.info)), "\(entry.name)")
            #expect(Array(theta.file.bytes(of: theta.info)) == Array(ft.file.bytes(of: ft.info)), "\(entry.name)")
        }
        // The halves are ordinary checkpoints of the model.
        let half = try LinearizedCheckpoint.half(.model, of: lin)
        #expect(half.tensorNames == base.tensorNames)
        #expect(!LinearizedCheckpoint.isLinearized(half))
        let summary = CheckpointSummary(lin)
        #expect(summary.kind == "linearized")
        #expect(summary.text.contains("kind: linearized model (clip-vision)"))

        // A single file runs from its metadata alone (no config.json next to it).
        let single = try Self.linearize("quick/base", "quick/finetuned", into: dir, "lin.safetensors")
        let expected = try EngineFixtures.tensors("quick/expected.safetensors")
        let head = try TaskHead(path: EngineFixtures.path("quick/head.safetensors"))
        let e = try Self.embeddings(single)
        expectClose(head.logits(embeddings: e, batch: 8), expected["linearized.logits"], tolerance: Self.tolerance, normwise: true, "linearized file logits")
    }

    @Test("A merged linearized checkpoint runs as f(x; θ₀) + J·Σλτ (torch.func.jvp references)", arguments: [0.5, 1.0, -0.75])
    func mergedForward(lambda: Double) throws {
        let dir = TestSupport.temporaryDirectory("linmerge")
        let base = try Self.linearize("quick/base", nil, into: dir, "base-lin")
        let finetuned = try Self.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        let merged = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: finetuned, weight: lambda)],
                                    method: TaskArithmetic(scale: 1), into: FileSystem.join(dir, "merged.safetensors"))
        #expect(LinearizedCheckpoint.isLinearized(merged))
        #expect(merged.metadata?["mergekit.method"] == "task-arithmetic")
        // θ₀ is the base's, byte for byte.
        try LinearizedCheckpoint.checkSameBase(merged, as: base)
        // f_lin is linear in Δθ: f(θ₀) + λ·J·τ from the JVP references.
        let expected = try EngineFixtures.tensors("quick/expected.safetensors")
        let primal = try #require(expected["jvp.embeddings"]), tangent = try #require(expected["jvp.tangent"])
        let reference = zip(primal, tangent).map { $0 + lambda * $1 }
        let error = expectClose(try Self.embeddings(merged), reference, tolerance: Self.tolerance, normwise: true, "λ = \(lambda)")
        print("[linearized] merged λ = \(lambda): embeddings error \(error)")
        if lambda == 1 {
            let head = try TaskHead(path: EngineFixtures.path("quick/head.safetensors"))
            expectClose(head.logits(embeddings: try Self.embeddings(merged), batch: 8), expected["linearized.logits"],
                        tolerance: Self.tolerance, normwise: true, "merged logits = eval --linearized logits")
        }
    }

    @Test("Ordinary models and task vectors merge onto a linearized base (post-hoc linearization); TIES, DARE and negation keep the format")
    func methods() throws {
        let dir = TestSupport.temporaryDirectory("linmethods")
        let base = try Self.linearize("quick/base", nil, into: dir, "base-lin")
        let linear = try Self.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        let ordinary = try Checkpoint(path: EngineFixtures.path("quick/finetuned"))
        let tau = try Checkpoint(path: EngineFixtures.path("quick/tau.safetensors"))
        let viaLinear = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: linear)], method: TaskArithmetic(scale: 1),
                                       into: FileSystem.join(dir, "a.safetensors"))
        let viaModel = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: ordinary)], method: TaskArithmetic(scale: 1),
                                      into: FileSystem.join(dir, "b.safetensors"))
        let viaTau = try Self.merge(base: base, [MergeInput(kind: .taskVector, checkpoint: tau)], method: TaskArithmetic(scale: 1),
                                    into: FileSystem.join(dir, "c.safetensors"))
        let a = TestSupport.values(viaLinear)
        for other in [viaModel, viaTau] {
            let b = TestSupport.values(other)
            #expect(Set(a.keys) == Set(b.keys))
            for (name, value) in a { #expect(b[name]?.values == value.values, "\(name)") }
        }
        // The task vector of a linearized model is θ − θ₀ of its params half: the fixture's τ.
        let extracted = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: linear)], method: TaskArithmetic(scale: 1),
                                       into: FileSystem.join(dir, "tau.safetensors"), emit: .taskVector)
        #expect(!LinearizedCheckpoint.isLinearized(extracted))
        let tauValues = TestSupport.values(tau)
        for (name, value) in TestSupport.values(extracted) {
            let reference = try #require(tauValues[name])
            #expect(zip(value.values, reference.values).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) }, "\(name)")
        }
        // Other methods: the output is linearized with the base's θ₀ and a θ that differs from it.
        let methods: [(String, any MergeMethod, Double)] = [
            ("ties", try TIES(density: .init(0.5)), 1), ("dare", try DARE(dropRate: 0.5, seed: 3), 1),
            ("negate", try TaskArithmetic(scale: 1), -1),
        ]
        for (label, method, weight) in methods {
            let out = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: linear, weight: weight),
                                                  MergeInput(kind: .model, checkpoint: ordinary, weight: weight)],
                                     method: method, into: FileSystem.join(dir, label + ".safetensors"))
            #expect(LinearizedCheckpoint.isLinearized(out), "\(label)")
            try LinearizedCheckpoint.checkSameBase(out, as: base)
            let merged = try LinearizedCheckpoint.model(out)
            #expect(merged.direction.flat.contains { $0 != 0 }, "\(label) moved θ")
        }
    }

    @Test("A sweep of linearized merges shares the base (one pass, several outputs)")
    func sweep() throws {
        let dir = TestSupport.temporaryDirectory("linsweep")
        let base = try Self.linearize("quick/base", nil, into: dir, "base-lin")
        let linear = try Self.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        let plans = try [0.25, 0.5].map { lambda in
            try MergePlan(base: base, inputs: [MergeInput(kind: .model, checkpoint: linear)], method: TaskArithmetic(scale: lambda),
                          output: OutputSpec(path: FileSystem.join(dir, "sweep-\(lambda).safetensors")))
        }
        _ = try MergeExecutor.run(plans, threads: 2)
        let expected = try EngineFixtures.tensors("quick/expected.safetensors")
        for lambda in [0.25, 0.5] {
            let merged = try Checkpoint(path: FileSystem.join(dir, "sweep-\(lambda).safetensors"))
            let reference = zip(expected["jvp.embeddings"]!, expected["jvp.tangent"]!).map { $0 + lambda * $1 }
            expectClose(try Self.embeddings(merged), reference, tolerance: Self.tolerance, normwise: true, "sweep λ = \(lambda)")
        }
    }

    @Test("Inputs linearized around another θ₀, linearized inputs with an ordinary base and malformed layouts are refused")
    func errors() throws {
        let dir = TestSupport.temporaryDirectory("linerrors")
        let base = try Self.linearize("quick/base", nil, into: dir, "base-lin")
        let elsewhere = try Self.linearize("quick/finetuned", "quick/base", into: dir, "other-lin")
        let ordinaryBase = try Checkpoint(path: EngineFixtures.path("quick/base"))
        do {
            _ = try MergePlan(base: base, inputs: [MergeInput(kind: .model, checkpoint: elsewhere)], method: TaskArithmetic(scale: 1),
                              output: OutputSpec(path: FileSystem.join(dir, "x.safetensors")))
            Issue.record("merged models linearized around different points")
        } catch {
            #expect(error.code == .baseMismatch)
            #expect(error.file?.hasSuffix("other-lin") == true)
            #expect(error.tensor?.hasPrefix("params0.") == true, "\(error)")
        }
        do {
            _ = try MergePlan(base: ordinaryBase, inputs: [MergeInput(kind: .model, checkpoint: base)], method: TaskArithmetic(scale: 1),
                              output: OutputSpec(path: FileSystem.join(dir, "y.safetensors")))
            Issue.record("merged a linearized model onto an ordinary base")
        } catch {
            #expect(error.code == .baseMismatch && error.description.contains("linearize"), "\(error)")
        }
        // A file that says it is linearized but lacks θ for a tensor.
        let spec = TensorSpec(name: "params0.w", dtype: .F32, shape: [2])
        let broken = FileSystem.join(dir, "broken.safetensors")
        TestSupport.writeCheckpoint(broken, [(spec, [1, 2])], metadata: [LinearizedCheckpoint.kindKey: LinearizedCheckpoint.kindValue])
        do {
            _ = try LinearizedCheckpoint.half(.model, of: Checkpoint(path: broken))
            Issue.record("accepted a linearized file without its params half")
        } catch {
            #expect(error.code == .missingTensor && error.tensor == "params.w", "\(error)")
        }
        do {
            _ = try MergePlan.linearizing(base: base, model: nil, output: OutputSpec(path: FileSystem.join(dir, "z.safetensors")))
            Issue.record("linearized a linearized checkpoint")
        } catch {
            #expect(error.description.contains("already a linearized checkpoint"))
        }
    }

    @Test("A linearized base with θ ≠ θ₀ (a linearized fine-tune) is refused with the fix: its own task vector would be dropped",
          arguments: [EmitKind.model, .taskVector])
    func movedBase(emit: EmitKind) throws {
        let dir = TestSupport.temporaryDirectory("linmoved")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Self.linearize("quick/base", nil, into: dir, "base-lin")
        let linear = try Self.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        let ordinary = try Checkpoint(path: EngineFixtures.path("quick/finetuned"))
        for input in [MergeInput(kind: .model, checkpoint: base), MergeInput(kind: .model, checkpoint: ordinary)] {
            do {
                _ = try MergePlan(base: linear, inputs: [input], method: TaskArithmetic(scale: 1),
                                  output: OutputSpec(path: FileSystem.join(dir, "x.safetensors"), emit: emit))
                Issue.record("merged onto a linearized fine-tune, dropping its task vector")
            } catch {
                #expect(error.code == .baseMismatch && error.file?.hasSuffix("ft-lin") == true, "\(error)")
                #expect(error.tensor?.hasPrefix("params.") == true, "\(error)")
                #expect(error.description.contains("θ ≠ θ₀") && error.description.contains("Pass it as a fine-tuned model")
                        && error.description.contains("linearization of PRETRAINED alone, written to BASE-LIN"), "\(error)")
            }
        }
        // The fix: the fine-tune among the inputs, onto the base with θ = θ₀.
        let fixed = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: linear)], method: TaskArithmetic(scale: 1),
                                   into: FileSystem.join(dir, "fixed.safetensors"), emit: emit)
        #expect(!fixed.entries.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.safetensors"))
    }

    @Test("LoRA extraction refuses linearized checkpoints (base or model), naming the file and the fix; nothing is written")
    func extractLoRARefused() throws {
        let dir = TestSupport.temporaryDirectory("linlora")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let baseLin = try Self.linearize("quick/base", nil, into: dir, "base-lin")
        let ftLin = try Self.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        let base = try Checkpoint(path: EngineFixtures.path("quick/base")), finetuned = try Checkpoint(path: EngineFixtures.path("quick/finetuned"))
        let options = LoRAExtraction.Options(rank: 2)
        for (base, model, named) in [(baseLin, ftLin, ftLin.path), (base, ftLin, ftLin.path), (baseLin, finetuned, baseLin.path)] {
            let error = try #require(throws: MergeKitError.self) { try LoRAExtraction(base: base, model: model, output: dir + "/adapter", options: options) }
            #expect(error.file == named && error.description.contains("is a linearized checkpoint") && error.description.contains("f(x; θ₀) + J·(θ − θ₀)")
                    && error.description.contains("Extract from the ordinary checkpoints"), "\(error)")
            #expect(!error.description.contains("--"), "\(error)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/adapter"))
        }
        let ordinary = try LoRAExtraction(base: base, model: finetuned, output: dir + "/adapter", options: options)
        #expect(!(try ordinary.run(threads: 1)).reports.isEmpty)
    }

    @Test("Linearize, merge and evaluate: a merged linearized fine-tune evaluates like PyTorch's linearized model")
    func pipeline() throws {
        let dir = TestSupport.temporaryDirectory("linpipeline")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Self.linearize("quick/base", nil, into: dir, "base-lin")
        let ft = try Self.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        #expect(CheckpointSummary(ft).kind == "linearized")
        _ = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: ft)], method: try TaskArithmetic(scale: 1), into: dir + "/merged")
        let expected = try JSONParser.parse(try FileSystem.readFile(EngineFixtures.path("expected.json")))["quick"]?["eval.linearized"]
        for model in [dir + "/ft-lin", dir + "/merged"] {
            let chosen = try EvaluatedEncoder(model: model)
            #expect(chosen.form == .linearized)
            let result = try Evaluation.run(try chosen.load(), head: TaskHead(path: EngineFixtures.path("quick/head.safetensors")),
                                            data: EngineFixtures.dataset("quick"), batchSize: 32)
            #expect(result.correct == expected?["correct"]?.nonNegativeInt)
            let reference = try #require(expected?["loss"]?.doubleValue)
            #expect(abs(result.meanLoss - reference) <= 1e-5 * reference, "\(model): \(result.meanLoss) vs \(reference)")
        }
        let twice = try #require(throws: MergeKitError.self) {
            try EvaluatedEncoder(model: dir + "/merged", linearizedAround: EngineFixtures.path("quick/base"))
        }
        #expect(twice.description.contains("carries its own θ₀"), "\(twice)")
    }

    @Test("merge-cli linearize writes a linearized checkpoint that eval runs linearized")
    func command() throws {
        let dir = TestSupport.temporaryDirectory("lincli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = EngineFixtures.path("")
        let linearize = try CLI.run(["linearize", "--base", "quick/base", "--model", "quick/finetuned", "-o", dir + "/ft-lin"], in: fixtures)
        #expect(linearize.status == 0 && linearize.stderr.hasPrefix("wrote \(dir)/ft-lin: 0 tensors merged"), "\(linearize.stderr)")
        #expect(LinearizedCheckpoint.isLinearized(try Checkpoint(path: dir + "/ft-lin")))
        let eval = try CLI.run(["eval", "--model", dir + "/ft-lin", "--head", "quick/head.safetensors", "--data", "quick/data.safetensors", "--json"],
                               in: fixtures)
        let json = try JSONParser.parse(Array(eval.stdout.utf8))
        #expect(eval.status == 0 && json["linearized"] == .bool(true), "\(eval.stderr)")
    }

    @Test("Every task-vector merge accepts linearized checkpoints: negation, TIES, DARE, a sweep, the analysis, the task vector")
    func operations() throws {
        let dir = TestSupport.temporaryDirectory("linoperations")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Self.linearize("quick/base", nil, into: dir, "base-lin")
        let ft = try Self.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        let ordinary = try Checkpoint(path: EngineFixtures.path("quick/finetuned"))
        let inputs = [MergeInput(kind: .model, checkpoint: ft), MergeInput(kind: .model, checkpoint: ordinary)]
        _ = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: ft, weight: -1)], method: try TaskArithmetic(scale: 1), into: dir + "/neg")
        _ = try Self.merge(base: base, inputs, method: try TIES(density: 0.2), into: dir + "/ties")
        _ = try Self.merge(base: base, inputs, method: try DARE(dropRate: 0.5), into: dir + "/dare")
        let recipe = Recipe(method: "task_arithmetic", baseModel: base.path, inputs: [ft.path, ordinary.path].map { Recipe.Input(kind: .model, path: $0) },
                            sweep: [(name: "lambda", values: [.number(0.5), .number(1)])], path: "test")
        let sweep = try recipe.plan(output: dir + "/sweep")
        _ = try MergeRun.run(sweep.plans, threads: 1, points: sweep.points.map { $0.map { (name: $0.name, value: $0.value.description) } },
                             sweepDirectory: dir + "/sweep")
        for output in ["neg", "ties", "dare", "sweep/point-000", "sweep/point-001"] {
            let checkpoint = try Checkpoint(path: dir + "/" + output)
            #expect(LinearizedCheckpoint.isLinearized(checkpoint), "\(output)")
            try LinearizedCheckpoint.checkSameBase(checkpoint, as: base)
        }
        // Negation: θ = θ₀ − τ, so f_lin = f(θ₀) − J·τ.
        let expected = try EngineFixtures.tensors("quick/expected.safetensors")
        let reference = zip(expected["jvp.embeddings"]!, expected["jvp.tangent"]!).map { $0 - $1 }
        expectClose(try Self.embeddings(try Checkpoint(path: dir + "/neg")), reference, tolerance: Self.tolerance, normwise: true, "negated")
        // The linearized model's task vector and the ordinary fine-tune's are the same τ.
        let analysis = try TaskVectorAnalysis.run(base: base, inputs: inputs, threads: 1)
        #expect(abs(analysis.cosines[0][1] - 1) < 1e-9, "\(analysis.cosines)")
        let tau = try Self.merge(base: base, [MergeInput(kind: .model, checkpoint: ft)], method: try TaskArithmetic(scale: 1),
                                 into: dir + "/tau.safetensors", emit: .taskVector)
        #expect(TaskVectorFile.isTaskVector(tau) && !LinearizedCheckpoint.isLinearized(tau))
        let wrapTau = try #require(throws: MergeKitError.self) {
            try MergePlan.linearizing(base: try Checkpoint(path: EngineFixtures.path("quick/base")), model: tau, output: OutputSpec(path: dir + "/bad"))
        }
        #expect(wrapTau.description.contains("is a task vector"), "\(wrapTau)")
        let fromTau = try Self.merge(base: base, [MergeInput(kind: .taskVector, checkpoint: tau)], method: try TaskArithmetic(scale: 1),
                                     into: dir + "/from-tau")
        let a = TestSupport.values(fromTau), b = TestSupport.values(ft)
        for (name, value) in b where name.hasPrefix("params0.") { #expect(a[name]?.values == value.values, "\(name)") }
    }
}
