import Foundation
import Testing
@testable import MergeKit

/// The library speaks in its own words; a front end words the terms of a message its own way.
@Suite("Message wording")
struct WordingTests {
    /// A front end that names two terms and leaves the others in the library's words.
    static func flags(_ term: MergeKitError.Term) -> String? {
        switch term.key {
        case "batch-size": return "--batch-size"
        case "overwrite": return "pass --overwrite"
        case "apply-task-vector": return "`apply \(term.arguments.joined(separator: " "))`"
        default: return nil
        }
    }

    @Test("Interpolated terms are recorded with their words; the description is the library's words")
    func recorded() {
        let error = MergeKitError(.invalidArgument, file: "f", "\(term: .batchSize) must be at least 1, not \(0)",
                                  fix: "Choose another path, or \(term: .overwrite)")
        #expect(error.terms == [.batchSize, .overwrite])
        #expect(error.description == "f: the batch size must be at least 1, not 0. Choose another path, or allow overwriting")
        // Plain strings make plain errors.
        let plain = MergeKitError(.invalidArgument, "no terms", fix: "none")
        #expect(plain.terms.isEmpty && plain.description == "no terms. none")
    }

    @Test("worded(by:) replaces each named term in the detail, the fix and every problem; unnamed terms keep their words")
    func worded() {
        var error = MergeKitError(.invalidArgument, "\(term: .batchSize) must be at least 1; \(term: .learningRate) too",
                                  fix: "\(term: .overwrite.atStart) to replace it")
        error.problems = [MergeKitError(.outputExists, file: "x", "exists", fix: "Or \(term: .overwrite)")]
        let cli = error.worded(by: Self.flags)
        #expect(cli.detail == "--batch-size must be at least 1; the learning rate too")
        // A term at the start of a sentence starts the front end's words with a capital.
        #expect(cli.fix == "Pass --overwrite to replace it")
        #expect(cli.problems.map(\.description) == ["x: exists. Or pass --overwrite"])
        #expect(cli.terms.isEmpty && cli.code == error.code)
        // The library's own description is unchanged.
        #expect(error.description.hasPrefix("the batch size must be at least 1; the learning rate too. Allow overwriting to replace it"))
    }

    @Test("A term's arguments reach the front end, and a term inside a longer one is not replaced within it")
    func arguments() {
        let term = MergeKitError.Term.applyTaskVector(base: "B", taskVector: "t.safetensors", output: "M")
        #expect(term.words == "task arithmetic of B and t.safetensors, written to M" && term.arguments == ["B", "t.safetensors", "M"])
        let error = MergeKitError(.invalidArgument, "x", fix: "Apply it first (\(term: term)) and evaluate M")
        #expect(error.worded(by: Self.flags).fix == "Apply it first (`apply B t.safetensors M`) and evaluate M")
        // "the randomized SVD" lies inside "use the randomized SVD": each keeps its own wording.
        let both = MergeKitError(.invalidArgument, "\(term: .useRandomized.atStart); \(term: .randomized) needs more", fix: nil)
        let named = both.worded { $0.key == "use-randomized" ? "pass --randomized" : $0.key == "randomized" ? "--randomized" : nil }
        #expect(named.detail == "Pass --randomized; --randomized needs more")
    }

    @Test("Checkpoint roles name the input in the library's words, never a flag", arguments: CheckpointKind.allCases)
    func rolesHaveNoFlags(kind: CheckpointKind) {
        let roles: [CheckpointRole] = [.evalModel, .evalLinearizedModel, .evalBase, .finetuneBase, .wemoeBase, .wemoeExpert, .wemoeTrainModel,
                                       .disentanglementBase, .disentanglementTaskVector, .disentanglementModel, .linearizeInput]
        for role in roles where !role.accepted.contains(kind) {
            let fix = role.fix(for: kind, path: "p.safetensors")
            #expect(!fix.text.contains("--") && !fix.text.contains("merge-cli"), "\(role.option), \(kind): \(fix.text)")
            #expect(!role.option.contains("--") && !role.wanted.text.contains("--"), "\(role.option)")
        }
    }
}
