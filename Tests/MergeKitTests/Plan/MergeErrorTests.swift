import Foundation
import Testing
@testable import MergeKit

/// User mistakes are reported before any output is written, naming the file, the tensor and the
/// fix, and a failed merge leaves nothing behind.
@Suite("Merge errors")
struct MergeErrorTests {
    /// A tiny base and a fine-tuned model with three float tensors and one integer buffer.
    static func specs(dtype: DType = .F32) -> [(TensorSpec, [Double])] {
        [
            (TensorSpec(name: "a.weight", dtype: dtype, shape: [2, 3]), [1, 2, 3, 4, 5, 6]),
            (TensorSpec(name: "b.weight", dtype: dtype, shape: [4]), [0.5, -0.5, 0.25, 0]),
            (TensorSpec(name: "c.bias", dtype: dtype, shape: []), [3]),
            (TensorSpec(name: "ids", dtype: .I64, shape: [3]), [0, 1, 2]),
        ]
    }

    struct Setup {
        let dir: String
        var base: String { dir + "/base.safetensors" }
        var model: String { dir + "/ft.safetensors" }
        var output: String { dir + "/out/merged.safetensors" }
        var outputDirectory: String { dir + "/out" }

        init() {
            dir = TestSupport.temporaryDirectory("errors")
            try! FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
            TestSupport.writeCheckpoint(base, MergeErrorTests.specs())
            TestSupport.writeCheckpoint(model, MergeErrorTests.specs().map { ($0.0, $0.1.map { $0 + 0.125 }) })
        }

        func plan(model path: String? = nil, kind: MergeInput.Kind = .model, output: String? = nil) throws -> MergePlan {
            let input = MergeInput(kind: kind, checkpoint: try Checkpoint(path: path ?? model))
            return try MergePlan(base: try Checkpoint(path: base), inputs: [input], method: try TaskArithmetic(scale: 0.5),
                                 output: OutputSpec(path: output ?? self.output))
        }

        /// The error planning throws for `model`, after checking nothing was written.
        func planError(model path: String, kind: MergeInput.Kind = .model) throws -> MergeKitError {
            let error = try #require(throws: MergeKitError.self) { try plan(model: path, kind: kind) }
            #expect(TestSupport.listing(outputDirectory).isEmpty, "nothing may be written on a planning error")
            return error
        }
    }

    @Test("The setup merges cleanly (control for the error cases)")
    func control() throws {
        let s = Setup()
        let result = try MergeExecutor.run(try s.plan())
        #expect(result.tensorsMerged == 3 && result.tensorsCopied == 1)
        let merged = TestSupport.values(try Checkpoint(path: s.output))
        #expect(merged["a.weight"]?.values == [1.0625, 2.0625, 3.0625, 4.0625, 5.0625, 6.0625])
        #expect(merged["ids"]?.values == [0, 1, 2])
        #expect(TestSupport.listing(s.outputDirectory) == ["merged.safetensors"])
    }

    @Test("A tensor missing from a fine-tuned model")
    func missingTensor() throws {
        let s = Setup()
        let path = s.dir + "/missing.safetensors"
        TestSupport.writeCheckpoint(path, Self.specs().filter { $0.0.name != "b.weight" })
        let error = try s.planError(model: path)
        #expect(error.code == .missingTensor)
        #expect(error.file == path && error.tensor == "b.weight")
        #expect(error.description.contains(path) && error.description.contains("b.weight") && error.fix != nil)
    }

    @Test("A tensor of another shape")
    func shapeMismatch() throws {
        let s = Setup()
        let path = s.dir + "/shape.safetensors"
        var specs = Self.specs()
        specs[0] = (TensorSpec(name: "a.weight", dtype: .F32, shape: [3, 2]), specs[0].1)
        TestSupport.writeCheckpoint(path, specs)
        let error = try s.planError(model: path)
        #expect(error.code == .shapeMismatch && error.tensor == "a.weight")
        #expect(error.description.contains("[3, 2]") && error.description.contains("[2, 3]") && error.description.contains(path))
    }

    @Test("A float tensor stored as integers, and an integer buffer of another dtype")
    func dtypeMismatch() throws {
        let s = Setup()
        let path = s.dir + "/dtype.safetensors"
        var specs = Self.specs()
        specs[1] = (TensorSpec(name: "b.weight", dtype: .I32, shape: [4]), [0, 0, 0, 0])
        specs[3] = (TensorSpec(name: "ids", dtype: .I32, shape: [3]), [0, 1, 2])
        TestSupport.writeCheckpoint(path, specs)
        let error = try s.planError(model: path)
        #expect(error.code == .dtypeMismatch)
        #expect(error.description.contains("b.weight") && error.description.contains("ids"), "both problems are reported together")
        #expect(error.description.contains("2 problems"))
    }

    @Test("Float inputs of different float dtypes merge (bf16 model onto an F32 base)")
    func floatDTypesMix() throws {
        let s = Setup()
        let path = s.dir + "/bf16.safetensors"
        TestSupport.writeCheckpoint(path, Self.specs(dtype: .BF16).map { spec, values in
            (spec, spec.dtype == .BF16 ? values.map { $0 + 0.125 } : values)
        })
        let result = try MergeExecutor.run(try s.plan(model: path))
        #expect(result.tensorsMerged == 3)
        let merged = TestSupport.values(try Checkpoint(path: s.output))
        #expect(merged["a.weight"]?.info.dtype == .F32)
        #expect(merged["b.weight"]?.values == [0.5625, -0.4375, 0.3125, 0.0625])
    }

    @Test("A tensor the base does not have")
    func extraTensor() throws {
        let s = Setup()
        let path = s.dir + "/extra.safetensors"
        TestSupport.writeCheckpoint(path, Self.specs() + [(TensorSpec(name: "head.weight", dtype: .F32, shape: [2]), [1, 2])])
        let error = try s.planError(model: path)
        #expect(error.code == .extraTensor && error.tensor == "head.weight" && error.file == path)
    }

    @Test("A task vector made from another base is refused")
    func taskVectorFromAnotherBase() throws {
        let s = Setup()
        let tv = s.dir + "/tv.safetensors"
        let input = MergeInput(kind: .model, checkpoint: try Checkpoint(path: s.model))
        let tvPlan = try MergePlan(base: try Checkpoint(path: s.base), inputs: [input], method: try TaskArithmetic(),
                                   output: OutputSpec(path: tv, emit: .taskVector))
        _ = try MergeExecutor.run(tvPlan)
        let tvCheckpoint = try Checkpoint(path: tv)
        #expect(TaskVectorFile.isTaskVector(tvCheckpoint))
        #expect(tvCheckpoint.entry(named: "ids") == nil, "integer buffers are not part of a task vector")
        #expect(tvCheckpoint.metadata?[TaskVectorFile.fingerprintKey] == BaseFingerprint.compute(try Checkpoint(path: s.base)))

        // Applying it to its own base works and equals merging the model directly.
        let viaTaskVector = try s.plan(model: tv, kind: .taskVector)
        _ = try MergeExecutor.run(viaTaskVector)
        let direct = s.dir + "/direct.safetensors"
        _ = try MergeExecutor.run(try s.plan(output: direct))
        expectCheckpointsMatch(try Checkpoint(path: s.output), try Checkpoint(path: direct), ulps: 0)

        // Another base: same architecture, one value changed.
        let otherBase = s.dir + "/other-base.safetensors"
        var specs = Self.specs()
        specs[0].1[0] = 1.5
        TestSupport.writeCheckpoint(otherBase, specs)
        let output = s.dir + "/out/never.safetensors"
        let error = try #require(throws: MergeKitError.self) {
            try MergePlan(base: try Checkpoint(path: otherBase),
                          inputs: [MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: tv))],
                          method: try TaskArithmetic(), output: OutputSpec(path: output))
        }
        #expect(error.code == .baseMismatch && error.file == tv)
        #expect(error.description.contains(otherBase) && error.description.contains("recompute it with task-vector extraction against \(otherBase)"))
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test("A malformed or truncated input is reported by name before anything is written")
    func malformedInput() throws {
        let s = Setup()
        let path = s.dir + "/truncated.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: s.model))
        try bytes.prefix(bytes.count - 5).write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: MergeKitError.self) { try Checkpoint(path: path) }
        #expect(error.code == .dataPastEndOfFile && error.file == path)
        #expect(error.description.contains("truncated"))
    }

    @Test("A path that does not exist")
    func nonexistent() throws {
        let s = Setup()
        let error = try #require(throws: MergeKitError.self) { try s.plan(model: s.dir + "/nope") }
        #expect(error.code == .fileNotFound && error.file == s.dir + "/nope")
        #expect(TestSupport.listing(s.outputDirectory).isEmpty)
    }

    @Test("An output equal to, inside, or a symlink to an input is refused")
    func outputIsInput() throws {
        let s = Setup()
        let before = try Data(contentsOf: URL(fileURLWithPath: s.model))
        let link = s.dir + "/link.safetensors"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: s.model)
        // A directory checkpoint, to test "inside".
        let modelDir = s.dir + "/model-dir"
        try FileManager.default.createDirectory(atPath: modelDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: s.model, toPath: modelDir + "/model.safetensors")

        for output in [s.model, link, modelDir + "/merged.safetensors", modelDir] {
            let error = try #require(throws: MergeKitError.self) {
                let input = MergeInput(kind: .model, checkpoint: try Checkpoint(path: output == modelDir || output.hasPrefix(modelDir) ? modelDir : s.model))
                return try MergePlan(base: try Checkpoint(path: s.base), inputs: [input], method: try TaskArithmetic(),
                                     output: OutputSpec(path: output, overwrite: true))
            }
            #expect(error.code == .outputIsInput, "\(output)")
            #expect(error.description.contains(output))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: s.model)) == before)
        #expect(TestSupport.listing(modelDir) == ["model.safetensors"])
    }

    @Test("An existing output is refused without --overwrite and replaced atomically with it")
    func existingOutput() throws {
        let s = Setup()
        #expect(FileManager.default.createFile(atPath: s.output, contents: Data("old".utf8)))
        let error = try #require(throws: MergeKitError.self) { try s.plan() }
        #expect(error.code == .outputExists && error.file == s.output && error.description.contains("allow overwriting"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: s.output)) == Data("old".utf8))

        let input = MergeInput(kind: .model, checkpoint: try Checkpoint(path: s.model))
        let plan = try MergePlan(base: try Checkpoint(path: s.base), inputs: [input], method: try TaskArithmetic(),
                                 output: OutputSpec(path: s.output, overwrite: true))
        _ = try MergeExecutor.run(plan)
        #expect(try Checkpoint(path: s.output).entries.count == 4)
        #expect(TestSupport.listing(s.outputDirectory) == ["merged.safetensors"], "no temporary files left")
    }

    @Test("A failure while writing removes the temporary output")
    func failedWriteCleansUp() throws {
        let s = Setup()
        let plan = try s.plan()
        // Make the output directory read-only after planning: creating the temporary fails.
        chmod(s.outputDirectory, 0o500)
        defer { chmod(s.outputDirectory, 0o755) }
        if getuid() == 0 {
            // root ignores permissions; remove the directory instead so the write fails.
            try FileManager.default.removeItem(atPath: s.outputDirectory)
        }
        let error = try #require(throws: MergeKitError.self) { try MergeExecutor.run(plan) }
        #expect(error.code == .writeFailed && error.description.contains(s.output))
        #expect(TestSupport.listing(s.outputDirectory).isEmpty)
    }

    @Test("A non-finite scale or weight is rejected")
    func nonFiniteParameters() throws {
        let error = try #require(throws: MergeKitError.self) { try TaskArithmetic(scale: .nan) }
        #expect(error.code == .invalidArgument && error.description.contains("nan"))
        let s = Setup()
        let weighted = try #require(throws: MergeKitError.self) {
            try MergePlan(base: try Checkpoint(path: s.base),
                          inputs: [MergeInput(kind: .model, checkpoint: try Checkpoint(path: s.model), weight: .infinity)],
                          method: try TaskArithmetic(), output: OutputSpec(path: s.output))
        }
        #expect(weighted.code == .invalidArgument && weighted.description.contains(s.model))
    }
}
