import Foundation
import Testing
@testable import MergeKit

@Suite("OutputLayout: shards, names and places of the output tensors")
struct OutputLayoutTests {
    /// F32 tensors of 10, 20, 30, 40 and 5 elements: 40, 80, 120, 160 and 20 bytes.
    let specs = [10, 20, 30, 40, 5].enumerated().map { TensorSpec(name: "t\($0)", dtype: .F32, shape: [$1]) }

    private func groups(_ layout: (shards: [OutputShard], placements: [(shard: Int, info: TensorInfo)])) -> [[String]] {
        var groups = Array(repeating: [String](), count: layout.shards.count)
        for placement in layout.placements { groups[placement.shard].append(placement.info.name) }
        return groups
    }

    @Test("A shard closes when the next tensor would pass the limit; a tensor over the limit gets its own")
    func splitting() {
        let output = OutputSpec(path: "/out/dir", maxShardSize: 120)
        let layout = OutputLayout.layOut(specs, output: output, metadata: ["format": "pt"])
        // 40 + 80 = 120 fits exactly; 120 alone; 160 > 120 alone; then 20.
        #expect(groups(layout) == [["t0", "t1"], ["t2"], ["t3"], ["t4"]])
        #expect(layout.shards.map(\.fileName) == (1...4).map { "model-0000\($0)-of-00004.safetensors" })
        // Placements are parallel to the specs, with each tensor's place in its shard's header.
        #expect(layout.placements.map(\.info.name) == specs.map(\.name))
        for placement in layout.placements {
            let shard = layout.shards[placement.shard].layout
            #expect(shard.tensors.contains { $0.name == placement.info.name && $0.begin == placement.info.begin })
        }
    }

    @Test("One shard is model.safetensors; a single-file output keeps its name and is never split")
    func names() {
        let directory = OutputLayout.layOut(specs, output: OutputSpec(path: "/out/dir"), metadata: [:])
        #expect(directory.shards.map(\.fileName) == [Checkpoint.singleFileName])
        #expect(groups(directory) == [specs.map(\.name)])
        let file = OutputLayout.layOut(specs, output: OutputSpec(path: "/out/Merged.SafeTensors", maxShardSize: 10), metadata: [:])
        #expect(file.shards.map(\.fileName) == ["Merged.SafeTensors"])
        #expect(groups(file) == [specs.map(\.name)])
    }

    @Test("No tensors: one empty shard")
    func empty() {
        let layout = OutputLayout.layOut([], output: OutputSpec(path: "/out/dir"), metadata: [:])
        #expect(layout.shards.count == 1 && layout.placements.isEmpty)
    }

    /// The planner lays out merges (ordinary and linearized) with this function: a plan's shards
    /// are the layout of its tensors.
    @Test("A sharded merge plan is exactly the layout of its tensors")
    func planUsesTheLayout() throws {
        let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
        let model = try Checkpoint(path: TestSupport.fixture("f32/ft_a"))
        let dir = TestSupport.temporaryDirectory("layout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = OutputSpec(path: dir + "/out", maxShardSize: 3000)
        let plan = try MergePlan(base: base, inputs: [MergeInput(kind: .model, checkpoint: model)], method: try TaskArithmetic(), output: output)
        #expect(plan.shards.count > 1)
        let layout = OutputLayout.layOut(plan.tensors.map { TensorSpec(name: $0.name, dtype: $0.output.dtype, shape: $0.output.shape) },
                                         output: output, metadata: plan.metadata)
        #expect(layout.shards.map(\.fileName) == plan.shards.map(\.fileName))
        #expect(layout.shards.map(\.layout.prefix) == plan.shards.map(\.layout.prefix))
        #expect(layout.placements.map(\.shard) == plan.tensors.map(\.shard))
    }
}
