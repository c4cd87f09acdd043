import Foundation
import Testing
@testable import MergeKit
@testable import merge_cli

/// merge-cli words the library's terms with its flags and commands (`CLIWording`), so that a
/// library error reads on the command line as it always has.
@Suite("merge-cli's wording of library errors")
struct CLIWordingTests {
    /// Every term of the library's catalogue (`MergeKitError+Terms.swift`), the parameterized ones
    /// with example arguments, and every checkpoint role's.
    static let terms: [MergeKitError.Term] = [
        .fewerThreads, .overwrite, .allowUnused, .checkFinite, .smallerScale, .widerDType, .outputDType("F32"),
        .steps, .batchSize, .learningRate, .weightDecay, .warmupSteps, .clipNorm, .adamEpsilon, .batchSizeAtMost(3),
        .passAsModel, .passAsTaskVector, .passResultAsModel, .asAModel, .asBase, .asLoRA, .modelPath, .givenBase, .notAroundABase,
        .evaluateItself("m"), .modelOfBase, .expertsOfBase, .wemoeSources,
        .rankExample, .randomizedSVDDefaults, .leaveOutEmbeddings, .includeEmbeddings, .useRandomized, .randomized,
        .randomizedReadsProducts, .factorsIn("F32"), .extractionInputs,
        .taskVectorExtraction(), .taskVectorExtraction(base: "B"), .applyTaskVector(base: "B", taskVector: "t", output: "M"),
        .applyTaskVector(base: "B", taskVector: "t"), .mergeModel(base: "B", model: "M"), .finitenessScan, .verification,
        .linearization(), .linearization(base: "B", output: "O"), .linearization(base: "B", model: "F", output: "O"),
        .linearizationBase, .fineTuningBase, .inTheTangentSpace, .tangentSpaceFineTuning,
        .wemoeUpscaling(), .wemoeUpscaling(base: "B", experts: ["E1", "E2"], output: "O"), .testTimeAdaptation,
    ] + ([.evalModel, .evalLinearizedModel, .evalBase, .finetuneBase, .wemoeBase, .wemoeExpert, .wemoeTrainModel,
          .disentanglementBase, .disentanglementTaskVector, .disentanglementModel] as [CheckpointRole]).map(\.term)

    @Test("Every term has merge-cli words that name a flag or a command; only linearize's role keeps the library's")
    func everyTerm() {
        for term in Self.terms {
            let words = CLIWording.name(term)
            #expect(words != nil, "\(term.key) has no merge-cli words")
            #expect(words.map { $0.contains("--") || $0.contains("merge-cli") || $0.hasPrefix("`") } == true, "\(term.key): \(words ?? "")")
        }
        #expect(CLIWording.name(CheckpointRole.linearizeInput.term) == nil)
    }

    @Test("Library errors read in merge-cli's words exactly as the command line has always printed them")
    func exactWords() throws {
        var options = FineTuning.Options()
        options.learningRate = 0
        let rate = try #require(throws: MergeKitError.self) { try options.validate() }
        #expect(rate.inCLIWords.detail == "--lr must be a positive number, not 0.0")

        let dir = TestSupport.temporaryDirectory("cli-wording")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let existing = dir + "/out.safetensors"
        #expect(FileManager.default.createFile(atPath: existing, contents: Data()))
        let exists = try #require(throws: MergeKitError.self) { try OutputGuard.check(output: existing, overwrite: false, inputs: []) }
        #expect(exists.inCLIWords.description
                == "\(existing): already exists. Choose a new output path, or pass --overwrite to replace it once the new output is complete")

        let role = try #require(throws: MergeKitError.self) {
            try CheckpointRole.evalLinearizedModel.check(try Checkpoint(path: EngineFixtures.path("quick/base")).asTaskVector(dir + "/tv.safetensors"))
        }
        #expect(role.inCLIWords.description.contains(
            "eval --model takes the ordinary fine-tuned model θ to linearize around --base. Apply it to its base first (`merge-cli task-arithmetic --base BASE --task-vector \(dir)/tv.safetensors -o MODEL`) and evaluate MODEL"),
            "\(role.inCLIWords)")

        let c = try EngineFixtures.model("quick/base").config
        func estimate(_ b: Int) -> MemoryEstimate {
            EngineMemory.evaluation(config: c, hasProjection: true, form: .plain, batch: b, threads: 1, classes: 4)
        }
        let memory = try #require(throws: MergeKitError.self) {
            try EngineMemory.batch(32, chosen: true, command: "eval", budget: MemoryBudget(bytes: estimate(3).bytes + 1, source: "test"),
                                   estimate: estimate)
        }
        #expect(memory.inCLIWords.fix?.hasPrefix("Pass --batch-size 3 or less, or free memory") == true
                && memory.fix?.hasPrefix("Use a batch size of 3 or less, or free memory") == true, "\(memory)")
    }

    @Test("A merge input of the wrong kind is worded with merge-cli's flags and commands")
    func mergeInputKinds() throws {
        let dir = TestSupport.temporaryDirectory("cli-wording-kinds")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tau = dir + "/tau.safetensors"
        try LibraryMerge.taskVector(base: "f32/base", finetuned: "f32/ft_a", output: tau)
        // `merge-cli ties --base f32/base --model f32/ft_b --model τ`
        let asModel = try #require(throws: MergeKitError.self) {
            try LibraryMerge.plan(try LibraryMerge.method("ties"), LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_b", tau]),
                                  output: OutputSpec(path: dir + "/out"))
        }
        #expect(asModel.inCLIWords.description.contains("Pass it with --task-vector \(tau)"), "\(asModel.inCLIWords)")
        // `merge-cli negate --base f32/base --task-vector f32/ft_b`
        let model = TestSupport.fixture("f32/ft_b")
        let asTaskVector = try #require(throws: MergeKitError.self) {
            try LibraryMerge.plan(try TaskArithmetic(), LibraryMerge.Inputs(base: "f32/base", taskVectors: [model], weights: [-1]),
                                  output: OutputSpec(path: dir + "/neg.safetensors"))
        }
        #expect(asTaskVector.inCLIWords.description.contains(
            "Pass it with --model \(model) (in a recipe: model: \(model)), or make its task vector with `merge-cli task-vector`"), "\(asTaskVector.inCLIWords)")
    }
}

extension Checkpoint {
    /// This checkpoint's task vector against itself (zero), written to `path` as a task-vector file.
    func asTaskVector(_ path: String) throws -> Checkpoint {
        let plan = try MergePlan(base: self, inputs: [MergeInput(kind: .model, checkpoint: self)], method: try TaskArithmetic(scale: 1),
                                 output: OutputSpec(path: path, emit: .taskVector))
        _ = try MergeExecutor.run(plan, threads: 1)
        return try Checkpoint(path: path)
    }
}
