#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a multi-stage recipe writes its intermediates (the documents and `MODEL+ADAPTER` models
/// the output is made from), and what becomes of them.
///
/// - **By default**, a temporary directory beside the output, created, named, locked and
///   registered exactly as an output's temporary is (`StagedOutput`: `.NAME.mergekit-tmp-PID-…`),
///   holding the intermediates as `stage-000`, `stage-001`, … in the order they are made. It is
///   removed at the end of the run, whether it succeeds or fails; an interrupt removes it (its
///   files are registered with `TemporaryFiles`); a run killed outright leaves it to the next run
///   writing the same output, which removes it as a stale temporary (`OutputTemporaries`). It
///   cannot be kept.
/// - **A directory of the user's** (`Options.path`) holds each intermediate as `DIR/NAME`, the
///   document's name (mergekit-multi's layout). It is created when missing (its parent must
///   exist). Each intermediate is an ordinary output: checked before any work as every output is
///   (`OutputGuard`: an existing one is replaced only with overwriting allowed, and only when it
///   holds nothing but an output's files), written to a temporary and moved into place. Unless
///   `keep`, every intermediate this run wrote is removed at the end (success or failure) and on
///   an interrupt — only the files it wrote, nothing else — and the directory too when this run
///   created it and it is empty. With `keep`, every intermediate that was completed stays, also
///   when a later stage fails.
public final class WorkDirectory {
    /// What the caller asks for.
    public struct Options: Sendable, Equatable {
        /// The user's directory; nil for the default temporary.
        public var path: String?
        /// Keep the intermediates (only in the user's directory).
        public var keep: Bool

        public init(path: String? = nil, keep: Bool = false) {
            self.path = path
            self.keep = keep
        }
    }

    let options: Options
    /// The directory the intermediates are written into.
    let path: String
    /// The default work directory: a temporary of the output, never committed.
    private let temporary: StagedOutput?
    /// Whether this run created the user's directory.
    private let created: Bool
    /// Intermediates to remove at the end.
    private var written: [String] = []
    private var closed = false

    /// Where stage `index` of `count` (`directoryName` in the user's directory) is written in a
    /// work directory at `path`, or, before a temporary one exists, as descriptions show it.
    static func location(_ options: Options, temporaryPath: String?, directoryName: String, index: Int, count: Int) -> String {
        if let path = options.path { return FileSystem.join(path, directoryName) }
        return FileSystem.join(temporaryPath ?? "<work directory>", OutputEntries.stageName(index, of: count))
    }

    /// Checks the user's work directory before any work: it is a directory, or a new one in an
    /// existing directory; it is not an input and does not lie inside one (it may hold inputs:
    /// only the intermediates' `locations` are written, each checked as an output is); it is not
    /// the output and does not lie inside it (replacing the output would move it aside); and the
    /// output is none of the `locations` and lies inside none of them.
    static func check(_ directory: String, output: String, locations: [String], inputs: [String], into problems: inout ProblemList) {
        switch FileSystem.kind(of: directory) {
        case .directory:
            break
        case .missing:
            let parent = FileSystem.parentDirectory(of: FileSystem.canonicalPath(forNew: FileSystem.trimmingTrailingSlashes(directory)))
            guard FileSystem.kind(of: parent) == .directory else {
                problems.add(MergeKitError(.fileNotFound, file: directory, "cannot be created as the work directory: the directory \(parent) does not exist",
                                           fix: "Create it first, or choose another work directory"))
                return
            }
        default:
            problems.add(MergeKitError(.outputNotReplaceable, file: directory, "is not a directory, so it cannot be the work directory",
                                       fix: "Choose a directory, or a new path in an existing directory"))
            return
        }
        let place = FileSystem.canonicalPath(forNew: FileSystem.trimmingTrailingSlashes(directory))
        if let input = inputs.first(where: { input in
            FileSystem.realPath(input).map { FileSystem.isSameOrInside(place, $0) } ?? false
        }) {
            problems.add(MergeKitError(.outputIsInput, file: directory, "is, or lies inside, the input \(input); intermediates written there could destroy an input",
                                       fix: "Choose a work directory outside every input"))
        }
        let out = FileSystem.canonicalPath(forNew: FileSystem.trimmingTrailingSlashes(output))
        if place == out || place.hasPrefix(out + "/") {
            problems.add(MergeKitError(.outputIsInput, file: directory, "is, or lies inside, the output \(output); writing the output would move it aside",
                                       fix: "Choose a work directory outside the output"))
        }
        for location in locations {
            let intermediate = FileSystem.canonicalPath(forNew: location)
            if out == intermediate || out.hasPrefix(intermediate + "/") {
                problems.add(MergeKitError(.outputIsInput, file: output, "is, or lies inside, \(location), where an intermediate of the recipe is written",
                                           fix: "Choose an output outside the work directory's intermediates"))
            }
        }
    }

    /// Creates the work directory for `output` (see the type's documentation).
    init(_ options: Options, output: String, overwrite: Bool) throws(MergeKitError) {
        self.options = options
        guard let path = options.path else {
            let staged = try StagedOutput(destination: output, isDirectory: true, overwrite: overwrite)
            temporary = staged
            self.path = staged.temporaryPath
            created = false
            return
        }
        temporary = nil
        self.path = path
        guard FileSystem.kind(of: path) == .missing else {
            created = false
            return
        }
        if !options.keep { TemporaryFiles.register(directory: path) }
        guard mkdir(path, 0o755) == 0 else {
            let code = errno
            if !options.keep { TemporaryFiles.unregister([path]) }
            throw FileSystem.writeError(file: path, errno: code)
        }
        created = true
    }

    deinit {
        if !closed { _ = close() }
    }

    /// Takes the intermediate just written at `location` into the directory's care: unless it is
    /// kept, it is removed at `close()`. (Its files were registered as temporaries as it was moved
    /// into place, `OutputSpec.staysTemporary`, so an interrupt removes it meanwhile.) Everything
    /// in it was written by this run: a replaced directory's other entries stay with the old one
    /// (`StagedOutput`).
    func adopt(_ location: String) {
        guard !options.keep else { return }
        written.append(location)
    }

    /// Removes what is not kept (see the type's documentation) and describes what could not be.
    func close() -> [OutputNote] {
        guard !closed else { return [] }
        closed = true
        var notes: [OutputNote] = []
        for directory in written.reversed() {
            let registered = ((try? FileSystem.contents(of: directory)) ?? []).map { FileSystem.join(directory, $0) } + [directory]
            let left = OutputEntries.removeRecognised(in: directory)
            if !left.isEmpty || rmdir(directory) != 0 {
                notes.append(.leftEntries(directory, left, context: "an intermediate of this run"))
            }
            TemporaryFiles.unregister(registered)
        }
        written = []
        if let temporary {
            temporary.abort()
            notes += temporary.notes
        } else if created && !options.keep {
            _ = rmdir(path)
            TemporaryFiles.unregister([path])
        }
        return notes
    }
}
