import Foundation
import Testing
@testable import MergeKit

/// The explicit step before planning: linearized checkpoints become an ordinary merge of views,
/// and the plan of that merge is relabelled as a linearized output.
@Suite("LinearizedMerge: linearized inputs as an ordinary plan input")
struct LinearizedMergeTests {
    @Test("Ordinary base and inputs: no step; a linearized input onto an ordinary base is refused")
    func ordinary() throws {
        let dir = TestSupport.temporaryDirectory("linmerge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Checkpoint(path: EngineFixtures.path("quick/base"))
        let model = try Checkpoint(path: EngineFixtures.path("quick/finetuned"))
        #expect(try LinearizedMerge.resolve(base: base, inputs: [MergeInput(kind: .model, checkpoint: model)]) == nil)
        let linear = try LinearizedCheckpointTests.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        #expect(throws: MergeKitError.self) {
            _ = try LinearizedMerge.resolve(base: base, inputs: [MergeInput(kind: .model, checkpoint: linear)])
        }
    }

    @Test("A linearized base and inputs: the θ₀ half as base, θ halves as models, other inputs as given; the plan relabels")
    func views() throws {
        let dir = TestSupport.temporaryDirectory("linmerge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try LinearizedCheckpointTests.linearize("quick/base", nil, into: dir, "base-lin")
        let linear = try LinearizedCheckpointTests.linearize("quick/base", "quick/finetuned", into: dir, "ft-lin")
        let model = try Checkpoint(path: EngineFixtures.path("quick/finetuned"))
        let tau = try Checkpoint(path: EngineFixtures.path("quick/tau.safetensors"))
        let inputs = [MergeInput(kind: .model, checkpoint: linear, weight: 0.5), MergeInput(kind: .model, checkpoint: model, weight: 2),
                      MergeInput(kind: .taskVector, checkpoint: tau, weight: -1)]
        let step = try #require(try LinearizedMerge.resolve(base: base, inputs: inputs))
        let ordinaryNames = step.baseHalf.entries.map(\.name)
        #expect(Set(ordinaryNames) == Set(model.entries.map(\.name)))
        #expect(!LinearizedCheckpoint.isLinearized(step.baseHalf))
        #expect(step.views.map(\.kind) == [.model, .model, .taskVector])
        #expect(step.views.map(\.weight) == [0.5, 2, -1])
        #expect(Set(step.views[0].checkpoint.entries.map(\.name)) == Set(ordinaryNames))
        #expect(step.views[1].checkpoint === model && step.views[2].checkpoint === tau)
        // θ of the linearized input is its params half, byte for byte.
        for entry in step.views[0].checkpoint.entries {
            let stored = try #require(linear.entry(named: LinearizedCheckpoint.Half.model.prefix + entry.name))
            #expect(Array(entry.file.bytes(of: entry.info)) == Array(stored.file.bytes(of: stored.info)), "\(entry.name)")
        }
        // The public planner runs the step: θ₀ copied as params0.*, the halves' merge as params.*,
        // on the real base and inputs.
        let plan = try MergePlan(base: base, inputs: inputs, method: try TaskArithmetic(), output: OutputSpec(path: dir + "/out.safetensors"))
        #expect(plan.base === base)
        #expect(plan.tensors.map(\.name) == ordinaryNames.map { LinearizedCheckpoint.Half.base.prefix + $0 }
                                           + ordinaryNames.map { LinearizedCheckpoint.Half.model.prefix + $0 })
        #expect(plan.tensors.prefix(ordinaryNames.count).allSatisfy { $0.action == .copy })
        #expect(plan.tensors.suffix(ordinaryNames.count).contains { $0.action == .merge })
    }
}
