import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes an output checkpoint atomically: everything goes to a temporary sibling of the output
/// (a file, or a directory holding the shards, the index and the companions), and only a complete,
/// fsynced result is moved into place by `StagedOutput`, which also owns the replacement policy
/// (an existing output is only replaced after the new one is complete, and only what an output
/// consists of is ever deleted). `abort()` (or a failure in `commit()`) removes the temporary
/// output.
///
/// Every temporary path is registered with `TemporaryFiles` before it is created, so an interrupt
/// (SIGINT/SIGTERM) removes it; paths are unregistered once renamed into place or removed.
///
/// Shard files are laid out up front (header written, space reserved) so that workers can
/// `write(_:at:shard:)` tensor bytes at their precomputed offsets in any order. Their descriptors
/// live in `DescriptorCache.outputs`, which bounds how many output files are open at once (a
/// sweep writes many): a shard's descriptor may be closed between writes and the file reopened.
final class CheckpointWriter: @unchecked Sendable {
    let output: OutputSpec
    let shards: [OutputShard]
    private let staged: StagedOutput
    /// The temporary file or directory being written.
    var temporaryPath: String { staged.temporaryPath }
    /// One per shard: starts each completed window's writeback and keeps the output out of the
    /// page cache (see `WriteBehind`). Also the shard's key in `DescriptorCache.outputs`.
    private var writeBehind: [WriteBehind] = []
    /// Device and inode of each shard file, to check a reopened descriptor.
    private var identities: [FileIdentity] = []
    private var shardPaths: [String]
    /// Per shard of `shards`, its place in the arrays above: every shard's, or only those of a
    /// partition's share (`OutputSpec.part`), the others nil (never written here).
    private var slots: [Int?]
    private var finished = false

    /// What happened around the output: stale temporaries removed before writing, entries left
    /// when replacing an old output.
    var notes: [OutputNote] { staged.notes }

    /// - Parameter sweep: the sweep directory this output is written inside, if any (`SweepOutput`).
    init(output: OutputSpec, shards: [OutputShard], in sweep: StagedOutput? = nil) throws(MergeKitError) {
        self.output = output
        self.shards = shards
        shardPaths = []
        let written = shards.indices.filter { output.part?.shards.contains($0) ?? true }
        slots = Array(repeating: nil, count: shards.count)
        for (slot, shard) in written.enumerated() { slots[shard] = slot }
        staged = try StagedOutput(destination: output.path, isDirectory: output.isDirectory, overwrite: output.overwrite, in: sweep,
                                  staysTemporary: output.staysTemporary)
        do throws(MergeKitError) {
            // Checked once stale temporaries are gone: they may be what filled the disk.
            try CheckpointWriter.checkFreeSpace(FileSystem.parentDirectory(of: staged.temporaryPath),
                                                needed: written.reduce(0) { $0 + shards[$1].layout.fileSize }, output: output.path)
            if output.isDirectory {
                shardPaths = written.map { FileSystem.join(staged.temporaryPath, shards[$0].fileName) }
            } else {
                shardPaths = [staged.temporaryPath]
            }
            for (shard, path) in zip(written.map { shards[$0] }, shardPaths) {
                let fd: Int32
                if output.isDirectory {
                    staged.registerFile(path)
                    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                } else {
                    fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
                }
                guard fd >= 0 else { throw FileSystem.writeError(file: output.path, errno: errno) }
                var st = stat()
                guard fstat(fd, &st) == 0 else {
                    let code = errno
                    close(fd)
                    throw FileSystem.writeError(file: output.path, errno: code)
                }
                identities.append(FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)))
                let behind = WriteBehind(fd: fd, fileSize: shard.layout.fileSize)
                writeBehind.append(behind)
                DescriptorCache.outputs.adopt(fd, for: behind) { _ in behind.drain() }
                try withDescriptor(writeBehind.count - 1) { fd throws(MergeKitError) in
                    try reserve(fd, size: shard.layout.fileSize)
                    try FileSystem.pwriteAll(fd, shard.layout.prefix, at: 0, file: output.path)
                    behind.wrote(0..<shard.layout.prefix.count)
                }
            }
        } catch {
            abort()
            throw error
        }
    }

    deinit {
        if !finished { abort() }
    }

    /// Sizes the file. Whether the disk can hold it was checked when the writer was created
    /// (`checkFreeSpace`); blocks are not preallocated, because writing into preallocated
    /// (unwritten) extents costs ext4 an extent conversion per write.
    private func reserve(_ fd: Int32, size: Int) throws(MergeKitError) {
        guard size > 0 else { return }
        guard ftruncate(fd, off_t(size)) == 0 else { throw FileSystem.writeError(file: output.path, errno: errno) }
    }

    /// Fails now, before any merging, when the output's file system has less free space than the
    /// output needs (rather than half-way through the merge).
    static func checkFreeSpace(_ directory: String, needed: Int, output: String) throws(MergeKitError) {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return }
        let available = Int(info.f_bavail) &* Int(info.f_frsize)
        if available < needed {
            throw MergeKitError(.writeFailed, file: output,
                "needs \(needed) bytes but its disk has only \(available) bytes free",
                fix: "Free space on the output's disk or write to another one")
        }
    }

    /// Writes `bytes` at `offset` within the data buffer of shard `shard`.
    func write(_ bytes: UnsafeRawBufferPointer, dataOffset offset: Int, shard: Int) throws(MergeKitError) {
        let start = shards[shard].layout.dataStart + offset
        guard let slot = slots[shard] else { preconditionFailure("shard \(shard) is another partition's") }
        try withDescriptor(slot) { fd throws(MergeKitError) in
            try FileSystem.pwriteAll(fd, bytes, at: start, file: output.path)
            // While the descriptor is held: a window completed here is handed on with it open.
            writeBehind[slot].wrote(start..<start + bytes.count)
        }
    }

    /// Whether this writer writes shard `shard` (all do, except a partition's: `OutputSpec.part`).
    func writes(shard: Int) -> Bool { slots[shard] != nil }

    /// Runs `body` with an open descriptor of the shard in `slot` (reopened when the cache closed it).
    private func withDescriptor<R>(_ shard: Int, _ body: (Int32) throws(MergeKitError) -> R) throws(MergeKitError) -> R {
        let behind = writeBehind[shard]
        return try DescriptorCache.outputs.withDescriptor(for: behind, open: { () throws(MergeKitError) -> Int32 in
            try reopen(shard)
        }, beforeClose: { _ in behind.drain() }, body)
    }

    /// Opens the temporary file of the shard in slot `shard` again, checking it is the file this writer created.
    private func reopen(_ shard: Int) throws(MergeKitError) -> Int32 {
        let fd = open(shardPaths[shard], O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystem.writeError(file: output.path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0, FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) == identities[shard] else {
            close(fd)
            throw MergeKitError(.writeFailed, file: output.path, "its temporary file \(shardPaths[shard]) was replaced while the merge ran",
                fix: "Do not modify the output location while merging")
        }
        writeBehind[shard].rebind(fd)
        return fd
    }

    /// Finishes the output: fsync every shard, write the index (sharded directories) and the
    /// companions, then rename into place (replacing an existing output only when overwriting).
    /// `companions` are (source path, file name) pairs; `rewrite` may transform a companion's bytes.
    func commit(companions: [(source: String, name: String)], generated: [String: [UInt8]] = [:],
                rewrite: (String, [UInt8]) -> [UInt8]) throws(MergeKitError) {
        do throws(MergeKitError) {
            for file in writeBehind { file.drain() }
            // The cache owns the descriptors: each is closed once, by it (also after a failure
            // part-way, when abort() removes the rest).
            for (shard, file) in writeBehind.enumerated() {
                try withDescriptor(shard) { fd throws(MergeKitError) in
                    guard fsync(fd) == 0 else { throw FileSystem.writeError(file: output.path, errno: errno) }
                }
                DescriptorCache.outputs.remove(file)
            }
            if output.isDirectory {
                if shards.count > 1 && output.part?.writesSmallFiles ?? true { try writeIndex() }
                for (source, name) in companions where generated[name] == nil {
                    let bytes = rewrite(name, try FileSystem.readFile(source))
                    let path = FileSystem.join(temporaryPath, name)
                    staged.registerFile(path)
                    try writeInside(path, bytes)
                }
                for name in generated.keys.sorted() {
                    let path = FileSystem.join(temporaryPath, name)
                    staged.registerFile(path)
                    try writeInside(path, generated[name]!)
                }
                FileSystem.syncDirectory(temporaryPath)
            }
            try staged.commit()
            finished = true
        } catch {
            abort()
            throw error
        }
    }

    /// Writes a small file inside the temporary directory. A failure names the output the user
    /// gave and the file's name, not the hidden temporary path.
    private func writeInside(_ path: String, _ bytes: [UInt8]) throws(MergeKitError) {
        do {
            try FileSystem.writeFile(path, bytes)
        } catch {
            var named = error
            named.file = output.path
            named.detail = FileSystem.lastComponent(of: path) + " " + error.detail
            throw named
        }
    }

    private func writeIndex() throws(MergeKitError) {
        var weightMap: [(String, String)] = []
        for shard in shards {
            for tensor in shard.layout.tensors { weightMap.append((tensor.name, shard.fileName)) }
        }
        weightMap.sort { $0.0 < $1.0 }
        let total = shards.reduce(0) { $0 + $1.layout.dataSize }
        let index = JSONValue.object([
            JSONMember("metadata", .object([JSONMember("total_size", .int(total))])),
            JSONMember("weight_map", .object(weightMap.map { JSONMember($0.0, .string($0.1)) })),
        ])
        let path = FileSystem.join(temporaryPath, Checkpoint.indexFileName)
        staged.registerFile(path)
        try writeInside(path, Array((index.serialized(indent: 2) + "\n").utf8))
    }

    /// Closes and removes the temporary output. Safe to call more than once.
    func abort() {
        for file in writeBehind { file.drain() }
        for file in writeBehind { DescriptorCache.outputs.remove(file) }
        if !finished { staged.abort() }
        finished = true
    }
}
