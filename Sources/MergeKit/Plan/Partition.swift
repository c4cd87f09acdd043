/// One of `count` partitions of a merge (`--partition INDEX/COUNT`, INDEX counted from 0, as
/// Slurm array tasks and Kubernetes indexed jobs count), run as separate processes — on one
/// machine or several sharing the output's file system — and put together by `OutputParts.assemble`.
///
/// **The policy.** Every partition plans the whole merge, identically (the same `MergePlan`s,
/// whose fingerprint, `PlanFingerprint`, every part records), and writes a deterministic subset of
/// the output's files, whole:
///
/// - the output's shard files — of every point, for a sweep — are the units, in output order
///   (point by point, shard by shard within a point). Unit u, of S bytes starting at byte C of
///   the T bytes of all units, goes to partition ⌊count·(C + S/2) / T⌋: each partition gets one
///   contiguous run of units of about T/count bytes (the unit whose middle falls in its
///   share), so a partition reads a contiguous stretch of the inputs, and a sweep's points are
///   divided as its shards are. A partition may get no unit (more partitions than units);
/// - partition 0 also writes every small file: the shard index, the companions (config.json
///   with its dtype updated…), the model card and the recipe, of every point. A sweep's
///   `manifest.json` is written at assembly, from partition 0's summaries and every part's
///   SHA-256.
///
/// Each file is written by exactly one partition, with the bytes a one-machine merge writes
/// (the plan fixes every byte offset, and results do not depend on which process computes a
/// chunk: see the executor's determinism), so the assembled output is byte-identical to it.
///
/// Methods with model-wide statistics (paper TIES's global trim threshold, MetaGPT's norms,
/// the mass vote's model-wide tie sign) need every tensor before any is merged: every partition
/// first runs the statistics rounds (`PartitionStatistics`), each writing its exact counts to a
/// file, and merges with the last round's files of every partition, which combine to the
/// numbers one machine computes.
public struct Partition: Sendable, Equatable, CustomStringConvertible {
    /// This partition, from 0.
    public let index: Int
    /// How many partitions the merge is divided into.
    public let count: Int

    /// More partitions than this is a typo, not a cluster.
    public static let maximumCount = 100_000

    /// - Throws: `invalidArgument` when `count` is not in 1…`maximumCount` or `index` not in 0..<count.
    public init(index: Int, count: Int) throws(MergeKitError) {
        guard count >= 1, count <= Self.maximumCount else {
            throw MergeKitError(.invalidArgument, "the partition count must be from 1 to \(Self.maximumCount), not \(count)",
                                fix: "Give the partition as INDEX/COUNT, e.g. 0/4 for the first of four")
        }
        guard index >= 0, index < count else {
            throw MergeKitError(.invalidArgument, "partition \(index)/\(count) is out of range: partitions are numbered 0 to \(count - 1)",
                                fix: "Give INDEX/COUNT with 0 ≤ INDEX < COUNT, e.g. 0/\(count) … \(count - 1)/\(count)")
        }
        self.index = index
        self.count = count
    }

    /// Parses "INDEX/COUNT" (decimal digits only, e.g. `1/4`).
    public init(parsing text: String) throws(MergeKitError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Self.number(parts[0]), let count = Self.number(parts[1]) else {
            throw MergeKitError(.invalidArgument, "'\(text)' is not a partition INDEX/COUNT",
                                fix: "Give the partition as INDEX/COUNT, e.g. 0/4 for the first of four (partitions are numbered from 0)")
        }
        try self.init(index: index, count: count)
    }

    private static func number(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.count <= 9, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(text)
    }

    public var description: String { "\(index)/\(count)" }

    /// The partition owning each unit of `sizes` bytes, in order (see the type's documentation).
    static func owners(ofUnits sizes: [Int], count: Int) -> [Int] {
        let total = sizes.reduce(0, +)
        guard total > 0 else { return sizes.map { _ in 0 } }
        var start = 0
        return sizes.map { size in
            // ⌊count·(2C + S) / 2T⌋ in exact integer arithmetic (count·2T stays far below 2⁶³).
            let middle = (2 * start + size).multipliedFullWidth(by: count)
            let owner = Int((2 * total).dividingFullWidth(middle).quotient)
            start += size
            return min(owner, count - 1)
        }
    }

    /// Refuses plans a partition cannot run: single-file outputs (one file cannot be divided).
    /// (Methods with whole-model statistics need the statistics rounds' files:
    /// `PartitionStatistics.resolve`.)
    public static func checkSupported(_ plans: [MergePlan]) throws(MergeKitError) {
        for plan in plans where !plan.output.isDirectory {
            throw MergeKitError(.invalidArgument, file: plan.output.path,
                "is a single .safetensors file, which cannot be divided between partitions",
                fix: "Write a directory output (a path not ending in .safetensors) to partition the merge")
        }
    }
}
