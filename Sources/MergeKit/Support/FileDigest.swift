import Crypto
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// SHA-256 of a file, streamed in 1 MB blocks (for JSON summaries and manifests; a sweep hashes
/// hundreds of outputs, and larger blocks freed and reallocated per file stayed resident).
public enum FileDigest {
    public static func sha256(path: String) throws(MergeKitError) -> String {
        let fd = try FileSystem.openRegularFile(path).fd
        defer { close(fd) }
        var hasher = SHA256()
        let block = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer, block)
            if n < 0 {
                if errno == EINTR { continue }
                throw MergeKitError(.fileUnreadable, file: path, "cannot be read (\(String(cString: strerror(errno))))")
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: n))
        }
        return hexString(hasher.finalize())
    }
}

#if os(Linux)
private let RUSAGE_SELF_VALUE = __rusage_who_t(RUSAGE_SELF.rawValue)
#else
private let RUSAGE_SELF_VALUE = RUSAGE_SELF
#endif

extension FileDigest {
    /// SHA-256 of every file, hashed on all cores (a sweep has many outputs), by path.
    public static func sha256(of paths: [String]) throws(MergeKitError) -> [String: String] {
        // Each iteration writes only its own slot.
        nonisolated(unsafe) let results = UnsafeMutableBufferPointer<Result<String, MergeKitError>?>.allocate(capacity: paths.count)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            results[i] = Result { () throws(MergeKitError) in try FileDigest.sha256(path: paths[i]) }
        }
        var digests: [String: String] = [:]
        for (path, result) in zip(paths, results) { digests[path] = try result!.get() }
        return digests
    }
}

/// Peak resident memory of this process so far, in bytes.
///
/// On Linux this is `VmHWM` of /proc/self/status, the high-water mark of this program's own
/// memory: `getrusage`'s `ru_maxrss` survives `exec`, so a process started by a large one (a test
/// runner, a Python driver) would report its parent's peak.
public enum ProcessMemory {
    public static var peakResidentBytes: Int {
        #if os(Linux)
        if let status = try? FileSystem.readFile("/proc/self/status") {
            for line in String(decoding: status, as: UTF8.self).split(separator: "\n") where line.hasPrefix("VmHWM:") {
                if let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) { return kilobytes * 1024 }
            }
        }
        #endif
        var usage = rusage()
        guard getrusage(RUSAGE_SELF_VALUE, &usage) == 0 else { return 0 }
        #if os(Linux)
        return Int(usage.ru_maxrss) * 1024
        #else
        return Int(usage.ru_maxrss)
        #endif
    }
}
