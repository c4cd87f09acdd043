import ArgumentParser
import MergeKit

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's tensors, dtypes, shapes, parameter count, bytes and metadata.")

    @Argument(help: ArgumentHelp("A checkpoint: a .safetensors or PyTorch .bin/.pt/.pth/.ckpt file, or a model directory.", valueName: "path"))
    var path: String

    @Flag(name: .long, help: "Print the report as JSON.")
    var json = false

    @Flag(name: .customLong("check-finite"), help: "Also read every float tensor and report its NaN and ±Inf counts (the exit status stays 0; `verify --check-finite` fails on them).")
    var checkFinite = false

    @OptionGroup var hub: HubOptions

    func validate() throws {
        try HubOptions.check([path], flag: "path")
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let located = try hub.locator(for: [(path, .model)], quiet: json).paths([(path, .model)])
            let checkpoint = try Checkpoint(path: located[0])
            let summary = CheckpointSummary(checkpoint)
            let finite = checkFinite ? try CheckpointVerifier(checkFinite: true).verify(checkpoint) : nil
            // Written as it is made: a million-tensor report is never held whole.
            if json {
                summary.writeJSON(adding: finite.map { [JSONMember("non_finite", $0.nonFiniteJSON)] } ?? []) { print($0, terminator: "") }
            } else {
                summary.writeText { print($0) }
                if let finite {
                    print("")
                    for line in finite.nonFiniteText { print(line) }
                }
            }
        }
    }
}
