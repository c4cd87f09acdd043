import Foundation
import Testing
@testable import MergeKit

/// A run killed with SIGKILL (the OOM killer) cannot clean up: its full-size temporary output
/// stays. The next run to that destination removes it and says so (stderr and --json), `verify`
/// reports it, and a temporary a live process holds is never removed, whatever PID its name
/// carries (ownership is an flock, not the PID).
@Suite("Stale temporaries")
struct StaleTemporaryTests {
    /// The PID of a process that has exited.
    static func deadPID() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exit 0"]
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    static func write(_ size: Int, to path: String) {
        #expect(FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: size)))
    }

    @Test("kill -9 during a single-file merge: verify reports the temporary, the next run removes it and says so")
    func killedSingleFileMerge() throws {
        let s = try InterruptTests.Setup()
        defer { s.remove() }
        let output = s.outputDirectory + "/merged.safetensors"
        let killed = try #require(try InterruptTests.interrupt(s.arguments(output: output), setup: s, signal: SIGKILL))
        #expect(killed.reason == .uncaughtSignal && killed.status == SIGKILL)
        let left = s.temporaries
        #expect(left.count == 1 && left.first?.hasPrefix(".merged.safetensors.mergekit-tmp-") == true, "\(left)")
        let temporary = s.outputDirectory + "/" + (left.first ?? "")

        // verify: the output does not exist (exit 1), and the temporary is reported in text and JSON.
        let verify = try CLI.run(["verify", output, "--json"])
        #expect(verify.status == 1)
        #expect(verify.stderr.contains("warning: \(temporary)") && verify.stderr.contains("interrupted run"), "\(verify.stderr)")
        let report = try JSONParser.parse(Array(verify.stdout.utf8))
        let stale = try #require(report["stale_temporaries"]?.arrayValue)
        #expect(stale.count == 1 && stale.first?["path"]?.stringValue == temporary, "\(verify.stdout)")
        #expect(stale.first?["pid"]?.nonNegativeInt.map { Int32($0) } == Int32(left.first!.split(separator: "-")[2]))

        let rerun = try CLI.run(s.arguments(output: output, extra: ["--json"]))
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("note: removed \(temporary)"), "\(rerun.stderr)")
        let summary = try JSONParser.parse(Array(rerun.stdout.utf8))
        let notes = try #require(summary["notes"]?.arrayValue)
        #expect(notes.count == 1 && notes.first?["kind"]?.stringValue == "removed_stale_temporary"
                && notes.first?["path"]?.stringValue == temporary, "\(rerun.stdout)")
        #expect(TestSupport.listing(s.outputDirectory) == ["merged.safetensors"])

        let clean = try CLI.run(["verify", output, "--json"])
        #expect(clean.status == 0 && !clean.stderr.contains("warning"), "\(clean.stderr)")
        #expect(try JSONParser.parse(Array(clean.stdout.utf8))["stale_temporaries"]?.arrayValue?.isEmpty == true)
    }

    @Test("kill -9 during a sharded directory merge over an old output: the next run removes the temporary directory")
    func killedDirectoryMerge() throws {
        let s = try InterruptTests.Setup()
        defer { s.remove() }
        let output = s.outputDirectory + "/merged"
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: URL(fileURLWithPath: output + "/model.safetensors"))
        let arguments = s.arguments(output: output, extra: ["--max-shard-size", "8MiB", "--overwrite"])
        let killed = try #require(try InterruptTests.interrupt(arguments, setup: s, signal: SIGKILL))
        #expect(killed.reason == .uncaughtSignal)
        let left = s.temporaries
        #expect(left.count == 1 && left.first?.hasPrefix(".merged.mergekit-tmp-") == true, "\(left)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: output + "/model.safetensors")) == Data("old".utf8), "the old output survives")

        let verify = try CLI.run(["verify", output])
        #expect(verify.stderr.contains("warning: " + s.outputDirectory + "/" + left[0]), "\(verify.stderr)")

        let rerun = try CLI.run(arguments)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(rerun.stderr.contains("note: removed " + s.outputDirectory + "/" + left[0]), "\(rerun.stderr)")
        #expect(TestSupport.listing(s.outputDirectory) == ["merged"])
        #expect(try Checkpoint(path: output).entries.count == 16)
    }

    @Test("A stale name whose process is dead is removed; one a live process holds is never removed, whatever PID it names")
    func liveAndDeadOwners() throws {
        let s = OutputReplacementTests.Setup()
        defer { s.remove() }
        let output = s.dir + "/merged.safetensors"
        let dead = try Self.deadPID()
        let stale = s.dir + "/.merged.safetensors.mergekit-tmp-\(dead)-1a2b"
        Self.write(1 << 20, to: stale)
        // PID reuse: the name carries a live PID (this process) but nobody holds the lock.
        let reused = s.dir + "/.merged.safetensors.mergekit-tmp-\(getpid())-5e6f"
        Self.write(1000, to: reused)
        // Live: held by another open file description (as a running merge holds its temporary),
        // even though the PID in its name is dead.
        let live = s.dir + "/.merged.safetensors.mergekit-tmp-\(dead)-3c4d"
        Self.write(1000, to: live)
        let fd = open(live, O_RDONLY)
        #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
        // Another output's temporary, and a name that only looks like one.
        let other = s.dir + "/.other.safetensors.mergekit-tmp-\(dead)-7a8b"
        Self.write(1000, to: other)
        let lookalike = s.dir + "/.merged.safetensors.mergekit-tmp-notes"
        Self.write(10, to: lookalike)

        let found = CheckpointVerifier.staleTemporaries(near: output).map(\.path).sorted()
        #expect(found == [stale, reused].sorted(), "verify lists the stale ones only: \(found)")

        let result = try MergeExecutor.run(try s.plan(output, overwrite: false))
        #expect(!FileManager.default.fileExists(atPath: stale) && !FileManager.default.fileExists(atPath: reused))
        #expect(FileManager.default.fileExists(atPath: live), "a temporary held by a live process is never removed")
        #expect(FileManager.default.fileExists(atPath: other) && FileManager.default.fileExists(atPath: lookalike))
        #expect(Set(result.notes.map(\.path)) == [stale, reused] && result.notes.allSatisfy { $0.kind == .removedStaleTemporary }, "\(result.notes)")
        #expect(result.notes.first { $0.path == stale }?.message.contains("1.05 MB") == true, "\(result.notes)")

        // Once its owner lets go, the next run removes it.
        close(fd)
        let again = try MergeExecutor.run(try s.plan(output))
        #expect(!FileManager.default.fileExists(atPath: live) && again.notes.map(\.path) == [live])
    }

    @Test("--quiet hides the note; --json still carries it")
    func quietAndJSON() throws {
        let s = OutputReplacementTests.Setup()
        defer { s.remove() }
        let output = s.dir + "/merged.safetensors"
        let stale = s.dir + "/.merged.safetensors.mergekit-tmp-\(try Self.deadPID())-9f"
        Self.write(100, to: stale)
        let run = try CLI.run(["task-arithmetic", "--base", s.base, "--model", s.model, "-o", output, "--quiet", "--json"])
        #expect(run.status == 0 && run.stderr.isEmpty, "\(run.stderr)")
        let notes = try JSONParser.parse(Array(run.stdout.utf8))["notes"]?.arrayValue
        #expect(notes?.count == 1 && notes?.first?["path"]?.stringValue == stale)
        #expect(!FileManager.default.fileExists(atPath: stale))
    }

    @Test("A stale aside directory is removed when its output is in place, restored when the run died between its renames")
    func staleAsideDirectories() throws {
        let s = OutputReplacementTests.Setup()
        defer { s.remove() }
        let dead = try Self.deadPID()
        let output = s.dir + "/out"
        // The output is in place: the aside is the replaced output, only its deletion was cut short.
        let aside = s.dir + "/.out.mergekit-old-\(dead)-aa"
        try s.write("old", to: aside + "/model.safetensors")
        try s.write("{}", to: aside + "/config.json")
        try s.write("old", to: output + "/model.safetensors")
        var result = try MergeExecutor.run(try s.plan(output))
        #expect(!FileManager.default.fileExists(atPath: aside) && result.notes.map(\.kind) == [.removedStaleTemporary], "\(result.notes)")

        // The output is missing: the run was killed between moving it aside and moving the new one
        // in. The previous output is restored; without --overwrite the run then refuses to replace it.
        try FileManager.default.removeItem(atPath: output)
        let cut = s.dir + "/.out.mergekit-old-\(dead)-bb"
        try s.write("previous", to: cut + "/model.safetensors")
        let plan = try s.plan(output, overwrite: false)
        let error = try #require(throws: MergeKitError.self) { try MergeExecutor.run(plan) }
        #expect(error.code == .outputExists && error.description.contains("restored"), "\(error)")
        #expect(try String(contentsOfFile: output + "/model.safetensors", encoding: .utf8) == "previous")
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors", "out"])

        // A stale temporary holding something MergeKit does not write keeps it, with a warning.
        let temporary = s.dir + "/.out.mergekit-tmp-\(dead)-cc"
        try s.write("shard", to: temporary + "/model.safetensors")
        try s.write("mine", to: temporary + "/notes.txt")
        result = try MergeExecutor.run(try s.plan(output))
        #expect(result.notes.map(\.kind) == [.leftUnexpectedEntries] && result.notes.first?.path == temporary, "\(result.notes)")
        #expect(TestSupport.listing(temporary) == ["notes.txt"])
    }

    @Test("Verification lists stale temporaries inside a directory, not those of a running merge")
    func verifyInsideDirectory() throws {
        let s = OutputReplacementTests.Setup()
        defer { s.remove() }
        let output = s.dir + "/out"
        _ = try MergeExecutor.run(try s.plan(output))
        let dead = try Self.deadPID()
        let inside = output + "/.model.safetensors.mergekit-tmp-\(dead)-12"
        Self.write(10, to: inside)
        let running = output + "/.model.safetensors.mergekit-tmp-\(dead)-34"
        Self.write(10, to: running)
        let fd = open(running, O_RDONLY)
        defer { close(fd) }
        #expect(flock(fd, LOCK_EX | LOCK_NB) == 0)
        // What verify reports (merge-cli's warning lines and JSON: killedSingleFileMerge): the output verifies.
        #expect(try CheckpointVerifier().verify(path: output).passed)
        let stale = CheckpointVerifier.staleTemporaries(near: output)
        #expect(stale.map(\.path) == [inside] && stale.first?.pid == dead, "\(stale)")
    }
}
