/// Something a run did next to its output besides writing it, for people (a line on stderr) and
/// scripts (`notes` in a JSON summary): a stale temporary removed, a previous output restored,
/// or entries MergeKit does not write found and left where they were.
public struct OutputNote: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A temporary output left by a killed run was removed (`OutputTemporaries`).
        case removedStaleTemporary = "removed_stale_temporary"
        /// A previous output that a killed run had moved aside was renamed back into place.
        case restoredPreviousOutput = "restored_previous_output"
        /// A replaced output (or a stale temporary) held entries MergeKit does not write: they were
        /// left, with the directory holding them (named by `path`). A warning.
        case leftUnexpectedEntries = "left_unexpected_entries"
    }

    public let kind: Kind
    /// The file or directory concerned.
    public let path: String
    /// One sentence for people.
    public let message: String

    init(_ kind: Kind, path: String, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    /// The note for a directory kept because it holds `entries` that are not MergeKit's.
    static func leftEntries(_ directory: String, _ entries: [String], context: String) -> OutputNote {
        let held = entries.isEmpty ? "" : ": it holds \(entries.count) \(entries.count == 1 ? "entry" : "entries") MergeKit does not write (\(OutputEntries.listed(entries)))"
        return OutputNote(.leftUnexpectedEntries, path: directory,
            "left \(directory), \(context)\(held); move out what you need and delete it")
    }

    /// Whether people should be warned (rather than informed).
    public var isWarning: Bool { kind == .leftUnexpectedEntries }

    /// "note: …" or "warning: …", the line printed on stderr.
    public var description: String { (isWarning ? "warning: " : "note: ") + message }

    /// `{"kind": …, "path": …, "message": …}` for JSON summaries.
    public var json: JSONValue {
        .object([JSONMember("kind", .string(kind.rawValue)), JSONMember("path", .string(path)), JSONMember("message", .string(message))])
    }
}
