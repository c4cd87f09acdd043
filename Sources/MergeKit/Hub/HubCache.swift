import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Hugging Face cache, laid out exactly as `huggingface_hub` lays it out, so that a model
/// transformers downloaded is read in place and a model MergeKit downloads is found by
/// transformers:
///
///     <cache>/models--org--name/
///         refs/<revision>              the commit a branch or tag pointed to (40 hex digits)
///         snapshots/<commit>/<file>    a relative symlink to ../../blobs/<etag>
///         blobs/<etag>                 the file's bytes, named by its ETag: the sha256 for
///                                      LFS files, the git blob sha1 for the others
///         blobs/<etag>.incomplete      a download under way (never looks complete)
///     <cache>/.locks/models--org--name/<etag>.lock   flock(2)ed while a blob is written
///
/// A revision that is a full commit hash is looked up in `snapshots/` directly; any other is read
/// from `refs/` first. A revision found here is used as it is, without asking the Hub whether a
/// branch has moved since (pass the commit, or download again, to pick up a newer one).
public struct HubCache: Sendable {
    /// The cache directory (`…/hub`).
    public let root: String

    public init(root: String) { self.root = root }

    func repository(_ reference: HubReference) -> String { FileSystem.join(root, reference.folderName) }
    func blobs(_ reference: HubReference) -> String { FileSystem.join(repository(reference), "blobs") }
    func snapshot(_ reference: HubReference, commit: String) -> String {
        FileSystem.join(FileSystem.join(repository(reference), "snapshots"), commit)
    }
    func refPath(_ reference: HubReference) -> String {
        FileSystem.join(FileSystem.join(repository(reference), "refs"), reference.resolvedRevision)
    }
    func lockPath(_ reference: HubReference, etag: String) -> String {
        FileSystem.join(FileSystem.join(FileSystem.join(root, ".locks"), reference.folderName), etag + ".lock")
    }

    /// The repository and commit of a snapshot directory `…/models--org--name/snapshots/<commit>`
    /// (nil for any other path).
    public static func snapshotOwner(_ path: String) -> (repository: String, commit: String)? {
        let parts = FileSystem.trimmingTrailingSlashes(path).split(separator: "/").map(String.init)
        guard parts.count >= 3, parts[parts.count - 2] == "snapshots", HubReference.isCommitHash(parts[parts.count - 1]) else { return nil }
        let folder = parts[parts.count - 3]
        guard folder.hasPrefix("models--") else { return nil }
        let names = folder.dropFirst("models--".count).components(separatedBy: "--")
        guard names.count == 2, case .reference(let reference) = HubReference.read(names.joined(separator: "/")) else { return nil }
        return (reference.repository, parts[parts.count - 1])
    }

    /// The commit `reference` names in the cache: the revision itself when it is a commit hash,
    /// else the content of its ref (nil: not recorded, or not a commit hash).
    func commit(for reference: HubReference) -> String? {
        if reference.isCommit { return reference.revision }
        guard FileSystem.kind(of: refPath(reference)) == .file,
              let bytes = try? FileSystem.readFile(refPath(reference), limit: 4096) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return HubReference.isCommitHash(text) ? text : nil
    }

    /// What the cache holds for `reference`.
    public enum Lookup: Sendable {
        /// A snapshot holding every file `kind` needs.
        case found(snapshot: String, commit: String)
        /// Not (completely) cached: what is missing, in the error's words.
        case missing(MergeKitError)
    }

    /// Looks `reference` up (no network): its snapshot when every file `kind` needs is there
    /// (`HubFiles`), else an error naming the repository, the revision, what is missing and the
    /// fix — allowing downloads when `offline`, downloading first otherwise.
    public func lookup(_ reference: HubReference, kind: HubFiles.Kind = .model, offline: Bool) -> Lookup {
        let folder = reference.folderName
        let revision = reference.resolvedRevision
        func missing(_ what: String) -> Lookup {
            let fix: MergeKitError.Text = offline
                ? "\(term: .allowHubDownloads), or download it beforehand (`hf download \(reference.repository) --revision \(revision)`)"
                : "Download it into the cache first (`hf download \(reference.repository) --revision \(revision)`)"
            return .missing(MergeKitError(.notInHubCache, file: reference.description,
                "does not exist as a path, and the Hugging Face model \(reference.repository) at revision \(revision) is not in the cache \(root)\(offline ? " (offline)" : ""): \(what)",
                fix: fix))
        }
        guard FileSystem.kind(of: repository(reference)) == .directory else { return missing("there is no \(folder)") }
        guard let commit = commit(for: reference) else { return missing("there is no refs/\(revision) in \(folder)") }
        let snapshot = snapshot(reference, commit: commit)
        guard FileSystem.kind(of: snapshot) == .directory else {
            return missing(reference.isCommit ? "there is no snapshots/\(commit) in \(folder)"
                                              : "refs/\(revision) names commit \(commit), but \(folder) has no snapshots/\(commit)")
        }
        let (file, error) = HubFiles.missing(in: snapshot, kind: kind)
        if let error { return .missing(error) }
        if let file { return missing("its snapshot \(commit) has no \(file)") }
        return .found(snapshot: snapshot, commit: commit)
    }

    // MARK: Placing files

    /// Records that `reference`'s revision is `commit` (`refs/<revision>`, written to a temporary
    /// and renamed over the old one), unless the revision is the commit itself.
    func recordRef(_ reference: HubReference, commit: String) throws(MergeKitError) {
        guard reference.resolvedRevision != commit else { return }
        let path = refPath(reference)
        if self.commit(for: reference) == commit { return }
        try Self.makeDirectories(FileSystem.parentDirectory(of: path))
        let temporary = path + ".\(UInt32.random(in: 0...UInt32.max)).tmp"
        try FileSystem.writeFile(temporary, Array(commit.utf8))
        try Self.move(temporary, to: path)
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink, made under a
    /// temporary name and renamed into place (a reader sees the old entry or the new one).
    func link(_ reference: HubReference, commit: String, file: String, etag: String) throws(MergeKitError) {
        let pointer = FileSystem.join(snapshot(reference, commit: commit), file)
        try Self.makeDirectories(FileSystem.parentDirectory(of: pointer))
        // snapshots/<commit>/<dirs…>/<name> → ../../(../ per directory)blobs/<etag>
        let depth = file.split(separator: "/").count - 1
        let target = String(repeating: "../", count: 2 + depth) + "blobs/" + etag
        let temporary = pointer + ".\(UInt32.random(in: 0...UInt32.max)).tmp"
        guard symlink(target, temporary) == 0 else { throw FileSystem.writeError(file: pointer, errno: errno) }
        try Self.move(temporary, to: pointer)
    }

    static func makeDirectories(_ path: String) throws(MergeKitError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw MergeKitError(.writeFailed, file: path, "cannot be created (\(error.localizedDescription))",
                fix: "Check that the Hugging Face cache is writable, or point HF_HUB_CACHE at a writable directory")
        }
    }

    static func move(_ from: String, to: String) throws(MergeKitError) {
        guard rename(from, to) == 0 else {
            let code = errno
            unlink(from)
            throw FileSystem.writeError(file: to, errno: code)
        }
        FileSystem.syncDirectory(FileSystem.parentDirectory(of: to))
    }
}
