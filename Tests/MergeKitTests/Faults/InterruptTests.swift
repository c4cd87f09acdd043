import Foundation
import Synchronization
import Testing
@testable import MergeKit

/// SIGINT / SIGTERM during a merge: temporary outputs are removed, inputs are untouched, the exit
/// status is 128 + the signal, and a later run succeeds. The merges run in a `merge-cli` child
/// process (the handler exits the process it runs in).
@Suite("Interrupts")
struct InterruptTests {
    /// A base and a fine-tuned model of `tensors` F32 tensors of 2²⁰ elements (4 MiB each), written
    /// sparse so creating them is instant; a debug merge of 16 takes about a second.
    struct Setup {
        let dir: String
        var base: String { dir + "/base.safetensors" }
        var model: String { dir + "/ft.safetensors" }
        var outputDirectory: String { dir + "/out" }

        init(tensors: Int = 16) throws {
            dir = TestSupport.temporaryDirectory("interrupt")
            try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
            let specs = (0..<tensors).map { TensorSpec(name: "layers.\($0).weight", dtype: .F32, shape: [1 << 20]) }
            for (path, note) in [(base, "base"), (model, "ft")] {
                let layout = SafeTensorsLayout(specs: specs, metadata: ["format": "pt", "note": note])
                #expect(FileManager.default.createFile(atPath: path, contents: Data(layout.prefix)))
                #expect(truncate(path, off_t(layout.fileSize)) == 0)
                // A few non-zero bytes so the inputs are not all zero.
                let handle = try #require(FileHandle(forWritingAtPath: path))
                try handle.seek(toOffset: UInt64(layout.dataStart + 4096))
                handle.write(Data([0x00, 0x00, 0x80, 0x3F]))
                try handle.close()
            }
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }

        func contents(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

        /// Temporary siblings (`.NAME.mergekit-tmp-*`) in the output directory.
        var temporaries: [String] { TestSupport.listing(outputDirectory).filter { $0.contains(".mergekit-tmp-") } }

        func arguments(output: String, extra: [String] = []) -> [String] {
            ["task-arithmetic", "--base", base, "--model", model, "--scale", "0.5", "-o", output, "--threads", "1"] + extra
        }
    }

    /// Starts merge-cli, waits for its temporary output to appear, sends `signal`, and returns
    /// the exit status (or nil when the merge finished before the temporary output was seen).
    static func interrupt(_ arguments: [String], setup: Setup, signal: Int32, executable: String = CLI.executable,
                          sourceLocation: SourceLocation = #_sourceLocation) throws -> (status: Int32, reason: Process.TerminationReason)? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while setup.temporaries.isEmpty && process.isRunning && Date() < deadline { usleep(500) }
        guard process.isRunning, !setup.temporaries.isEmpty else {
            process.waitUntilExit()
            Issue.record("the merge ended before it could be interrupted (status \(process.terminationStatus))",
                         sourceLocation: sourceLocation)
            return nil
        }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return (process.terminationStatus, process.terminationReason)
    }

    @Test("SIGINT during a single-file merge: exit 130, no temporary file, inputs unchanged; a rerun succeeds")
    func sigint() throws {
        let s = try Setup()
        defer { s.remove() }
        let base = try s.contents(s.base), model = try s.contents(s.model)
        let output = s.outputDirectory + "/merged.safetensors"
        let result = try #require(try Self.interrupt(s.arguments(output: output), setup: s, signal: SIGINT))
        #expect(result.reason == .exit && result.status == 130)
        #expect(TestSupport.listing(s.outputDirectory).isEmpty, "left behind: \(TestSupport.listing(s.outputDirectory))")
        #expect(try s.contents(s.base) == base && s.contents(s.model) == model)

        let rerun = try CLI.run(s.arguments(output: output))
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(TestSupport.listing(s.outputDirectory) == ["merged.safetensors"])
        #expect(try Checkpoint(path: output).entries.count == 16)
    }

    @Test("SIGTERM during a sharded directory merge over an existing output: exit 143, old output kept, no temporaries")
    func sigtermShardedOverwrite() throws {
        let s = try Setup()
        defer { s.remove() }
        let base = try s.contents(s.base), model = try s.contents(s.model)
        let output = s.outputDirectory + "/merged"
        // An existing output that --overwrite would replace only on success.
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: URL(fileURLWithPath: output + "/model.safetensors"))
        let arguments = s.arguments(output: output, extra: ["--max-shard-size", "8MiB", "--overwrite"])
        let result = try #require(try Self.interrupt(arguments, setup: s, signal: SIGTERM))
        #expect(result.reason == .exit && result.status == 143)
        #expect(TestSupport.listing(s.outputDirectory) == ["merged"], "left behind: \(TestSupport.listing(s.outputDirectory))")
        #expect(TestSupport.listing(output) == ["model.safetensors"])
        #expect(try s.contents(output + "/model.safetensors") == Data("old".utf8), "the old output survives an interrupted overwrite")
        #expect(try s.contents(s.base) == base && s.contents(s.model) == model)

        let rerun = try CLI.run(arguments)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(TestSupport.listing(s.outputDirectory) == ["merged"])
        let shards = (1...8).map { "model-0000\($0)-of-00008.safetensors" }
        #expect(Set(shards + [Checkpoint.indexFileName]).isSubset(of: TestSupport.listing(output)), "\(TestSupport.listing(output))")
        #expect(try Checkpoint(path: output).entries.count == 16)
    }

    @Test("A signal the process inherited as ignored (nohup) stays ignored: the merge completes")
    func ignoredSignalStaysIgnored() throws {
        let s = try Setup(tensors: 12)
        defer { s.remove() }
        let output = s.outputDirectory + "/merged.safetensors"
        let command = "trap '' HUP; exec \"$0\" \"$@\""
        let result = try #require(try Self.interrupt(["-c", command, CLI.executable] + s.arguments(output: output),
                                                     setup: s, signal: SIGHUP, executable: "/bin/sh"))
        #expect(result.reason == .exit && result.status == 0)
        #expect(TestSupport.listing(s.outputDirectory) == ["merged.safetensors"])
    }

    @Test("A merge registers its temporary paths while it runs and unregisters them when done")
    func registry() throws {
        let dir = TestSupport.temporaryDirectory("registry")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let specs = (0..<3).map { TensorSpec(name: "t\($0)", dtype: .F32, shape: [1 << 20]) }
        TestSupport.writeCheckpoint(dir + "/base.safetensors", specs.map { ($0, [Double](repeating: 1, count: 1 << 20)) })
        let base = try Checkpoint(path: dir + "/base.safetensors")
        for output in [dir + "/one.safetensors", dir + "/sharded"] {
            let plan = try MergePlan(base: base, inputs: [MergeInput(kind: .model, checkpoint: base)], method: try TaskArithmetic(),
                                     output: OutputSpec(path: output, maxShardSize: output.hasSuffix("sharded") ? 5_000_000 : nil))
            let seen = Mutex<Set<String>>([])
            _ = try MergeExecutor.run(plan, threads: 1) { _ in
                let mine = TemporaryFiles.registeredPaths.filter { $0.hasPrefix(dir + "/") }
                seen.withLock { $0.formUnion(mine) }
            }
            let registered = seen.withLock { $0 }
            if output.hasSuffix("sharded") {
                let temporary = try #require(registered.first { !$0.hasSuffix(".safetensors") })
                #expect(registered == [temporary, temporary + "/model-00001-of-00003.safetensors",
                                       temporary + "/model-00002-of-00003.safetensors", temporary + "/model-00003-of-00003.safetensors"])
            } else {
                #expect(registered.count == 1 && registered.first?.contains("/.one.safetensors.mergekit-tmp-") == true)
            }
            #expect(TemporaryFiles.registeredPaths.filter { $0.hasPrefix(dir + "/") }.isEmpty)
        }
    }
}
