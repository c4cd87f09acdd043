import ArgumentParser
import MergeKit

/// `--partition INDEX/COUNT` and `--assemble`, on every command that merges into a checkpoint
/// (the method commands, `run`, `sweep`): the library's `Partition` and `OutputParts`.
struct PartitionOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Write only partition INDEX of COUNT of the output (from 0, e.g. 0/4 … 3/4), as a part beside it; run every partition with the same command, then `merge-cli assemble OUT` (or give the last one --assemble). Whole shards; sweep points are divided too.", valueName: "index/count"))
    var partition: String?

    @Flag(name: .long, help: "With --partition: once this part is written, assemble the output from every part (fails, naming them, while some are missing).")
    var assemble = false

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
        }
    }

    /// With --partition: refuses a single-file output (exit 64).
    func validate(output: String) throws {
        if partition != nil && OutputGuard.isFileOutput(output) {
            throw ValidationError("--partition needs a directory output; \(output) is a single .safetensors file, which cannot be divided")
        }
    }

    /// With --partition: refuses a method with whole-model statistics (exit 64).
    func validate(method: () throws(MergeKitError) -> any MergeMethod) throws {
        guard partition != nil else { return }
        do throws(MergeKitError) {
            try Partition.check(method: try method())
        } catch {
            throw ValidationError("--partition: " + error.inCLIWords.description)
        }
    }

    /// The command line as recorded in a model card: without --partition and --assemble, so
    /// that every partition records (and the assembled output holds) the one-machine command.
    static func recordedCommand(_ arguments: [String] = CommandLine.arguments) -> String {
        var kept: [String] = []
        var skipNext = false
        for argument in arguments {
            if skipNext {
                skipNext = false
                continue
            }
            if argument == "--partition" {
                skipNext = true
            } else if argument != "--assemble" && !argument.hasPrefix("--partition=") {
                kept.append(argument)
            }
        }
        return kept.joined(separator: " ")
    }
}
