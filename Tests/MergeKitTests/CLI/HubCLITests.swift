import Foundation
import Testing
@testable import MergeKit

/// merge-cli with Hugging Face ids: from the cache (offline), through the download phase (a fake
/// hub on 127.0.0.1), and the exit statuses and messages of what goes wrong.
@Suite("merge-cli with Hub ids")
struct HubCLITests {
    let fixtures = TestSupport.fixture("")

    /// A cache holding the f32 base as `org/base` (main) and ft_a, ft_b as `org/ft-a` (main) and
    /// `org/ft-b@v1`, laid out as huggingface_hub lays it out.
    static func cache(_ root: String) throws -> String {
        let cache = root + "/hub"
        try HubFixtures.populate(cache, repository: "org/base", commit: HubFixtures.commit("base"),
                                 files: HubFixtures.files(of: TestSupport.fixture("f32/base")))
        try HubFixtures.populate(cache, repository: "org/ft-a", commit: HubFixtures.commit("a"),
                                 files: HubFixtures.files(of: TestSupport.fixture("f32/ft_a")))
        try HubFixtures.populate(cache, repository: "org/ft-b", commit: HubFixtures.commit("b"), ref: "v1",
                                 files: HubFixtures.files(of: TestSupport.fixture("f32/ft_b")))
        return cache
    }

    /// The same merge from the fixture directories, for comparison.
    func localMerge(_ output: String) throws {
        let local = try CLI.run(["task-arithmetic", "--base", "f32/base", "--model", "f32/ft_a", "--model", "f32/ft_b", "--scale", "0.5",
                                 "-o", output], in: fixtures)
        #expect(local.status == 0, "\(local.stderr)")
    }

    static func data(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    @Test("task-arithmetic --base org/base --model org/ft-a --model org/ft-b@v1 reads the cache offline, in place")
    func fromCache() throws {
        let root = TestSupport.temporaryDirectory("hub-cli")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cache = try Self.cache(root)
        let run = try CLI.run(["task-arithmetic", "--base", "org/base", "--model", "org/ft-a", "--model", "org/ft-b@v1", "--scale", "0.5",
                               "-o", root + "/hub-out", "--offline"], in: root, environment: ["HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": nil])
        #expect(run.status == 0, "\(run.stderr)")
        try localMerge(root + "/local-out")
        #expect(Self.data(root + "/hub-out/model.safetensors") == Self.data(root + "/local-out/model.safetensors"))
        #expect(TestSupport.listing(root + "/hub-out") == TestSupport.listing(root + "/local-out"))
        // The model card names the models by their ids, not by their cache paths.
        let card = String(decoding: Self.data(root + "/hub-out/README.md") ?? Data(), as: UTF8.self)
        #expect(card.contains("base_model: \"org/base\"") && card.contains("`org/ft-b`") && !card.contains("snapshots"), "\(card)")
        // HF_HOME/hub is the cache when HF_HUB_CACHE is unset; HF_HUB_OFFLINE=1 alone is offline.
        let viaHome = try CLI.run(["inspect", "org/ft-b@v1"], in: root, environment: ["HF_HOME": root, "HF_HUB_CACHE": nil])
        #expect(viaHome.status == 0, "\(viaHome.stderr)")
        #expect(viaHome.stdout.contains("snapshots/\(HubFixtures.commit("b"))"))
    }

    @Test("Not in the cache and offline: exit 1 naming the id, the revision, what is missing and the fix; every input at once")
    func offlineMissing() throws {
        let root = TestSupport.temporaryDirectory("hub-cli")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cache = try Self.cache(root)
        let run = try CLI.run(["task-arithmetic", "--base", "org/base@v2", "--model", "org/none", "-o", root + "/out", "--offline"],
                              in: root, environment: ["HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": nil, "HF_ENDPOINT": nil])
        #expect(run.status == 1)
        #expect(run.stderr.contains("2 problems found before merging"))
        #expect(run.stderr.contains("org/base@v2: does not exist as a path, and the Hugging Face model org/base at revision v2 is not in the cache \(cache) (offline): there is no refs/v2 in models--org--base. Run without --offline, and with HF_HUB_OFFLINE unset, to download it, or download it beforehand (`hf download org/base --revision v2`)"))
        #expect(run.stderr.contains("org/none: does not exist as a path, and the Hugging Face model org/none at revision main is not in the cache"))
        #expect(!FileManager.default.fileExists(atPath: root + "/out"))
        // --json: the same, as a document.
        let json = try CLI.run(["task-arithmetic", "--base", "org/none", "--model", "org/ft-a", "-o", root + "/out", "--json"],
                               in: root, environment: ["HF_HUB_CACHE": cache])
        #expect(json.status == 1)
        let document = try JSONParser.parse(Array(json.stdout.utf8))
        #expect(document["error"]?["code"]?.stringValue == "notInHubCache")
        #expect(document["error"]?["file"]?.stringValue == "org/none")
    }

    @Test("A malformed id exits 64 before anything is opened; a missing relative path is still a missing path")
    func malformed() throws {
        let root = TestSupport.temporaryDirectory("hub-cli")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (flag, text) in [("--base", "org/bad name"), ("--model", "org/ft-a@"), ("--model", "org/a--b")] {
            var arguments = ["task-arithmetic", "--base", "f32/base", "--model", "f32/ft_a", "-o", root + "/out"]
            arguments[arguments.firstIndex(of: flag)! + 1] = text
            let run = try CLI.run(arguments, in: fixtures)
            #expect(run.status == 64, "\(text): \(run.stderr)")
            #expect(run.stderr.contains("\(flag) \(text): is neither an existing path nor a valid Hugging Face id"), "\(run.stderr)")
        }
        let missing = try CLI.run(["task-arithmetic", "--base", "f32/base", "--model", "./f32/does-not-exist", "-o", root + "/out"], in: fixtures)
        #expect(missing.status == 1)
        #expect(missing.stderr.hasPrefix("error: ./f32/does-not-exist: does not exist"))
    }

    @Test("A local directory org/base wins over the Hub id org/base")
    func localWins() throws {
        let root = TestSupport.temporaryDirectory("hub-cli")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cache = try Self.cache(root)
        try FileManager.default.createDirectory(atPath: root + "/org", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestSupport.fixture("f32/base"), toPath: root + "/org/ft-a")
        // org/ft-a is the base here: its task vector is zero, so the merge is the base itself.
        let run = try CLI.run(["task-arithmetic", "--base", "org/base", "--model", "org/ft-a", "-o", root + "/out.safetensors"],
                              in: root, environment: ["HF_HUB_CACHE": cache])
        #expect(run.status == 0, "\(run.stderr)")
        let merged = TestSupport.values(try Checkpoint(path: root + "/out.safetensors"))
        let base = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/base")))
        #expect(merged.mapValues(\.values) == base.mapValues(\.values))
    }

    @Test("Online: the download phase fetches the models into the cache, then merges; a second run needs no download")
    func download() throws {
        let root = TestSupport.temporaryDirectory("hub-cli")
        let hub = try FakeHub()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: root) }
        hub.add("org/base", commit: HubFixtures.commit("base"), files: HubFixtures.shardedBase())
        hub.add("org/ft-a", commit: HubFixtures.commit("a"), files: HubFixtures.files(of: TestSupport.fixture("f32/ft_a")))
        hub.add("org/ft-b", commit: HubFixtures.commit("b"), files: HubFixtures.files(of: TestSupport.fixture("f32/ft_b")),
                refs: ["v1": HubFixtures.commit("b")], token: "hf_tok")
        hub.setFault("model-00001-of-00002.safetensors", FakeHub.Fault(dropAfter: 40, drops: 1))
        let cache = root + "/hub"
        let environment: [String: String?] = ["HF_HUB_OFFLINE": nil, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": cache, "HF_TOKEN": "hf_tok"]
        let arguments = ["task-arithmetic", "--base", "org/base", "--model", "org/ft-a", "--model", "org/ft-b@v1", "--scale", "0.5"]
        let run = try CLI.run(arguments + ["-o", root + "/out"], in: root, environment: environment)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("downloading org/base from \(hub.endpoint) into \(cache)"))
        #expect(run.stderr.contains("downloading org/ft-b@v1 from"))
        try localMerge(root + "/local")
        #expect(Self.data(root + "/out/model.safetensors") == Self.data(root + "/local/model.safetensors"))
        #expect(TestSupport.listing(root + "/out") == TestSupport.listing(root + "/local"))
        // Offline now, from what was downloaded; no request.
        let count = hub.requests.count
        let again = try CLI.run(arguments + ["-o", root + "/again", "--offline"], in: root, environment: environment)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(hub.requests.count == count)
        // A recipe: the same models.
        try """
            merge_method: task_arithmetic
            base_model: org/base
            parameters: {lambda: 0.5}
            models:
              - model: org/ft-a
              - model: org/ft-b@v1
            """.write(toFile: root + "/recipe.yml", atomically: true, encoding: .utf8)
        let recipe = try CLI.run(["run", root + "/recipe.yml", "-o", root + "/recipe-out"], in: root, environment: environment)
        #expect(recipe.status == 0, "\(recipe.stderr)")
        #expect(hub.requests.count == count, "everything came from the cache")
    }

    @Test("Online failures exit 1: an unknown repository, an unreachable endpoint")
    func onlineFailures() throws {
        let root = TestSupport.temporaryDirectory("hub-cli")
        let hub = try FakeHub()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: root) }
        let environment: [String: String?] = ["HF_HUB_OFFLINE": nil, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": root + "/hub"]
        let unknown = try CLI.run(["task-arithmetic", "--base", "org/base", "--model", "f32/ft_a", "-o", root + "/out"], in: fixtures,
                                  environment: environment)
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("error: org/base: at revision main: the repository does not exist, or is private or gated and the request was refused (HTTP 401)"), "\(unknown.stderr)")
        let closed = try FakeHub()
        let endpoint = closed.endpoint
        closed.stop()
        var offline = environment
        offline["HF_ENDPOINT"] = endpoint
        let down = try CLI.run(["task-arithmetic", "--base", "org/base", "--model", "f32/ft_a", "-o", root + "/out"], in: fixtures,
                               environment: offline)
        #expect(down.status == 1)
        #expect(down.stderr.contains("\(endpoint) could not be reached"), "\(down.stderr)")
        #expect(down.stderr.contains("work from the cache alone (--offline)"))
    }

    @Test("A download killed mid-file leaves only <etag>.incomplete, never a complete-looking file; the next run resumes it")
    func killedDownload() throws {
        let root = TestSupport.temporaryDirectory("hub-cli")
        let hub = try FakeHub()
        defer { hub.stop(); try? FileManager.default.removeItem(atPath: root) }
        let files = HubFixtures.files(of: TestSupport.fixture("f32/base"))
        let commit = HubFixtures.commit("base")
        hub.add("org/base", commit: commit, files: files)
        hub.setFault("model.safetensors", FakeHub.Fault(stalls: 1, stallAfter: 100))
        let cache = root + "/hub"
        let environment: [String: String?] = ["HF_HUB_OFFLINE": nil, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": cache,
                                              "HF_HUB_DOWNLOAD_TIMEOUT": "600"]
        let sha = FakeHub.sha256(files["model.safetensors"]!)
        let blobs = cache + "/models--org--base/blobs"

        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.executable)
        process.arguments = ["inspect", "org/base"]
        var merged = ProcessInfo.processInfo.environment
        for (key, value) in CLI.hermeticHub.merging(environment, uniquingKeysWith: { $1 }) { merged[key] = value }
        process.environment = merged
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Until the first 100 bytes are in the partial file (bounded: the stalled answer sends no more).
        var size = 0
        for _ in 0..<1200 where size < 100 {
            size = (try? FileManager.default.attributesOfItem(atPath: blobs + "/\(sha).incomplete")[.size] as? Int) ?? 0
            if size < 100 { usleep(50_000) }
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(size == 100)
        #expect(TestSupport.listing(blobs).contains(sha + ".incomplete"))
        #expect(!TestSupport.listing(blobs).contains(sha))
        #expect(!FileManager.default.fileExists(atPath: cache + "/models--org--base/snapshots/\(commit)/model.safetensors"))
        if case .found = HubCache(root: cache).lookup(HubReference(repository: "org/base"), offline: true) { Issue.record("looks complete") }

        let again = try CLI.run(["inspect", "org/base"], in: root, environment: environment)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(hub.requests.filter { $0.uri == "/cdn/" + sha }.map(\.range) == [nil, "bytes=100-"])
        #expect(FileManager.default.contents(atPath: blobs + "/" + sha) == Data(files["model.safetensors"]!))
    }
}
