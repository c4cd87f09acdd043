import Foundation
import Testing
@testable import MergeKit

/// The download phase against a fake hub on 127.0.0.1 (`FakeHub`): what is fetched and how it is
/// laid out, and every fault a download must survive or report.
@Suite("Hub downloads")
struct HubDownloadTests {
    let commit = HubFixtures.commit("base")

    /// Fast retries and short timeouts: every fault is bounded by counts, not by time.
    static func settings(_ hub: FakeHub, cache: String, token: String? = nil) -> HubSettings {
        var settings = HubSettings(cache: cache, endpoint: hub.endpoint, token: token)
        settings.retries = 3
        settings.retryDelay = 0.01
        settings.connectTimeout = 5
        settings.readTimeout = 5
        settings.metadataTimeout = 5
        return settings
    }

    /// A fake hub with `files` as `org/base` (main → `commit`), and a fresh cache.
    func setUp(_ files: [String: [UInt8]] = HubFixtures.shardedBase(), token: String? = nil) throws -> (FakeHub, String) {
        let hub = try FakeHub()
        hub.add("org/base", commit: commit, files: files, refs: ["main": commit, "v1": commit], token: token)
        return (hub, TestSupport.temporaryDirectory("hub-download"))
    }

    static func download(_ settings: HubSettings, _ text: String = "org/base", kind: HubFiles.Kind = .model) async throws(MergeKitError) -> String {
        guard case .reference(let reference) = HubReference.read(text) else { preconditionFailure() }
        return try await HubDownloader(settings: settings).download([(reference, kind)])[reference]!
    }

    /// Every file under `directory`, recursively, relative.
    static func tree(_ directory: String) -> [String] {
        (FileManager.default.enumerator(atPath: directory)?.allObjects as? [String] ?? []).sorted()
    }

    @Test("A sharded model: the weights and companions only, in huggingface_hub's layout, found by the cache lookup")
    func layout() async throws {
        let (hub, cache) = try setUp()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        let files = HubFixtures.shardedBase()
        let snapshot = try await Self.download(Self.settings(hub, cache: cache))
        let repository = cache + "/models--org--base"
        #expect(snapshot == repository + "/snapshots/" + commit)
        #expect(String(decoding: FileManager.default.contents(atPath: repository + "/refs/main")!, as: UTF8.self) == commit)
        let needed = ["config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                      "model.safetensors.index.json", "tokenizer_config.json"]
        #expect(TestSupport.listing(snapshot) == needed)
        for name in needed {
            let etag = FakeHub.isLFS(name) ? FakeHub.sha256(files[name]!) : FakeHub.gitSHA1(files[name]!)
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: snapshot + "/" + name) == "../../blobs/" + etag, "\(name)")
            #expect(FileManager.default.contents(atPath: snapshot + "/" + name) == Data(files[name]!), "\(name)")
        }
        #expect(TestSupport.listing(repository + "/blobs").count == needed.count, "no .incomplete left, no extra blob")
        #expect(TestSupport.listing(cache + "/.locks/models--org--base").count == needed.count)
        // Never asked for: the README, the PyTorch weights.
        #expect(!hub.requests.contains { $0.uri.contains("README.md") || $0.uri.contains("pytorch_model.bin") })
        guard case .found(let found, _) = HubCache(root: cache).lookup(HubReference(repository: "org/base"), offline: true) else {
            Issue.record("the lookup does not find the download"); return
        }
        #expect(found == snapshot)
        // A second download asks only for the revision: every file is there.
        let before = hub.requests.count
        _ = try await Self.download(Self.settings(hub, cache: cache))
        #expect(hub.requests.count == before + 1)
    }

    @Test("A tag records refs/<tag>; a commit records no ref; a blob already cached is linked, not fetched")
    func revisions() async throws {
        let (hub, cache) = try setUp()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        _ = try await Self.download(Self.settings(hub, cache: cache), "org/base@v1")
        #expect(TestSupport.listing(cache + "/models--org--base/refs") == ["v1"])
        // The same commit by hash: the snapshot is already complete.
        _ = try await Self.download(Self.settings(hub, cache: cache), "org/base@\(commit)")
        #expect(TestSupport.listing(cache + "/models--org--base/refs") == ["v1"])
        // Another repository holding the same files (its own blobs folder) and a new commit of this
        // one: the new commit's files are all cached blobs, linked without a GET.
        let next = HubFixtures.commit("next")
        hub.add("org/base", commit: next, files: HubFixtures.shardedBase(), refs: ["main": next])
        let gets = hub.requests.filter { $0.method == "GET" && !$0.uri.hasPrefix("/api/") }.count
        let snapshot = try await Self.download(Self.settings(hub, cache: cache))
        #expect(snapshot.hasSuffix("/snapshots/" + next))
        #expect(hub.requests.filter { $0.method == "GET" && !$0.uri.hasPrefix("/api/") }.count == gets)
        #expect(TestSupport.listing(snapshot).count == 6)
        #expect(TestSupport.listing(cache + "/models--org--base/snapshots").count == 2)
    }

    @Test("A dropped connection mid-file resumes with a Range request and the file is whole")
    func resumeAfterDrop() async throws {
        let (hub, cache) = try setUp()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        hub.setFault("model-00002-of-00002.safetensors", FakeHub.Fault(dropAfter: 100, drops: 2))
        let snapshot = try await Self.download(Self.settings(hub, cache: cache))
        let shard = HubFixtures.shardedBase()["model-00002-of-00002.safetensors"]!
        #expect(FileManager.default.contents(atPath: snapshot + "/model-00002-of-00002.safetensors") == Data(shard))
        let sha = FakeHub.sha256(shard)
        let ranges = hub.requests.filter { $0.uri == "/cdn/" + sha && $0.method == "GET" }.map(\.range)
        #expect(ranges == [nil, "bytes=100-", "bytes=200-"])
    }

    @Test("A partial file left by a killed run is resumed; a server ignoring the range restarts it cleanly")
    func resumeAcrossRuns() async throws {
        for ignoreRange in [false, true] {
            let (hub, cache) = try setUp()
            defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
            let shard = HubFixtures.shardedBase()["model-00001-of-00002.safetensors"]!
            let sha = FakeHub.sha256(shard)
            try FileManager.default.createDirectory(atPath: cache + "/models--org--base/blobs", withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: cache + "/models--org--base/blobs/\(sha).incomplete", contents: Data(shard.prefix(64)))
            hub.setFault("model-00001-of-00002.safetensors", FakeHub.Fault(ignoreRange: ignoreRange))
            let snapshot = try await Self.download(Self.settings(hub, cache: cache))
            #expect(FileManager.default.contents(atPath: snapshot + "/model-00001-of-00002.safetensors") == Data(shard))
            #expect(hub.requests.filter { $0.uri == "/cdn/" + sha }.map(\.range) == ["bytes=64-"])
            #expect(!TestSupport.listing(cache + "/models--org--base/blobs").contains { $0.hasSuffix(".incomplete") })
        }
    }

    @Test("Server errors are retried a bounded number of times; past the bound the file is named and nothing looks complete")
    func serverErrors() async throws {
        let (hub, cache) = try setUp()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        hub.setFault("model-00001-of-00002.safetensors", FakeHub.Fault(serverErrors: 2))
        _ = try await Self.download(Self.settings(hub, cache: cache))

        let (failing, other) = try setUp()
        defer { failing.stop(); try? FileManager.default.removeItem(atPath: other) }
        failing.setFault("model-00001-of-00002.safetensors", FakeHub.Fault(serverErrors: 100))
        do throws(MergeKitError) {
            _ = try await Self.download(Self.settings(failing, cache: other))
            Issue.record("downloaded")
        } catch {
            #expect(error.code == .hubRequestFailed)
            #expect(error.description.contains("org/base: at revision main, file model-00001-of-00002.safetensors: the Hub answered HTTP 500"))
        }
        let sha = FakeHub.sha256(HubFixtures.shardedBase()["model-00001-of-00002.safetensors"]!)
        #expect(failing.requests.filter { $0.uri == "/cdn/" + sha }.count == 4, "one try and 3 retries")
        #expect(!FileManager.default.fileExists(atPath: other + "/models--org--base/blobs/" + sha))
        if case .found = HubCache(root: other).lookup(HubReference(repository: "org/base"), offline: true) { Issue.record("looks complete") }
    }

    @Test("A wrong sha256 removes the partial file and names the file; no blob, no snapshot entry")
    func wrongChecksum() async throws {
        let (hub, cache) = try setUp()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        hub.setFault("model-00002-of-00002.safetensors", FakeHub.Fault(corrupt: true))
        do throws(MergeKitError) {
            _ = try await Self.download(Self.settings(hub, cache: cache))
            Issue.record("downloaded")
        } catch {
            #expect(error.code == .hubFileCorrupt)
            #expect(error.description.contains("file model-00002-of-00002.safetensors: the downloaded bytes have SHA-256"))
        }
        let sha = FakeHub.sha256(HubFixtures.shardedBase()["model-00002-of-00002.safetensors"]!)
        let blobs = TestSupport.listing(cache + "/models--org--base/blobs")
        #expect(!blobs.contains(sha) && !blobs.contains(sha + ".incomplete"))
        #expect(!FileManager.default.fileExists(atPath: cache + "/models--org--base/snapshots/\(commit)/model-00002-of-00002.safetensors"))
        if case .found = HubCache(root: cache).lookup(HubReference(repository: "org/base"), offline: true) { Issue.record("looks complete") }
    }

    @Test("401, 404 and a missing revision are reported with the repository, the revision and the fix")
    func refusals() async throws {
        let (hub, cache) = try setUp(token: "hf_secret")
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        do throws(MergeKitError) {
            _ = try await Self.download(Self.settings(hub, cache: cache))
            Issue.record("downloaded without the token")
        } catch {
            #expect(error.code == .hubRequestFailed)
            #expect(error.description.contains("org/base: at revision main: the repository does not exist, or is private or gated and the request was refused (HTTP 401)"))
            #expect(error.fix?.contains("set HF_TOKEN") == true)
        }
        do throws(MergeKitError) {
            _ = try await Self.download(Self.settings(hub, cache: cache, token: "hf_secret"), "org/base@v9")
            Issue.record("downloaded a missing revision")
        } catch {
            #expect(error.description.contains("the repository has no revision v9"))
        }
        do throws(MergeKitError) {
            _ = try await HubDownloader(settings: Self.settings(hub, cache: cache)).download([
                (HubReference(repository: "org/none"), .model), (HubReference(repository: "org/other"), .model)])
            Issue.record("downloaded missing repositories")
        } catch {
            #expect(error.problems.count == 2, "every repository's problem together")
        }
        // With the token: the hub gets it, the files come.
        _ = try await Self.download(Self.settings(hub, cache: cache, token: "hf_secret"))
        #expect(hub.requests.last?.authorization == "Bearer hf_secret")
        // No weights MergeKit reads at all (neither safetensors nor transformers' PyTorch names).
        hub.add("org/pt", commit: commit, files: ["config.json": Array("{}".utf8), "model.pt": [1, 2, 3], "flax_model.msgpack": [4]])
        do throws(MergeKitError) {
            _ = try await Self.download(Self.settings(hub, cache: cache), "org/pt")
            Issue.record("downloaded a model without weights")
        } catch {
            #expect(error.code == .notACheckpoint)
            #expect(error.description.contains("has no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json (it has flax_model.msgpack, model.pt)"))
        }
    }

    @Test("LFS files redirected to another origin: the bytes come from there, without the token")
    func redirectElsewhere() async throws {
        let (hub, cache) = try setUp(token: "hf_secret")
        let cdn = try FakeHub()
        defer { hub.stop(); cdn.stop(); try? FileManager.default.removeItem(atPath: cache) }
        hub.redirectLFS(to: cdn)
        cdn.serveBlobs(of: hub)
        cdn.setFault("model-00001-of-00002.safetensors", FakeHub.Fault(dropAfter: 50, drops: 1))
        let snapshot = try await Self.download(Self.settings(hub, cache: cache, token: "hf_secret"))
        #expect(try Checkpoint(path: snapshot).tensorNames.count == (try Checkpoint(path: TestSupport.fixture("f32/base"))).tensorNames.count)
        #expect(cdn.requests.count == 3, "two shards, one resumed")
        #expect(cdn.requests.allSatisfy { $0.authorization == nil })
        #expect(hub.requests.allSatisfy { $0.authorization == "Bearer hf_secret" })
    }

    @Test("A stalled answer times out and is retried; an unreachable endpoint fails within the bound")
    func timeouts() async throws {
        let (hub, cache) = try setUp(["config.json": Array("{}".utf8), "model.safetensors": HubFixtures.files(of: TestSupport.fixture("f32/base"))["model.safetensors"]!])
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        hub.setFault("model.safetensors", FakeHub.Fault(stalls: 1))
        var settings = Self.settings(hub, cache: cache)
        settings.readTimeout = 0.5
        let snapshot = try await Self.download(settings)
        #expect(FileManager.default.fileExists(atPath: snapshot + "/model.safetensors"))

        let closed = try FakeHub()
        let endpoint = closed.endpoint
        closed.stop()
        var unreachable = HubSettings(cache: cache, endpoint: endpoint)
        unreachable.retries = 1
        unreachable.retryDelay = 0.01
        do throws(MergeKitError) {
            _ = try await Self.download(unreachable, "org/elsewhere")
            Issue.record("downloaded from a closed port")
        } catch {
            #expect(error.code == .hubRequestFailed)
            #expect(error.description.contains("org/elsewhere: at revision main: \(endpoint) could not be reached"))
        }
    }

    @Test("A LoRA adapter: its config and weights")
    func adapter() async throws {
        let (hub, cache) = try setUp()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        hub.add("org/lora", commit: commit, files: ["adapter_config.json": Array("{\"r\": 2}".utf8), "adapter_model.safetensors": [1, 2],
                                                    "README.md": []])
        let snapshot = try await Self.download(Self.settings(hub, cache: cache), "org/lora", kind: .adapter)
        #expect(TestSupport.listing(snapshot) == ["adapter_config.json", "adapter_model.safetensors"])
    }

    @Test("A repository with only PyTorch weights: the .bin (single, or index and shards) and companions, merged to the bytes of its safetensors twin")
    func pytorchOnly() async throws {
        for dtype in ["f32", "bf16"] {
            let (hub, cache) = try setUp()
            let root = TestSupport.temporaryDirectory("hub-bin")
            defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache); try? FileManager.default.removeItem(atPath: root) }
            var snapshots: [String: String] = [:]
            for name in ["base", "ft_a", "ft_b"] {
                var files = HubFixtures.files(of: TestSupport.fixture("pytorch/\(dtype)_bin/\(name)"))
                files["README.md"] = Array("# a model card\n".utf8)
                files["tf_model.h5"] = [1, 2, 3]
                hub.add("org/\(name)", commit: commit, files: files)
                snapshots[name] = try await Self.download(Self.settings(hub, cache: cache), "org/\(name)")
                let needed = files.keys.filter { $0 != "README.md" && $0 != "tf_model.h5" }.sorted()
                #expect(TestSupport.listing(snapshots[name]!) == needed, "\(dtype)/\(name)")
                for file in needed {
                    #expect(FileManager.default.contents(atPath: snapshots[name]! + "/" + file) == Data(files[file]!), "\(dtype)/\(name)/\(file)")
                }
                guard case .found(let found, _) = HubCache(root: cache).lookup(HubReference(repository: "org/\(name)"), offline: true) else {
                    Issue.record("the lookup does not find the .bin download \(dtype)/\(name)"); continue
                }
                #expect(found == snapshots[name])
            }
            #expect(!hub.requests.contains { $0.uri.contains("README.md") || $0.uri.contains("tf_model.h5") })
            if dtype == "bf16" {
                #expect(TestSupport.listing(snapshots["base"]!).contains("pytorch_model.bin.index.json"), "the sharded case is covered")
            }
            func merge(_ base: String, _ a: String, _ b: String, _ output: String) throws {
                let recipe = try Recipe.parse("""
                    merge_method: task_arithmetic
                    base_model: \(base)
                    models:
                      - model: \(a)
                        parameters: {weight: 0.5}
                      - model: \(b)
                        parameters: {weight: 0.5}
                    """, path: root + "/recipe.yml")
                _ = try MergeRun.run(recipe.plan(output: output, hub: HubSettings(cache: cache, offline: true)).plans, threads: 1)
            }
            try merge(snapshots["base"]!, snapshots["ft_a"]!, snapshots["ft_b"]!, root + "/hub.safetensors")
            let twin = TestSupport.fixture(dtype)
            try merge(twin + "/base", twin + "/ft_a", twin + "/ft_b", root + "/twin.safetensors")
            // The same tensors, byte for byte (each file's tensor order is its base's own).
            let merged = PyTorchCheckpointTests.bytes(try Checkpoint(path: root + "/hub.safetensors"))
            let expected = PyTorchCheckpointTests.bytes(try Checkpoint(path: root + "/twin.safetensors"))
            #expect(!merged.isEmpty && merged.keys.sorted() == expected.keys.sorted(), "\(dtype)")
            for (name, tensor) in expected { #expect(merged[name]?.bytes == tensor.bytes, "\(dtype) \(name)") }
        }
    }

    @Test("A repository with both formats: only the safetensors weights are fetched, single or sharded")
    func bothFormats() async throws {
        let (hub, cache) = try setUp()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        let single = HubFixtures.files(of: TestSupport.fixture("f32/base")).merging(
            HubFixtures.files(of: TestSupport.fixture("pytorch/f32_bin/base"))) { first, _ in first }
        let sharded = HubFixtures.shardedBase().merging(
            HubFixtures.files(of: TestSupport.fixture("pytorch/bf16_bin/base"))) { first, _ in first }
        #expect(sharded.keys.contains("pytorch_model.bin.index.json") && single.keys.contains("pytorch_model.bin"))
        hub.add("org/single", commit: commit, files: single)
        hub.add("org/sharded", commit: commit, files: sharded)
        let one = try await Self.download(Self.settings(hub, cache: cache), "org/single")
        #expect(TestSupport.listing(one) == ["config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"])
        let many = try await Self.download(Self.settings(hub, cache: cache), "org/sharded")
        #expect(TestSupport.listing(many) == ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                                             "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer_config.json"])
        #expect(!hub.requests.contains { $0.uri.contains("pytorch_model") })
        let pytorchBlobs = Set(sharded.filter { $0.key.hasPrefix("pytorch_model") }.values.map { FakeHub.sha256($0) })
        #expect(!hub.requests.contains { $0.uri.hasPrefix("/cdn/") && pytorchBlobs.contains(String($0.uri.dropFirst(5))) })
    }

    @Test("A sharded .bin download that fails on a shard leaves a snapshot that does not look complete")
    func pytorchInterrupted() async throws {
        let files = HubFixtures.files(of: TestSupport.fixture("pytorch/bf16_bin/base"))
        let (hub, cache) = try setUp(files)
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        hub.setFault("pytorch_model-00002-of-00002.bin", FakeHub.Fault(serverErrors: 100))
        do throws(MergeKitError) {
            _ = try await Self.download(Self.settings(hub, cache: cache))
            Issue.record("downloaded")
        } catch {
            #expect(error.description.contains("file pytorch_model-00002-of-00002.bin: the Hub answered HTTP 500"))
        }
        if case .found = HubCache(root: cache).lookup(HubReference(repository: "org/base"), offline: true) { Issue.record("looks complete") }
        // The next run fetches what is missing and completes the snapshot.
        hub.setFault("pytorch_model-00002-of-00002.bin", FakeHub.Fault())
        let snapshot = try await Self.download(Self.settings(hub, cache: cache))
        #expect(TestSupport.listing(snapshot) == files.keys.sorted())
        #expect(try Checkpoint(path: snapshot).layout == .sharded(index: "pytorch_model.bin.index.json"))
    }

    @Test("A LoRA adapter saved by torch.save: its config and adapter_model.bin; with both, only the safetensors")
    func pytorchAdapter() async throws {
        let (hub, cache) = try setUp()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: cache) }
        let files = HubFixtures.files(of: TestSupport.fixture("pytorch/lora_bin"))
        hub.add("org/lora", commit: commit, files: files)
        let snapshot = try await Self.download(Self.settings(hub, cache: cache), "org/lora", kind: .adapter)
        #expect(TestSupport.listing(snapshot) == ["adapter_config.json", "adapter_model.bin"])
        #expect(try LoRAAdapter(path: snapshot).weights.tensorNames.count > 0)
        guard case .found = HubCache(root: cache).lookup(HubReference(repository: "org/lora"), kind: .adapter, offline: true) else {
            Issue.record("the lookup does not find the adapter"); return
        }
        hub.add("org/both", commit: commit, files: files.merging(["adapter_model.safetensors": [1, 2]]) { first, _ in first })
        let both = try await Self.download(Self.settings(hub, cache: cache), "org/both", kind: .adapter)
        #expect(TestSupport.listing(both) == ["adapter_config.json", "adapter_model.safetensors"])
    }
}
