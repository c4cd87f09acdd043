import ArgumentParser
import MergeKit

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's tensors, dtypes, shapes, parameter count, bytes and metadata.")

    @Argument(help: ArgumentHelp("A .safetensors file or a checkpoint directory.", valueName: "path"))
    var path: String

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let summary = CheckpointSummary(try Checkpoint(path: path))
            print(json ? summary.json.serialized(indent: 2) : summary.text)
        }
    }
}
