import Foundation
import Testing
@testable import MergeKit

/// Replays the fuzzers' seed corpora and every saved crash input through the plain (non-libFuzzer)
/// builds of `header-fuzz`, `recipe-fuzz` and `pickle-fuzz`, which run the same checks as the
/// fuzzers: no crash, rejections name the file; accepted headers are consistent and survive being
/// written back, JSON round-trips; accepted recipes survive being rebuilt from their values and
/// written out as YAML; accepted PyTorch checkpoints keep every view inside its storage.
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    /// Runs a fuzz target's plain build on `directories` (relative to the package root).
    static func replay(_ target: String, _ directories: [String]) throws -> (stdout: String, stderr: String, passed: Bool, seeds: Int) {
        let executable = URL(fileURLWithPath: CLI.executable).deletingLastPathComponent().appendingPathComponent(target).path
        let paths = directories.map { $0.hasPrefix("/") ? $0 : TestSupport.packageRoot.appendingPathComponent($0).path }
            .filter { FileSystem.kind(of: $0) == .directory }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = paths
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let passed = process.terminationReason == .exit && process.terminationStatus == 0 && stdout.contains("no failures")
        return (stdout, stderr, passed, TestSupport.listing(paths[0]).count)
    }

    @Test("header-fuzz passes its seeds and saved regressions")
    func replayHeaders() throws {
        let run = try Self.replay("header-fuzz", ["Fuzz/seeds", "Fuzz/regressions"])
        #expect(run.passed, "\(run.stdout)\(run.stderr)")
        #expect(run.seeds >= 10 && run.stdout.contains("inputs checked"))
    }

    /// The seeds include the hostile recipes: 5000-deep flow lists and mappings, 5000 nested block
    /// sequences, 100 levels of indentation, 3000 nested conditions, alias and merge-key bombs,
    /// aliases that deepen the tree, undefined aliases, duplicate keys.
    @Test("recipe-fuzz passes its seeds (hostile recipes among them) and saved regressions")
    func replayRecipes() throws {
        let run = try Self.replay("recipe-fuzz", ["Fuzz/recipe-seeds", "Fuzz/regressions/recipes"])
        #expect(run.passed, "\(run.stdout)\(run.stderr)")
        #expect(run.seeds >= 15 && run.stdout.contains("inputs checked"))
    }

    /// The seeds are torch.save files and bare state-dict pickles (Fixtures/pytorch/
    /// make_pytorch_fixtures.py); the hostile PyTorch corpus is replayed too, as whole files and
    /// (the fuzzer's second reading) as pickles wrapped in an archive.
    @Test("pickle-fuzz passes its seeds, the hostile PyTorch corpus and saved regressions")
    func replayPickles() throws {
        let dir = TestSupport.temporaryDirectory("pickle-fuzz")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for c in PickleHostileCorpus.cases { try c.make(dir + "/" + c.name) }
        let run = try Self.replay("pickle-fuzz", ["Fuzz/pickle-seeds", dir, "Fuzz/regressions/pickles"])
        #expect(run.passed, "\(run.stdout)\(run.stderr)")
        #expect(run.seeds >= 8 && run.stdout.contains("inputs checked"), "\(run.stdout)")
    }
}
