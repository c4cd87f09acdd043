import ArgumentParser
import MergeKit

struct AdaMergingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adamerging",
        abstract: "AdaMerging: learn task-arithmetic coefficients (per task or per tensor) by minimising the prediction entropy on unlabeled data.",
        discussion: """
            θ = θ₀ + Σₜ λₜ τₜ (task-wise) or θₗ = θ₀ₗ + Σₜ λₜₗ τₜₗ for every tensor l (layer-wise, the \
            default), λ starting at 0.3. Each step draws a batch of every --data (labels ignored), sums the \
            tasks' mean entropies −Σ p log(p + 1e-8) through each task's --head, and takes one Adam step on λ. \
            Defaults are FusionBench's: 1000 steps, lr 1e-3, 16 images per task. The model is held once and \
            rebuilt from θ₀ + Σλτ after each step; the task vectors are read from the files as needed.
            Writes the merged model, the coefficients as JSON (--coefficients-out) and, with --recipe-out, a \
            task-arithmetic recipe that `merge-cli run` merges again without data.
            Example: merge-cli adamerging --base clip --model ft-mnist --model ft-svhn \\
                       --data mnist.safetensors --head mnist-head.safetensors \\
                       --data svhn.safetensors --head svhn-head.safetensors -o merged
            """)

    @OptionGroup var shared: CoefficientMergeArguments

    @Option(help: ArgumentHelp("task-wise (one λ per model) or layer-wise (one per model per tensor).", valueName: "kind"))
    var granularity: CoefficientGranularity = .layerWise

    @Option(name: .customLong("init"), parsing: .unconditional, help: ArgumentHelp("λ's starting value.", valueName: "λ"))
    var initialValue: Double = 0.3

    @Flag(help: "Clamp λ to [0, 1] (FusionBench's clamp_weights).")
    var clamp = false

    var options: CoefficientTrainingOptions {
        var options = CoefficientTrainingOptions.adaMerging(granularity)
        options.initialValue = Float(initialValue)
        options.clamp = clamp
        return shared.overriding(options)
    }

    func validate() throws {
        guard initialValue.isFinite else { throw ValidationError("--init must be a finite number, not \(initialValue)") }
        try shared.validate(options)
    }

    func run() throws {
        try shared.run(method: "adamerging", labeled: false, shots: nil) { _ in options }
    }
}

extension CoefficientGranularity: ExpressibleByArgument {}
