import ArgumentParser
import MergeKit

struct ATLASCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "atlas",
        abstract: "aTLAS: learn one coefficient per task vector per parameter block (anisotropic scaling), few-shot supervised or unsupervised.",
        discussion: """
            θₗ = θ₀ₗ + Σₜ λₜₗ τₜₗ for every tensor l, λ starting at 0 (the base). With --shots k, each task \
            contributes up to k labeled images per class (drawn with --seed) and the loss is the sum of the \
            tasks' cross-entropies; without it, every image, unlabeled, and the softmax entropy. AdamW (weight \
            decay 0.1) with the gradient clipped to norm 1 and a cosine schedule without warm-up, at lr 0.1 \
            (few-shot) or 1e-3 (unsupervised), 128 images per step split over the tasks, 10 epochs of at least \
            10 batches: the reference code's settings. --linearized learns the coefficients of linearized \
            models' task vectors in their tangent space (one JVP per batch).
            Example: merge-cli atlas --base clip --model ft-a --model ft-b --shots 16 \\
                       --data a-train.safetensors --head a-head.safetensors -o merged
            """)

    @OptionGroup var shared: CoefficientMergeArguments

    @Option(parsing: .unconditional, help: ArgumentHelp("Supervised few-shot: up to k labeled images per class of each task (default: unsupervised, every image).", valueName: "k"))
    var shots: Int?

    @Flag(name: .customLong("task-wise"), help: "One coefficient per task vector instead of one per parameter block.")
    var taskWise = false

    @Option(name: .customLong("weight-decay"), parsing: .unconditional, help: ArgumentHelp("AdamW's decoupled weight decay.", valueName: "wd"))
    var weightDecay: Double = 0.1

    @Option(name: .customLong("clip-norm"), parsing: .unconditional, help: ArgumentHelp("Largest global gradient norm.", valueName: "c"))
    var clipNorm: Double = 1

    /// The method's settings before the steps are known (they depend on the tasks' sizes).
    var baseOptions: CoefficientTrainingOptions {
        var options = CoefficientTrainingOptions.atlas(supervised: shots != nil, tasks: shared.data.count,
                                                       granularity: taskWise ? .taskWise : .layerWise)
        options.weightDecay = weightDecay
        options.clipNorm = clipNorm
        return shared.overriding(options)
    }

    func validate() throws {
        try ArgumentCheck.atLeast(shots, 1, flag: "--shots")
        guard weightDecay.isFinite && weightDecay >= 0 else { throw ValidationError("--weight-decay must be ≥ 0, not \(weightDecay)") }
        guard clipNorm.isFinite && clipNorm > 0 else { throw ValidationError("--clip-norm must be positive, not \(clipNorm)") }
        try shared.validate(baseOptions)
    }

    func run() throws {
        let steps = shared.steps
        try shared.run(method: "atlas", labeled: shots != nil, shots: shots) { merge in
            var options = baseOptions
            if steps == nil {
                let images = merge.tasks.map(\.indices.count).max() ?? 1
                options.steps = ATLAS.defaultSteps(images: images, batch: options.batchSize)
            }
            return options
        }
    }
}
