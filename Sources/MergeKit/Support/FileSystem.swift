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
        if let limit = descriptorLimitError(file: path, errno: code, doing: "cannot be opened") { return limit }
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

    /// The soft limit on open descriptors (`ulimit -n`, RLIMIT_NOFILE); nil when unlimited or unknown.
    static var openFileLimit: Int? {
        var limit = rlimit()
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
        return Int(clamping: limit.rlim_cur)
    }

    /// The error for EMFILE (this process is at its open-file limit) and ENFILE (the system's file
    /// table is full), naming the limit and the way out; nil for any other errno. MergeKit bounds
    /// its own open files (`DescriptorCache`), so this is hit only when the limit is very low.
    static func descriptorLimitError(file: String, errno code: Int32, doing what: String) -> MergeKitError? {
        switch code {
        case EMFILE:
            let limit = openFileLimit.map { "its limit of \(grouped($0)) open files" } ?? "its open-file limit"
            return MergeKitError(.fileUnreadable, file: file, "\(what): the process has reached \(limit) (ulimit -n)",
                fix: "Raise the limit, e.g. `ulimit -n 4096`, and run again")
        case ENFILE:
            return MergeKitError(.fileUnreadable, file: file, "\(what): the system's table of open files is full (ENFILE)",
                fix: "Close other programs' files or raise the system limit (fs.file-max), and run again")
        default:
            return nil
        }
    }

    /// What a file of mode `mode` is, for messages: "a FIFO", "a directory", ...
    static func typeDescription(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFLNK: return "a symbolic link"
        default: return "not a regular file"
        }
    }

    /// What is at `path` (following symlinks), for messages: "a FIFO", "a directory", ...
    static func typeDescription(of path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "missing" }
        return typeDescription(st.st_mode)
    }

    /// The error for an input that exists but is not a regular file (a FIFO, a device, ...).
    static func notRegularFileError(path: String, mode: mode_t) -> MergeKitError {
        if mode & S_IFMT == S_IFDIR {
            return MergeKitError(.isDirectory, file: path, "is a directory, not a regular file", fix: "Name the file, not its directory")
        }
        return MergeKitError(.fileUnreadable, file: path, "is \(typeDescription(mode)), not a regular file",
            fix: "MergeKit reads only regular files; replace it with the file itself")
    }

    /// Throws unless `path` names a regular file (following symlinks): `fileNotFound` when
    /// nothing is there, the type (a FIFO, a directory, ...) otherwise. Never opens the file.
    static func requireRegularFile(_ path: String) throws(MergeKitError) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw openError(path: path, errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw notRegularFileError(path: path, mode: st.st_mode) }
    }

    /// Opens `path` for reading the one way every input is opened: `O_NONBLOCK`, so that opening a
    /// FIFO (or a device) cannot wait for a writer; then `fstat` on the descriptor (the file that
    /// was opened, not whatever the path names now), refusing anything but a regular file with a
    /// message naming what it is; then `O_NONBLOCK` is cleared again (for regular files it changes
    /// nothing; clearing it keeps later reads ordinary). `followSymlinks: false` adds `O_NOFOLLOW`
    /// for callers with a symlink policy (they resolve the path themselves first).
    /// The caller owns the descriptor.
    static func openRegularFile(_ path: String, followSymlinks: Bool = true) throws(MergeKitError) -> (fd: Int32, status: stat) {
        var flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK
        if !followSymlinks { flags |= O_NOFOLLOW }
        var fd: Int32
        repeat { fd = open(path, flags) } while fd < 0 && errno == EINTR
        guard fd >= 0 else {
            if errno == ELOOP && !followSymlinks {
                throw MergeKitError(.fileUnreadable, file: path, "is a symbolic link, which is not followed here",
                    fix: "Replace the link with the file it points to")
            }
            throw openError(path: path, errno: errno)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            close(fd)
            throw openError(path: path, errno: code)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw notRegularFileError(path: path, mode: st.st_mode)
        }
        let current = fcntl(fd, F_GETFL)
        if current >= 0 { _ = fcntl(fd, F_SETFL, current & ~O_NONBLOCK) }
        return (fd, st)
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

    /// Whether the absolute path `path` is `directory` or lies inside it (`/` contains everything).
    static func isSameOrInside(_ path: String, _ directory: String) -> Bool {
        path == directory || path.hasPrefix(directory == "/" ? "/" : directory + "/")
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
        if var limit = descriptorLimitError(file: file, errno: code, doing: "cannot be written") {
            limit.code = .writeFailed
            return limit
        }
        let reason = String(cString: strerror(code))
        let fix = code == ENOSPC || code == EDQUOT
            ? "Free space on the output's disk or write to another one"
            : "Check that the output location is writable"
        return MergeKitError(.writeFailed, file: file, "cannot be written (\(reason))", fix: fix)
    }

    /// The largest file `readFile` reads whole (JSON configs, indexes, recipes, tokenizer files):
    /// the safetensors header limit. Anything larger is not what it claims to be.
    static let smallFileLimit = SafeTensorsHeader.maximumHeaderSize

    /// Reads a whole (small) file, opened with `openRegularFile` (so a FIFO or a device is refused
    /// rather than waited on) and refused before reading when larger than `limit` bytes.
    static func readFile(_ path: String, limit: Int = smallFileLimit, followSymlinks: Bool = true) throws(MergeKitError) -> [UInt8] {
        let (fd, status) = try openRegularFile(path, followSymlinks: followSymlinks)
        defer { close(fd) }
        let size = Int(status.st_size)
        let tooLarge = { (bytes: Int) in
            MergeKitError(.fileUnreadable, file: path, "is \(grouped(bytes)) bytes, more than the \(grouped(limit))-byte limit for a file read whole",
                fix: "This is not the small JSON or text file expected here; check the path")
        }
        guard size <= limit else { throw tooLarge(size) }
        // Read to the end (up to limit + 1 bytes): the file may have grown since fstat.
        var bytes = [UInt8](repeating: 0, count: min(limit + 1, max(size + 1, 4096)))
        var done = 0
        while true {
            if done == bytes.count {
                guard bytes.count <= limit else { throw tooLarge(done) }
                bytes += [UInt8](repeating: 0, count: min(limit + 1, bytes.count * 2) - bytes.count)
            }
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MergeKitError(.fileUnreadable, file: path, "cannot be read (\(String(cString: strerror(errno))))")
            }
            if n == 0 { break }
            done += n
        }
        guard done <= limit else { throw tooLarge(done) }
        return Array(bytes[0..<done])
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
