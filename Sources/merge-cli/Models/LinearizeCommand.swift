import ArgumentParser
import MergeKit

struct LinearizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "linearize",
        abstract: "Wrap a base (and a fine-tuned model) as a linearized checkpoint: params0.* = θ₀, params.* = θ.",
        discussion: """
            Post-hoc linearization: the output runs as f(x; θ₀) + J·(θ − θ₀) in `eval`, and merges \
            with every task-vector command (its task vector is θ − θ₀) into linearized models again. \
            Without --model, θ = θ₀ (the starting point of `finetune --linearized` and the base of \
            linearized merges). Tensors are copied byte for byte; config.json is recorded in the \
            metadata (mergekit.config) and copied into directory outputs.
            """)

    @Option(name: .long, help: ArgumentHelp("The base checkpoint θ₀ to linearize around.", valueName: "path"))
    var base: String

    @Option(name: .long, help: ArgumentHelp("A fine-tuned checkpoint θ of the base (default: θ = θ₀).", valueName: "path"))
    var model: String?

    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        if outputOptions.dtype != nil {
            throw ValidationError("--dtype is not used by linearize: θ₀ and θ are copied byte for byte.")
        }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let baseCheckpoint = try Checkpoint(path: base)
            let modelCheckpoint = try model.map { (path) throws(MergeKitError) in try Checkpoint(path: path) }
            let plan = try MergePlan.linearizing(base: baseCheckpoint, model: modelCheckpoint, output: outputOptions.spec())
            try MergeRunner.run([plan], options: outputOptions, command: CommandLine.arguments.joined(separator: " "))
        }
    }
}
