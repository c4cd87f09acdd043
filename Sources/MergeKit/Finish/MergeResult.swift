/// What a finished merge wrote.
public struct MergeResult: Sendable {
    public struct File: Sendable {
        public let path: String
        public let bytes: Int
    }
    public let outputPath: String
    public let files: [File]
    public let tensorsMerged: Int
    public let tensorsCopied: Int
    public let inputBytes: Int
    public let outputBytes: Int
    public let seconds: Double
    /// Whole-model statistics the method used (thresholds, norms), when it needed any.
    public let modelStatistics: ModelStatistics?
    /// What happened around the output besides writing it (stale temporaries removed, entries
    /// left when an old output was replaced).
    public let notes: [OutputNote]
    /// What the user should know about the output although the merge succeeded (a companion
    /// `config.json` whose dtype could not be updated).
    public var warnings: [String] = []
}
