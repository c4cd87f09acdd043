import Foundation
import Synchronization
import Testing
@testable import MergeKit

/// A small tmpfs for disk-full tests; needs root and a kernel that lets this process mount.
enum Tmpfs {
    static let mountCommand = ["/bin/mount", "/usr/bin/mount"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let umountCommand = ["/bin/umount", "/usr/bin/umount"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Whether a tmpfs can be mounted here (tried once).
    static let available: Bool = {
        guard getuid() == 0, mountCommand != nil, umountCommand != nil else { return false }
        guard let dir = try? mount(size: "64k") else { return false }
        unmount(dir)
        return true
    }()

    /// Mounts a tmpfs of `size` on a fresh directory and returns it.
    static func mount(size: String) throws -> String {
        let dir = TestSupport.temporaryDirectory("tmpfs")
        guard run(mountCommand!, ["-t", "tmpfs", "-o", "size=\(size),mode=0755", "tmpfs", dir]) == 0 else {
            try? FileManager.default.removeItem(atPath: dir)
            throw MergeKitError(.writeFailed, file: dir, "cannot mount a tmpfs")
        }
        return dir
    }

    static func unmount(_ dir: String) {
        _ = run(umountCommand!, [dir])
        try? FileManager.default.removeItem(atPath: dir)
    }

    private static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Fills the file system holding `directory` with a file until a write fails (ENOSPC).
    static func fill(_ directory: String) {
        let fd = open(directory + "/filler", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0xAB, count: 4096)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
    }
}

/// The output's disk fills up (or writing fails otherwise): a clean `.writeFailed` error naming
/// the output, no partial output, no temporary files left.
@Suite("Disk full and write failures")
struct DiskFullTests {
    /// A base and a model of three F32 tensors of 2¹⁸ elements (1 MiB each, 3 MiB in all).
    struct Inputs {
        let dir: String
        var base: String { dir + "/base.safetensors" }
        var model: String { dir + "/ft.safetensors" }

        init() {
            dir = TestSupport.temporaryDirectory("diskfull")
            let n = 1 << 18
            let specs = (0..<3).map { TensorSpec(name: "t\($0).weight", dtype: .F32, shape: [n]) }
            TestSupport.writeCheckpoint(base, specs.map { ($0, (0..<n).map { Double($0 % 7) }) })
            TestSupport.writeCheckpoint(model, specs.map { ($0, (0..<n).map { Double($0 % 5) }) })
        }

        func plan(output: String, maxShardSize: Int? = nil) throws -> MergePlan {
            try MergePlan(base: try Checkpoint(path: base), inputs: [MergeInput(kind: .model, checkpoint: try Checkpoint(path: model))],
                          method: try TaskArithmetic(scale: 0.5), output: OutputSpec(path: output, maxShardSize: maxShardSize))
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test("An output larger than a 1 MB tmpfs is refused before any work, via merge-cli",
          .enabled(if: Tmpfs.available, "needs root and permission to mount a tmpfs"))
    func outputLargerThanDisk() throws {
        let inputs = Inputs()
        defer { inputs.remove() }
        let mount = try Tmpfs.mount(size: "1M")
        defer { Tmpfs.unmount(mount) }
        let before = try Data(contentsOf: URL(fileURLWithPath: inputs.model))
        for output in [mount + "/merged.safetensors", mount + "/merged"] {
            let result = try CLI.run(["task-arithmetic", "--base", inputs.base, "--model", inputs.model, "-o", output])
            #expect(result.status == 1)
            #expect(result.stderr.hasPrefix("error: \(output): needs "), "\(result.stderr)")
            #expect(result.stderr.contains("bytes free") && result.stderr.contains("Free space"), "\(result.stderr)")
            #expect(TestSupport.listing(mount).isEmpty, "left behind: \(TestSupport.listing(mount))")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: inputs.model)) == before)
    }

    @Test("The disk fills up during the merge: writeFailed (no space), nothing left behind",
          .enabled(if: Tmpfs.available, "needs root and permission to mount a tmpfs"),
          arguments: ["merged.safetensors", "merged"])
    func diskFillsMidMerge(name: String) throws {
        let inputs = Inputs()
        defer { inputs.remove() }
        let mount = try Tmpfs.mount(size: "4M")
        defer { Tmpfs.unmount(mount) }
        let output = mount + "/" + name
        let plan = try inputs.plan(output: output, maxShardSize: name.hasSuffix(".safetensors") ? nil : 1_500_000)
        // The free-space check passes (3 MiB needed, 4 MiB free); once the first tensor is written,
        // another writer takes every free block.
        let filled = Atomic<Bool>(false)
        let error = try #require(throws: MergeKitError.self) {
            try MergeExecutor.run(plan, threads: 1) { _ in
                if !filled.exchange(true, ordering: .relaxed) { Tmpfs.fill(mount) }
            }
        }
        let didFill = filled.load(ordering: .relaxed)
        #expect(didFill, "the merge failed before any tensor was written: \(error)")
        #expect(error.code == .writeFailed, "\(error)")
        #expect(error.file == output && error.description.contains("No space left on device"), "\(error)")
        #expect(error.description.contains("Free space on the output's disk"))
        #expect(TestSupport.listing(mount) == ["filler"], "left behind: \(TestSupport.listing(mount))")
        #expect(TemporaryFiles.registeredPaths.filter { $0.hasPrefix(mount) }.isEmpty)
    }

    @Test("A file-size limit (injected EFBIG, no mount needed): writeFailed, temporary file removed")
    func fileSizeLimit() throws {
        let inputs = Inputs()
        defer { inputs.remove() }
        let out = inputs.dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        // ulimit -f caps files at about 100 KB; SIGXFSZ is ignored so the write fails with EFBIG.
        let result = try CLI.run(["task-arithmetic", "--base", inputs.base, "--model", inputs.model, "-o", out + "/merged.safetensors"],
                                 after: "ulimit -f 200; trap '' XFSZ")
        let stderr = result.stderr
        #expect(result.status == 1)
        #expect(stderr.hasPrefix("error: \(out)/merged.safetensors: cannot be written (File too large)"), "\(stderr)")
        #expect(TestSupport.listing(out).isEmpty, "left behind: \(TestSupport.listing(out))")
    }

    @Test("The temporary directory is deleted mid-merge (a cleanup job): writeFailed at commit, no output")
    func temporaryDirectoryRemoved() throws {
        let inputs = Inputs()
        defer { inputs.remove() }
        let out = inputs.dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let output = out + "/merged"
        let plan = try inputs.plan(output: output, maxShardSize: 1_500_000)
        let removed = Atomic<Bool>(false)
        let error = try #require(throws: MergeKitError.self) {
            try MergeExecutor.run(plan, threads: 1) { _ in
                guard !removed.exchange(true, ordering: .relaxed) else { return }
                for name in TestSupport.listing(out) where name.contains(".mergekit-tmp-") {
                    try? FileManager.default.removeItem(atPath: out + "/" + name)
                }
            }
        }
        #expect(error.code == .writeFailed && error.description.contains(output), "\(error)")
        #expect(TestSupport.listing(out).isEmpty, "left behind: \(TestSupport.listing(out))")
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test("The output's parent directory is removed after planning (directory output): writeFailed, nothing created")
    func parentRemovedAfterPlanning() throws {
        let inputs = Inputs()
        defer { inputs.remove() }
        let out = inputs.dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let plan = try inputs.plan(output: out + "/merged", maxShardSize: 1_500_000)
        try FileManager.default.removeItem(atPath: out)
        let error = try #require(throws: MergeKitError.self) { try MergeExecutor.run(plan) }
        #expect(error.code == .writeFailed && error.file == out + "/merged", "\(error)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }
}
