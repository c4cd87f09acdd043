import Foundation
import Testing
@testable import MergeKit

/// The package's Fixtures directory, found by walking up from this file to Package.swift.
private let fixturesRoot: URL = {
    var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
        let parent = url.deletingLastPathComponent()
        precondition(parent.path != url.path, "Package.swift not found above \(#filePath)")
        url = parent
    }
    return url.appendingPathComponent("Fixtures")
}()

private func fixture(_ relative: String) -> String {
    fixturesRoot.appendingPathComponent(relative).path
}

/// A fresh temporary directory for one test's checkpoint.
private struct TemporaryCheckpoint {
    let path: String

    init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mergekit-checkpoint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        path = url.path
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Writes a safetensors file named `name` holding F32 tensors of shape [2] with these names.
    func writeShard(_ name: String, tensors: [String]) throws {
        let layout = SafeTensorsLayout(specs: tensors.map { TensorSpec(name: $0, dtype: .F32, shape: [2]) },
                                       metadata: ["format": "pt"])
        let data = (0..<layout.dataSize).map { UInt8(truncatingIfNeeded: $0) }
        try Data(layout.prefix + data).write(to: URL(fileURLWithPath: file(name)))
    }

    /// Writes model.safetensors.index.json mapping each tensor to its shard (in the order given).
    func writeIndex(_ weightMap: [(tensor: String, shard: String)]) throws {
        let json = JSONValue.object([
            JSONMember("metadata", .object([JSONMember("total_size", .int(8 * weightMap.count))])),
            JSONMember("weight_map", .object(weightMap.map { JSONMember($0.tensor, .string($0.shard)) })),
        ])
        try writeText(Checkpoint.indexFileName, json.serialized(indent: 2))
    }

    func writeText(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: file(name)))
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Opens `path` and returns the error (nil, recorded as a failure, when it opens).
private func openError(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> MergeKitError? {
    do throws(MergeKitError) {
        let checkpoint = try Checkpoint(path: path)
        Issue.record("opened \(path) with \(checkpoint.entries.count) tensors", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

/// Asserts that opening `path` fails with `code`, naming `file` (and `tensor`, when given).
private func expectOpenFails(_ path: String, _ code: MergeKitError.Code, file: String, tensor: String? = nil,
                             mentioning extra: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let error = openError(path, sourceLocation: sourceLocation) else { return }
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    #expect(error.file == file, "\(error)", sourceLocation: sourceLocation)
    #expect(error.description.contains(file), "\(error)", sourceLocation: sourceLocation)
    if let tensor {
        #expect(error.tensor == tensor, "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains("'\(tensor)'"), "\(error)", sourceLocation: sourceLocation)
    }
    if let extra {
        #expect(error.description.contains(extra), "\(error)", sourceLocation: sourceLocation)
    }
}

private let shard1 = "model-00001-of-00002.safetensors"
private let shard2 = "model-00002-of-00002.safetensors"

@Suite("Checkpoint: rejected sharded directories and paths")
struct CheckpointErrorTests {
    @Test("An index naming a shard that is not there")
    func shardMissing() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a"])
        try dir.writeIndex([("a", shard1), ("b", shard2)])
        expectOpenFails(dir.path, .shardMissing, file: dir.file(Checkpoint.indexFileName), tensor: "b", mentioning: shard2)
    }

    @Test("A missing shard is named with the first of its tensors in the index's order, the same on every run")
    func shardMissingNamesFirstTensor() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a"])
        // 40 tensors in the missing shard; the index lists "z.first" first (not first by name).
        let missing = ["z.first"] + (0..<39).map { "t\($0)" }
        try dir.writeIndex([("a", shard1)] + missing.map { ($0, shard2) })
        expectOpenFails(dir.path, .shardMissing, file: dir.file(Checkpoint.indexFileName), tensor: "z.first", mentioning: shard2)
    }

    @Test("A tensor stored in two shards")
    func tensorInTwoShards() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a", "b"])
        try dir.writeShard(shard2, tensors: ["c", "a"])
        try dir.writeIndex([("a", shard1), ("b", shard1), ("c", shard2)])
        expectOpenFails(dir.path, .tensorInTwoShards, file: dir.file(shard2), tensor: "a", mentioning: shard1)
    }

    @Test("An index naming a tensor its shard lacks")
    func tensorMissingFromShard() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a"])
        try dir.writeShard(shard2, tensors: ["c"])
        try dir.writeIndex([("a", shard1), ("b", shard1), ("c", shard2)])
        expectOpenFails(dir.path, .tensorMissingFromShard, file: dir.file(shard1), tensor: "b")
    }

    @Test("A shard tensor missing from the index")
    func tensorNotInIndex() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a"])
        try dir.writeShard(shard2, tensors: ["c", "extra"])
        try dir.writeIndex([("a", shard1), ("c", shard2)])
        expectOpenFails(dir.path, .tensorNotInIndex, file: dir.file(shard2), tensor: "extra")
    }

    @Test("A shard name that leaves the checkpoint directory")
    func shardPathUnsafe() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a", "b"])
        try dir.writeIndex([("a", shard1), ("b", "../" + shard1)])
        expectOpenFails(dir.path, .shardPathUnsafe, file: dir.file(Checkpoint.indexFileName), tensor: "b", mentioning: "../")
    }

    @Test("An index that is not JSON")
    func indexNotJSON() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a"])
        try dir.writeText(Checkpoint.indexFileName, #"{"weight_map": {"a": "\#(shard1)""#)
        expectOpenFails(dir.path, .indexInvalid, file: dir.file(Checkpoint.indexFileName))
    }

    @Test("An index without a weight_map object")
    func indexWithoutWeightMap() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a"])
        try dir.writeText(Checkpoint.indexFileName, #"{"metadata": {}, "weight_map": ["a"]}"#)
        expectOpenFails(dir.path, .indexInvalid, file: dir.file(Checkpoint.indexFileName), mentioning: "weight_map")
    }

    @Test("A directory with no weights")
    func notACheckpoint() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeText("config.json", "{}")
        try dir.writeText("training_args.bin", "a trainer's pickle, not the model")
        expectOpenFails(dir.path, .notACheckpoint, file: dir.path, mentioning: "pytorch_model.bin")
    }

    @Test("A pytorch_model.bin that is neither a PyTorch archive nor safetensors is named")
    func brokenPyTorchFile() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeText("config.json", "{}")
        try dir.writeText("pytorch_model.bin", "not safetensors")
        expectOpenFails(dir.path, .notACheckpoint, file: dir.file("pytorch_model.bin"), mentioning: "torch.save")
    }

    @Test("A path that does not exist")
    func fileNotFound() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        let missing = dir.file("no-such-model")
        expectOpenFails(missing, .fileNotFound, file: missing)
        expectOpenFails(missing + ".safetensors", .fileNotFound, file: missing + ".safetensors")
    }

    @Test("A malformed shard is reported with the shard's path")
    func malformedShard() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard1, tensors: ["a"])
        try dir.writeText(shard2, "short")
        try dir.writeIndex([("a", shard1), ("b", shard2)])
        expectOpenFails(dir.path, .fileTooSmall, file: dir.file(shard2))
    }
}

@Suite("Checkpoint: fixtures and valid sharded directories")
struct CheckpointOpenTests {
    @Test("A sharded fixture opens with 22 unique tensors across 3 shards")
    func shardedFixture() throws {
        let path = fixture("bf16/base")
        let checkpoint = try Checkpoint(path: path)
        #expect(checkpoint.layout == .sharded(index: Checkpoint.indexFileName))
        #expect(checkpoint.files.count == 3)
        #expect(checkpoint.files.map { URL(fileURLWithPath: $0.path).lastPathComponent }
                == (1...3).map { "model-0000\($0)-of-00003.safetensors" })
        #expect(checkpoint.entries.count == 22)
        #expect(Set(checkpoint.tensorNames).count == 22)

        // The tensor set is exactly the index's weight_map, each tensor in the shard the index names.
        let index = try JSONParser.parse(try FileSystem.readFile(path + "/" + Checkpoint.indexFileName))
        let weightMap = try #require(index["weight_map"]?.objectMembers)
        #expect(Set(weightMap.map(\.key)) == Set(checkpoint.tensorNames))
        for member in weightMap {
            let entry = try #require(checkpoint.entry(named: member.key))
            #expect(URL(fileURLWithPath: entry.file.path).lastPathComponent == member.value.stringValue)
            #expect(entry.info.name == member.key)
        }
    }

    @Test("A directory and its model.safetensors give the same tensors")
    func directoryAndFileAgree() throws {
        let directory = try Checkpoint(path: fixture("f32/ft_a"))
        let file = try Checkpoint(path: fixture("f32/ft_a/model.safetensors"))
        #expect(directory.layout == .directory(weights: Checkpoint.singleFileName))
        #expect(file.layout == .file)
        #expect(!directory.tensorNames.isEmpty)
        #expect(directory.tensorNames == file.tensorNames)
        #expect(directory.entries.map(\.info) == file.entries.map(\.info))
        #expect(directory.fileIdentities == file.fileIdentities)
        #expect(directory.metadata == file.metadata)
    }

    @Test("Companion files of a sharded fixture are its side files, not its weights")
    func companionFiles() throws {
        let checkpoint = try Checkpoint(path: fixture("bf16/base"))
        #expect(try checkpoint.companionFiles() == ["config.json", "generation_config.json", "tokenizer_config.json"])
        let single = try Checkpoint(path: fixture("f32/ft_a/model.safetensors"))
        #expect(try single.companionFiles() == [])
    }

    @Test("A hand-built sharded directory opens in shard order")
    func handBuiltShards() throws {
        let dir = try TemporaryCheckpoint()
        defer { dir.remove() }
        try dir.writeShard(shard2, tensors: ["z", "c"])
        try dir.writeShard(shard1, tensors: ["b", "a"])
        try dir.writeIndex([("z", shard2), ("a", shard1), ("c", shard2), ("b", shard1)])
        try dir.writeText("config.json", "{}")
        let checkpoint = try Checkpoint(path: dir.path)
        #expect(checkpoint.files.map(\.path) == [dir.file(shard1), dir.file(shard2)])
        #expect(checkpoint.tensorNames == ["b", "a", "z", "c"])
        #expect(checkpoint.parameterCount == 8)
        #expect(checkpoint.dataBytes == 32)
        #expect(try checkpoint.companionFiles() == ["config.json"])
    }
}
