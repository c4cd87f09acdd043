import Foundation
import Synchronization
import Testing
@testable import MergeKit
#if canImport(Glibc)
import Glibc
#endif

@Suite("Write-behind")
struct WriteBehindTests {
    @Test("Each window is handed on exactly once, when its last byte is written, whatever the order and split of the writes")
    func windowsCompleteOnce() {
        let window = 1000, fileSize = 10 * window + 123
        var rng = SplitMix64(seed: 7)
        // Writes of 1...2500 bytes covering the file, in a shuffled order (many span windows).
        var pieces: [Range<Int>] = []
        var position = 0
        while position < fileSize {
            let n = min(fileSize - position, Int(rng.next() % 2500) + 1)
            pieces.append(position..<position + n)
            position += n
        }
        for i in pieces.indices.reversed() { pieces.swapAt(i, Int(rng.next() % UInt64(i + 1))) }

        let writtenBytes = Mutex([Bool](repeating: false, count: fileSize))
        let completed = Mutex<[Range<Int>]>([])
        let file = WriteBehind(fd: -1, fileSize: fileSize, windowBytes: window) { _, range in
            let complete = writtenBytes.withLock { written in range.allSatisfy { written[$0] } }
            #expect(complete, "window \(range) handed on before all its bytes were written")
            completed.withLock { $0.append(range) }
        }
        for piece in pieces {
            writtenBytes.withLock { written in for i in piece { written[i] = true } }
            file.wrote(piece)
        }
        let windows = (0..<11).map { w in w * window..<min((w + 1) * window, fileSize) }
        #expect(completed.withLock { $0.sorted { $0.lowerBound < $1.lowerBound } } == windows)
        // Writing the same bytes again (a rerun merge pass) hands nothing on a second time.
        for piece in pieces.prefix(5) { file.wrote(piece) }
        #expect(completed.withLock { $0.count } == windows.count)
    }

    @Test("A window with a byte never written is never handed on")
    func incompleteWindowStays() {
        let completed = Mutex<[Range<Int>]>([])
        let file = WriteBehind(fd: -1, fileSize: 3000, windowBytes: 1000) { _, range in completed.withLock { $0.append(range) } }
        file.wrote(0..<1499)
        file.wrote(1500..<3000)
        #expect(completed.withLock { $0 } == [0..<1000, 2000..<3000])
        file.wrote(1499..<1500)
        #expect(completed.withLock { $0 } == [0..<1000, 2000..<3000, 1000..<2000])
    }

    #if os(Linux)
    /// Pages of `path` resident in the page cache, and the file's page count.
    private static func residentPages(_ path: String) -> (resident: Int, total: Int) {
        let fd = open(path, O_RDONLY)
        precondition(fd >= 0)
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size), page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)!
        defer { munmap(map, size) }
        var vector = [UInt8](repeating: 0, count: (size + page - 1) / page)
        precondition(mincore(map, size, &vector) == 0)
        return (vector.reduce(0) { $0 + Int($1 & 1) }, vector.count)
    }

    /// Whether the temporary directory's file system has pages to drop (tmpfs keeps every page in
    /// memory by design) and sync_file_range is there.
    static let pageCacheDroppable: Bool = {
        guard WriteBehindFlusher.isAvailable, let mounts = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return false }
        let directory = FileManager.default.temporaryDirectory.resolvingSymlinksInPath().path
        // The file system type of the longest mount point containing the directory.
        var best = (point: "", type: "")
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1])
            let inside = point == "/" || directory == point || directory.hasPrefix(point + "/")
            if inside && point.count >= best.point.count { best = (point, String(fields[2])) }
        }
        return best.type != "tmpfs" && best.type != "ramfs"
    }()

    @Test("An output written with write-behind leaves the page cache; one written without stays in it",
          .enabled(if: pageCacheDroppable, "the temporary directory is on tmpfs"))
    func outputLeavesPageCache() throws {
        let directory = TestSupport.temporaryDirectory("write-behind")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let size = 48 << 20, piece = 1 << 20
        let bytes = [UInt8](repeating: 0x5A, count: piece)
        var counts: [String: (resident: Int, total: Int)] = [:]
        for mode in ["plain", "write-behind"] {
            let path = directory + "/" + mode
            let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
            try #require(fd >= 0)
            let file = WriteBehind(fd: fd, fileSize: size)
            for offset in stride(from: 0, to: size, by: piece) {
                bytes.withUnsafeBytes { _ = pwrite(fd, $0.baseAddress!, piece, off_t(offset)) }
                if mode == "write-behind" { file.wrote(offset..<offset + piece) }
            }
            file.drain()
            #expect(fsync(fd) == 0)
            close(fd)
            counts[mode] = Self.residentPages(path)
        }
        let plain = counts["plain"]!, behind = counts["write-behind"]!
        #expect(plain.resident * 4 >= plain.total * 3, "plain writes: \(plain.resident) of \(plain.total) pages resident")
        #expect(behind.resident * 4 <= behind.total, "write-behind: \(behind.resident) of \(behind.total) pages resident")
    }
    #endif
}
