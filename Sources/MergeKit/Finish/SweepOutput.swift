/// A sweep's output directory, written as one output: its points (`point-NNN`) and its manifest
/// go into one temporary directory next to it, which `commit()` moves into place like a
/// directory checkpoint (`StagedOutput`: the same replacement rules, stale temporaries removed
/// first, an interrupt or a failure leaves nothing).
///
/// So two sweeps started at once into the same new directory cannot mix their points: both
/// write their own temporary directory, the first to finish moves it into place, and the other
/// fails with "appeared while the output was being written" and removes its temporary directory,
/// leaving the winner's complete sweep (with its manifest) untouched. With `overwrite`, the last
/// to finish replaces the other's complete sweep.
///
/// The directory itself is checked when the sweep is planned (`Recipe.plan`), like any output.
public final class SweepOutput: @unchecked Sendable {
    /// The sweep's directory, as the user named it.
    public let path: String
    let staged: StagedOutput

    /// Removes stale temporaries of `path` and creates the temporary directory the sweep is
    /// written into.
    public init(path: String, overwrite: Bool) throws(MergeKitError) {
        self.path = path
        staged = try StagedOutput(destination: path, isDirectory: true, overwrite: overwrite)
    }

    /// Where the file or directory that will be at `finalPath` (inside the sweep) is until the
    /// commit, to read it back (e.g. to hash it).
    public func stagedPath(of finalPath: String) -> String {
        let trimmed = FileSystem.trimmingTrailingSlashes(finalPath)
        guard trimmed.hasPrefix(staged.destination + "/") else { return finalPath }
        return staged.temporaryPath + trimmed.dropFirst(staged.destination.count)
    }

    /// Writes a small file (the manifest, a plot) at the top of the sweep, or, with a relative
    /// path, inside one of its points (`point-003/README.md`, replacing the one written there).
    public func write(_ bytes: [UInt8], named name: String) throws(MergeKitError) {
        let file = FileSystem.join(staged.temporaryPath, name)
        if !name.contains("/") { staged.registerFile(file) }
        do {
            try FileSystem.writeFile(file, bytes)
        } catch {
            var named = error
            named.file = FileSystem.join(path, name)
            throw named
        }
    }

    /// Where the file `name` at the top of the sweep is written until the commit (registered, so
    /// that a failure removes it), for a writer that takes a path (a PNG renderer).
    func stagedFile(named name: String) -> String {
        let file = FileSystem.join(staged.temporaryPath, name)
        staged.registerFile(file)
        return file
    }

    /// Removes a point written into the sweep (`path`, where it would have ended up) that is not
    /// to be kept; fails if something other than what MergeKit wrote is found in it.
    public func discard(_ path: String) throws(MergeKitError) {
        let left = staged.discard(path)
        guard left.isEmpty else {
            throw MergeKitError(.writeFailed, file: path, "could not be removed from the sweep's temporary directory: \(OutputEntries.listed(left)) appeared in it",
                                fix: "Do not modify the sweep's directory while it runs")
        }
    }

    /// Moves the complete sweep into place.
    public func commit() throws(MergeKitError) {
        FileSystem.syncDirectory(staged.temporaryPath)
        try staged.commit()
    }

    /// Removes the temporary directory and everything the sweep wrote in it.
    public func abort() {
        staged.abort()
    }

    /// What happened around the sweep's directory (stale temporaries removed, entries left when
    /// an old sweep was replaced).
    public var notes: [OutputNote] { staged.notes }
}
