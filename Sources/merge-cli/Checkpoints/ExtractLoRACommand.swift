import ArgumentParser
import Foundation
import MergeKit

struct ExtractLoRACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract-lora",
        abstract: "Write a PEFT LoRA adapter approximating a fine-tune: τ = θ_ft − θ₀ ≈ B·A by truncated SVD on every 2-D weight.",
        discussion: """
            The adapter (adapter_model.safetensors + adapter_config.json, lora_alpha = r) loads with \
            PeftModel.from_pretrained and merges with --lora. Per weight: B = U_k·√s_k, A = √s_k·V_kᵀ, \
            k = min(r, rows, columns). --randomized uses the seeded randomized SVD (about 11× faster at \
            equal rank with the default 4 power iterations, error within 1 % of the exact truncation \
            even on flat, noise-like deltas; --power-iterations 2 is faster for decaying spectra). Embeddings and lm_head are \
            left out unless --embeddings. The relative Frobenius error ‖τ − B·A‖/‖τ‖ of every weight \
            is printed (--json for scripts). Memory: each weight being factorised needs about 7× its size \
            in Float with the exact SVD, about 1.5× with --randomized; fewer weights are factorised at once \
            when they do not fit together, and one that does not fit alone is refused before anything is \
            written (MERGEKIT_MEMORY_BUDGET caps the memory planned for). Linearized checkpoints are refused.
            Example: merge-cli extract-lora --base B --model F --rank 64 --randomized -o adapter
            """)

    @Option(name: .long, help: ArgumentHelp("The pre-trained base checkpoint θ₀.", valueName: "path"))
    var base: String

    @Option(name: .long, help: ArgumentHelp("The fine-tuned checkpoint θ_ft.", valueName: "path"))
    var model: String

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("LoRA rank r (weights smaller than r get their full rank, recorded in rank_pattern).", valueName: "r"))
    var rank: Int

    @Flag(name: .long, help: "Use the randomized SVD (range finder with power iterations) instead of the exact LAPACK SVD.")
    var randomized = false

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Randomized SVD: extra test vectors p.", valueName: "p"))
    var oversampling = 10

    @Option(name: .customLong("power-iterations"), parsing: .unconditional, help: ArgumentHelp("Randomized SVD: power iterations q.", valueName: "q"))
    var powerIterations = 4

    @Option(parsing: .unconditional, help: "Randomized SVD: seed (each weight's seed is derived from it and the weight's name).")
    var seed: UInt64 = 0

    @Flag(name: .long, help: "Also factorise embeddings (as lora_embedding_A/B) and the output head.")
    var embeddings = false

    @Flag(name: .customLong("fan-in-fan-out"), help: "The base stores its weights [in, out] (GPT-2's Conv1D): write fan_in_fan_out: true.")
    var fanInFanOut = false

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("The adapter directory to write.", valueName: "dir"))
    var output: String

    @Option(name: .long, help: ArgumentHelp("dtype of the factors (default: each weight's dtype in the base).", valueName: "dtype"))
    var dtype: OutputDType?

    @Flag(name: .long, help: "Replace an existing output (only once the new one is complete).")
    var overwrite = false

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Worker threads, one weight each (default: the number of cores). Results are identical for any value.", valueName: "n"))
    var threads: Int?

    @Flag(name: .long, help: "Print a JSON report on stdout (per-weight rank and relative error, time, peak memory).")
    var json = false

    @Flag(name: .long, help: "No per-weight lines and no summary line.")
    var quiet = false

    @OptionGroup var hub: HubOptions

    func validate() throws {
        try HubOptions.check([base], flag: "--base")
        try HubOptions.check([model], flag: "--model")
        try ArgumentCheck.atLeast(rank, 1, flag: "--rank")
        try ArgumentCheck.atLeast(oversampling, 0, flag: "--oversampling")
        try ArgumentCheck.atLeast(powerIterations, 0, flag: "--power-iterations")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        try ArgumentCheck.path(output, flag: "--output")
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let options = LoRAExtraction.Options(rank: rank, randomized: randomized, oversampling: oversampling, powerIterations: powerIterations,
                                                 seed: seed, includeEmbeddings: embeddings, fanInFanOut: fanInFanOut, dtype: dtype?.dtype,
                                                 overwrite: overwrite)
            let hubbed: [(text: String, kind: HubFiles.Kind)] = [(base, .model), (model, .model)]
            let located = try hub.locator(for: hubbed, quiet: quiet || json).paths(hubbed)
            let extraction = try LoRAExtraction(base: try Checkpoint(path: located[0]), model: try Checkpoint(path: located[1]), output: output, options: options)
            let result = try extraction.run(threads: threads)
            printNotes(result.notes, quiet: quiet)
            if json {
                print(result.json(extraction).serialized(indent: 2))
                return
            }
            guard !quiet else { return }
            for report in result.reports {
                print("\(TerminalText.escaped(report.tensor))  rank \(report.rank)  relative error " + String(format: "%.6f", report.relativeError))
            }
            let errors = result.reports.map(\.relativeError)
            let mean = errors.reduce(0, +) / Double(max(1, errors.count))
            let summary = "wrote \(TerminalText.escaped(output)): \(result.reports.count) weights at rank \(rank) (\(randomized ? "randomized" : "exact") SVD), "
                + String(format: "mean relative error %.4f, max %.4f, in %.2f s\n", mean, errors.max() ?? 0, result.seconds)
            FileHandle.standardError.write(Data(summary.utf8))
        }
    }
}
