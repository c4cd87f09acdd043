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
            let tv = try CLI.run(["task-vector", "--base", model, "--finetuned", EngineFixtures.path("quick/finetuned"), "-o", taskVector])
            #expect(tv.status == 0, "\(tv.stderr)")
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
                    #expect(error.fix != nil && error.fix != "Pass \(role.wanted)", "\(role.option), \(kind): \(error)")
                }
            }
        }
    }

    @Test("Each command's wrong-kind input exits 1 with the file, what it is and what to pass")
    func commands() throws {
        let dir = TestSupport.temporaryDirectory("kinds-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let f = try Files(dir)
        let head = EngineFixtures.path("quick/head.safetensors"), data = EngineFixtures.path("quick/data.safetensors")
        let eval = ["eval", "--head", head, "--data", data]
        let xi = ["disentanglement", "--base", f.model, "--head", head, "--head", head, "--data", data, "--data", data]
        let cases: [([String], String, [String])] = [
            (eval + ["--model", f.taskVector], f.taskVector, ["is a task vector", "merge-cli task-arithmetic --base BASE --task-vector"]),
            (eval + ["--model", f.wemoe, "--linearized", "--base", f.model], f.wemoe, ["is a WEMoE model", "WEMoE models are not linearized"]),
            (eval + ["--model", EngineFixtures.path("quick/finetuned"), "--linearized", "--base", f.linearized], f.linearized,
             ["eval --base takes the ordinary pre-trained model", "evaluate the linearized checkpoint itself"]),
            (eval + ["--model", f.bareLinearized], f.bareLinearized, ["lacks the mergekit.kind = linearized metadata"]),
            (["finetune", "--base", f.wemoe, "--head", head, "--data", data, "-o", dir + "/x"], f.wemoe, ["merge-cli wemoe-train"]),
            (["finetune", "--base", f.linearized, "--head", head, "--data", data, "-o", dir + "/x"], f.linearized, ["finetune --linearized"]),
            (["finetune", "--base", f.taskVector, "--head", head, "--data", data, "-o", dir + "/x"], f.taskVector, ["and fine-tune MODEL"]),
            (["wemoe", "--base", f.model, "--model", f.linearized, "-o", dir + "/x"], f.linearized, ["not its linearization"]),
            (["wemoe", "--base", f.wemoe, "--model", f.model, "-o", dir + "/x"], f.wemoe, ["the experts were fine-tuned from"]),
            (["wemoe-train", "--model", f.linearized, "--data", data, "--head", head, "-o", dir + "/x"], f.linearized,
             ["wemoe-train --model takes a WEMoE model", "merge-cli wemoe --base BASE"]),
            (xi + ["--task-vector", f.wemoe, "--model", EngineFixtures.path("quick/finetuned")], f.wemoe,
             ["disentanglement --task-vector takes a task vector", "with --model"]),
            (xi + ["--model", f.taskVector, "--model", EngineFixtures.path("quick/finetuned")], f.taskVector, ["Pass it with --task-vector"]),
            (["linearize", "--base", f.wemoe, "-o", dir + "/x"], f.wemoe, ["Linearize the base and the fine-tuned models instead"]),
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
