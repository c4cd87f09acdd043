import ArgumentParser
import Foundation
import MergeKit

/// `merge-cli stats FILES`: combines one round's statistics files of a partitioned merge
/// (`--partition INDEX/COUNT --write-stats FILE`) and shows what they hold
/// (`PartitionStatistics.combine`), checking them as the next round and the merge do.
struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Combine and check one round's statistics files of a partitioned merge (--write-stats).",
        discussion: """
            Methods with statistics over the whole model (paper TIES's global trim, the mass vote, \
            MetaGPT's norms) are partitioned in rounds: every partition runs the merge's command \
            with --partition INDEX/COUNT --write-stats FILE (round 1), then each next round with \
            --stats and every partition's file of the round before (--stats-rounds says how many \
            rounds), and finally merges with --stats and the last round's files. stats combines \
            one round's files as those steps do — the same checks: one merge, one round, one \
            division, each partition once — and prints the round, whether the statistics are \
            complete, and the thresholds and norms found so far (exit 1 naming the file and the fix).
            """)

    @Argument(help: ArgumentHelp("One round's statistics files, one of every partition.", valueName: "file"))
    var files: [String]

    @Flag(name: .long, help: "Print the combined statistics as JSON on stdout (round, rounds, complete, the thresholds, norms and votes).")
    var json = false

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("Give the statistics files of one round, one of every partition") }
        for file in files { try ArgumentCheck.path(file, flag: "files") }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let start = Date()
            let combined = try PartitionStatistics.combine(files: files)
            let seconds = Date().timeIntervalSince(start)
            if json {
                print(combined.json.adding("seconds", .double(seconds)).serialized(indent: 2))
            } else {
                let state = combined.isComplete ? "complete: merge every partition with --stats and these files"
                    : "not complete: run round \(combined.round + 1) in every partition with --stats and these files"
                print("round \(combined.round) of \(combined.rounds) of \(combined.partitions) partitions (plan \(combined.fingerprint.prefix(12))): \(state)")
            }
        }
    }
}
