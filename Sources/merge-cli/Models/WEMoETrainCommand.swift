import ArgumentParser
import Foundation
import MergeKit

struct WEMoETrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wemoe-train",
        abstract: "Test-time adaptation of a WEMoE model's routers: minimise the softmax entropy of each task's head on unlabeled inputs.",
        discussion: """
            Pair every --data with a --head, in order (one per task). Labels in the data files are ignored. \
            Each step draws one batch per task (shuffled, reshuffled every pass), averages the routing \
            weights over the batch (FusionBench's batch_reduce), sums the tasks' mean entropies and takes \
            one Adam step on the routers only. Defaults are the paper's: 1000 steps, lr 1e-4, batch 16.
            Example: merge-cli wemoe-train --model wemoe --data mnist.safetensors --head mnist-head.safetensors \\
                       --data svhn.safetensors --head svhn-head.safetensors -o wemoe-trained
            """)

    @Option(help: ArgumentHelp("The WEMoE model (from `merge-cli wemoe`).", valueName: "path"))
    var model: String

    @Option(name: .customLong("data"), help: ArgumentHelp("A task's inputs: safetensors with `pixel_values` [N,3,H,W] (`labels` optional and ignored). Repeatable.", valueName: "file"))
    var data: [String] = []

    @Option(name: .customLong("head"), help: ArgumentHelp("The same task's head: safetensors with `weight` [classes, embedding]. Repeatable.", valueName: "file"))
    var heads: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp("Adam steps.", valueName: "n"))
    var steps = 1000

    @Option(name: .customLong("lr"), parsing: .unconditional, help: ArgumentHelp("Adam's learning rate.", valueName: "lr"))
    var learningRate: Double = 1e-4

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per task per step.", valueName: "B"))
    var batchSize = 16

    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of the batch shuffles.", valueName: "n"))
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads (default: every core).", valueName: "n"))
    var threads: Int?

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("The trained model: a .safetensors file or a directory.", valueName: "path"))
    var output: String

    @Flag(help: "Replace an existing output (only once the new one is complete).")
    var overwrite = false

    @Flag(help: "Print the losses as JSON on stdout.")
    var json = false

    @Flag(help: "No progress bar or summary on stderr.")
    var quiet = false

    @Flag(name: .customLong("allow-unused"), help: "Ignore tensors of the model it does not use (with a warning) instead of refusing it.")
    var allowUnused = false

    func validate() throws {
        if data.isEmpty { throw ValidationError("Give at least one --data with its --head.") }
        if data.count != heads.count {
            throw ValidationError("Got \(data.count) --data and \(heads.count) --head; give one --head per --data, in the same order.")
        }
        try ArgumentCheck.atLeast(steps, 1, flag: "--steps")
        try ArgumentCheck.atLeast(batchSize, 1, flag: "--batch-size")
        guard learningRate.isFinite && learningRate > 0 else { throw ValidationError("--lr must be a positive number, not \(learningRate)") }
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        try ArgumentCheck.path(output, flag: "--output")
        do throws(MergeKitError) {
            try options.validate()
        } catch {
            throw ValidationError(error.inCLIWords.detail)
        }
    }

    var options: WEMoETrainingOptions {
        WEMoETrainingOptions(steps: steps, learningRate: Float(learningRate), batchSize: batchSize, seed: seed)
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            // Everything is checked from headers first; the parameters are allocated last.
            let adaptation = try WEMoEAdaptation(model: model, data: data, heads: heads, output: output, overwrite: overwrite,
                                                 allowUnused: allowUnused, ignored: EngineInputs.warnIgnored)
            _ = try EngineInputs.batch(batchSize, default: batchSize, command: "wemoe-train", quiet: quiet, estimate: adaptation.memory)
            let moe = try adaptation.load(threads: threads)
            let bar = ProgressLine(enabled: !quiet && isatty(2) != 0)
            let start = Date()
            let losses = try adaptation.train(moe, options: options) { step, total, loss in
                bar.update(done: step, total: total) { _ in String(format: "step %d/%d loss %.4f ", step, total, loss) }
            }
            bar.finish()
            let seconds = Date().timeIntervalSince(start)
            let notes = try adaptation.write(moe)
            printNotes(notes, quiet: quiet)
            if !quiet {
                let first = losses.first.map { String(format: "%.4f", $0) } ?? "-", last = losses.last.map { String(format: "%.4f", $0) } ?? "-"
                FileHandle.standardError.write(Data(String(format: "wrote %@: %@, loss %@ → %@, %.2f s (%.1f ms/step)\n", TerminalText.escaped(output), EngineInputs.counted(steps, "step"),
                                                           first, last, seconds, steps > 0 ? 1000 * seconds / Double(steps) : 0).utf8))
            }
            if json {
                print(JSONValue.object([
                    JSONMember("model", .string(model)),
                    JSONMember("output", .string(output)),
                    JSONMember("steps", .int(steps)),
                    JSONMember("learning_rate", .double(learningRate)),
                    JSONMember("batch_size", .int(batchSize)),
                    JSONMember("seed", .int(Int(seed))),
                    JSONMember("seconds", .double(seconds)),
                    JSONMember("losses", .array(losses.map { .double($0) })),
                ]).serialized(indent: 2))
            }
        }
    }
}
