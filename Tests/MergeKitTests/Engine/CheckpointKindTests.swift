import Foundation
import Testing
@testable import MergeKit

/// Every engine command tells a wrong kind of checkpoint (a task vector, a linearized or a WEMoE
/// model where another is needed) from its metadata and names, and says what the file is and
/// what to pass.
@Suite("Checkpoint kinds of engine inputs")
struct CheckpointKindTests {
    /// One file of every kind, built from the quick fixtures into `dir`.
    struct Files {
        let taskVector, linearized, bareLinearized, wemoe: String
        let model = EngineFixtures.path("quick/base")

        init(_ dir: String) throws {
            taskVector = dir + "/tv.safetensors"
            _ = try LinearizedCheckpointTests.merge(base: try Checkpoint(path: model),
                                                    [MergeInput(kind: .model, checkpoint: try Checkpoint(path: EngineFixtures.path("quick/finetuned")))],
                                                    method: try TaskArithmetic(scale: 1), into: taskVector, emit: .taskVector)
            let lin = try LinearizedCheckpointTests.linearize("quick/base", "quick/finetuned", into: dir, "lin.safetensors")
            linearized = lin.path
            bareLinearized = dir + "/bare-lin.safetensors"
            EngineTestFiles.rewrite(lin, to: bareLinearized, metadata: nil)
            wemoe = dir + "/moe.safetensors"
            try WEMoEFixtures.upscaled().save(to: wemoe)
        }
    }

    @Test("Kinds are told from metadata and names; every role accepts its kinds and names the file, the kind and the fix otherwise")
    func roles() throws {
        let dir = TestSupport.temporaryDirectory("kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try Files(dir)
        let kinds: [(String, CheckpointKind)] = [(files.model, .model), (files.taskVector, .taskVector), (files.linearized, .linearized),
                                                 (files.bareLinearized, .linearized), (files.wemoe, .wemoe),
                                                 (EngineFixtures.path("quick/tau.safetensors"), .model)]  // no metadata: reads as a model
        let roles: [CheckpointRole] = [.evalModel, .evalLinearizedModel, .evalBase, .finetuneBase, .wemoeBase, .wemoeExpert, .wemoeTrainModel,
                                       .disentanglementBase, .disentanglementTaskVector, .disentanglementModel, .linearizeInput]
        for (path, kind) in kinds {
            let checkpoint = try Checkpoint(path: path)
            #expect(CheckpointKind(checkpoint) == kind, "\(path)")
            #expect(CheckpointSummary(checkpoint).kind == kind.rawValue)
            for role in roles {
                do {
                    #expect(try role.check(checkpoint) == kind)
                    #expect(role.accepted.contains(kind), "\(role.option) accepted \(kind)")
                } catch {
                    #expect(!role.accepted.contains(kind), "\(role.option) refused \(kind)")
                    #expect(error.code == .invalidArgument && error.file == path)
                    #expect(error.detail.contains("is \(kind.description); \(role.option) takes"), "\(error)")
                    #expect(error.fix != nil && error.fix != "Pass \(role.wanted.text)", "\(role.option), \(kind): \(error)")
                }
            }
        }
    }

    @Test("Each operation refuses a wrong-kind input before any work, naming the file, what it is and what to pass, never a flag")
    func operations() throws {
        let dir = TestSupport.temporaryDirectory("kinds-operations")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let f = try Files(dir)
        let head = EngineFixtures.path("quick/head.safetensors"), data = EngineFixtures.path("quick/data.safetensors")
        let finetuned = EngineFixtures.path("quick/finetuned"), output = dir + "/x"
        func tasks(_ first: String, isModel: Bool) -> [DisentanglementJob.Input] {
            [DisentanglementJob.Input(path: first, isModel: isModel), DisentanglementJob.Input(path: finetuned, isModel: true)]
        }
        let cases: [(body: () throws(MergeKitError) -> Void, file: String, messages: [String])] = [
            ({ () throws(MergeKitError) in _ = try EvaluatedEncoder(model: f.taskVector) }, f.taskVector,
             ["is a task vector", "eval's model takes a model", "(task arithmetic of BASE and \(f.taskVector), written to MODEL) and evaluate MODEL"]),
            ({ () throws(MergeKitError) in _ = try EvaluatedEncoder(model: f.wemoe, linearizedAround: f.model) }, f.wemoe,
             ["is a WEMoE model", "WEMoE models are not linearized: do not linearize around a base"]),
            ({ () throws(MergeKitError) in _ = try EvaluatedEncoder(model: finetuned, linearizedAround: f.linearized) }, f.linearized,
             ["eval's base takes the ordinary pre-trained model", "evaluate the linearized checkpoint itself (\(f.linearized), not around a base)"]),
            ({ () throws(MergeKitError) in _ = try EvaluatedEncoder(model: f.bareLinearized) }, f.bareLinearized,
             ["lacks the mergekit.kind = linearized metadata", "Make one with linearization of F around B, written to OUT"]),
            ({ () throws(MergeKitError) in _ = try FineTuningJob(base: f.wemoe, head: head, data: data, output: output) }, f.wemoe,
             ["routers are trained with test-time adaptation"]),
            ({ () throws(MergeKitError) in _ = try FineTuningJob(base: f.linearized, head: head, data: data, output: output) }, f.linearized,
             ["(linear fine-tuning, in the tangent space, writes the linearized checkpoint)"]),
            ({ () throws(MergeKitError) in _ = try FineTuningJob(base: f.taskVector, head: head, data: data, output: output) }, f.taskVector,
             ["and fine-tune MODEL"]),
            ({ () throws(MergeKitError) in _ = try WEMoEUpscaling(base: f.model, experts: [f.linearized], output: output) }, f.linearized,
             ["not its linearization"]),
            ({ () throws(MergeKitError) in _ = try WEMoEUpscaling(base: f.wemoe, experts: [f.model], output: output) }, f.wemoe,
             ["the experts were fine-tuned from"]),
            ({ () throws(MergeKitError) in _ = try WEMoEAdaptation(model: f.linearized, data: [data], heads: [head], output: output) }, f.linearized,
             ["wemoe-train's model takes a WEMoE model", "(WEMoE upscaling of BASE with experts FT1 and FT2, written to MOE)"]),
            ({ () throws(MergeKitError) in
                _ = try DisentanglementJob(base: f.model, inputs: tasks(f.wemoe, isModel: false), heads: [head, head], data: [data, data])
             }, f.wemoe, ["disentanglement's task vector takes a task vector", "or their task vectors"]),
            ({ () throws(MergeKitError) in
                _ = try DisentanglementJob(base: f.model, inputs: tasks(f.taskVector, isModel: true), heads: [head, head], data: [data, data])
             }, f.taskVector, ["Pass it as a task vector"]),
            ({ () throws(MergeKitError) in
                _ = try MergePlan.linearizing(base: try Checkpoint(path: f.wemoe), model: nil, output: OutputSpec(path: output))
             }, f.wemoe, ["Linearize the base and the fine-tuned models instead"]),
        ]
        for (body, file, messages) in cases {
            do throws(MergeKitError) {
                try body()
                Issue.record("\(file) was accepted")
            } catch {
                #expect(error.code == .invalidArgument && error.file == file, "\(error)")
                for message in messages { #expect(error.description.contains(message), "\(error)") }
                #expect(!error.description.contains("--") && !error.description.contains("merge-cli"), "\(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: output))
        }
    }

    @Test("merge-cli names its flags and commands in a wrong-kind input's message, and exits 1")
    func commands() throws {
        let dir = TestSupport.temporaryDirectory("kinds-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let f = try Files(dir)
        let head = EngineFixtures.path("quick/head.safetensors"), data = EngineFixtures.path("quick/data.safetensors")
        let eval = ["eval", "--head", head, "--data", data]
        let xi = ["disentanglement", "--base", f.model, "--head", head, "--head", head, "--data", data, "--data", data]
        let cases: [([String], String, [String])] = [
            (eval + ["--model", f.taskVector], f.taskVector,
             ["eval --model takes a model", "(`merge-cli task-arithmetic --base BASE --task-vector \(f.taskVector) -o MODEL`) and evaluate MODEL"]),
            (eval + ["--model", EngineFixtures.path("quick/finetuned"), "--linearized", "--base", f.linearized], f.linearized,
             ["eval --base takes the ordinary pre-trained model", "(--model \(f.linearized) without --linearized --base)"]),
            (["wemoe-train", "--model", f.linearized, "--data", data, "--head", head, "-o", dir + "/x"], f.linearized,
             ["wemoe-train --model takes a WEMoE model", "(`merge-cli wemoe --base BASE --model FT1 --model FT2 -o MOE`) and train MOE"]),
            (xi + ["--task-vector", f.wemoe, "--model", EngineFixtures.path("quick/finetuned")], f.wemoe,
             ["disentanglement --task-vector takes a task vector", "built from with --model (τ = θ − θ₀), or their task vectors with --task-vector"]),
        ]
        for (arguments, file, messages) in cases {
            let result = try CLI.run(arguments)
            #expect(result.status == 1, "\(arguments.joined(separator: " ")): \(result.stderr)")
            #expect(result.stderr.hasPrefix("error: \(file): "), "\(result.stderr)")
            for message in messages { #expect(result.stderr.contains(message), "\(arguments[0]): \(result.stderr)") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
        }
    }
}
