import ArgumentParser
import MergeKit

struct NegateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "negate",
        abstract: "θ = θ₀ − λ·τ: remove the behaviour a fine-tuned model (or task vector) added.")

    @Option(name: .long, help: ArgumentHelp("The pre-trained base checkpoint θ₀.", valueName: "path"))
    var base: String

    @Option(name: .long, help: ArgumentHelp("The fine-tuned checkpoint whose task vector is removed.", valueName: "path"))
    var model: String?

    @Option(name: .customLong("task-vector"), help: ArgumentHelp("A task-vector file to remove instead of --model.", valueName: "path"))
    var taskVector: String?

    @Option(name: .customLong("lora"), help: ArgumentHelp("A PEFT LoRA adapter directory whose (lora_alpha/r)·B·A is removed instead of --model.", valueName: "dir"))
    var lora: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("λ, how much of the task vector to subtract.", valueName: "λ"))
    var scale: Double = 1.0

    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var hub: HubOptions
    @OptionGroup var partitioning: PartitionOptions

    func validate() throws {
        try partitioning.validate(output: outputOptions.output)
        guard [model, taskVector, lora].compactMap({ $0 }).count == 1 else {
            throw ValidationError("Give exactly one of --model, --task-vector or --lora.")
        }
        try HubOptions.check([base], flag: "--base")
        try HubOptions.check([model], flag: "--model")
        try HubOptions.check([lora], flag: "--lora")
        try ArgumentCheck.value(scale, .scale, flag: "--scale")
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            var hubbed: [(text: String, kind: HubFiles.Kind)] = [(base, .model)]
            if let model { hubbed.append((model, .model)) }
            if let lora { hubbed.append((lora, .adapter)) }
            let located = try hub.locator(for: hubbed, quiet: outputOptions.quiet).paths(hubbed)
            let baseCheckpoint = try Checkpoint(path: located[0])
            let opened: MergeInput
            if lora != nil {
                opened = MergeInput(lora: try LoRAAdapter(path: located[1]), weight: -1)
            } else if model != nil {
                opened = MergeInput(kind: .model, checkpoint: try Checkpoint(path: located[1]), weight: -1)
            } else {
                opened = MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: taskVector!), weight: -1)
            }
            let plan = try MergePlan(base: baseCheckpoint, inputs: [opened], method: try TaskArithmetic(scale: scale),
                                     output: outputOptions.spec())
            try MergeRunner.run([plan], options: outputOptions, command: PartitionOptions.recordedCommand(), partition: partitioning)
        }
    }
}
