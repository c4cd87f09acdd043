import ArgumentParser
import Foundation
import MergeKit

struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune a CLIP image encoder under a fixed task head, ordinarily or in its tangent space (--linearized).",
        discussion: """
            Cross-entropy of logits = head · e/‖e‖, AdamW with decoupled weight decay, linear warm-up \
            then cosine decay, gradient clipping at a global norm. Defaults are the recipe of "Task \
            Arithmetic in the Tangent Space" for ViT-B/32 (lr 1e-5, weight decay 0.1, batch 128, 500 \
            warm-up steps, clipping at 1, 2000 steps). With --linearized the model is \
            f(x; θ₀) + J·(θ − θ₀): only θ moves, and the output is a linearized checkpoint \
            (params0.* = the base, params.* = θ) for `eval` and the task-vector commands. --data is \
            the `eval` format (pixel_values [N,3,H,W] F32, labels [N] I64); batches are drawn from \
            per-epoch shuffles fixed by --seed.
            """)

    @Option(name: [.customLong("base"), .customLong("model")],
            help: ArgumentHelp("The model to start from, θ₀: a CLIP image-encoder directory or .safetensors file with config.json.", valueName: "path"))
    var base: String

    @Option(help: ArgumentHelp("The task head: safetensors with `weight` [classes, embedding] (kept fixed).", valueName: "file"))
    var head: String

    @Option(help: ArgumentHelp("The training set: safetensors with `pixel_values` [N,3,H,W] F32 and `labels` [N] I64.", valueName: "file"))
    var data: String

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Output: a .safetensors file or a directory (with the base's config.json).", valueName: "path"))
    var output: String

    @Flag(help: "Linear fine-tuning: train f(x; θ₀) + J·(θ − θ₀) and write a linearized checkpoint.")
    var linearized = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Optimisation steps.", valueName: "n"))
    var steps = 2000

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per step (at most the dataset's size).", valueName: "B"))
    var batchSize = 128

    @Option(name: .customLong("lr"), parsing: .unconditional, help: ArgumentHelp("Peak learning rate.", valueName: "η"))
    var learningRate = 1e-5

    @Option(name: .customLong("weight-decay"), parsing: .unconditional, help: ArgumentHelp("AdamW's decoupled weight decay λ.", valueName: "λ"))
    var weightDecay = 0.1

    @Option(name: .customLong("warmup-steps"), parsing: .unconditional, help: ArgumentHelp("Steps of linear warm-up before the cosine decay.", valueName: "n"))
    var warmupSteps = 500

    @Option(name: .customLong("clip-norm"), parsing: .unconditional, help: ArgumentHelp("Clip the gradient to this global L2 norm (0 disables).", valueName: "c"))
    var clipNorm = 1.0

    @Option(name: .customLong("beta1"), parsing: .unconditional, help: ArgumentHelp("Adam β₁.", valueName: "β"))
    var beta1 = 0.9

    @Option(name: .customLong("beta2"), parsing: .unconditional, help: ArgumentHelp("Adam β₂.", valueName: "β"))
    var beta2 = 0.999

    @Option(name: .customLong("adam-eps"), parsing: .unconditional, help: ArgumentHelp("Adam ε.", valueName: "ε"))
    var epsilon = 1e-8

    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of the batch order.", valueName: "n"))
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads (default: every core).", valueName: "n"))
    var threads: Int?

    @Flag(help: "Replace an existing output (only once the new one is complete).")
    var overwrite = false

    @Flag(name: .customLong("allow-unused"), help: "Ignore tensors of the base the encoder does not use (with a warning) instead of refusing it.")
    var allowUnused = false

    @Flag(help: "Print the run as one JSON document on stdout: the output and every step's loss, gradient norm and learning rate.")
    var json = false

    @Flag(help: "No progress bar on stderr.")
    var quiet = false

    var options: FineTuning.Options {
        var o = FineTuning.Options()
        o.steps = steps
        o.batchSize = batchSize
        o.learningRate = learningRate
        o.weightDecay = weightDecay
        o.warmupSteps = warmupSteps
        o.clipNorm = clipNorm == 0 ? nil : clipNorm
        o.beta1 = beta1
        o.beta2 = beta2
        o.epsilon = epsilon
        o.seed = seed
        o.linearized = linearized
        return o
    }

    func validate() throws {
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        try ArgumentCheck.path(output, flag: "--output")
        if clipNorm < 0 { throw ValidationError("--clip-norm must be ≥ 0 (0 disables clipping), not \(clipNorm).") }
        do throws(MergeKitError) {
            try options.validate()
        } catch {
            throw ValidationError(error.inCLIWords.detail)
        }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            // Everything is checked from headers first; the parameters are allocated last.
            let job = try FineTuningJob(base: base, head: head, data: data, output: output, overwrite: overwrite, allowUnused: allowUnused,
                                        ignored: EngineInputs.warnIgnored)
            let threadCount = ThreadCount.resolved(threads)
            let batch = job.batchSize(options)
            _ = try EngineInputs.batch(batch, default: batch, command: "finetune", quiet: quiet) { b in
                job.memory(batch: b, linearized: linearized, threads: threadCount)
            }
            var training = try job.start(options: options, threads: threads)
            let bar = ProgressLine(enabled: !quiet && isatty(2) != 0)
            var last: FineTuning.Step?
            var stepsJSON: [JSONValue] = []
            for _ in 0..<steps {
                let step = try training.train()
                last = step
                bar.update(done: step.index + 1, total: steps) { _ in
                    String(format: "step %d/%d loss %.4f lr %.2e ", step.index + 1, steps, step.loss, step.learningRate)
                }
                if json {
                    stepsJSON.append(.object([JSONMember("step", .int(step.index + 1)), JSONMember("loss", .double(step.loss)),
                                              JSONMember("gradient_norm", .double(step.gradientNorm)),
                                              JSONMember("lr", .double(step.learningRate))]))
                }
            }
            bar.finish()
            let notes = try job.write(training)
            printNotes(notes, quiet: quiet)
            if !quiet, let last {
                FileHandle.standardError.write(Data(String(format: "fine-tuned %@ (%@), last loss %.4f; wrote %@\n", EngineInputs.counted(steps, "step"),
                                                           linearized ? "linearized" : "ordinary", last.loss, TerminalText.escaped(output)).utf8))
            }
            if json {
                // One document (written once the output is in place): the run and every step.
                print(JSONValue.object([JSONMember("output", .string(output)), JSONMember("linearized", .bool(linearized)),
                                        JSONMember("steps", .array(stepsJSON))]).serialized(indent: 2))
            }
        }
    }
}
