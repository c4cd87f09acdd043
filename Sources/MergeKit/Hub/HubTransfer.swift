import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One file's bytes into the cache's `blobs/<etag>`, so that no file there is ever incomplete:
///
/// 1. the blob's lock (`.locks/models--org--name/<etag>.lock`, `flock(2)`, the lock
///    `huggingface_hub` takes) is held while the blob is written, so two processes — MergeKit's
///    or transformers' — never write one blob at once; whoever gets it second finds the blob done;
/// 2. the bytes go to `blobs/<etag>.incomplete`; a download that stops (a dropped connection, a
///    timeout, a 5xx, the process killed) keeps what it got there, and the next attempt — in this
///    run, up to `HubSettings.retries` times, or in a later run — resumes with
///    `Range: bytes=N-` (a server answering 200 instead of 206 starts it over);
/// 3. when the size is reached, the size and — for an LFS file, whose ETag is its sha256 — the
///    SHA-256 of the whole file (hashed as it arrives; a resumed prefix is hashed from disk once)
///    must match, else the partial file is removed and the download fails naming the file;
/// 4. the file is fsynced and renamed to `blobs/<etag>`, a name that only a complete, checked
///    file ever has.
struct HubTransfer {
    let client: HubClient
    let cache: HubCache
    let reference: HubReference
    let commit: String
    let file: String
    let info: HubClient.FileInfo
    /// Called with the number of new bytes (negative when a restart discards some).
    let progress: @Sendable (Int) -> Void

    var blob: String { FileSystem.join(cache.blobs(reference), info.etag) }
    var context: String { "at revision \(reference.resolvedRevision), file \(file)" }

    /// Whether the ETag is a sha256 (an LFS file), which the bytes must hash to.
    var sha256: String? {
        info.etag.utf8.count == 64 && info.etag.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) } ? info.etag : nil
    }

    /// Downloads the blob unless it is already there.
    func run() async throws(MergeKitError) {
        if FileSystem.kind(of: blob) == .file { return }
        try HubCache.makeDirectories(cache.blobs(reference))
        let lock = try await acquireLock()
        defer { flock(lock, LOCK_UN); close(lock) }
        if FileSystem.kind(of: blob) == .file { return }  // written while we waited for the lock
        try await download()
    }

    /// Takes the blob's lock, polling (another process may hold it for a whole download).
    private func acquireLock() async throws(MergeKitError) -> Int32 {
        let path = cache.lockPath(reference, etag: info.etag)
        try HubCache.makeDirectories(FileSystem.parentDirectory(of: path))
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o664)
        guard fd >= 0 else { throw FileSystem.writeError(file: path, errno: errno) }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                let code = errno
                close(fd)
                throw FileSystem.writeError(file: path, errno: code)
            }
            do { try await Task.sleep(nanoseconds: 100_000_000) } catch {
                close(fd)
                throw MergeKitError(.hubRequestFailed, file: reference.description, "\(context): the download was cancelled")
            }
        }
        return fd
    }

    /// The partial file and what is known of it.
    private final class Partial {
        let fd: Int32
        var size: Int
        var hasher = SHA256()
        init(fd: Int32, size: Int) { (self.fd, self.size) = (fd, size) }

        /// Empties the file (the server sent it from the start).
        func restart(path: String) throws(MergeKitError) {
            guard ftruncate(fd, 0) == 0 else { throw FileSystem.writeError(file: path, errno: errno) }
            size = 0
            hasher = SHA256()
        }
    }

    private func download() async throws(MergeKitError) {
        let incomplete = blob + ".incomplete"
        let fd = open(incomplete, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystem.writeError(file: incomplete, errno: errno) }
        var closed = false
        defer { if !closed { close(fd) } }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystem.writeError(file: incomplete, errno: errno) }
        let partial = Partial(fd: fd, size: Int(st.st_size))
        if let expected = info.size, partial.size > expected { try partial.restart(path: incomplete) }
        if partial.size > 0 {
            try hashPrefix(partial, path: incomplete)
            progress(partial.size)
        }

        // Attempts until the file is whole: a failure after new bytes does not use up a retry
        // (as in huggingface_hub), but no more than 100 attempts in all.
        var failures = 0, attempts = 0
        while info.size.map({ partial.size < $0 }) ?? true {
            attempts += 1
            let before = partial.size
            do throws(HubClient.Failure) {
                if try await attempt(partial, path: incomplete) { break }
                if let expected = info.size, partial.size < expected {
                    throw HubClient.Failure(retryable: true, error: MergeKitError(.hubRequestFailed, file: reference.description,
                        "\(context): the connection ended after \(partial.size) of \(expected) bytes", fix: "Run again; the download resumes"))
                }
            } catch {
                if partial.size > before { failures = 0 }
                guard error.retryable, failures < client.settings.retries, attempts < 100 else { throw error.error }
                try await client.pause(failures)
                failures += 1
            }
        }

        // Whole: check it, then give it its name.
        if let expected = info.size, partial.size != expected {
            unlink(incomplete)
            throw MergeKitError(.hubFileCorrupt, file: reference.description,
                "\(context): received \(partial.size) bytes, but the Hub gives its size as \(expected)", fix: "Run again to download it anew")
        }
        if let sha256 {
            let digest = hexString(partial.hasher.finalize())
            guard digest == sha256 else {
                unlink(incomplete)
                throw MergeKitError(.hubFileCorrupt, file: reference.description,
                    "\(context): the downloaded bytes have SHA-256 \(digest), but the Hub gives \(sha256); the partial file was removed",
                    fix: "Run again to download it anew; if it happens again, the file on the Hub (or a proxy in between) is damaged")
            }
        }
        // (Created 0644 less the umask, as huggingface_hub leaves its blobs.)
        guard fsync(fd) == 0 else { throw FileSystem.writeError(file: incomplete, errno: errno) }
        close(fd)
        closed = true
        try HubCache.move(incomplete, to: blob)
    }

    /// Hashes the bytes a previous attempt left in the partial file.
    private func hashPrefix(_ partial: Partial, path: String) throws(MergeKitError) {
        guard sha256 != nil else { return }
        let block = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 16)
        defer { buffer.deallocate() }
        var offset = 0
        while offset < partial.size {
            let n = pread(partial.fd, buffer, min(block, partial.size - offset), off_t(offset))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw MergeKitError(.fileUnreadable, file: path, "cannot be read (\(n < 0 ? String(cString: strerror(errno)) : "it shrank"))")
            }
            partial.hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: n))
            offset += n
        }
    }

    /// One GET from where the partial file ends; true when the server said the file is whole
    /// (a 416 for a file already complete, or a body without a known size that ended).
    private func attempt(_ partial: Partial, path: String) async throws(HubClient.Failure) -> Bool {
        let url = client.fileURL(reference, commit: commit, file: file)
        let offset = partial.size
        let (response, _) = try await client.send(url, deadline: .distantFuture, follow: { _, _ in true }, subject: reference.description, context: { context }) {
            client.request($0, method: .GET, range: offset)
        }
        let code = response.status.code
        switch code {
        case 206:
            // The range must start where the file ends.
            let start = response.headers.first(name: "Content-Range").flatMap(Self.rangeStart)
            if start != offset {
                try restart(partial, path: path)
                throw HubClient.Failure(retryable: true, error: MergeKitError(.hubRequestFailed, file: reference.description,
                    "\(context): the server answered a range request with another range"))
            }
        case 200:
            if offset > 0 { try restart(partial, path: path) }
        case 416 where info.size == offset:
            return true
        case 416:
            try restart(partial, path: path)
            throw HubClient.Failure(retryable: true, error: MergeKitError(.hubRequestFailed, file: reference.description,
                "\(context): the server refused to resume the download (HTTP 416)"))
        default:
            throw client.statusFailure(response, reference: reference, file: file, context: { context })
        }
        do {
            for try await buffer in response.body {
                try write(buffer, to: partial, path: path)
            }
        } catch let error as HubClient.Failure {
            throw error
        } catch {
            throw HubClient.Failure(retryable: true, error: client.transportError(error, subject: reference.description, context: context))
        }
        return info.size == nil
    }

    private func restart(_ partial: Partial, path: String) throws(HubClient.Failure) {
        let discarded = partial.size
        do { try partial.restart(path: path) } catch { throw HubClient.Failure(retryable: false, error: error) }
        progress(-discarded)
    }

    private func write(_ buffer: ByteBuffer, to partial: Partial, path: String) throws(HubClient.Failure) {
        let count = buffer.readableBytes
        guard count > 0 else { return }
        if let expected = info.size, partial.size + count > expected {
            throw HubClient.Failure(retryable: false, error: MergeKitError(.hubFileCorrupt, file: reference.description,
                "\(context): the server sent more than the \(expected) bytes the Hub gives as its size", fix: "Run again to download it anew"))
        }
        let hashed = sha256 != nil
        let failure: MergeKitError? = buffer.withUnsafeReadableBytes { bytes in
            do throws(MergeKitError) {
                try FileSystem.pwriteAll(partial.fd, bytes, at: partial.size, file: path)
            } catch {
                return error
            }
            if hashed { partial.hasher.update(bufferPointer: bytes) }
            return nil
        }
        if let failure { throw HubClient.Failure(retryable: false, error: failure) }
        partial.size += count
        progress(count)
    }

    /// The first byte of `bytes N-M/T`.
    static func rangeStart(_ header: String) -> Int? {
        guard header.hasPrefix("bytes "), let dash = header.firstIndex(of: "-") else { return nil }
        return Int(header[header.index(header.startIndex, offsetBy: 6)..<dash])
    }
}
