import Foundation
import FuzzSupport
import Testing
@testable import MergeKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opening a PyTorch checkpoint costs memory by its number of tensors, not by its size.
@Suite("PyTorch checkpoints: memory")
struct PyTorchMemoryTests {
    /// Writes at `path` a sparse archive as `torch.save` lays one out: `count` storages of
    /// `storageBytes` each (holes: nothing is written but the records and headers), each viewed
    /// by a tensor `t<i>` of its first 4 F32 elements (as [2, 2], `transposed` or not); then
    /// drops it from the page cache.
    static func writeSparseArchive(_ path: String, count: Int, storageBytes: Int, transposed: Bool = false) throws {
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        let pickle = PickleBuilder.stateDict((0..<count).map { i in
            ("t\(i)", { $0.tensor(key: "\(i)", numel: storageBytes / 4, size: [2, 2], stride: transposed ? [1, 2] : [2, 1]) })
        })
        var records: [(name: String, data: [UInt8]?, size: Int)] = [("archive/data.pkl", pickle, pickle.count), ("archive/byteorder", Array("little".utf8), 6)]
        for i in 0..<count { records.append(("archive/data/\(i)", nil, storageBytes)) }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        defer { close(fd) }
        func write(_ bytes: [UInt8], at offset: Int) { _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) } }
        var offset = 0
        var central: [UInt8] = []
        for record in records {
            let name = Array(record.name.utf8)
            var extra = 0
            while (offset + 30 + name.count + extra) % 64 != 0 { extra += 1 }
            if extra > 0 && extra < 4 { extra += 64 }
            let crc = record.data.map { Int(ZipBytes.crc32($0)) } ?? 0
            let fields = le16(0) + le16(0) + le16(0) + le16(0x21) + le32(crc) + le32(record.size) + le32(record.size) + le16(name.count)
            var header = le32(0x0403_4b50) + le16(20) + fields + le16(extra) + name
            if extra > 0 { header += le16(0xAAAA) + le16(extra - 4) + [UInt8](repeating: 0, count: extra - 4) }
            write(header + (record.data ?? []), at: offset)
            central += le32(0x0201_4b50) + le16(20) + le16(20) + fields + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(offset) + name
            offset += header.count + record.size
        }
        write(central + le32(0x0605_4b50) + le16(0) + le16(0) + le16(records.count) + le16(records.count)
              + le32(central.count) + le32(offset) + le16(0), at: offset)
        fsync(fd)
        dropFromPageCache(path)
    }

    /// Takes `path` out of the page cache, so that reading it next reads it from the disk as a
    /// newly downloaded file is read: in readahead-sized (large) folios.
    static func dropFromPageCache(_ path: String) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        close(fd)
    }

    /// merge-cli's own peak resident memory for `arguments` (with --json), in bytes.
    static func peak(_ arguments: [String]) throws -> Int {
        let run = try CLI.runWatched(arguments + ["--json", "--quiet"], ownPeakMemory: true)
        #expect(run.status == 0, "\(run.stderr)")
        return try #require(try JSONParser.parse(Array(run.stdout.utf8))["peak_memory_bytes"]?.nonNegativeInt)
    }

    @Test("Opening a 256 MB archive of 128 storages maps none of them: converting it peaks as converting its 2 KB of tensors from safetensors does")
    func openingIsFlat() throws {
        let dir = TestSupport.temporaryDirectory("pytorch-memory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeSparseArchive(dir + "/sparse.pt", count: 128, storageBytes: 2 << 20)
        let fromArchive = try Self.peak(["convert", dir + "/sparse.pt", "-o", dir + "/a.safetensors"])
        let converted = try Checkpoint(path: dir + "/a.safetensors")
        #expect(converted.entries.count == 128 && converted.entries.allSatisfy { $0.info.shape == [2, 2] })
        let fromSafetensors = try Self.peak(["convert", dir + "/a.safetensors", "-o", dir + "/b.safetensors"])
        // Reading each storage's local header through the file's mapping left the page-cache folio
        // around it mapped: with large folios (ext4 on Linux 6.16+, read in readahead-sized
        // folios) 2 MB each, 168 MB against 34 MB here when this was written. (Where the page
        // cache maps small pages only, this cannot fail.)
        #expect(fromArchive < fromSafetensors + 24_000_000, "\(fromArchive) bytes from the archive, \(fromSafetensors) from safetensors")
    }

    @Test("Gathering 128 transposed views of storages 3 MB apart keeps memory as flat")
    func gatheringIsFlat() throws {
        let dir = TestSupport.temporaryDirectory("pytorch-memory")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeSparseArchive(dir + "/transposed.pt", count: 128, storageBytes: 3 << 20, transposed: true)
        let archive = try Checkpoint(path: dir + "/transposed.pt")
        #expect(archive.files.count == 2, "the views are gathered into a scratch file")
        Self.dropFromPageCache(dir + "/transposed.pt")
        let fromArchive = try Self.peak(["convert", dir + "/transposed.pt", "-o", dir + "/a.safetensors"])
        let fromSafetensors = try Self.peak(["convert", dir + "/a.safetensors", "-o", dir + "/b.safetensors"])
        // Each view is read through the archive's mapping, whose pages are dropped after it.
        #expect(fromArchive < fromSafetensors + 24_000_000, "\(fromArchive) bytes from the archive, \(fromSafetensors) from safetensors")
    }
}
