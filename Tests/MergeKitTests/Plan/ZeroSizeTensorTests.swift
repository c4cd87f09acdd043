import Foundation
import Testing
@testable import MergeKit

/// Zero-element tensors (shape with a 0) are valid safetensors entries: every method, `analyze`,
/// `verify` and `inspect` must accept them wherever they are — first or last in data order, the
/// only tensor, in a shard of a sharded checkpoint — and write them unchanged.
@Suite("Zero-element tensors")
struct ZeroSizeTensorTests {
    /// A base and two fine-tuned models with zero-element tensors first and last in data order,
    /// each as one file and as a two-shard directory.
    struct Set {
        let dir: String
        var base: String { dir + "/base.safetensors" }
        var models: [String] { [dir + "/ft_1.safetensors", dir + "/ft_2.safetensors"] }
        var shardedBase: String { dir + "/base_sharded" }
        var shardedModels: [String] { [dir + "/ft_1_sharded", dir + "/ft_2_sharded"] }

        static let specs = [
            TensorSpec(name: "a.empty", dtype: .F32, shape: [0, 3]),
            TensorSpec(name: "b.weight", dtype: .F32, shape: [3, 2]),
            TensorSpec(name: "c.bias", dtype: .BF16, shape: [4]),
            TensorSpec(name: "z.empty", dtype: .BF16, shape: [0]),
        ]

        init() {
            dir = TestSupport.temporaryDirectory("zero-size")
            let values: [[[Double]]] = [
                [[], [1, 2, 3, 4, 5, 6], [1, 1, 1, 1], []],
                [[], [1.5, 2, 2.5, 4, 5, 7], [2, 1, 0.5, 1], []],
                [[], [0.5, 2.5, 3, 3, 5, 6.5], [1, 3, 1, 0], []],
            ]
            for (path, tensors) in zip([base] + models, values) {
                TestSupport.writeCheckpoint(path, Array(zip(Self.specs, tensors)))
            }
            for (path, tensors) in zip([shardedBase] + shardedModels, values) {
                try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                let pairs = Array(zip(Self.specs, tensors))
                TestSupport.writeCheckpoint(path + "/model-00001-of-00002.safetensors", Array(pairs[0..<2]))
                TestSupport.writeCheckpoint(path + "/model-00002-of-00002.safetensors", Array(pairs[2...]))
                let map = Self.specs.enumerated().map { "\"\($0.element.name)\": \"model-0000\($0.offset < 2 ? 1 : 2)-of-00002.safetensors\"" }
                let index = "{\"metadata\": {\"total_size\": 32}, \"weight_map\": {\(map.joined(separator: ", "))}}"
                try! index.write(toFile: path + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
            }
        }
    }

    /// The zero-element tensors are in `output` with their shapes, and `b.weight` is finite.
    func expectEmptyTensorsKept(_ output: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let checkpoint = try Checkpoint(path: output)
        let values = TestSupport.values(checkpoint)
        #expect(values["a.empty"]?.info.shape == [0, 3], sourceLocation: sourceLocation)
        #expect(values["z.empty"]?.info.shape == [0], sourceLocation: sourceLocation)
        #expect(values["b.weight"]?.values.allSatisfy { $0.isFinite } == true, sourceLocation: sourceLocation)
    }

    @Test("Every method merges checkpoints with zero-element tensors first and last", arguments: MethodCase.all)
    func everyMethod(_ line: MethodCase) throws {
        let set = Set()
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        for (label, base, models) in [("file", set.base, set.models), ("sharded", set.shardedBase, set.shardedModels)] {
            let outputs = try line.merge(base: base, models: models, output: line.output(set.dir + "/out-\(label)"))
            #expect(outputs.count == (line.isSweep ? 2 : 1), "\(label)")
            for output in outputs { try expectEmptyTensorsKept(output) }
        }
    }

    @Test("A checkpoint whose only tensor has zero elements merges with every method", arguments: MethodCase.all)
    func onlyTensor(_ line: MethodCase) throws {
        let dir = TestSupport.temporaryDirectory("zero-only")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = TensorSpec(name: "only.weight", dtype: .F32, shape: [0, 2])
        for name in ["base", "ft_1", "ft_2"] { TestSupport.writeCheckpoint(dir + "/\(name).safetensors", [(spec, [])]) }
        let outputs = try line.merge(base: dir + "/base.safetensors", models: [dir + "/ft_1.safetensors", dir + "/ft_2.safetensors"],
                                     output: line.output(dir + "/out"))
        for output in outputs { #expect(try Checkpoint(path: output).entry(named: "only.weight")?.info.shape == [0, 2], "\(output)") }
    }

    @Test("analyze, verify and inspect accept zero-element tensors first, last and in shards")
    func readOnlyCommands() throws {
        let set = Set()
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        for (base, models) in [(set.base, set.models), (set.shardedBase, set.shardedModels)] {
            let (opened, inputs) = try LibraryMerge.open(LibraryMerge.Inputs(base: base, models: models))
            let analysis = try TaskVectorAnalysis.run(base: opened, inputs: inputs)
            #expect(analysis.elementCount == 10)
            guard case .object(let members) = analysis.json else { Issue.record("analysis JSON: \(analysis.json)"); continue }
            #expect(members.first { $0.key == "elements" }?.value == .int(10))
            for path in [base] + models {
                // verify --check-finite: a report that passes; inspect --check-finite: the summary lists them.
                let report = try CheckpointVerifier(checkFinite: true).verify(path: path)
                #expect(report.passed && report.nonFiniteError == nil, "\(path): \(report.nonFinite)")
                let checkpoint = try Checkpoint(path: path)
                #expect(try CheckpointVerifier(checkFinite: true).verify(checkpoint).passed)
                var text = ""
                CheckpointSummary(checkpoint).writeText { text += $0 + "\n" }
                #expect(text.contains("z.empty"), "\(path): \(text)")
            }
        }
    }
}
