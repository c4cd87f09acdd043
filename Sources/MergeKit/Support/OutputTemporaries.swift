import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// MergeKit's temporary outputs: their names, their owners, and the removal of stale ones.
///
/// Every output is written under a temporary sibling name and renamed into place when complete
/// (`StagedOutput`). The names are
///
///     .NAME.mergekit-tmp-PID-RANDOM   the output NAME being written (a file or a directory)
///     .NAME.mergekit-old-PID-RANDOM   the previous output directory NAME, moved aside while its
///                                     recognised entries are deleted
///
/// **Ownership is a lock, not the PID.** The process that creates a temporary holds an exclusive
/// `flock` on it for as long as the temporary exists. The kernel drops the lock when the process
/// ends, however it ends (`kill -9`, the OOM killer, a crash), so a temporary whose lock can be
/// taken has no owner: it is *stale*. A lock held by a live process keeps its temporaries safe
/// whatever its PID — a reused PID, another PID namespace (containers sharing a volume) — and
/// `flock` behaves the same on Linux and macOS. The PID in the name only says who left it.
///
/// The next run writing the same output removes the stale temporaries next to it (holding each
/// one's lock while removing it, so two runs never race on one) and returns a note for each. A
/// stale `-old-` directory whose output is missing means the run was killed between its two
/// renames: it is renamed back, restoring the previous output, instead of being removed. Stale
/// directories lose only the entries MergeKit writes (`OutputEntries`); anything else is left
/// with them and named in the note. `merge-cli verify` lists stale temporaries without removing
/// them.
enum OutputTemporaries {
    enum Role: String, Sendable {
        /// An output being written.
        case writing = "tmp"
        /// A replaced output directory moved aside.
        case replaced = "old"
    }

    /// A parsed temporary name.
    struct Name: Equatable {
        /// The name of the output it belongs to.
        let output: String
        let role: Role
        /// The process that created it.
        let pid: Int32
    }

    /// A temporary found on disk.
    struct Found: Sendable, Equatable {
        let path: String
        let role: Role
        let pid: Int32
        let isDirectory: Bool
        /// Disk space it takes (allocated blocks).
        let bytes: Int
        /// Whether a live process holds it (it is being written or replaced right now).
        let inUse: Bool
    }

    private static let marker = ".mergekit-"

    /// Writes a small file whole under a temporary name beside `path` and renames it into place
    /// (so it is never seen half-written), then syncs the directory. An existing file is replaced.
    static func writeWhole(_ path: String, _ bytes: [UInt8]) throws(MergeKitError) {
        let temporary = newPath(for: path, role: .writing)
        TemporaryFiles.register(file: temporary)
        defer { TemporaryFiles.unregister([temporary]) }
        do throws(MergeKitError) {
            try FileSystem.writeFile(temporary, bytes)
            guard rename(temporary, path) == 0 else { throw FileSystem.writeError(file: path, errno: errno) }
        } catch {
            _ = unlink(temporary)
            throw error
        }
        FileSystem.syncDirectory(FileSystem.parentDirectory(of: path))
    }

    /// A fresh, unused path next to `destination` for a temporary of `role`.
    static func newPath(for destination: String, role: Role) -> String {
        let directory = FileSystem.parentDirectory(of: destination)
        let name = FileSystem.lastComponent(of: destination)
        var generator = SystemRandomNumberGenerator()
        while true {
            let suffix = String(generator.next() & 0xFFFF_FFFF, radix: 16)
            let candidate = FileSystem.join(directory, ".\(name)\(marker)\(role.rawValue)-\(getpid())-\(suffix)")
            if !FileSystem.exists(candidate) { return candidate }
        }
    }

    /// Parses `.NAME.mergekit-ROLE-PID-RANDOM`.
    static func parse(_ name: String) -> Name? {
        guard name.hasPrefix("."), let range = name.range(of: marker, options: .backwards) else { return nil }
        let output = String(name[name.index(after: name.startIndex)..<range.lowerBound])
        let fields = name[range.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
        guard !output.isEmpty, fields.count == 3, let role = Role(rawValue: String(fields[0])), let pid = Int32(fields[1]),
              !fields[2].isEmpty, fields[2].allSatisfy(\.isHexDigit) else { return nil }
        return Name(output: output, role: role, pid: pid)
    }

    static func isTemporaryName(_ name: String) -> Bool {
        parse(name) != nil
    }

    // MARK: Locks

    /// Takes the exclusive lock of an open temporary, waiting for it (another run inspecting the
    /// temporary holds it only for an instant).
    static func lock(_ fd: Int32) -> Bool {
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { return false }
        }
        return true
    }

    /// Takes the exclusive lock without waiting; false when a live process holds it.
    static func tryLock(_ fd: Int32) -> Bool {
        flock(fd, LOCK_EX | LOCK_NB) == 0
    }

    /// Whether `fd` is still the file or directory at `path` (it was not removed or replaced).
    static func isSame(_ fd: Int32, as path: String) -> Bool {
        var open = stat(), named = stat()
        guard fstat(fd, &open) == 0, lstat(path, &named) == 0 else { return false }
        return open.st_dev == named.st_dev && open.st_ino == named.st_ino
    }

    /// Whether a live process holds the lock of the temporary at `path`.
    static func isInUse(_ path: String) -> Bool {
        guard let (fd, _) = openForLock(path) else { return false }
        defer { close(fd) }
        guard tryLock(fd) else { return true }
        _ = flock(fd, LOCK_UN)
        return false
    }

    /// Opens a regular file or directory (not following a symlink, never blocking on a FIFO) to
    /// take its lock.
    static func openForLock(_ path: String) -> (fd: Int32, isDirectory: Bool)? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG || st.st_mode & S_IFMT == S_IFDIR else {
            close(fd)
            return nil
        }
        return (fd, st.st_mode & S_IFMT == S_IFDIR)
    }

    // MARK: Finding and removing

    /// The temporaries of `path` next to it and, when `path` is a directory, every temporary
    /// directly inside it.
    static func find(near path: String) -> [Found] {
        let trimmed = FileSystem.trimmingTrailingSlashes(path)
        let name = FileSystem.lastComponent(of: trimmed)
        var candidates: [String] = []
        let parent = FileSystem.parentDirectory(of: trimmed)
        for entry in (try? FileSystem.contents(of: parent)) ?? [] where parse(entry)?.output == name {
            candidates.append(FileSystem.join(parent, entry))
        }
        if FileSystem.kind(of: trimmed, followingLinks: false) == .directory {
            for entry in (try? FileSystem.contents(of: trimmed)) ?? [] where isTemporaryName(entry) {
                candidates.append(FileSystem.join(trimmed, entry))
            }
        }
        return candidates.compactMap { candidate in
            let kind = FileSystem.kind(of: candidate, followingLinks: false)
            guard let parsed = parse(FileSystem.lastComponent(of: candidate)), kind == .file || kind == .directory else { return nil }
            return Found(path: candidate, role: parsed.role, pid: parsed.pid, isDirectory: kind == .directory,
                         bytes: diskUsage(candidate), inUse: isInUse(candidate))
        }
    }

    /// Removes the stale temporaries next to `destination` (see the type's documentation) and
    /// describes what was done. Temporaries a live process holds are left alone.
    static func removeStale(near destination: String) -> [OutputNote] {
        let trimmed = FileSystem.trimmingTrailingSlashes(destination)
        let name = FileSystem.lastComponent(of: trimmed)
        let parent = FileSystem.parentDirectory(of: trimmed)
        var notes: [OutputNote] = []
        for entry in (try? FileSystem.contents(of: parent)) ?? [] {
            guard let parsed = parse(entry), parsed.output == name else { continue }
            let path = FileSystem.join(parent, entry)
            guard let (fd, isDirectory) = openForLock(path) else { continue }
            defer { close(fd) }
            guard tryLock(fd), isSame(fd, as: path) else { continue }
            let size = byteDescription(diskUsage(path))
            let who = "an interrupted run (process \(parsed.pid))"
            if parsed.role == .replaced && isDirectory && FileSystem.kind(of: trimmed, followingLinks: false) == .missing {
                if rename(path, trimmed) == 0 {
                    FileSystem.syncDirectory(parent)
                    notes.append(OutputNote(.restoredPreviousOutput, path: trimmed,
                        "restored \(trimmed) from \(path), where \(who) had moved it aside while replacing it"))
                }
                continue
            }
            if isDirectory {
                let left = OutputEntries.removeRecognised(in: path)
                if !left.isEmpty || rmdir(path) != 0 {
                    notes.append(OutputNote.leftEntries(path, left, context: "a temporary output left by \(who)"))
                    continue
                }
            } else if unlink(path) != 0 {
                continue
            }
            FileSystem.syncDirectory(parent)
            let what = parsed.role == .writing ? "a temporary output" : "the previous output, moved aside"
            notes.append(OutputNote(.removedStaleTemporary, path: path, "removed \(path) (\(size)), \(what) left by \(who)"))
        }
        return notes
    }

    /// Disk space taken by a file, or by a directory and everything under it (a few levels).
    static func diskUsage(_ path: String, depth: Int = 0) -> Int {
        var st = stat()
        guard lstat(path, &st) == 0 else { return 0 }
        var total = Int(st.st_blocks) * 512
        if st.st_mode & S_IFMT == S_IFDIR && depth <= OutputEntries.maximumDepth {
            for entry in (try? FileSystem.contents(of: path)) ?? [] {
                total += diskUsage(FileSystem.join(path, entry), depth: depth + 1)
            }
        }
        return total
    }

    /// "1.23 GB", "456 KB".
    static func byteDescription(_ bytes: Int) -> String {
        let units: [(Double, String)] = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")]
        for (size, unit) in units where Double(bytes) >= size {
            return String(format: "%.2f", Double(bytes) / size) + " " + unit
        }
        return "\(bytes) bytes"
    }
}
