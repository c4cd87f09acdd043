#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An output (a file or a directory) written under a temporary name next to its destination and
/// moved into place only when complete; the one place where MergeKit replaces what is on disk.
///
/// Creating it first removes the stale temporaries of the destination (`OutputTemporaries`),
/// then creates the temporary (registered with `TemporaryFiles`, so an interrupt removes it) and
/// holds its lock until it is renamed or removed. `commit()` moves it into place:
///
/// - nothing at the destination: a file is hard-linked into place (which fails if something
///   appeared meanwhile; `rename` where the file system has no hard links), a directory renamed
///   (which fails if a non-empty directory appeared). Without `overwrite`, anything that appeared
///   while the output was written is an error, never replaced.
/// - a file output over a regular file or a symbolic link: one `rename(2)`, which replaces the
///   file, or the link itself (never the file the link points to).
/// - a directory output over a directory: the old directory is locked and renamed aside
///   (`.NAME.mergekit-old-…`), the new one renamed into place, and then only the entries an
///   output consists of (`OutputEntries`) are deleted from the old one before it is removed.
///   Anything else found there — something that appeared after the plan was checked — is left,
///   with the aside directory, and reported in a note. The old directory is never deleted
///   wholesale.
/// - anything else (a directory where a file is written, a file, link or FIFO where a directory
///   is written) is refused: `OutputGuard` refuses it before any work; this re-checks at commit.
///
/// An output may be staged inside another (`parent`, a sweep's directory): it is then created
/// and committed inside the parent's temporary directory, and moves into place with it. An
/// output that `staysTemporary` (a multi-stage recipe's intermediate) keeps its files registered
/// as temporaries once moved into place, in the same step, for its work directory to remove.
final class StagedOutput: @unchecked Sendable {
    /// Where the output ends up, as the user named it (without trailing slashes).
    let destination: String
    let isDirectory: Bool
    let overwrite: Bool
    /// The temporary file or directory being written.
    let temporaryPath: String
    /// What happened around the destination (stale temporaries removed, entries left aside).
    private(set) var notes: [OutputNote] = []
    /// Where `commit()` renames the temporary: `destination`, or its place in the parent's
    /// temporary directory.
    private let target: String
    private let parent: StagedOutput?
    private let staysTemporary: Bool
    /// Descriptor holding the temporary's lock (see `OutputTemporaries`).
    private var lockDescriptor: Int32 = -1
    /// Paths registered with `TemporaryFiles`: the temporary first, then anything inside it.
    private var registered: [(path: String, isDirectory: Bool)] = []
    private var finished = false

    init(destination: String, isDirectory: Bool, overwrite: Bool, in parent: StagedOutput? = nil, staysTemporary: Bool = false) throws(MergeKitError) {
        let destination = FileSystem.trimmingTrailingSlashes(destination)
        self.destination = destination
        self.isDirectory = isDirectory
        self.overwrite = overwrite
        self.parent = parent
        self.staysTemporary = staysTemporary
        if let parent {
            precondition(destination.hasPrefix(parent.destination + "/"), "\(destination) is not inside \(parent.destination)")
            target = parent.temporaryPath + destination.dropFirst(parent.destination.count)
        } else {
            target = destination
            notes = OutputTemporaries.removeStale(near: destination)
            // The previous output is back where the plan saw nothing: only an allowed overwrite replaces it.
            if !overwrite, let restored = notes.first(where: { $0.kind == .restoredPreviousOutput }) {
                throw MergeKitError(.outputExists, file: destination, "exists again: \(restored.message)",
                                    fix: "\(term: .overwrite.atStart) to replace it, or choose a new output path")
            }
        }
        var created: (path: String, fd: Int32)?
        for _ in 0..<8 where created == nil {
            created = try Self.create(for: target, isDirectory: isDirectory, destination: destination, locked: parent == nil)
        }
        guard let created else {
            throw MergeKitError(.writeFailed, file: destination, "cannot create its temporary output: another process keeps removing it",
                                fix: "Check for other programs cleaning the output's directory")
        }
        temporaryPath = created.path
        lockDescriptor = created.fd
        registered = [(created.path, isDirectory)]
    }

    deinit {
        if !finished { abort() }
    }

    /// Creates a temporary for `target` and takes its lock; nil when a run cleaning stale
    /// temporaries removed it before the lock was taken (then try another name).
    ///
    /// Without `locked` (an output inside a parent's temporary directory, which the parent's lock
    /// already protects from other runs' cleaning) no descriptor is kept (-1): a sweep of many
    /// points then holds one lock, not one open file per point.
    private static func create(for target: String, isDirectory: Bool, destination: String, locked: Bool = true) throws(MergeKitError) -> (path: String, fd: Int32)? {
        let path = OutputTemporaries.newPath(for: target, role: .writing)
        let fd: Int32
        if isDirectory {
            TemporaryFiles.register(directory: path)
            guard mkdir(path, 0o755) == 0 else {
                let code = errno
                TemporaryFiles.unregister([path])
                throw FileSystem.writeError(file: destination, errno: code)
            }
            fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        } else {
            TemporaryFiles.register(file: path)
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
            if fd < 0 {
                let code = errno
                TemporaryFiles.unregister([path])
                throw FileSystem.writeError(file: destination, errno: code)
            }
        }
        guard fd >= 0 else {
            TemporaryFiles.unregister([path])
            return nil
        }
        guard locked else {
            close(fd)
            return (path, -1)
        }
        guard OutputTemporaries.lock(fd), OutputTemporaries.isSame(fd, as: path) else {
            close(fd)
            TemporaryFiles.unregister([path])
            return nil
        }
        return (path, fd)
    }

    /// Registers a file about to be created inside the temporary directory.
    func registerFile(_ path: String) {
        TemporaryFiles.register(file: path)
        registered.append((path, false))
    }

    /// Moves the output into place (see the type's documentation). Interrupts are deferred while
    /// it runs, so an output moved aside is never lost to a signal.
    func commit() throws(MergeKitError) {
        precondition(!finished, "a staged output is committed once")
        let paths = registered.map(\.path)
        // Inside a parent, what was committed stays temporary (it lives in the parent's temporary);
        // so does an output that stays temporary.
        let moved = parent == nil && !staysTemporary ? [] : registered.map { (path: target + $0.path.dropFirst(temporaryPath.count), isDirectory: $0.isDirectory) }
        do throws(MergeKitError) {
            try TemporaryFiles.deferringSignals(thenUnregister: paths, register: moved) { () throws(MergeKitError) in
                try moveIntoPlace()
            }
        } catch {
            abort()
            throw error
        }
        parent?.registered += moved
        registered = []
        if lockDescriptor >= 0 { close(lockDescriptor) }
        lockDescriptor = -1
        finished = true
    }

    /// Removes an output committed inside this temporary directory (a sweep point evaluated and
    /// not kept: `SweepOutput.discard`), `destination` being where it would have ended up. Only
    /// what an output consists of is removed (`OutputEntries`); what is left is returned.
    func discard(_ inner: String) -> [String] {
        let inner = FileSystem.trimmingTrailingSlashes(inner)
        precondition(inner.hasPrefix(destination + "/") && !finished, "\(inner) is not inside \(destination)")
        let path = temporaryPath + inner.dropFirst(destination.count)
        var left: [String] = []
        switch FileSystem.kind(of: path, followingLinks: false) {
        case .directory:
            left = OutputEntries.removeRecognised(in: path)
            if left.isEmpty && rmdir(path) != 0 { left = ["."] }
        case .missing:
            break
        default:
            if unlink(path) != 0 { left = ["."] }
        }
        let removed = registered.filter { $0.path == path || $0.path.hasPrefix(path + "/") }.map(\.path)
        TemporaryFiles.unregister(removed)
        registered.removeAll { $0.path == path || $0.path.hasPrefix(path + "/") }
        return left
    }

    /// Removes the temporary (and only what MergeKit wrote in it). Safe to call more than once.
    func abort() {
        guard !finished else { return }
        finished = true
        if isDirectory {
            let left = OutputEntries.removeRecognised(in: temporaryPath)
            if !left.isEmpty || rmdir(temporaryPath) != 0 {
                notes.append(.leftEntries(temporaryPath, left, context: "the temporary output of this failed run"))
            }
        } else {
            _ = unlink(temporaryPath)
        }
        TemporaryFiles.unregister(registered.map(\.path))
        registered = []
        if lockDescriptor >= 0 { close(lockDescriptor) }
        lockDescriptor = -1
    }

    private func moveIntoPlace() throws(MergeKitError) {
        let parentDirectory = FileSystem.parentDirectory(of: target)
        defer { FileSystem.syncDirectory(parentDirectory) }
        switch FileSystem.kind(of: target, followingLinks: false) {
        case .missing:
            try moveToNewPlace()
        case let existing:
            guard overwrite else { throw appeared() }
            if !isDirectory {
                guard existing != .directory else { throw Self.notReplaceable(destination, isDirectory: false, found: .directory) }
                guard rename(temporaryPath, target) == 0 else { throw FileSystem.writeError(file: destination, errno: errno) }
            } else {
                guard existing == .directory else { throw Self.notReplaceable(destination, isDirectory: true, found: existing) }
                try replaceDirectory()
            }
        }
    }

    /// Puts the output where nothing is, failing rather than replacing anything that appeared.
    private func moveToNewPlace() throws(MergeKitError) {
        if isDirectory {
            guard rename(temporaryPath, target) == 0 else {
                let code = errno
                if code == ENOTEMPTY || code == EEXIST || code == ENOTDIR || code == EISDIR { throw appeared() }
                throw FileSystem.writeError(file: destination, errno: code)
            }
            return
        }
        if link(temporaryPath, target) == 0 {
            _ = unlink(temporaryPath)
            return
        }
        let code = errno
        if code == EEXIST { throw appeared() }
        // No hard links on this file system (FAT, some network file systems): check, then rename.
        guard FileSystem.kind(of: target, followingLinks: false) == .missing else { throw appeared() }
        guard rename(temporaryPath, target) == 0 else { throw FileSystem.writeError(file: destination, errno: errno) }
    }

    /// Replaces the directory at `target`: lock it, move it aside, move the new one in, then
    /// delete only the old entries an output consists of.
    private func replaceDirectory() throws(MergeKitError) {
        let old = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard old >= 0 else { throw FileSystem.writeError(file: destination, errno: errno) }
        defer { close(old) }
        guard OutputTemporaries.tryLock(old) else {
            throw MergeKitError(.writeFailed, file: destination, "is being replaced by another process right now",
                                fix: "Wait for the other run to finish, or choose another output path")
        }
        guard OutputTemporaries.isSame(old, as: target) else { throw appeared() }
        let aside = OutputTemporaries.newPath(for: target, role: .replaced)
        guard rename(target, aside) == 0 else { throw FileSystem.writeError(file: destination, errno: errno) }
        guard rename(temporaryPath, target) == 0 else {
            let code = errno
            _ = rename(aside, target)
            throw FileSystem.writeError(file: destination, errno: code)
        }
        let left = OutputEntries.removeRecognised(in: aside)
        if !left.isEmpty || rmdir(aside) != 0 {
            notes.append(.leftEntries(aside, left, context: "the previous \(destination), moved aside when it was replaced"))
        }
    }

    private func appeared() -> MergeKitError {
        MergeKitError(.outputExists, file: destination, "appeared while the output was being written (another run, or another program, created it)",
                      fix: overwrite ? "Choose a new output path" : "Choose a new output path, or \(term: .overwrite)")
    }

    /// The error for an existing `found` where an output of the other kind (or a link, a FIFO…)
    /// would go. Shared with `OutputGuard`.
    static func notReplaceable(_ path: String, isDirectory: Bool, found: FileSystem.Kind, linkTarget: String? = nil) -> MergeKitError {
        if isDirectory {
            switch found {
            case .file:
                return MergeKitError(.outputNotReplaceable, file: path,
                    "is a file, but an output path not ending in .safetensors is written as a directory",
                    fix: "Choose another output path (end it in .safetensors to write a single file)")
            case .other where linkTarget != nil:
                return MergeKitError(.outputNotReplaceable, file: path,
                    "is a symbolic link (to \(linkTarget!)); an output directory is only replaced when it is a real directory",
                    fix: "Give the directory the link points to, or remove the link")
            default:
                return MergeKitError(.outputNotReplaceable, file: path, "is not a directory (a FIFO, socket, device or link) and is never replaced",
                    fix: "Choose another output path")
            }
        }
        if found == .directory {
            return MergeKitError(.outputNotReplaceable, file: path,
                "is a directory, but an output path ending in .safetensors is written as a single file",
                fix: "Choose another output path (without .safetensors to write a directory)")
        }
        return MergeKitError(.outputNotReplaceable, file: path, "is not a regular file (a FIFO, socket or device) and is never replaced",
            fix: "Choose another output path")
    }
}
