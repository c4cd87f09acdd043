import Foundation
import Testing
@testable import MergeKit

/// A sweep's directory is one output (`SweepOutput`): its points and manifest are written into a
/// temporary directory renamed into place when complete, so two sweeps into the same new
/// directory cannot mix — one wins whole, the other fails cleanly and leaves nothing.
@Suite("Sweep outputs")
struct SweepOutputTests {
    static func recipe(_ s: OutputReplacementTests.Setup, lambdas: String = "0.5:1:0.5") throws -> Recipe {
        try Recipe.parse("merge_method: task_arithmetic\nbase_model: \(s.base)\nmodels:\n  - model: \(s.model)\nsweep:\n  lambda: \"\(lambdas)\"\n",
                         path: s.dir + "/r.yml")
    }

    @Test("Both sweeps pass the check while the directory is new; the first to commit wins, the other fails and leaves nothing")
    func raceBetweenCheckAndCommit() throws {
        let s = OutputReplacementTests.Setup()
        defer { s.remove() }
        let output = s.dir + "/sweep"
        let recipe = try Self.recipe(s)
        // Both are checked before either exists (the window a concurrent start falls into).
        let a = try recipe.plan(output: output), b = try recipe.plan(output: output)
        let sweepA = try SweepOutput(path: output, overwrite: false)
        _ = try MergeExecutor.run(a.plans, sweep: sweepA)
        // B starts after A, sees A's temporary as live (A holds it), and finishes first.
        let sweepB = try SweepOutput(path: output, overwrite: false)
        #expect(sweepB.notes.isEmpty, "A's temporary belongs to a live writer: \(sweepB.notes)")
        _ = try MergeExecutor.run(b.plans, sweep: sweepB)
        try sweepB.write(Array("B".utf8), named: "manifest.json")
        try sweepB.commit()

        try sweepA.write(Array("A".utf8), named: "manifest.json")
        let error = try #require(throws: MergeKitError.self) { try sweepA.commit() }
        #expect(error.code == .outputExists && error.file == output && error.description.contains("appeared"), "\(error)")
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors", "sweep"], "the loser left nothing")
        #expect(TestSupport.listing(output) == ["manifest.json", "point-000", "point-001"])
        #expect(try String(contentsOfFile: output + "/manifest.json", encoding: .utf8) == "B")
        #expect(try Checkpoint(path: output + "/point-001").entries.count == 4)
        #expect(TemporaryFiles.registeredPaths.filter { $0.hasPrefix(s.dir + "/") }.isEmpty)
    }

    @Test("Committed points stay registered for interrupts until the sweep itself is committed; abort removes everything")
    func pointsStayTemporaryUntilTheSweepCommits() throws {
        let s = OutputReplacementTests.Setup()
        defer { s.remove() }
        let output = s.dir + "/sweep"
        let run = try Self.recipe(s).plan(output: output)
        let sweep = try SweepOutput(path: output, overwrite: false)
        _ = try MergeExecutor.run(run.plans, sweep: sweep)
        let registered = TemporaryFiles.registeredPaths.filter { $0.hasPrefix(s.dir + "/") }
        let staged = sweep.stagedPath(of: output + "/point-000")
        #expect(staged.hasPrefix(s.dir + "/.sweep.mergekit-tmp-") && staged.hasSuffix("/point-000"))
        #expect(registered.contains(staged) && registered.contains(staged + "/model.safetensors"), "\(registered)")
        #expect(!FileManager.default.fileExists(atPath: output), "nothing is in place before the commit")
        sweep.abort()
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors"])
        #expect(TemporaryFiles.registeredPaths.filter { $0.hasPrefix(s.dir + "/") }.isEmpty)
    }

    @Test("Two merge-cli sweeps started at once into the same new directory: exactly one succeeds, whole; the other fails cleanly",
          arguments: 0..<6)
    func concurrentProcesses(round: Int) throws {
        let s = OutputReplacementTests.Setup()
        defer { s.remove() }
        let output = s.dir + "/sweep"
        var processes: [(Process, String)] = []
        for i in 0..<2 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CLI.executable)
            process.arguments = ["sweep", "--method", "task_arithmetic", "--base", s.base, "--model", s.model, "--scale", "0:1:0.25", "-o", output]
            let log = s.dir + "/log-\(i)"
            #expect(FileManager.default.createFile(atPath: log, contents: nil))
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            processes.append((process, log))
        }
        for (process, _) in processes { try process.run() }
        for (process, _) in processes { process.waitUntilExit() }
        let statuses = processes.map { $0.0.terminationStatus }
        #expect(statuses.sorted() == [0, 1], "\(statuses)")
        for ((process, log), status) in zip(processes, statuses) where status == 1 {
            let stderr = try String(contentsOfFile: log, encoding: .utf8)
            #expect(process.terminationReason == .exit)
            #expect(stderr.contains("\(output): already exists") || stderr.contains("\(output): appeared while the output was being written"), "\(stderr)")
        }
        #expect(TestSupport.listing(output) == ["manifest.json"] + (0..<5).map { "point-00\($0)" })
        let manifest = try JSONParser.parse(try FileSystem.readFile(output + "/manifest.json"))
        #expect(manifest["points"]?.arrayValue?.count == 5)
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors", "log-0", "log-1", "sweep"], "no temporaries")
    }

    @Test("Overwriting replaces an old sweep whole: points it no longer has are gone; a sweep into an existing directory needs it")
    func overwriteReplacesWhole() throws {
        let s = OutputReplacementTests.Setup()
        defer { s.remove() }
        let output = s.dir + "/sweep"
        let inputs = LibraryMerge.Inputs(base: s.base, models: [s.model])
        try LibraryMerge.run(LibraryMerge.sweep("task_arithmetic", inputs, grids: [("lambda", try #require(SweepGrid.parse("0:1:0.25")))]), output: output)
        #expect(TestSupport.listing(output).count == 6)
        let narrow = LibraryMerge.sweep("task_arithmetic", inputs, grids: [("lambda", [0.5, 1])])
        let again = try #require(throws: MergeKitError.self) { try LibraryMerge.run(narrow, output: output) }
        #expect(again.code == .outputExists && again.file == output && again.description.contains("already exists"), "\(again)")
        #expect(TestSupport.listing(output).count == 6)
        let outcome = try LibraryMerge.run(narrow, output: output, overwrite: true, summarize: true)
        #expect(TestSupport.listing(output) == ["manifest.json", "point-000", "point-001"])
        #expect(outcome.summaries.count == 2 && outcome.notes.isEmpty, "\(outcome.notes)")
        // The digests were read from the temporary directory and match the files in place.
        let first = try #require(outcome.summaries.first?["files"]?.arrayValue?.first)
        #expect(first["path"]?.stringValue == output + "/point-000/model.safetensors")
        #expect(first["sha256"]?.stringValue == (try FileDigest.sha256(path: output + "/point-000/model.safetensors")))
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors", "sweep"])
        // merge-cli sweep --overwrite --json: the same replacement, and one document listing the outputs with their digests.
        let cli = try CLI.run(["sweep", "--method", "task_arithmetic", "--base", s.base, "--model", s.model, "-o", output,
                               "--scale", "0.25,0.75", "--overwrite", "--json"])
        #expect(cli.status == 0, "\(cli.stderr)")
        let summary = try JSONParser.parse(Array(cli.stdout.utf8))
        #expect(summary["outputs"]?.arrayValue?.count == 2 && summary["notes"]?.arrayValue?.isEmpty == true, "\(cli.stdout)")
        let file = try #require(summary["outputs"]?.arrayValue?.first?["files"]?.arrayValue?.first)
        #expect(file["path"]?.stringValue == output + "/point-000/model.safetensors")
        #expect(file["sha256"]?.stringValue == (try FileDigest.sha256(path: output + "/point-000/model.safetensors")))
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors", "sweep"])
    }

    @Test("A sweep interrupted with SIGTERM leaves nothing; one killed with SIGKILL leaves a temporary the next sweep removes")
    func interruptedSweeps() throws {
        let s = try InterruptTests.Setup()
        defer { s.remove() }
        let output = s.outputDirectory + "/sweep"
        let arguments = ["sweep", "--method", "task_arithmetic", "--base", s.base, "--model", s.model, "--scale", "0.5,1", "--threads", "1", "-o", output]
        let terminated = try #require(try InterruptTests.interrupt(arguments, setup: s, signal: SIGTERM))
        #expect(terminated.reason == .exit && terminated.status == 143)
        #expect(TestSupport.listing(s.outputDirectory).isEmpty, "\(TestSupport.listing(s.outputDirectory))")

        let killed = try #require(try InterruptTests.interrupt(arguments, setup: s, signal: SIGKILL))
        #expect(killed.reason == .uncaughtSignal)
        let left = s.temporaries
        #expect(left.count == 1 && left.first?.hasPrefix(".sweep.mergekit-tmp-") == true, "\(left)")
        let rerun = try CLI.run(arguments)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("note: removed " + s.outputDirectory + "/" + (left.first ?? "?")), "\(rerun.stderr)")
        #expect(TestSupport.listing(s.outputDirectory) == ["sweep"])
        #expect(TestSupport.listing(output) == ["manifest.json", "point-000", "point-001"])
    }
}
