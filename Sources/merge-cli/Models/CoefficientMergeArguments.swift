import ArgumentParser
import Foundation
import MergeKit

/// The options `adamerging` and `atlas` share: the checkpoints, the tasks' data and heads, the
/// training's common settings and the outputs; and the run (check, train, write, print) they share.
struct CoefficientMergeArguments: ParsableArguments {
    @Option(help: ArgumentHelp("The pre-trained model θ₀ (a linearized model at θ₀ with --linearized).", valueName: "path"))
    var base: String

    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned model θₜ (τₜ = θₜ − θ₀). Repeatable.", valueName: "path"))
    var models: [String] = []

    @Option(name: .customLong("data"), help: ArgumentHelp("A task's images: safetensors with `pixel_values` [N,3,H,W] (and `labels` [N] when supervised). Repeatable.", valueName: "file"))
    var data: [String] = []

    @Option(name: .customLong("head"), help: ArgumentHelp("The same task's head: safetensors with `weight` [classes, embedding]. Repeatable, one per --data.", valueName: "file"))
    var heads: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp("Optimiser steps (default: the method's).", valueName: "n"))
    var steps: Int?

    @Option(name: .customLong("lr"), parsing: .unconditional, help: ArgumentHelp("Learning rate (default: the method's).", valueName: "lr"))
    var learningRate: Double?

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per task per step (default: the method's).", valueName: "B"))
    var batchSize: Int?

    @Flag(help: "Merge linearized models in their tangent space: f(x; θ₀) + J·Σλτ (base and models from `linearize` / `finetune --linearized`).")
    var linearized = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of the batch shuffles (and of the few-shot draw).", valueName: "n"))
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads (default: every core).", valueName: "n"))
    var threads: Int?

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("The merged model: a .safetensors file or a directory.", valueName: "path"))
    var output: String

    @Option(name: .customLong("coefficients-out"), help: ArgumentHelp("Where to write the learned coefficients as JSON (default: <output>.coefficients.json).", valueName: "file"))
    var coefficientsOut: String?

    @Option(name: .customLong("recipe-out"), help: ArgumentHelp("Also write a task-arithmetic recipe that re-applies the coefficients without data (`merge-cli run`).", valueName: "file"))
    var recipeOut: String?

    @Flag(help: "Replace existing outputs (only once the new ones are complete).")
    var overwrite = false

    @Flag(help: "Print the run (coefficients, losses, seconds) as JSON on stdout.")
    var json = false

    @Flag(help: "No progress bar or summary on stderr.")
    var quiet = false

    @Flag(name: .customLong("allow-unused"), help: "Ignore tensors of the base the encoder does not use (with a warning) instead of refusing it.")
    var allowUnused = false

    /// Checks of the shared options (exit 64); `options` the method's settings with the overrides.
    func validate(_ options: CoefficientTrainingOptions) throws {
        if models.isEmpty { throw ValidationError("Give at least one --model.") }
        if data.isEmpty { throw ValidationError("Give at least one --data with its --head.") }
        if data.count != heads.count {
            throw ValidationError("Got \(data.count) --data and \(heads.count) --head; give one --head per --data, in the same order.")
        }
        try ArgumentCheck.atLeast(steps, 1, flag: "--steps")
        try ArgumentCheck.atLeast(batchSize, 1, flag: "--batch-size")
        if let learningRate, !(learningRate.isFinite && learningRate > 0) {
            throw ValidationError("--lr must be a positive number, not \(learningRate)")
        }
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        try ArgumentCheck.path(output, flag: "--output")
        if let coefficientsOut { try ArgumentCheck.path(coefficientsOut, flag: "--coefficients-out") }
        if let recipeOut { try ArgumentCheck.path(recipeOut, flag: "--recipe-out") }
        do throws(MergeKitError) {
            try options.validate()
        } catch {
            throw ValidationError(error.inCLIWords.detail)
        }
    }

    /// `options` with the command line's overrides.
    func overriding(_ options: CoefficientTrainingOptions) -> CoefficientTrainingOptions {
        var options = options
        if let steps { options.steps = steps }
        if let learningRate { options.learningRate = learningRate }
        if let batchSize { options.batchSize = batchSize }
        options.linearized = linearized
        options.seed = seed
        return options
    }

    var coefficientsPath: String {
        coefficientsOut ?? (output.hasSuffix("/") ? String(output.dropLast()) : output) + ".coefficients.json"
    }

    /// Checks every input, trains, writes, prints. `options` may depend on the checked merge
    /// (aTLAS's default steps depend on the tasks' sizes).
    func run(method: String, labeled: Bool, shots: Int?,
             options: (CoefficientMerge) -> CoefficientTrainingOptions) throws {
        try reportingErrors { () throws(MergeKitError) in
            let merge = try CoefficientMerge(
                method: method, base: base, models: models, tasks: zip(data, heads).map { CoefficientMerge.TaskFiles(data: $0, head: $1) },
                labeled: labeled, shots: shots, seed: seed, linearized: linearized,
                output: OutputSpec(path: output, overwrite: overwrite), coefficientsPath: coefficientsPath, recipePath: recipeOut,
                allowUnused: allowUnused, ignored: EngineInputs.warnIgnored)
            let options = options(merge)
            // The batch is part of the method's recipe: refused, never reduced, when it does not fit.
            _ = try EngineInputs.batch(options.batchSize, default: options.batchSize, command: method, quiet: quiet) { batch in
                merge.memory(batch: batch, threads: ThreadCount.resolved(threads))
            }
            let trainer = try merge.trainer(options: options, threads: threads)
            let bar = ProgressLine(enabled: !quiet && isatty(2) != 0)
            let start = Date()
            let losses = try trainer.run { step, total, loss in
                bar.update(done: step, total: total) { _ in String(format: "step %d/%d loss %.4f ", step, total, loss) }
            }
            bar.finish()
            let seconds = Date().timeIntervalSince(start)
            let coefficients = merge.coefficients(of: trainer, losses: losses)
            let notes = try merge.write(trainer.merged, coefficients: coefficients)
            printNotes(notes, quiet: quiet)
            if !quiet {
                let first = losses.first.map { String(format: "%.4f", $0) } ?? "-", last = losses.last.map { String(format: "%.4f", $0) } ?? "-"
                FileHandle.standardError.write(Data(String(
                    format: "wrote %@ and %@: %@ × %@ coefficients (%@), %@, loss %@ → %@, %.2f s (%.1f ms/step)\n",
                    TerminalText.escaped(output), TerminalText.escaped(coefficientsPath), EngineInputs.counted(models.count, "model"),
                    String(coefficients.blocks), coefficients.granularity.rawValue, EngineInputs.counted(options.steps, "step"),
                    first, last, seconds, 1000 * seconds / Double(max(1, options.steps))).utf8))
            }
            if json {
                print(JSONValue.object([
                    JSONMember("method", .string(method)),
                    JSONMember("output", .string(output)),
                    JSONMember("coefficients_file", .string(coefficientsPath)),
                    JSONMember("steps", .int(options.steps)),
                    JSONMember("learning_rate", .double(options.learningRate)),
                    JSONMember("batch_size", .int(options.batchSize)),
                    JSONMember("seed", .int(Int(seed))),
                    JSONMember("seconds", .double(seconds)),
                    JSONMember("losses", .array(losses.map { .double($0) })),
                    JSONMember("coefficients", coefficients.json),
                ]).serialized(indent: 2))
            }
        }
    }
}
