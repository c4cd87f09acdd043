import ArgumentParser
import MergeKit

/// `--partition INDEX/COUNT` and `--assemble`, on every command that merges into a checkpoint
/// (the method commands, `run`, `sweep`): the library's `Partition` and `OutputParts`.
struct PartitionOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Write only partition INDEX of COUNT of the output (from 0, e.g. 0/4 … 3/4), as a part beside it; run every partition with the same command, then `merge-cli assemble OUT` (or give the last one --assemble). Whole shards; sweep points are divided too.", valueName: "index/count"))
    var partition: String?

    @Flag(name: .long, help: "With --partition: once this part is written, assemble the output from every part (fails, naming them, while some are missing).")
    var assemble = false

    @Option(name: .customLong("write-stats"), help: ArgumentHelp("With --partition, for methods with whole-model statistics (paper TIES's global trim, the mass vote, MetaGPT): instead of merging, compute this partition's exact share of the next statistics round (round 1, or the one after the files given with --stats) and write it to PATH. Run every partition's round, then the next round with all of its files, up to the last (--stats-rounds says how many).", valueName: "path"))
    var writeStats: String?

    @Option(name: .customLong("stats"), parsing: .upToNextOption, help: ArgumentHelp("With --partition: the statistics files of the previous round, one of every partition (for --write-stats), or of the last round (for the merge, which then uses these statistics: exactly one machine's).", valueName: "file"))
    var stats: [String] = []

    @Flag(name: .customLong("stats-rounds"), help: "Print how many statistics rounds a partitioned run of this merge needs before merging (0: none) and exit.")
    var statsRounds = false

    /// The partition given, if any (checked by `validate`).
    var value: Partition? {
        partition.flatMap { try? Partition(parsing: $0) }
    }

    func validate() throws {
        if let partition {
            do throws(MergeKitError) {
                _ = try Partition(parsing: partition)
            } catch {
                throw ValidationError("--partition: \(error.detail). \(error.fix ?? "")")
            }
        } else if assemble {
            throw ValidationError("--assemble needs --partition INDEX/COUNT (or run `merge-cli assemble OUT` once every partition is done)")
        } else if writeStats != nil || !stats.isEmpty {
            throw ValidationError("\(writeStats != nil ? "--write-stats" : "--stats") needs --partition INDEX/COUNT: the statistics rounds are for partitioned merges (one machine computes its own)")
        }
        if let writeStats {
            try ArgumentCheck.path(writeStats, flag: "--write-stats")
            if assemble { throw ValidationError("--write-stats computes statistics and writes no part: it cannot --assemble (give --assemble to the merge)") }
        }
        for file in stats { try ArgumentCheck.path(file, flag: "--stats") }
    }

    /// With --partition: refuses a single-file output (exit 64).
    func validate(output: String) throws {
        if partition != nil && OutputGuard.isFileOutput(output) {
            throw ValidationError("--partition needs a directory output; \(output) is a single .safetensors file, which cannot be divided")
        }
    }

    /// With --partition: a method with whole-model statistics needs the statistics rounds
    /// (--write-stats, then --stats), one without them takes neither (exit 64).
    func validate(method: () throws(MergeKitError) -> any MergeMethod) throws {
        guard partition != nil, !statsRounds else { return }
        let needs = (try? method()).map(PartitionStatistics.needsRounds) ?? false
        if needs && stats.isEmpty && writeStats == nil {
            let name = (try? method().info.name) ?? "this method"
            throw ValidationError("--partition: \(name) with these parameters needs statistics over the whole model before any tensor is merged. Run the statistics rounds first: every partition with --write-stats FILE (round 1), then each next round with --stats and the files of the round before, as many rounds as --stats-rounds prints; then merge every partition with --stats and the last round's files")
        }
        if !needs && (writeStats != nil || !stats.isEmpty) {
            throw ValidationError("\(writeStats != nil ? "--write-stats" : "--stats"): this merge needs no whole-model statistics; run the partitions' merge without statistics rounds")
        }
    }

    /// The command line as recorded in a model card: without --partition, --assemble and the
    /// statistics files, so that every partition records (and the assembled output holds) the
    /// one-machine command.
    static func recordedCommand(_ arguments: [String] = CommandLine.arguments) -> String {
        var kept: [String] = []
        var skipNext = false
        var skippingFiles = false
        for argument in arguments {
            if skipNext {
                skipNext = false
                continue
            }
            if skippingFiles && !argument.hasPrefix("-") { continue }
            skippingFiles = false
            if argument == "--partition" || argument == "--write-stats" {
                skipNext = true
            } else if argument == "--stats" {
                skippingFiles = true
            } else if argument != "--assemble" && argument != "--stats-rounds"
                        && !["--partition=", "--write-stats=", "--stats="].contains(where: { argument.hasPrefix($0) }) {
                kept.append(argument)
            }
        }
        return kept.joined(separator: " ")
    }
}
