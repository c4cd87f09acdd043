import ArgumentParser
import Foundation
import MergeKit

/// `merge-cli assemble OUT`: puts together the parts the partitions of a merge wrote
/// (`--partition INDEX/COUNT`) and moves the output into place (`OutputParts.assemble`).
struct AssembleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assemble",
        abstract: "Put together the parts of a partitioned merge (--partition INDEX/COUNT) into its output.",
        discussion: """
            Every partition of a merge runs the same command with its own --partition INDEX/COUNT \
            and writes its part into .OUT.mergekit-parts beside the output. assemble checks that \
            every part is there, complete (sizes and SHA-256) and of the same merge, then moves the \
            files into OUT at once and removes the parts. A missing, stale or foreign part is an \
            error naming it and the partition to rerun; nothing is changed until every part is right.
            """)

    @Argument(help: ArgumentHelp("The output the partitions were given (-o).", valueName: "output"))
    var output: String

    @Flag(name: .long, help: "Replace an existing output (only when it holds nothing but an output's files).")
    var overwrite = false

    @Flag(name: .long, help: "Print a JSON summary on stdout (the output, the partitions, the plan's fingerprint, every file with its size and SHA-256).")
    var json = false

    @Flag(name: .long, help: "No summary line on stderr.")
    var quiet = false

    func validate() throws {
        try ArgumentCheck.path(output, flag: "output")
        if OutputGuard.isFileOutput(output) {
            throw ValidationError("\(output) is a single .safetensors file; partitioned merges write directory outputs")
        }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let assembly = try OutputParts.assemble(output: output, overwrite: overwrite)
            if !quiet { MergeRunner.printAssembled(assembly) }
            printNotes(assembly.notes, quiet: quiet)
            if json {
                let document = MergeRunner.assemblyJSON(assembly).adding("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes))
                    .adding("notes", .array(assembly.notes.map(\.json)))
                print(document.serialized(indent: 2))
            }
        }
    }
}
