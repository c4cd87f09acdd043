/// A model repository on the Hugging Face Hub as a model path names it: `org/name`, or
/// `org/name@revision` (a branch, a tag or a commit).
///
/// **When a text is a Hub id.** Anywhere a model path is accepted, an existing local path wins
/// (as in mergekit and transformers): `org/name` is a Hub id only when nothing exists at that
/// path. `read` then says whether the text is meant as an id at all: exactly one `/` before the
/// first `@`, not starting with `/`, `.` or `~`, and not ending in a weights or JSON suffix
/// (`dir/model.safetensors` that does not exist is a missing file, not a repository). A text meant
/// as an id is either well-formed or `malformed` (the CLI's exit status 64):
///
/// - `org` and `name`: 1–96 ASCII letters, digits, `-`, `_` and `.`, starting and ending with a
///   letter, a digit or `_`, without `--` or `..`, the name not ending in `.git` (the Hub's rules,
///   as `huggingface_hub` checks them);
/// - `revision`: 1–255 ASCII letters, digits, `-`, `_`, `.` and `/` (`refs/pr/1`), without an
///   empty or `..` component: it names a file under the cache's `refs/`.
///
/// Bare names without an organisation (`gpt2`) are not Hub ids here: they are ordinary relative
/// paths, and reading them as repositories would turn every mistyped file name into a download.
public struct HubReference: Sendable, Hashable, CustomStringConvertible {
    /// `org/name`.
    public let repository: String
    /// The revision as written (nil: `main`).
    public let revision: String?

    /// The revision asked for: the one written, else `main` (the Hub's default branch).
    public var resolvedRevision: String { revision ?? "main" }

    /// `org/name` or `org/name@revision`, as written.
    public var description: String { revision.map { "\(repository)@\($0)" } ?? repository }

    /// The repository's folder in the cache, as `huggingface_hub` names it: `models--org--name`.
    public var folderName: String { "models--" + repository.replacingOccurrences(of: "/", with: "--") }

    /// Whether the revision is a full commit hash (40 lowercase hex digits), which needs no ref.
    public var isCommit: Bool { revision.map(HubReference.isCommitHash) ?? false }

    /// What a text is, read as a model path that does not exist on disk.
    public enum Reading: Equatable, Sendable {
        /// A Hub id.
        case reference(HubReference)
        /// Meant as a Hub id, but not a valid one: why.
        case malformed(String)
        /// Not a Hub id: an ordinary path.
        case notAnId
    }

    public init(repository: String, revision: String? = nil) {
        self.repository = repository
        self.revision = revision
    }

    /// Reads `text` (see the type's documentation). The caller decides first whether the text
    /// exists as a local path, which wins.
    public static func read(_ text: String) -> Reading {
        let at = text.firstIndex(of: "@")
        let id = String(text[..<(at ?? text.endIndex)])
        guard !text.isEmpty, !text.hasPrefix("/"), !text.hasPrefix("."), !text.hasPrefix("~"),
              id.filter({ $0 == "/" }).count == 1 else { return .notAnId }
        if at == nil && notIdSuffixes.contains(where: { text.hasSuffix($0) }) { return .notAnId }
        let parts = id.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for (part, what) in [(parts[0], "organisation"), (parts[1], "name")] {
            if let problem = nameProblem(part) { return .malformed("the \(what) \"\(part)\" \(problem)") }
        }
        if parts[1].hasSuffix(".git") { return .malformed("the name \"\(parts[1])\" ends in .git") }
        guard let at else { return .reference(HubReference(repository: id)) }
        let revision = String(text[text.index(after: at)...])
        if let problem = revisionProblem(revision) { return .malformed("the revision \"\(revision)\" \(problem)") }
        return .reference(HubReference(repository: id, revision: revision))
    }

    /// Suffixes that make a text a file path rather than a repository name.
    private static let notIdSuffixes = [".safetensors", ".json", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".yaml", ".yml"]

    /// Characters of an organisation or repository name.
    private static func isNameCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_" || c == ".")
    }

    /// Why `part` cannot be an organisation or repository name, if it cannot.
    private static func nameProblem(_ part: String) -> String? {
        if part.isEmpty { return "is empty" }
        if part.count > 96 { return "is longer than 96 characters" }
        if let bad = part.first(where: { !isNameCharacter($0) }) {
            return "holds \"\(bad)\" (only letters, digits, -, _ and . are allowed)"
        }
        let edge: (Character) -> Bool = { $0 == "-" || $0 == "." }
        if edge(part.first!) || edge(part.last!) { return "starts or ends with - or ." }
        if part.contains("--") || part.contains("..") { return "contains -- or .." }
        return nil
    }

    /// Why `revision` cannot be a revision, if it cannot.
    private static func revisionProblem(_ revision: String) -> String? {
        if revision.isEmpty { return "is empty" }
        if revision.utf8.count > 255 { return "is longer than 255 bytes" }
        if let bad = revision.first(where: { !(isNameCharacter($0) || $0 == "/") }) {
            return "holds \"\(bad)\" (only letters, digits, -, _, . and / are allowed)"
        }
        let components = revision.split(separator: "/", omittingEmptySubsequences: false)
        if components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            return "has an empty, . or .. component"
        }
        return nil
    }

    /// Whether `text` is a full commit hash: 40 lowercase hexadecimal digits.
    static func isCommitHash(_ text: String) -> Bool {
        text.utf8.count == 40 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
