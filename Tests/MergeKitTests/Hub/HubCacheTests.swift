import Foundation
import Testing
@testable import MergeKit

@Suite("Hugging Face cache lookup")
struct HubCacheTests {
    let commit = HubFixtures.commit("base")

    @Test("A snapshot laid out as huggingface_hub does is found through refs/main, and by its commit")
    func found() throws {
        let cache = TestSupport.temporaryDirectory("hub-cache")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let snapshot = try HubFixtures.populate(cache, repository: "org/base", commit: commit, files: HubFixtures.shardedBase())
        let hub = HubCache(root: cache)
        guard case .found(let found, let foundCommit) = hub.lookup(HubReference(repository: "org/base"), offline: true) else {
            Issue.record("not found"); return
        }
        #expect(found == snapshot && foundCommit == commit)
        guard case .found(let pinned, _) = hub.lookup(HubReference(repository: "org/base", revision: commit), offline: true) else {
            Issue.record("not found by commit"); return
        }
        #expect(pinned == snapshot)
        // The snapshot opens as the sharded checkpoint it is, with its companions.
        let checkpoint = try Checkpoint(path: snapshot)
        #expect(checkpoint.layout == .sharded(index: "model.safetensors.index.json"))
        #expect(try checkpoint.companionFiles() == ["config.json", "generation_config.json", "tokenizer_config.json"])
    }

    @Test("What is missing is named: the repository, the ref, the snapshot, a shard, a blob behind a link")
    func missing() throws {
        let cache = TestSupport.temporaryDirectory("hub-cache")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let hub = HubCache(root: cache)
        func reason(_ reference: HubReference, offline: Bool = true) -> MergeKitError? {
            if case .missing(let error) = hub.lookup(reference, offline: offline) { return error }
            return nil
        }
        let base = HubReference(repository: "org/base")
        #expect(reason(base)?.description.contains("there is no models--org--base") == true)
        #expect(reason(base)?.code == .notInHubCache)
        let snapshot = try HubFixtures.populate(cache, repository: "org/base", commit: commit, ref: "v1", files: HubFixtures.shardedBase())
        let error = try #require(reason(base))
        #expect(error.file == "org/base")
        #expect(error.description.contains("org/base at revision main is not in the cache \(cache) (offline): there is no refs/main in models--org--base"))
        #expect(error.description.contains("Allow downloads (unset HF_HUB_OFFLINE), or download it beforehand (`hf download org/base --revision main`)"))
        #expect(reason(base, offline: false)?.fix == "Download it into the cache first (`hf download org/base --revision main`)")
        let other = String(repeating: "0", count: 40)
        #expect(reason(HubReference(repository: "org/base", revision: other))?.description.contains("there is no snapshots/\(other)") == true)
        // A ref to a snapshot that is not there.
        FileManager.default.createFile(atPath: cache + "/models--org--base/refs/main", contents: Data(other.utf8))
        #expect(reason(base)?.description.contains("refs/main names commit \(other), but models--org--base has no snapshots/\(other)") == true)
        // A shard the index names whose link is missing, then one whose blob is gone.
        let v1 = HubReference(repository: "org/base", revision: "v1")
        if case .found = hub.lookup(v1, offline: true) {} else { Issue.record("v1 not found") }
        try FileManager.default.removeItem(atPath: snapshot + "/model-00002-of-00002.safetensors")
        #expect(reason(v1)?.description.contains("its snapshot \(commit) has no model-00002-of-00002.safetensors") == true)
        let target = try FileManager.default.destinationOfSymbolicLink(atPath: snapshot + "/model-00001-of-00002.safetensors")
        try FileManager.default.removeItem(atPath: snapshot + "/" + target)
        #expect(reason(v1)?.description.contains("has no model-00001-of-00002.safetensors") == true)
        // An adapter needs its config and its weights.
        let adapter = try HubFixtures.populate(cache, repository: "org/adapter", commit: commit, files: ["adapter_config.json": Array("{}".utf8)])
        #expect(reason(HubReference(repository: "org/adapter"))?.description.contains("has no model.safetensors") == true)
        if case .missing(let e) = hub.lookup(HubReference(repository: "org/adapter"), kind: .adapter, offline: true) {
            #expect(e.description.contains("has no adapter_model.safetensors"))
        } else {
            Issue.record("an adapter without weights was found")
        }
        _ = adapter
    }

    @Test("A snapshot of PyTorch weights only is complete with pytorch_model.bin, or the .bin index and every shard it names")
    func pytorchSnapshot() throws {
        let cache = TestSupport.temporaryDirectory("hub-cache")
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let hub = HubCache(root: cache)
        func lookup(_ repository: String, kind: HubFiles.Kind = .model) -> HubCache.Lookup {
            hub.lookup(HubReference(repository: repository), kind: kind, offline: true)
        }
        // A single pytorch_model.bin.
        let single = try HubFixtures.populate(cache, repository: "org/single", commit: commit,
                                              files: HubFixtures.files(of: TestSupport.fixture("pytorch/f32_bin/base")))
        guard case .found(let found, _) = lookup("org/single") else { Issue.record("a pytorch_model.bin snapshot not found"); return }
        #expect(found == single)
        #expect(try Checkpoint(path: found).layout == .directory(weights: "pytorch_model.bin"))
        let target = try FileManager.default.destinationOfSymbolicLink(atPath: single + "/pytorch_model.bin")
        try FileManager.default.removeItem(atPath: single + "/" + target)
        if case .missing(let error) = lookup("org/single") {
            #expect(error.description.contains("its snapshot \(commit) has no model.safetensors"))
        } else {
            Issue.record("a pytorch_model.bin whose blob is gone looks complete")
        }
        // A sharded .bin: complete with every shard, missing the one whose link is gone.
        let sharded = try HubFixtures.populate(cache, repository: "org/sharded", commit: commit,
                                               files: HubFixtures.files(of: TestSupport.fixture("pytorch/bf16_bin/base")))
        guard case .found = lookup("org/sharded") else { Issue.record("a sharded .bin snapshot not found"); return }
        try FileManager.default.removeItem(atPath: sharded + "/pytorch_model-00002-of-00002.bin")
        if case .missing(let error) = lookup("org/sharded") {
            #expect(error.description.contains("its snapshot \(commit) has no pytorch_model-00002-of-00002.bin"))
        } else {
            Issue.record("a sharded .bin snapshot missing a shard looks complete")
        }
        // Companions and an index only: the download stopped before the shards.
        let stopped = HubFixtures.files(of: TestSupport.fixture("pytorch/bf16_bin/base")).filter { !$0.key.hasSuffix(".bin") }
        try HubFixtures.populate(cache, repository: "org/stopped", commit: commit, files: stopped)
        if case .missing(let error) = lookup("org/stopped") {
            #expect(error.description.contains("has no pytorch_model-00001-of-00002.bin"))
        } else {
            Issue.record("a snapshot without its .bin shards looks complete")
        }
        // A safetensors index whose shards are missing is not completed by a pytorch_model.bin
        // beside it: the safetensors weights are the ones read.
        var mixed = HubFixtures.shardedBase().filter { !$0.key.hasPrefix("model-0000") }
        mixed["pytorch_model.bin"] = HubFixtures.files(of: TestSupport.fixture("pytorch/f32_bin/base"))["pytorch_model.bin"]
        try HubFixtures.populate(cache, repository: "org/mixed", commit: commit, files: mixed)
        if case .found = lookup("org/mixed") { Issue.record("a snapshot without its safetensors shards looks complete") }
        // An adapter saved by torch.save.
        try HubFixtures.populate(cache, repository: "org/lora", commit: commit, files: HubFixtures.files(of: TestSupport.fixture("pytorch/lora_bin")))
        guard case .found = lookup("org/lora", kind: .adapter) else { Issue.record("an adapter_model.bin snapshot not found"); return }
    }

    @Test("A local path wins over a Hub id of the same spelling; a missing one is looked up in the cache")
    func localPathWins() throws {
        let root = TestSupport.temporaryDirectory("hub-local")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cache = root + "/cache"
        let snapshot = try HubFixtures.populate(cache, repository: "org/base", commit: commit, files: HubFixtures.files(of: TestSupport.fixture("f32/base")))
        let locator = ModelLocator(settings: HubSettings(cache: cache, offline: true))
        guard case .cached(let reference, let found) = locator.locate("org/base", local: root + "/org/base") else {
            Issue.record("not located in the cache"); return
        }
        #expect(reference == HubReference(repository: "org/base") && found == snapshot)
        try FileManager.default.createDirectory(atPath: root + "/org", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestSupport.fixture("f32/ft_a"), toPath: root + "/org/base")
        guard case .path(let local) = locator.locate("org/base", local: root + "/org/base") else { Issue.record("the local path lost"); return }
        #expect(local == root + "/org/base")
        // Not an id, missing: the path, whose opening says it does not exist.
        guard case .path("./org/missing") = locator.locate("./org/missing") else { Issue.record("a path read as an id"); return }
        guard case .malformed(let malformed) = locator.locate("org/bad name") else { Issue.record("not malformed"); return }
        #expect(malformed.code == .invalidArgument)
        #expect(ModelLocator.malformed("org/bad name") != nil && ModelLocator.malformed("org/base") == nil)
        // Every missing model is reported together.
        #expect(throws: MergeKitError.self) { try locator.paths([("org/x", .model), ("org/y", .model)]) }
        do throws(MergeKitError) {
            _ = try locator.paths([("org/x", .model), ("org/y", .model)])
        } catch {
            #expect(error.problems.map(\.file) == ["org/x", "org/y"])
        }
    }

    @Test("A recipe's base_model and model (also in slices) are read from the cache; a document's name is not a Hub id")
    func recipe() throws {
        let root = TestSupport.temporaryDirectory("hub-recipe")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cache = root + "/cache"
        try HubFixtures.populate(cache, repository: "org/base", commit: commit, files: HubFixtures.files(of: TestSupport.fixture("f32/base")))
        try HubFixtures.populate(cache, repository: "org/ft-a", commit: HubFixtures.commit("a"), ref: "v1",
                                 files: HubFixtures.files(of: TestSupport.fixture("f32/ft_a")))
        let hub = HubSettings(cache: cache, offline: true)
        let recipe = try Recipe.parse("""
            merge_method: task_arithmetic
            base_model: org/base
            models:
              - model: org/ft-a@v1
                parameters: {weight: 0.5}
              - model: \(TestSupport.fixture("f32/ft_b"))
                parameters: {weight: 0.5}
            """, path: root + "/recipe.yml")
        #expect(recipe.modelTexts.map(\.text) == ["org/base", "org/ft-a@v1", TestSupport.fixture("f32/ft_b")])
        let viaHub = try recipe.plan(output: root + "/a.safetensors", hub: hub)
        let local = try Recipe.parse("""
            merge_method: task_arithmetic
            base_model: \(TestSupport.fixture("f32/base"))
            models:
              - model: \(TestSupport.fixture("f32/ft_a"))
                parameters: {weight: 0.5}
              - model: \(TestSupport.fixture("f32/ft_b"))
                parameters: {weight: 0.5}
            """, path: root + "/recipe.yml").plan(output: root + "/b.safetensors", hub: hub)
        _ = try MergeRun.run(viaHub.plans, threads: 1)
        _ = try MergeRun.run(local.plans, threads: 1)
        #expect(FileManager.default.contents(atPath: root + "/a.safetensors") == FileManager.default.contents(atPath: root + "/b.safetensors"))

        // Missing from the cache: the recipe's line, the id, the revision and what is missing, with the other problems.
        let missing = try Recipe.parse("""
            merge_method: task_arithmetic
            base_model: org/base@v2
            models:
              - model: org/nothing
            """, path: root + "/recipe.yml")
        do throws(MergeKitError) {
            _ = try missing.plan(output: root + "/c.safetensors", hub: hub)
            Issue.record("planned")
        } catch {
            let messages = error.problems.map(\.description)
            #expect(messages.count == 2)
            #expect(messages.contains { $0.hasPrefix("org/base@v2: line 2 of") && $0.contains("org/base at revision v2 is not in the cache") })
            #expect(messages.contains { $0.contains("line 4") && $0.contains("org/nothing at revision main is not in the cache") })
        }

        // Several documents: one named, used by name; the other models from the cache.
        let file = try RecipeFile.parse("""
            name: half
            merge_method: task_arithmetic
            base_model: org/base
            models:
              - model: org/ft-a@v1
                parameters: {weight: 0.5}
            ---
            merge_method: task_arithmetic
            base_model: org/base
            models:
              - model: half
            """, path: root + "/multi.yml")
        #expect(file.modelTexts.map(\.text) == ["org/base", "org/ft-a@v1", "org/base"])
        let staged = try file.plan(output: root + "/multi.safetensors", hub: hub)
        #expect(staged.stages.count == 2)
    }
}
