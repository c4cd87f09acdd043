import ArgumentParser
import Foundation
import MergeKit

/// The options `regmean` and `fisher` share: the models with their data, the sample, the threads
/// and the output.
struct DataMergeOptions: ParsableArguments {
    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned CLIP image encoder θₜ (directory with config.json, or .safetensors with config.json next to it). Repeatable, at least two.", valueName: "path"))
    var models: [String] = []

    @Option(name: .customLong("data"), help: ArgumentHelp("The same model's task inputs: safetensors with `pixel_values` [N,3,H,W] (labels optional and unused). One per --model, in order.", valueName: "file"))
    var data: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp("Images per task (all of a task's images when it has fewer; otherwise a seeded random choice).", valueName: "n"))
    var samples = 256

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per pass.", valueName: "B"))
    var batchSize = 32

    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of the choice of images (and of Fisher's sampled labels).", valueName: "n"))
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads (default: every core). The output is the same for any number.", valueName: "n"))
    var threads: Int?

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("The merged model: a .safetensors file or a directory (with the first model's config.json).", valueName: "path"))
    var output: String

    @Flag(help: "Replace an existing output (only once the new one is complete).")
    var overwrite = false

    @Flag(help: "Print the result as JSON on stdout.")
    var json = false

    @Flag(help: "No progress bar or summary on stderr.")
    var quiet = false

    @Flag(name: .customLong("allow-unused"), help: "Ignore tensors of the inputs the encoder does not use (with a warning) instead of refusing them.")
    var allowUnused = false

    func validate() throws {
        if models.count < 2 { throw ValidationError("Give at least two --model, each with its --data.") }
        if data.count != models.count {
            throw ValidationError("Got \(models.count) --model and \(data.count) --data; give one --data per --model, in the same order.")
        }
        try ArgumentCheck.atLeast(samples, 1, flag: "--samples")
        try ArgumentCheck.atLeast(batchSize, 1, flag: "--batch-size")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        try ArgumentCheck.path(output, flag: "--output")
    }

    /// The progress bar on stderr (only on a terminal, and not with --quiet).
    func progressLine() -> ProgressLine { ProgressLine(enabled: !quiet && isatty(2) != 0) }

    /// The summary line on stderr and, with --json, `members` (plus the common ones) on stdout.
    func report(method: String, summary: String, seconds: Double, notes: [OutputNote], members: [JSONMember]) {
        printNotes(notes, quiet: quiet)
        if !quiet {
            FileHandle.standardError.write(Data(String(format: "wrote %@: %@ of %@, %.2f s\n", TerminalText.escaped(output), summary,
                                                       EngineInputs.counted(models.count, "model"), seconds).utf8))
        }
        if json {
            print(JSONValue.object([
                JSONMember("method", .string(method)),
                JSONMember("models", .array(models.map { .string($0) })),
                JSONMember("data", .array(data.map { .string($0) })),
                JSONMember("output", .string(output)),
            ] + members + [
                JSONMember("seconds", .double(seconds)),
                JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)),
            ]).serialized(indent: 2))
        }
    }
}
