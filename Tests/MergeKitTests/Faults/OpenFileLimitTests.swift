import Foundation
import Testing
@testable import MergeKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Open files stay bounded (`DescriptorCache`): many-shard inputs and many-point sweeps run under
/// a low `ulimit -n`, and hitting the limit anyway names it.
@Suite("Open-file limit")
struct OpenFileLimitTests {
    /// Writes a sharded checkpoint of `shards` shards, each holding one F32 tensor of 3 values
    /// (`value(shard, k)`), with its index and a config.json.
    static func writeSharded(_ dir: String, shards: Int, value: (Int, Int) -> Double) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var weightMap: [JSONMember] = []
        for s in 0..<shards {
            let name = String(format: "model-%05d-of-%05d.safetensors", s + 1, shards)
            let tensor = "layers.\(s).weight"
            TestSupport.writeCheckpoint(dir + "/" + name, [(TensorSpec(name: tensor, dtype: .F32, shape: [3]), (0..<3).map { value(s, $0) })])
            weightMap.append(JSONMember(tensor, .string(name)))
        }
        let index = JSONValue.object([JSONMember("metadata", .object([JSONMember("total_size", .int(12 * shards))])),
                                      JSONMember("weight_map", .object(weightMap))])
        try Data(index.serialized(indent: 2).utf8).write(to: URL(fileURLWithPath: dir + "/" + Checkpoint.indexFileName))
        try Data("{\"model_type\": \"test\"}".utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
    }

    /// base + two fine-tuned models of `shards` shards each under `root`.
    static func writeSet(_ root: String, shards: Int) throws {
        try writeSharded(root + "/base", shards: shards) { s, k in Double(s) + Double(k) / 4 }
        try writeSharded(root + "/ft_a", shards: shards) { s, k in Double(s) + Double(k) / 4 + 0.5 }
        try writeSharded(root + "/ft_b", shards: shards) { s, k in Double(s) + Double(k) / 4 - Double(k) / 8 }
    }

    @Test("A merge of inputs with 3 × 150 shards runs under ulimit -n 64 and equals the unlimited merge")
    func manyShards() throws {
        let root = TestSupport.temporaryDirectory("nofile")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.writeSet(root, shards: 150)
        let inputs = ["--base", root + "/base", "--model", root + "/ft_a", "--model", root + "/ft_b"]
        for method in [["task-arithmetic"], ["ties", "--density", "0.5"], ["ties", "--trim-scope", "tensor", "--density", "0.5"]] {
            let name = method.joined(separator: "-")
            let free = try CLI.runWatched(method + inputs + ["-o", root + "/free-\(name)", "--max-shard-size", "12B"])
            #expect(free.status == 0, "\(free.stderr)")
            let limited = try CLI.runWatched(method + inputs + ["-o", root + "/limited-\(name)", "--max-shard-size", "12B"], openFileLimit: 64)
            #expect(!limited.timedOut)
            #expect(limited.status == 0, "\(name): \(limited.stderr)")
            guard free.status == 0 && limited.status == 0 else { continue }
            #expect(try Checkpoint(path: root + "/limited-\(name)").files.count > 64, "the output has more shards than the limit")
            for file in TestSupport.listing(root + "/free-\(name)") where file != "README.md" {
                #expect(FileManager.default.contentsEqual(atPath: root + "/free-\(name)/" + file, andPath: root + "/limited-\(name)/" + file), "\(name): \(file)")
            }
        }
        let verify = try CLI.runWatched(["verify", root + "/base"], openFileLimit: 32)
        #expect(verify.status == 0, "\(verify.stderr)")
        let inspect = try CLI.runWatched(["inspect", root + "/base", "--check-finite"], openFileLimit: 32)
        #expect(inspect.status == 0, "\(inspect.stderr)")
    }

    @Test("A 120-point sweep runs under ulimit -n 64; its points equal separate merges")
    func manyPoints() throws {
        let root = TestSupport.temporaryDirectory("nofile")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.writeSet(root, shards: 2)
        let inputs = ["--base", root + "/base", "--model", root + "/ft_a", "--model", root + "/ft_b"]
        let sweep = try CLI.runWatched(["sweep", "--method", "task-arithmetic"] + inputs + ["--scale", "0.01:1.2:0.01", "-o", root + "/sweep", "--quiet"],
                                       openFileLimit: 64)
        #expect(!sweep.timedOut)
        #expect(sweep.status == 0, "\(sweep.stderr)")
        let points = TestSupport.listing(root + "/sweep").filter { $0.hasPrefix("point-") }
        #expect(points.count == 120)
        for (index, scale) in [(0, "0.01"), (57, "0.58"), (119, "1.2")] {
            let single = try CLI.runWatched(["task-arithmetic"] + inputs + ["--scale", scale, "-o", root + "/single-\(index)"])
            #expect(single.status == 0, "\(single.stderr)")
            let point = root + "/sweep/" + String(format: "point-%03d", index)
            #expect(FileManager.default.contentsEqual(atPath: point + "/model.safetensors", andPath: root + "/single-\(index)/model.safetensors"),
                    "point \(index) (λ = \(scale))")
        }
    }

    @Test("Reaching the open-file limit anyway names the limit and the fix")
    func limitNamed() throws {
        let root = TestSupport.temporaryDirectory("nofile")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.writeSet(root, shards: 40)
        // Below what even a bounded merge needs: the error says which limit and how to raise it.
        let run = try CLI.runWatched(["task-arithmetic", "--base", root + "/base", "--model", root + "/ft_a", "--model", root + "/ft_b",
                                      "-o", root + "/out"], openFileLimit: 12)
        #expect(!run.timedOut && run.status == 1)
        #expect(run.stderr.contains("limit of 12 open files (ulimit -n)") && run.stderr.contains("ulimit -n 4096"), "\(run.stderr)")
        #expect(!FileSystem.exists(root + "/out"))

        let error = FileSystem.openError(path: "/x/model.safetensors", errno: EMFILE)
        #expect(error.file == "/x/model.safetensors")
        #expect(error.description.contains("ulimit -n") && error.description.contains("open files"))
        if let limit = FileSystem.openFileLimit {
            #expect(error.description.contains(grouped(limit)))
        }
        let write = FileSystem.writeError(file: "/x/out", errno: EMFILE)
        #expect(write.code == .writeFailed && write.description.contains("ulimit -n") && !write.description.contains("writable"))
        #expect(FileSystem.writeError(file: "/x/out", errno: ENFILE).description.contains("system"))
    }

    @Test("Input descriptors are cached, bounded and reopened; a file replaced meanwhile is refused")
    func inputCache() throws {
        let root = TestSupport.temporaryDirectory("nofile")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/a.safetensors"
        TestSupport.writeCheckpoint(path, [(TensorSpec(name: "w", dtype: .F32, shape: [4]), [1, 2, 3, 4])])
        let cache = DescriptorCache.inputs
        // More files than the cache holds: the first ones' descriptors are closed, not leaked.
        let files = try (0..<(cache.capacity + 20)).map { _ in try SafeTensorsFile(path: path) }
        #expect(cache.openCount <= cache.capacity + 8, "other tests may hold a few in use")
        // The first file reads through a reopened descriptor.
        let first = files[0]
        var value: Float = 0
        let info = first.tensor(named: "w")!
        try first.read(into: &value, count: 4, at: first.fileOffset(of: info) + 8)
        #expect(value == 3)
        // Replace the file under its name: a reopen finds another inode and refuses it.
        let evicted = files[1]
        _ = try (0..<(cache.capacity + 4)).map { _ in try SafeTensorsFile(path: path) }
        let replacement = root + "/b.safetensors"
        TestSupport.writeCheckpoint(replacement, [(TensorSpec(name: "w", dtype: .F32, shape: [4]), [5, 6, 7, 8])])
        #expect(rename(replacement, path) == 0)
        do throws(MergeKitError) {
            try evicted.read(into: &value, count: 4, at: evicted.fileOffset(of: info))
            Issue.record("read a replaced file")
        } catch {
            #expect(error.file == path && error.detail.contains("replaced"))
        }
    }

    @Test("DescriptorCache closes the least recently used descriptor not in use, and only when unused")
    func lru() throws {
        final class Owner {}
        let cache = DescriptorCache(capacity: 2)
        let owners = (0..<3).map { _ in Owner() }
        var opened: [Int] = []
        func use(_ i: Int) throws(MergeKitError) {
            try cache.withDescriptor(for: owners[i], open: { () throws(MergeKitError) -> Int32 in
                opened.append(i)
                return open("/dev/null", O_RDONLY)
            }) { fd throws(MergeKitError) in #expect(fd >= 0) }
        }
        try use(0); try use(1); try use(0)
        #expect(opened == [0, 1] && cache.openCount == 2)
        try use(2)  // evicts 1, the least recently used
        #expect(cache.openCount == 2)
        try use(0)
        #expect(opened == [0, 1, 2])
        try use(1)
        #expect(opened == [0, 1, 2, 1])
        // In use: not closed by eviction, closed when its user is done after remove().
        try cache.withDescriptor(for: owners[0], open: { () throws(MergeKitError) -> Int32 in open("/dev/null", O_RDONLY) }) { fd throws(MergeKitError) in
            try use(1); try use(2)
            cache.remove(owners[0])
            #expect(fcntl(fd, F_GETFD) >= 0, "still open while in use")
        }
        #expect(cache.openCount == 1, "1 was evicted for 2; 0 closed when its user was done")
        for owner in owners { cache.remove(owner) }
        #expect(cache.openCount == 0)
    }
}
