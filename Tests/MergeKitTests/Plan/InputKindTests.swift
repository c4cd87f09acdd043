import Foundation
import Testing
@testable import MergeKit

/// A task-vector file given as a model would be merged as θ (≈ 0), and a full model given as a
/// task vector would be added as τ (≈ 2θ): both are refused with the fix, on the command line, in
/// recipes, sweeps and analyze.
@Suite("Task vectors and models in the wrong place")
struct InputKindTests {
    let fixtures = TestSupport.fixture("")

    /// A task-vector file of ft_a made by `task-vector`, and one with the same values but no
    /// metadata (as another tool would write it).
    func taskVectors(_ dir: String) throws -> (marked: String, foreign: String) {
        let marked = dir + "/tau_a.safetensors"
        let made = try CLI.run(["task-vector", "--base", "f32/base", "--finetuned", "f32/ft_a", "-o", marked], in: fixtures)
        #expect(made.status == 0, "\(made.stderr)")
        let values = TestSupport.values(try Checkpoint(path: marked))
        let foreign = dir + "/foreign_tau.safetensors"
        TestSupport.writeCheckpoint(foreign, values.keys.sorted().map { name in
            let (info, v) = values[name]!
            return (TensorSpec(name: name, dtype: info.dtype, shape: info.shape), v)
        }, metadata: nil)
        return (marked, foreign)
    }

    @Test("A task-vector file given as --model is refused, naming the file and the fix (--task-vector)")
    func taskVectorAsModel() throws {
        let dir = TestSupport.temporaryDirectory("kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (tau, _) = try taskVectors(dir)
        for command in [["task-arithmetic"], ["ties"], ["sweep", "--method", "task_arithmetic", "--scale", "0.5,1"], ["analyze"]] {
            let output = command[0] == "analyze" ? [] : ["-o", dir + "/out-\(command[0])"]
            let run = try CLI.run(command + ["--base", "f32/base", "--model", "f32/ft_b", "--model", tau] + output, in: fixtures)
            #expect(run.status == 1, "\(command): \(run.stderr)")
            #expect(run.stderr.contains(tau + ": is a task vector (its metadata says mergekit.kind = task_vector) but was given as a fine-tuned model"),
                    "\(command): \(run.stderr)")
            #expect(run.stderr.contains("Pass it with --task-vector \(tau)"), "\(command): \(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out-\(command[0])"))
        }
        // As a task vector it is what it says.
        let right = try CLI.run(["task-arithmetic", "--base", "f32/base", "--task-vector", tau, "-o", dir + "/right.safetensors"], in: fixtures)
        #expect(right.status == 0, "\(right.stderr)")
    }

    @Test("A full model given as --task-vector is refused (its values lie near the base's); a task vector without metadata is accepted")
    func modelAsTaskVector() throws {
        let dir = TestSupport.temporaryDirectory("kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (_, foreign) = try taskVectors(dir)
        for command in [["task-arithmetic"], ["negate"], ["magmax"], ["analyze"]] {
            let output = command[0] == "analyze" ? [] : ["-o", dir + "/out-\(command[0]).safetensors"]
            let run = try CLI.run(command + ["--base", "f32/base", "--task-vector", "f32/ft_b"] + output, in: fixtures)
            #expect(run.status == 1, "\(command): \(run.stderr)")
            #expect(run.stderr.contains("f32/ft_b: was given as a task vector but is a full model"), "\(command): \(run.stderr)")
            #expect(run.stderr.contains("Pass it with --model f32/ft_b"), "\(command): \(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out-\(command[0]).safetensors"))
        }
        let accepted = try CLI.run(["task-arithmetic", "--base", "f32/base", "--task-vector", foreign, "-o", dir + "/ok.safetensors"], in: fixtures)
        #expect(accepted.status == 0, "\(accepted.stderr)")
    }

    @Test("Recipes: model: with a task-vector file and task_vector: with a full model are refused with their fixes")
    func recipes() throws {
        let dir = TestSupport.temporaryDirectory("kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (tau, _) = try taskVectors(dir)
        let recipe = """
            merge_method: task_arithmetic
            base_model: \(fixtures)/f32/base
            models:
              - model: \(tau)
              - task_vector: \(fixtures)/f32/ft_c
            """
        try recipe.write(toFile: dir + "/recipe.yml", atomically: true, encoding: .utf8)
        let run = try CLI.run(["run", dir + "/recipe.yml", "-o", dir + "/out.safetensors"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("is a task vector") && run.stderr.contains("task_vector: \(tau)"), "\(run.stderr)")
        #expect(run.stderr.contains("is a full model") && run.stderr.contains("model: \(fixtures)/f32/ft_c"), "\(run.stderr)")
    }

    @Test("The relative distance to the base: a few percent for fine-tuned models, about 1 for task vectors")
    func relativeDistance() throws {
        let dir = TestSupport.temporaryDirectory("kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (tau, foreign) = try taskVectors(dir)
        let base = try Checkpoint(path: fixtures + "/f32/base")
        for model in ["ft_a", "ft_b", "ft_c"] {
            let r = try #require(TaskVectorFile.relativeDistance(try Checkpoint(path: fixtures + "/f32/" + model), toBase: base))
            #expect(r < 0.2, "\(model): \(r)")
        }
        for path in [tau, foreign] {
            let r = try #require(TaskVectorFile.relativeDistance(try Checkpoint(path: path), toBase: base))
            #expect(r > 0.8, "\(path): \(r)")
        }
        // The base against itself.
        #expect(TaskVectorFile.relativeDistance(base, toBase: base) == 0)
    }
}
