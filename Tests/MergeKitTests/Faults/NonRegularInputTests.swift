import Foundation
import Synchronization
import Testing
@testable import MergeKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension CLI {
    /// What a watched run did: its output, or that it had to be killed.
    struct WatchedOutput {
        let status: Int32
        let stdout: String
        let stderr: String
        /// The run outlived its timeout and was killed (a hang).
        let timedOut: Bool
    }

    /// Runs merge-cli in a child process and kills it after `timeout` seconds, so that a hang
    /// fails the test instead of stalling the suite. The timeout is a watchdog, not a measurement:
    /// it is many times what any of these runs takes. `openFileLimit` runs it under
    /// `ulimit -n` (through /bin/sh, which lowers the limit and then execs merge-cli).
    /// `ownPeakMemory` starts it from a small shell process instead of from the test process:
    /// Linux carries the peak resident memory of the process image an exec replaces into the new
    /// one's (`ru_maxrss`), so merge-cli spawned straight from the tests would report at least
    /// the test process's peak as its own.
    static func runWatched(_ arguments: [String], in directory: String? = nil, timeout: Double = 300,
                           openFileLimit: Int? = nil, ownPeakMemory: Bool = false) throws -> WatchedOutput {
        let process = Process()
        if let openFileLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(openFileLimit) && exec \"$0\" \"$@\"", executable] + arguments
        } else if ownPeakMemory {
            // Not the shell's last simple command, so the shell forks it rather than exec'ing.
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\"$0\" \"$@\"; status=$?; exit $status", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        let captured = Mutex<[Int: Data]>([:])
        let readers = DispatchGroup()
        for (key, pipe) in [(1, out), (2, err)] {
            DispatchQueue.global().async(group: readers) {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                captured.withLock { $0[key] = data }
            }
        }
        let timedOut = exited.wait(timeout: .now() + timeout) == .timedOut
        if timedOut {
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
        }
        readers.wait()
        let data = captured.withLock { $0 }
        return WatchedOutput(status: process.terminationStatus, stdout: String(decoding: data[1] ?? Data(), as: UTF8.self),
                             stderr: String(decoding: data[2] ?? Data(), as: UTF8.self), timedOut: timedOut)
    }
}

/// Runs `body` on another thread; if it has not returned after `timeout` seconds (it is blocked
/// opening or reading one of `fifos`), opens each FIFO for writing and closes it again, which
/// releases a reader blocked on it, and records the hang. So a regression fails the test
/// instead of hanging the suite.
func withFIFOWatchdog<R: Sendable>(_ fifos: [String], timeout: Double = 120, sourceLocation: SourceLocation = #_sourceLocation,
                                   _ body: @escaping @Sendable () -> R) -> R {
    let result = Mutex<R?>(nil)
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        let value = body()
        result.withLock { $0 = value }
        done.signal()
    }
    if done.wait(timeout: .now() + timeout) == .timedOut {
        Issue.record("blocked on a FIFO for \(Int(timeout)) s", sourceLocation: sourceLocation)
        for _ in 0..<10 {
            for fifo in fifos {
                let fd = open(fifo, O_WRONLY | O_NONBLOCK)
                if fd >= 0 { close(fd) }
            }
            if done.wait(timeout: .now() + 1) == .success { break }
        }
    }
    return result.withLock { $0! }
}

/// Inputs that are not regular files — FIFOs above all, which block `open` until a writer comes —
/// in every role a file plays: a checkpoint, `model.safetensors`, a shard, the index, a
/// companion, an adapter's config and weights, a recipe, an evaluation's head, data and
/// config.json. Each is refused promptly, naming the path and what it is.
@Suite("Inputs that are not regular files")
struct NonRegularInputTests {
    /// A copy of fixture directory `fixture` in a fresh temporary directory, with `fifoName` (if
    /// any) replaced by a FIFO. Returns (temporary root, copy).
    static func copy(_ fixture: String, replacing fifoName: String? = nil) throws -> (root: String, copy: String) {
        let root = TestSupport.temporaryDirectory("fifo")
        let copy = root + "/" + FileSystem.lastComponent(of: fixture)
        try FileManager.default.copyItem(atPath: TestSupport.fixture(fixture), toPath: copy)
        if let fifoName { try makeFIFO(copy + "/" + fifoName) }
        return (root, copy)
    }

    static func makeFIFO(_ path: String) throws {
        if FileSystem.exists(path) { try FileManager.default.removeItem(atPath: path) }
        guard mkfifo(path, 0o644) == 0 else { throw POSIXError(.init(rawValue: errno)!) }
    }

    /// Expects a watched CLI run to end (not be killed), with exit status 1 and a message naming
    /// `path` as a FIFO.
    static func expectRefused(_ run: CLI.WatchedOutput, naming path: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!run.timedOut, "merge-cli hung on a FIFO and was killed", sourceLocation: sourceLocation)
        #expect(run.status == 1, "\(run.stderr)", sourceLocation: sourceLocation)
        #expect(run.stderr.contains(path), "\(run.stderr)", sourceLocation: sourceLocation)
        #expect(run.stderr.contains("is a FIFO"), "\(run.stderr)", sourceLocation: sourceLocation)
    }

    @Test("A FIFO model.safetensors fails verify, inspect and a merge promptly, named as a FIFO")
    func fifoWeights() throws {
        let (root, model) = try Self.copy("f32/ft_a", replacing: Checkpoint.singleFileName)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let weights = model + "/" + Checkpoint.singleFileName
        Self.expectRefused(try CLI.runWatched(["verify", model]), naming: weights)
        Self.expectRefused(try CLI.runWatched(["inspect", model]), naming: weights)
        Self.expectRefused(try CLI.runWatched(["task-arithmetic", "--base", TestSupport.fixture("f32/base"), "--model", model,
                                               "-o", root + "/out.safetensors"]), naming: weights)
        Self.expectRefused(try CLI.runWatched(["ties", "--base", model, "--model", TestSupport.fixture("f32/ft_b"),
                                               "-o", root + "/out2.safetensors"]), naming: weights)
        #expect(!FileSystem.exists(root + "/out.safetensors") && !FileSystem.exists(root + "/out2.safetensors"))
    }

    @Test("A FIFO shard or index of a sharded checkpoint fails verify, inspect and a merge promptly")
    func fifoShardAndIndex() throws {
        for name in ["model-00002-of-00003.safetensors", Checkpoint.indexFileName] {
            let (root, model) = try Self.copy("bf16/base", replacing: name)
            defer { try? FileManager.default.removeItem(atPath: root) }
            Self.expectRefused(try CLI.runWatched(["verify", model]), naming: model + "/" + name)
            Self.expectRefused(try CLI.runWatched(["inspect", model]), naming: model + "/" + name)
            Self.expectRefused(try CLI.runWatched(["task-arithmetic", "--base", model, "--model", TestSupport.fixture("bf16/ft_a"),
                                                   "-o", root + "/out"]), naming: model + "/" + name)
        }
    }

    @Test("A FIFO named as the checkpoint itself is refused as a FIFO")
    func fifoCheckpoint() throws {
        let root = TestSupport.temporaryDirectory("fifo")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/model.safetensors"
        try Self.makeFIFO(path)
        Self.expectRefused(try CLI.runWatched(["verify", path]), naming: path)
        Self.expectRefused(try CLI.runWatched(["inspect", path]), naming: path)
    }

    @Test("A FIFO companion (config.json) of the base fails the merge before it runs")
    func fifoCompanion() throws {
        let (root, base) = try Self.copy("f32/base", replacing: "config.json")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let run = try CLI.runWatched(["task-arithmetic", "--base", base, "--model", TestSupport.fixture("f32/ft_a"), "-o", root + "/out"])
        Self.expectRefused(run, naming: base + "/config.json")
        #expect(!FileSystem.exists(root + "/out"))
    }

    @Test("A FIFO adapter_config.json or adapter weights of --lora is named as a FIFO, not as missing")
    func fifoAdapter() throws {
        for name in [LoRAAdapter.configFileName, LoRAAdapter.weightsFileName] {
            let (root, adapter) = try Self.copy("svd_lora/lora_a", replacing: name)
            defer { try? FileManager.default.removeItem(atPath: root) }
            let run = try CLI.runWatched(["task-arithmetic", "--base", TestSupport.fixture("f32/base"), "--lora", adapter,
                                          "-o", root + "/out.safetensors"])
            Self.expectRefused(run, naming: adapter + "/" + name)
            #expect(!run.stderr.contains("does not exist"), "\(run.stderr)")
        }
    }

    @Test("A FIFO recipe fails `run` promptly")
    func fifoRecipe() throws {
        let root = TestSupport.temporaryDirectory("fifo")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let recipe = root + "/recipe.yml"
        try Self.makeFIFO(recipe)
        Self.expectRefused(try CLI.runWatched(["run", recipe, "-o", root + "/out"]), naming: recipe)
    }

    @Test("A FIFO head, dataset or config.json fails eval promptly")
    func fifoEval() throws {
        let (root, quick) = try Self.copy("clip/quick")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let arguments = ["eval", "--model", quick + "/base", "--head", quick + "/head.safetensors", "--data", quick + "/data.safetensors"]
        let sane = try CLI.runWatched(arguments)
        #expect(sane.status == 0, "\(sane.stderr)")
        for name in ["head.safetensors", "data.safetensors", "base/config.json"] {
            let path = quick + "/" + name
            let saved = root + "/saved"
            try FileManager.default.moveItem(atPath: path, toPath: saved)
            try Self.makeFIFO(path)
            Self.expectRefused(try CLI.runWatched(arguments), naming: path)
            try FileManager.default.removeItem(atPath: path)
            try FileManager.default.moveItem(atPath: saved, toPath: path)
        }
    }

    @Test("The opening routine refuses FIFOs, devices and directories, naming what they are, without blocking")
    func openingRoutine() throws {
        let root = TestSupport.temporaryDirectory("fifo")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fifo = root + "/pipe"
        try Self.makeFIFO(fifo)
        let outcome = withFIFOWatchdog([fifo]) { () -> MergeKitError? in
            do throws(MergeKitError) {
                _ = try FileSystem.readFile(fifo)
                return nil
            } catch {
                return error
            }
        }
        #expect(outcome?.code == .fileUnreadable && outcome?.file == fifo)
        #expect(outcome?.detail == "is a FIFO, not a regular file")

        let viaFile = withFIFOWatchdog([fifo]) { () -> MergeKitError? in
            do throws(MergeKitError) {
                _ = try SafeTensorsFile(path: fifo)
                return nil
            } catch {
                return error
            }
        }
        #expect(viaFile?.detail == "is a FIFO, not a regular file")

        // A character device would never end (/dev/zero) or is not data (/dev/null).
        for device in ["/dev/zero", "/dev/null"] {
            #expect(throws: MergeKitError.self) { try FileSystem.readFile(device) }
            do throws(MergeKitError) { _ = try FileSystem.readFile(device) } catch {
                #expect(error.detail == "is a character device, not a regular file" && error.file == device)
            }
        }
        do throws(MergeKitError) { _ = try FileSystem.readFile(root) } catch {
            #expect(error.code == .isDirectory && error.file == root)
        }
        do throws(MergeKitError) { _ = try FileSystem.readFile(root + "/missing") } catch {
            #expect(error.code == .fileNotFound)
        }
        // requireRegularFile names the type without opening anything.
        do throws(MergeKitError) { try FileSystem.requireRegularFile(fifo) } catch {
            #expect(error.detail == "is a FIFO, not a regular file")
        }
    }

    @Test("Files read whole are bounded: a file over the limit is refused before it is read")
    func smallFileLimit() throws {
        let root = TestSupport.temporaryDirectory("limit")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/config.json"
        try Data(repeating: 0x20, count: 100).write(to: URL(fileURLWithPath: path))
        #expect(try FileSystem.readFile(path, limit: 100).count == 100)
        #expect(try FileSystem.readFile(path).count == 100)
        do throws(MergeKitError) {
            _ = try FileSystem.readFile(path, limit: 99)
            Issue.record("read a 100-byte file under a 99-byte limit")
        } catch {
            #expect(error.file == path && error.detail.contains("100 bytes") && error.detail.contains("99-byte limit"))
        }
        #expect(FileSystem.smallFileLimit == 100_000_000)
        // An empty file and one larger than the first read buffer read completely.
        try Data().write(to: URL(fileURLWithPath: path))
        #expect(try FileSystem.readFile(path).isEmpty)
        let large = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try Data(large).write(to: URL(fileURLWithPath: path))
        #expect(try FileSystem.readFile(path) == large)
    }

    @Test("A recipe larger than the recipe limit is refused by its size, before reading")
    func oversizedRecipe() throws {
        let root = TestSupport.temporaryDirectory("limit")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let recipe = root + "/recipe.yml"
        // A sparse file: the size is refused before a byte is read.
        #expect(FileManager.default.createFile(atPath: recipe, contents: nil))
        #expect(truncate(recipe, off_t(FileSystem.smallFileLimit + 1)) == 0)
        let run = try CLI.runWatched(["run", recipe, "-o", root + "/out"])
        #expect(!run.timedOut && run.status == 1)
        #expect(run.stderr.contains(recipe) && run.stderr.contains("the largest recipe read"), "\(run.stderr)")
    }
}
