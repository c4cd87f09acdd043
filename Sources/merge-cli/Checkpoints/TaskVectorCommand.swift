import ArgumentParser
import MergeKit

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
    @OptionGroup var hub: HubOptions

    func validate() throws {
        guard (finetuned == nil) != (lora == nil) else {
            throw ValidationError("Give exactly one of --finetuned or --lora.")
        }
        try HubOptions.check([base], flag: "--base")
        try HubOptions.check([finetuned], flag: "--finetuned")
        try HubOptions.check([lora], flag: "--lora")
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let input: (text: String, kind: HubFiles.Kind) = lora.map { (text: $0, kind: .adapter) } ?? (text: finetuned!, kind: .model)
            let hubbed: [(text: String, kind: HubFiles.Kind)] = [(base, .model), input]
            let located = try hub.locator(for: hubbed, quiet: outputOptions.quiet).paths(hubbed)
            let baseCheckpoint = try Checkpoint(path: located[0])
            let opened: MergeInput
            if lora != nil {
                opened = MergeInput(lora: try LoRAAdapter(path: located[1]))
            } else {
                opened = MergeInput(kind: .model, checkpoint: try Checkpoint(path: located[1]), weight: 1)
            }
            let plan = try MergePlan(base: baseCheckpoint, inputs: [opened], method: try TaskArithmetic(scale: 1),
                                     output: outputOptions.spec(emit: .taskVector))
            try MergeRunner.run([plan], options: outputOptions, command: CommandLine.arguments.joined(separator: " "))
        }
    }
}
