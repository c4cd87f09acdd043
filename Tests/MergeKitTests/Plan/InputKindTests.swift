import Foundation
import Testing
@testable import MergeKit

/// A task-vector file given as a model would be merged as θ (≈ 0), and a full model given as a
/// task vector would be added as τ (≈ 2θ): both are refused with the fix, on the command line, in
/// recipes, sweeps and analyze.
@Suite("Task vectors and models in the wrong place")
struct InputKindTests {
    let fixtures = TestSupport.fixture("")

    /// A task-vector file of ft_a (a merge that emits τ), and one with the same values but no
    /// metadata (as another tool would write it).
    func taskVectors(_ dir: String) throws -> (marked: String, foreign: String) {
        let marked = dir + "/tau_a.safetensors"
        let plan = try MergePlan(base: try Checkpoint(path: fixtures + "/f32/base"),
                                 inputs: [MergeInput(kind: .model, checkpoint: try Checkpoint(path: fixtures + "/f32/ft_a"))],
                                 method: try TaskArithmetic(scale: 1), output: OutputSpec(path: marked, emit: .taskVector))
        _ = try MergeExecutor.run(plan, threads: 1)
        let values = TestSupport.values(try Checkpoint(path: marked))
        let foreign = dir + "/foreign_tau.safetensors"
        TestSupport.writeCheckpoint(foreign, values.keys.sorted().map { name in
            let (info, v) = values[name]!
            return (TensorSpec(name: name, dtype: info.dtype, shape: info.shape), v)
        }, metadata: nil)
        return (marked, foreign)
    }

    /// The error of planning (or analysing) `inputs` onto the f32 base with each way of merging:
    /// the methods, a sweep's plans, the analysis.
    func refusals(_ inputs: [MergeInput], methods: [any MergeMethod], output: String) throws -> [MergeKitError] {
        let base = try Checkpoint(path: fixtures + "/f32/base")
        var errors: [MergeKitError] = []
        for method in methods {
            errors.append(try #require(throws: MergeKitError.self) {
                try MergePlan(base: base, inputs: inputs, method: method, output: OutputSpec(path: output))
            })
        }
        let recipe = Recipe(method: "task_arithmetic", baseModel: base.path,
                            inputs: inputs.map { Recipe.Input(kind: $0.kind == .model ? .model : .taskVector, path: $0.path) },
                            sweep: [(name: "lambda", values: [.number(0.5), .number(1)])], path: "test")
        errors.append(try #require(throws: MergeKitError.self) { try recipe.plan(output: output + "-sweep") })
        errors.append(try #require(throws: MergeKitError.self) { try TaskVectorAnalysis.run(base: base, inputs: inputs, threads: 1) })
        return errors
    }

    @Test("A task-vector file given as a model is refused by every merge, a sweep and the analysis, naming the file and the fix")
    func taskVectorAsModel() throws {
        let dir = TestSupport.temporaryDirectory("kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (tau, _) = try taskVectors(dir)
        let inputs = [MergeInput(kind: .model, checkpoint: try Checkpoint(path: fixtures + "/f32/ft_b")),
                      MergeInput(kind: .model, checkpoint: try Checkpoint(path: tau))]
        for error in try refusals(inputs, methods: [try TaskArithmetic(), try TIES()], output: dir + "/out") {
            #expect(error.description.contains(tau + ": is a task vector (its metadata says mergekit.kind = task_vector) but was given as a fine-tuned model"),
                    "\(error)")
            #expect(error.description.contains("Pass it as a task vector \(tau) (in a recipe: task_vector: \(tau))"), "\(error)")
        }
        #expect(TestSupport.listing(dir) == ["tau_a.safetensors", "foreign_tau.safetensors"].sorted())
        // (merge-cli words the fix with its flag: CLIWordingTests.mergeInputKinds.)
        // As a task vector it is what it says.
        let right = try MergePlan(base: try Checkpoint(path: fixtures + "/f32/base"), inputs: [MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: tau))],
                                  method: try TaskArithmetic(), output: OutputSpec(path: dir + "/right.safetensors"))
        _ = try MergeExecutor.run(right, threads: 1)
    }

    @Test("A full model given as a task vector is refused (its values lie near the base's); a task vector without metadata is accepted")
    func modelAsTaskVector() throws {
        let dir = TestSupport.temporaryDirectory("kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (_, foreign) = try taskVectors(dir)
        let model = fixtures + "/f32/ft_b"
        let inputs = [MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: model))]
        let negation = [MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: model), weight: -1)]
        for error in try refusals(inputs, methods: [try TaskArithmetic(), try MagMax()], output: dir + "/out.safetensors")
            + refusals(negation, methods: [try TaskArithmetic()], output: dir + "/neg.safetensors") {
            #expect(error.description.contains(model + ": was given as a task vector but is a full model"), "\(error)")
            #expect(error.description.contains("Pass it as a fine-tuned model \(model)"), "\(error)")
        }
        // (merge-cli words the fix with its flags and commands: CLIWordingTests.mergeInputKinds.)
        #expect(!FileManager.default.fileExists(atPath: dir + "/neg.safetensors"))
        let accepted = try MergePlan(base: try Checkpoint(path: fixtures + "/f32/base"),
                                     inputs: [MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: foreign))],
                                     method: try TaskArithmetic(), output: OutputSpec(path: dir + "/ok.safetensors"))
        _ = try MergeExecutor.run(accepted, threads: 1)
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
        let error = try #require(throws: MergeKitError.self) { try Recipe.load(path: dir + "/recipe.yml").plan(output: dir + "/out.safetensors") }
        #expect(error.description.contains("is a task vector") && error.description.contains("task_vector: \(tau)"), "\(error)")
        #expect(error.description.contains("is a full model") && error.description.contains("model: \(fixtures)/f32/ft_c"), "\(error)")
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
