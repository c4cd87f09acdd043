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

    func validate() throws {
        guard [model, taskVector, lora].compactMap({ $0 }).count == 1 else {
            throw ValidationError("Give exactly one of --model, --task-vector or --lora.")
        }
        try ArgumentCheck.value(scale, .scale, flag: "--scale")
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let baseCheckpoint = try Checkpoint(path: base)
            let opened: MergeInput
            if let lora {
                opened = MergeInput(lora: try LoRAAdapter(path: lora), weight: -1)
            } else {
                let input = model.map { (MergeInput.Kind.model, $0) } ?? (.taskVector, taskVector!)
                opened = MergeInput(kind: input.0, checkpoint: try Checkpoint(path: input.1), weight: -1)
            }
            let plan = try MergePlan(base: baseCheckpoint, inputs: [opened], method: try TaskArithmetic(scale: scale),
                                     output: outputOptions.spec())
            try MergeRunner.run([plan], options: outputOptions, command: CommandLine.arguments.joined(separator: " "))
        }
    }
}

struct TaskVectorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task-vector",
        abstract: "Write τ = θ_ft − θ₀ (or a LoRA adapter's dense τ) as a task-vector file (F32 by default) that remembers its base.")

    @Option(name: .long, help: ArgumentHelp("The pre-trained base checkpoint θ₀.", valueName: "path"))
    var base: String

    @Option(name: .long, help: ArgumentHelp("The fine-tuned checkpoint θ_ft.", valueName: "path"))
    var finetuned: String?

    @Option(name: .customLong("lora"), help: ArgumentHelp("A PEFT LoRA adapter directory instead of --finetuned: writes its dense τ = (lora_alpha/r)·B·A (zero where it targets nothing).", valueName: "dir"))
    var lora: String?

    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        guard (finetuned == nil) != (lora == nil) else {
            throw ValidationError("Give exactly one of --finetuned or --lora.")
        }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let baseCheckpoint = try Checkpoint(path: base)
            let input: MergeInput
            if let lora {
                input = MergeInput(lora: try LoRAAdapter(path: lora))
            } else {
                input = MergeInput(kind: .model, checkpoint: try Checkpoint(path: finetuned!), weight: 1)
            }
            let plan = try MergePlan(base: baseCheckpoint, inputs: [input], method: try TaskArithmetic(scale: 1),
                                     output: outputOptions.spec(emit: .taskVector))
            try MergeRunner.run([plan], options: outputOptions, command: CommandLine.arguments.joined(separator: " "))
        }
    }
}
