import Foundation
import Testing
@testable import MergeKit

/// Runs the built `merge-cli` binary (a dependency of the test target, so `swift test` builds it).
enum CLI {
    static let executable: String = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // On Linux the test binary sits next to merge-cli; on macOS it is inside an .xctest bundle.
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("merge-cli").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return TestSupport.packageRoot.appendingPathComponent(".build/debug/merge-cli").path
    }()

    struct Output {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs merge-cli with `arguments`, in `directory`, with `environment` (nil values unset)
    /// over the test process's.
    static func run(_ arguments: [String], in directory: String? = nil, environment: [String: String?] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        return try collect(process, environment: environment)
    }

    /// Runs merge-cli through `/bin/sh -c "<prelude>; exec merge-cli arguments…"` (for `ulimit`
    /// and `trap`).
    static func run(_ arguments: [String], after prelude: String, environment: [String: String?] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", prelude + "; exec \"$0\" \"$@\"", executable] + arguments
        return try collect(process, environment: environment)
    }

    /// Runs a script of the repository (`Benchmarks/…`) with bash, with the environment merge-cli
    /// gets (`collect`): the script's merge-cli then computes as the library does here.
    static func runScript(_ path: String, _ arguments: [String]) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [TestSupport.packageRoot.appendingPathComponent(path).path] + arguments
        return try collect(process, environment: [:])
    }

    /// What every run starts from, over the test process's environment: Hugging Face ids are
    /// looked up in an empty cache, offline, and the endpoint is a closed local port, so that no
    /// test reads the machine's cache or reaches a network. Tests of the Hub set their own.
    static let hermeticHub: [String: String?] = [
        "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "/nonexistent/mergekit-test-hub-cache", "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_TOKEN": nil, "HF_HOME": "/nonexistent/mergekit-test-hf-home", "TRANSFORMERS_OFFLINE": nil,
    ]

    /// Runs `process` to its end with `environment` over the test process's, collecting its output.
    private static func collect(_ process: Process, environment: [String: String?]) throws -> Output {
        var merged = ProcessInfo.processInfo.environment
        // merge-cli runs on the OpenBLAS kernels this test process has, so that its GEMMs and
        // LAPACK calls round as the library's do here (merge-cli would otherwise pick faster
        // kernels, `BLAS.preferredCoreType`); a test of that choice unsets it.
        merged["OPENBLAS_CORETYPE"] = merged["OPENBLAS_CORETYPE"] ?? BLAS.coreName
        for (key, value) in hermeticHub.merging(environment, uniquingKeysWith: { $1 }) { merged[key] = value }
        process.environment = merged
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }
}

@Suite("merge-cli")
struct CLITests {
    let fixtures = TestSupport.fixture("")

    @Test("The README's main command runs on the bundled fixtures and matches the reference")
    func readmeCommand() throws {
        let dir = TestSupport.temporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try CLI.run(["task-arithmetic", "--base", "Fixtures/bf16/base", "--model", "Fixtures/bf16/ft_a",
                                  "--model", "Fixtures/bf16/ft_b", "--model", "Fixtures/bf16/ft_c", "--scale", "0.5",
                                  "-o", dir + "/merged"], in: TestSupport.packageRoot.path)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("21 tensors merged, 1 copied"))
        expectCheckpointsMatch(try Checkpoint(path: dir + "/merged"), try Checkpoint(path: TestSupport.fixture("expected/bf16/sum.safetensors")))
        #expect(TestSupport.listing(dir + "/merged") == ["README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"])
    }

    @Test("negate, task-vector and an analogy through task vectors match the reference")
    func negateAndTaskVectors() throws {
        let dir = TestSupport.temporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let negate = try CLI.run(["negate", "--base", "f16/base", "--model", "f16/ft_a", "-o", dir + "/neg.safetensors"], in: fixtures)
        #expect(negate.status == 0, "\(negate.stderr)")
        expectCheckpointsMatch(try Checkpoint(path: dir + "/neg.safetensors"), try Checkpoint(path: TestSupport.fixture("expected/f16/negate_a.safetensors")), ulps: 0)

        for model in ["ft_a", "ft_b", "ft_c"] {
            let tv = try CLI.run(["task-vector", "--base", "f32/base", "--finetuned", "f32/\(model)", "-o", dir + "/\(model).safetensors"], in: fixtures)
            #expect(tv.status == 0, "\(tv.stderr)")
        }
        expectCheckpointsMatch(try Checkpoint(path: dir + "/ft_a.safetensors"), try Checkpoint(path: TestSupport.fixture("expected/f32/tv_a.safetensors")), ulps: 0)
        let analogy = try CLI.run(["task-arithmetic", "--base", "f32/base",
                                   "--task-vector", dir + "/ft_a.safetensors", "--task-vector", dir + "/ft_b.safetensors",
                                   "--task-vector", dir + "/ft_c.safetensors", "--weight=-1", "--weight", "1", "--weight", "1",
                                   "-o", dir + "/analogy.safetensors", "--json"], in: fixtures)
        #expect(analogy.status == 0, "\(analogy.stderr)")
        expectCheckpointsMatch(try Checkpoint(path: dir + "/analogy.safetensors"), try Checkpoint(path: TestSupport.fixture("expected/f32/analogy.safetensors")), ulps: 2, absolute: 1e-8)
        let summary = try JSONParser.parse(Array(analogy.stdout.utf8))
        #expect(summary["method"]?.stringValue == "task-arithmetic")
        #expect(summary["inputs"]?.arrayValue?.map { $0["weight"]?.doubleValue } == [-1, 1, 1])
    }

    @Test("Argument-shape errors exit 64, domain errors exit 1 with the file named")
    func exitCodes() throws {
        let dir = TestSupport.temporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let wrongWeights = try CLI.run(["task-arithmetic", "--base", "f32/base", "--model", "f32/ft_a", "--weight", "1", "--weight", "2",
                                        "-o", dir + "/x.safetensors"], in: fixtures)
        #expect(wrongWeights.status == 64)
        #expect(wrongWeights.stderr.contains("2 --weight values for 1 inputs"))

        let noBase = try CLI.run(["task-arithmetic", "--model", "f32/ft_a", "-o", dir + "/x.safetensors"], in: fixtures)
        #expect(noBase.status == 64)

        let shardedFile = try CLI.run(["task-arithmetic", "--base", "f32/base", "--model", "f32/ft_a", "--max-shard-size", "1K",
                                       "-o", dir + "/x.safetensors"], in: fixtures)
        #expect(shardedFile.status == 64)

        let missing = try CLI.run(["task-arithmetic", "--base", "f32/base", "--model", "f32/does-not-exist", "-o", dir + "/x.safetensors"], in: fixtures)
        #expect(missing.status == 1)
        #expect(missing.stderr.hasPrefix("error: f32/does-not-exist: does not exist"))

        let tvDir = TestSupport.temporaryDirectory("cli-tv")
        defer { try? FileManager.default.removeItem(atPath: tvDir) }
        let tv = try CLI.run(["task-vector", "--base", "f16/base", "--finetuned", "f16/ft_a", "-o", tvDir + "/tv.safetensors"], in: fixtures)
        #expect(tv.status == 0)
        let mismatch = try CLI.run(["task-arithmetic", "--base", "f32/base", "--task-vector", tvDir + "/tv.safetensors", "-o", dir + "/x.safetensors"], in: fixtures)
        #expect(mismatch.status == 1)
        #expect(mismatch.stderr.contains("another base model (made from f16/base)"))

        let intoInput = try CLI.run(["negate", "--base", "f32/base", "--model", "f32/ft_a", "-o", "f32/ft_a/model.safetensors", "--overwrite"], in: fixtures)
        #expect(intoInput.status == 1)
        #expect(intoInput.stderr.contains("f32/ft_a/model.safetensors") && intoInput.stderr.contains("input"))
        #expect(TestSupport.listing(dir).isEmpty, "failed runs leave no output and no temporary files")
    }

    @Test("inspect reports tensors, totals and task-vector metadata, also as JSON")
    func inspect() throws {
        let text = try CLI.run(["inspect", "bf16/base"], in: fixtures)
        #expect(text.status == 0)
        #expect(text.stdout.contains("sharded directory, 3 shards"))
        #expect(text.stdout.contains("tensors: 22, parameters: 4,952"))
        #expect(text.stdout.contains("model.rotary_emb.position_ids"))

        let json = try CLI.run(["inspect", "--json", "expected/f32/tv_a.safetensors"], in: fixtures)
        #expect(json.status == 0)
        let report = try JSONParser.parse(Array(json.stdout.utf8))
        #expect(report["tensor_count"]?.nonNegativeInt == 21)
        #expect(report["parameters"]?.nonNegativeInt == 4944)

        let bad = try CLI.run(["inspect", "bf16/base/config.json"], in: fixtures)
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("bf16/base/config.json"))
    }

    @Test("methods lists every registered method")
    func methods() throws {
        let result = try CLI.run(["methods"])
        #expect(result.status == 0)
        for info in MethodRegistry.all { #expect(result.stdout.contains(info.name)) }
    }

    @Test("analyze prints the library's analysis as text and as JSON")
    func analyze() throws {
        let arguments = ["analyze", "--base", "f32/base", "--model", "f32/ft_a", "--model", "f32/ft_b", "--density", "0.3"]
        let text = try CLI.run(arguments, in: fixtures)
        #expect(text.status == 0, "\(text.stderr)")
        let json = try CLI.run(arguments + ["--json"], in: fixtures)
        #expect(json.status == 0, "\(json.stderr)")
        let (base, inputs) = try LibraryMerge.open(LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_a", "f32/ft_b"]))
        let analysis = try TaskVectorAnalysis.run(base: base, inputs: inputs, density: 0.3)
        // The same numbers; the paths as given on the command line.
        func relative(_ text: String) -> String { text.replacingOccurrences(of: fixtures + "/", with: "") }
        #expect(text.stdout == relative(analysis.text) + "\n", "\(text.stdout)")
        #expect(try JSONParser.parse(Array(json.stdout.utf8)) == (try JSONParser.parse(Array(relative(analysis.json.serialized(indent: 2)).utf8))),
                "\(json.stdout)")
    }
}
