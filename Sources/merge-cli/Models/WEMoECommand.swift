import ArgumentParser
import Foundation
import MergeKit

struct WEMoECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wemoe",
        abstract: "Upscale CLIP image encoders to a weight-ensembling MoE (Tang et al., ICML 2024): task arithmetic everywhere but the MLPs, which mix the task vectors per sample through routers.",
        discussion: """
            Every tensor except the encoder MLPs is merged by task arithmetic, θ₀ + λ·Σ τₜ. Each layer's MLP \
            keeps the pre-trained MLP and the T MLP task vectors as frozen experts, mixed per image as \
            W = W₀ + Σₜ rₜ τₜ, with r the router's outputs averaged over the image's tokens. Routers \
            (depth 2: D → D → T with ReLU; depth 1: D → T; depth 0: one vector) start with weights \
            N(0, 0.01²) and output bias λ, i.e. near task arithmetic. Train them with `merge-cli wemoe-train`, \
            evaluate with `merge-cli eval`. Output: one F32 safetensors file with FusionBench's module \
            names (….mlp.gate.fc1.weight, ….mlp.base_model.fc1.weight, ….mlp.task_vectors.{t}.fc1.weight); \
            a path not ending in .safetensors becomes a directory with model.safetensors and config.json.
            Example: merge-cli wemoe --base clip-vit-b32 --model ft-mnist --model ft-svhn -o wemoe
            """)

    @Option(help: ArgumentHelp("The pre-trained CLIP image encoder θ₀ (directory with config.json, or .safetensors with config.json next to it).", valueName: "path"))
    var base: String

    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned encoder θₜ, one expert each. Repeatable.", valueName: "path"))
    var models: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp("λ: the task-arithmetic scale of the non-MLP tensors and the routers' initial output bias.", valueName: "λ"))
    var scale: Double = 0.3

    @Option(name: .customLong("router-depth"), parsing: .unconditional, help: ArgumentHelp("Router hidden layers: 2 (D → D → T, ReLU; the paper's), 1 (D → T) or 0 (a learned vector).", valueName: "0|1|2"))
    var routerDepth = 2

    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of the routers' random initial weights.", valueName: "n"))
    var seed: UInt64 = 0

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Output: a .safetensors file, or a directory (model.safetensors + config.json).", valueName: "path"))
    var output: String

    @Flag(name: .customLong("exact-start"), help: "Zero the routers' output weights, so the untrained model is exactly task arithmetic at λ (the default draws them from N(0, 0.01²) as FusionBench does, which starts close to it).")
    var exactStart = false

    @Flag(help: "Replace an existing output (only once the new one is complete).")
    var overwrite = false

    @Flag(help: "No summary line on stderr.")
    var quiet = false

    @Flag(name: .customLong("allow-unused"), help: "Ignore tensors of the inputs the encoder does not use (with a warning) instead of refusing them.")
    var allowUnused = false

    func validate() throws {
        if models.isEmpty { throw ValidationError("Give at least one --model, the fine-tuned encoders to use as experts.") }
        try ArgumentCheck.value(scale, .scale, flag: "--scale")
        try ArgumentCheck.path(output, flag: "--output")
        guard WEMoEParameters.isValidDepth(routerDepth) else { throw ValidationError("--router-depth must be 0, 1 or 2, not \(routerDepth).") }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let start = Date()
            // Every input is checked from its header before any is loaded.
            let upscaling = try WEMoEUpscaling(base: base, experts: models, output: output, overwrite: overwrite, allowUnused: allowUnused,
                                               ignored: EngineInputs.warnIgnored)
            let notes = try upscaling.write(scale: Float(scale), routerDepth: routerDepth, seed: seed, exactStart: exactStart,
                                            budget: try EngineInputs.memoryBudget())
            printNotes(notes, quiet: quiet)
            if !quiet {
                FileHandle.standardError.write(Data(String(format: "wrote %@: WEMoE with %@, router depth %d, λ %g, in %.2f s\n",
                                                           TerminalText.escaped(output), EngineInputs.counted(models.count, "expert"), routerDepth, scale, Date().timeIntervalSince(start)).utf8))
            }
        }
    }
}
