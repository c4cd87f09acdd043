import Foundation
@testable import MergeKit

/// Hugging Face caches and fake-hub repositories made from the fixture checkpoints.
enum HubFixtures {
    /// A commit hash derived from `seed` (40 hex digits).
    static func commit(_ seed: String) -> String { String(FakeHub.sha256(Array(seed.utf8)).prefix(40)) }

    /// Every file of directory `directory`, by name.
    static func files(of directory: String) -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        for name in TestSupport.listing(directory) {
            files[name] = Array(FileManager.default.contents(atPath: directory + "/" + name)!)
        }
        return files
    }

    /// Lays `files` out in `cache` as huggingface_hub does: each in `blobs/<etag>` (sha256 for LFS
    /// files, git blob sha1 for the others), linked from `snapshots/<commit>/<name>` by a relative
    /// symlink, and `refs/<ref>` holding the commit. Returns the snapshot directory.
    @discardableResult
    static func populate(_ cache: String, repository: String, commit: String, ref: String? = "main", files: [String: [UInt8]]) throws -> String {
        let folder = cache + "/models--" + repository.replacingOccurrences(of: "/", with: "--")
        let snapshot = folder + "/snapshots/" + commit
        try FileManager.default.createDirectory(atPath: folder + "/blobs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        for (name, bytes) in files {
            let etag = FakeHub.isLFS(name) ? FakeHub.sha256(bytes) : FakeHub.gitSHA1(bytes)
            FileManager.default.createFile(atPath: folder + "/blobs/" + etag, contents: Data(bytes))
            try FileManager.default.createSymbolicLink(atPath: snapshot + "/" + name, withDestinationPath: "../../blobs/" + etag)
        }
        if let ref {
            try FileManager.default.createDirectory(atPath: folder + "/refs", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: folder + "/refs/" + ref, contents: Data(commit.utf8))
        }
        return snapshot
    }

    /// A sharded copy of the f32 base: config and tokenizer files, an index and two shards (the
    /// fixture's tensors split in two), a README and a PyTorch file a merge does not need.
    static func shardedBase() -> [String: [UInt8]] {
        let base = files(of: TestSupport.fixture("f32/base"))
        let checkpoint = try! Checkpoint(path: TestSupport.fixture("f32/base"))
        let names = checkpoint.tensorNames
        let half = names.count / 2
        var files = base.filter { $0.key != "model.safetensors" }
        var weightMap: [String] = []
        for (shard, range) in [(1, 0..<half), (2, half..<names.count)] {
            let name = "model-0000\(shard)-of-00002.safetensors"
            let entries = range.map { checkpoint.entry(named: names[$0])! }
            let layout = SafeTensorsLayout(specs: entries.map { TensorSpec(name: $0.name, dtype: $0.info.dtype, shape: $0.info.shape) },
                                           metadata: ["format": "pt"])
            var bytes = layout.prefix
            for entry in entries { bytes += Array(entry.file.bytes(of: entry.info)) }
            files[name] = bytes
            weightMap += entries.map { "\"\($0.name)\": \"\(name)\"" }
        }
        files["model.safetensors.index.json"] = Array("{\"metadata\": {}, \"weight_map\": {\(weightMap.joined(separator: ", "))}}".utf8)
        files["README.md"] = Array("# a model card\n".utf8)
        files["pytorch_model.bin"] = Array(repeating: 7, count: 64)
        return files
    }
}
