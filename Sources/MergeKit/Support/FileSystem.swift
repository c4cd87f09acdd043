import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Small POSIX helpers shared by the reader and the writers.
enum FileSystem {
    static let pageSize: Int = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// The error for a failed open/stat of `path`.
    static func openError(path: String, errno code: Int32) -> MergeKitError {
        switch code {
        case ENOENT:
            return MergeKitError(.fileNotFound, file: path, "does not exist", fix: "Check the path")
        case EACCES, EPERM:
            return MergeKitError(.fileUnreadable, file: path, "cannot be read (permission denied)",
                fix: "Check the file's permissions")
        case EISDIR:
            return MergeKitError(.isDirectory, file: path, "is a directory")
        default:
            return MergeKitError(.fileUnreadable, file: path, "cannot be opened (\(String(cString: strerror(code))))")
        }
    }

    enum Kind { case file, directory, other, missing }

    /// What is at `path`: following symlinks, or (`followingLinks: false`) the entry itself, a
    /// symlink being `.other` whatever it points to.
    static func kind(of path: String, followingLinks: Bool = true) -> Kind {
        var st = stat()
        guard (followingLinks ? stat(path, &st) : lstat(path, &st)) == 0 else { return .missing }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .directory
        default: return .other
        }
    }

    /// Whether anything (even a dangling symlink) is at `path`.
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func identity(of path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The canonical absolute path (symlinks resolved) of an existing path.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The canonical absolute path of a path that may not exist yet: its deepest existing ancestor
    /// resolved, with the remaining components appended.
    static func canonicalPath(forNew path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var components = absolute.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var tail: [String] = []
        while !components.isEmpty {
            let candidate = "/" + components.joined(separator: "/")
            if let real = realPath(candidate) {
                let joined = ([real == "/" ? "" : real] + tail).joined(separator: "/")
                return joined.isEmpty ? "/" : joined
            }
            tail.insert(components.removeLast(), at: 0)
        }
        return "/" + tail.joined(separator: "/")
    }

    static func parentDirectory(of path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().path
    }

    static func lastComponent(of path: String) -> String {
        URL(fileURLWithPath: path).lastPathComponent
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// Names of the entries of a directory, sorted.
    static func contents(of directory: String) throws(MergeKitError) -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw MergeKitError(.fileUnreadable, file: directory, "cannot be listed (\(error.localizedDescription))")
        }
    }

    /// Writes all of `bytes` at `offset`, retrying short writes and EINTR.
    static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, file: String) throws(MergeKitError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw writeError(file: file, errno: errno)
            }
            if n == 0 { throw writeError(file: file, errno: EIO) }
            done += n
        }
    }

    /// `pwriteAll` for a byte array.
    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, file: String) throws(MergeKitError) {
        let result: Result<Void, MergeKitError> = bytes.withUnsafeBytes { raw in
            Result { () throws(MergeKitError) in try pwriteAll(fd, raw, at: offset, file: file) }
        }
        try result.get()
    }

    static func writeError(file: String, errno code: Int32) -> MergeKitError {
        let reason = String(cString: strerror(code))
        let fix = code == ENOSPC || code == EDQUOT
            ? "Free space on the output's disk or write to another one"
            : "Check that the output location is writable"
        return MergeKitError(.writeFailed, file: file, "cannot be written (\(reason))", fix: fix)
    }

    /// Reads a whole (small) file.
    static func readFile(_ path: String) throws(MergeKitError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            if kind(of: path) == .missing {
                throw MergeKitError(.fileNotFound, file: path, "does not exist", fix: "Check the path")
            }
            throw MergeKitError(.fileUnreadable, file: path, "cannot be read")
        }
        return [UInt8](data)
    }

    /// Writes a small file in one go (used inside a temporary output directory).
    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(MergeKitError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw writeError(file: path, errno: errno) }
        defer { close(fd) }
        try pwriteAll(fd, bytes, at: 0, file: path)
        guard fsync(fd) == 0 else { throw writeError(file: path, errno: errno) }
    }

    /// Copies a regular file (a companion such as config.json) into place.
    static func copyFile(from source: String, to destination: String) throws(MergeKitError) {
        try writeFile(destination, try readFile(source))
    }

    /// Removes a file or a directory tree, ignoring errors (cleanup after a failure).
    static func removeQuietly(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// fsyncs a directory so a rename inside it is durable.
    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// `path` without trailing slashes ("out/" names the same directory as "out", and an output
    /// that is a symbolic link must be looked at as the link, which "link/" is not).
    static func trimmingTrailingSlashes(_ path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        return String(trimmed)
    }
}
