import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Write-behind for one output file: as soon as a 2 MB window of the file has been written
/// completely, its writeback to disk is started; a background thread then waits for it and drops
/// the window's pages from the page cache.
///
/// Why: an output written through the page cache otherwise stays there, dirty, until `fsync` at
/// the end. The cache grows by the output's size (a sweep writes tens of GB: far more than
/// memory), the kernel must reclaim other pages — the inputs being merged among them — to make
/// room, and every new page-cache page is memory touched for the first time. On virtual machines
/// that return free memory to the host (free-page reporting) a first touch costs a host page
/// fault, several times slower than copying into recycled pages (the README's performance section
/// has the measurements). With write-behind the output occupies at most
/// `WriteBehindFlusher.maxQueued` windows of cache, the same pages are recycled, and the disk
/// works while the merge computes instead of all at once in the final `fsync`.
///
/// Everything here is a hint: the writer still `fsync`s every file before renaming it into place,
/// so a window written twice (a rerun merge pass) or never completed is simply flushed there.
final class WriteBehind: @unchecked Sendable {
    static let windowBytes = 2 << 20

    /// The file's descriptor. The writer may close it between writes (`DescriptorCache`) and
    /// open the file again (`rebind`); it drains this first, so any descriptor read here while
    /// windows are pending is open and names this file.
    var fd: Int32 { descriptor.load(ordering: .acquiring) }
    private let descriptor: Atomic<Int32>
    private let fileSize: Int
    private let windowBytes: Int
    /// Where completed windows go: the flusher, or a test's recorder.
    private let complete: (WriteBehind, Range<Int>) -> Void
    /// Bytes written so far in each window (counted up to the window's size).
    private let written: Mutex<[Int]>
    /// Windows handed to the flusher and not yet finished; guarded by the flusher's condition.
    var pending = 0

    init(fd: Int32, fileSize: Int, windowBytes: Int = WriteBehind.windowBytes,
         complete: @escaping (WriteBehind, Range<Int>) -> Void = { WriteBehindFlusher.shared.submit($0, window: $1) }) {
        precondition(windowBytes > 0)
        descriptor = Atomic(fd)
        self.fileSize = fileSize
        self.windowBytes = windowBytes
        self.complete = complete
        written = Mutex(Array(repeating: 0, count: (fileSize + windowBytes - 1) / windowBytes))
    }

    private func windowRange(_ window: Int) -> Range<Int> {
        let start = window * windowBytes
        return start..<min(start + windowBytes, fileSize)
    }

    /// Records that the bytes at `range` (file offsets) have been written; windows this completes
    /// go to the flusher (which may block the caller while the disk is behind).
    func wrote(_ range: Range<Int>) {
        guard !range.isEmpty, WriteBehindFlusher.isAvailable else { return }
        let first = range.lowerBound / windowBytes
        let last = (range.upperBound - 1) / windowBytes
        var completed: [Int] = []
        written.withLock { written in
            guard first < written.count else { return }
            for window in first...min(last, written.count - 1) {
                let bounds = windowRange(window)
                let size = bounds.count
                guard written[window] < size else { continue }
                let overlap = min(range.upperBound, bounds.upperBound) - max(range.lowerBound, bounds.lowerBound)
                written[window] += overlap
                if written[window] >= size { completed.append(window) }
            }
        }
        for window in completed { complete(self, windowRange(window)) }
    }

    /// Uses `fd`, a new descriptor of the same file, from now on.
    func rebind(_ fd: Int32) {
        descriptor.store(fd, ordering: .releasing)
    }

    /// Waits until the flusher is done with this file (before its descriptor is closed).
    func drain() {
        WriteBehindFlusher.shared.drain(self)
    }
}

/// The one background thread that finishes write-behind windows for every output file, oldest
/// first, and bounds how much of them may be in flight.
final class WriteBehindFlusher: @unchecked Sendable {
    static let shared = WriteBehindFlusher()
    /// Windows in flight at most (2 MB each, so 128 MB of cache), across all files being written.
    /// Larger windows with fewer in flight (4 MB × 32, 8 MB × 16) made no difference on the sweep
    /// benchmark (Benchmarks/sweep.sh); 2 MB matches the executor's 2 MB writes of bf16.
    static let maxQueued = 64

    #if os(Linux)
    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    /// glibc's sync_file_range(2), which the Glibc module does not import.
    private static let syncFileRange: SyncFileRange? = dlsym(nil, "sync_file_range").map { unsafeBitCast($0, to: SyncFileRange.self) }
    static var isAvailable: Bool { syncFileRange != nil }
    private static let waitBefore: UInt32 = 1, write: UInt32 = 2, waitAfter: UInt32 = 4
    #else
    static var isAvailable: Bool { false }
    #endif

    private let condition = NSCondition()
    private var queue: [(file: WriteBehind, range: Range<Int>)] = []
    private var started = false

    /// Starts writeback of `range` of `file` now and queues it to be waited for and dropped.
    func submit(_ file: WriteBehind, window range: Range<Int>) {
        #if os(Linux)
        _ = WriteBehindFlusher.syncFileRange?(file.fd, Int64(range.lowerBound), Int64(range.count), WriteBehindFlusher.write)
        #endif
        condition.lock()
        if !started {
            started = true
            let thread = Thread { [unowned self] in self.run() }
            thread.name = "mergekit-write-behind"
            thread.start()
        }
        while queue.count >= WriteBehindFlusher.maxQueued { condition.wait() }
        queue.append((file, range))
        file.pending += 1
        condition.broadcast()
        condition.unlock()
    }

    func drain(_ file: WriteBehind) {
        condition.lock()
        while file.pending > 0 { condition.wait() }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let (file, range) = queue.removeFirst()
            condition.unlock()
            #if os(Linux)
            _ = WriteBehindFlusher.syncFileRange?(file.fd, Int64(range.lowerBound), Int64(range.count),
                                                  WriteBehindFlusher.waitBefore | WriteBehindFlusher.write | WriteBehindFlusher.waitAfter)
            _ = posix_fadvise(file.fd, off_t(range.lowerBound), off_t(range.count), POSIX_FADV_DONTNEED)
            #endif
            condition.lock()
            file.pending -= 1
            condition.broadcast()
            condition.unlock()
        }
    }
}
