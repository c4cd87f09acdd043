import ArgumentParser
import MergeKit

/// The checkpoints a merge reads: the base, fine-tuned models, task-vector files and PEFT LoRA
/// adapters. Methods that set their own per-task coefficients (TSV-M, Iso-C) take these alone;
/// the others take `InputOptions`, these with --weight.
struct InputPaths: MergeInputOptions {
    @Option(name: .long, help: ArgumentHelp("The pre-trained base checkpoint θ₀ (file or directory).", valueName: "path"))
    var base: String

    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned checkpoint θᵢ; its task vector θᵢ − θ₀ is computed on the fly. Repeatable.", valueName: "path"))
    var models: [String] = []

    @Option(name: .customLong("task-vector"), help: ArgumentHelp("A task-vector file τᵢ (from `merge-cli task-vector`). Repeatable.", valueName: "path"))
    var taskVectors: [String] = []

    @Option(name: .customLong("lora"), help: ArgumentHelp("A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors, or adapter_model.bin); its task vector is (lora_alpha/r)·B·A on every module it targets and zero elsewhere. Repeatable.", valueName: "dir"))
    var loras: [String] = []

    /// The number of inputs.
    var count: Int { models.count + taskVectors.count + loras.count }

    /// No --weight: every input weighs 1.
    var weights: [Double] { [] }

    func validate() throws {
        if models.isEmpty && taskVectors.isEmpty && loras.isEmpty {
            throw ValidationError("Give at least one --model, --task-vector or --lora to merge.")
        }
    }

    /// Opens the base and the inputs (headers only), all with weight 1.
    func open() throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        try open(weights: [])
    }

    /// Opens the base and the inputs (headers only) with `weights` (in input order; empty: all 1).
    func open(weights: [Double]) throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        let base = try Checkpoint(path: self.base)
        var inputs: [MergeInput] = []
        let paths = models.map { (MergeInput.Kind.model, $0) } + taskVectors.map { (MergeInput.Kind.taskVector, $0) }
        for (i, (kind, path)) in paths.enumerated() {
            let weight = weights.isEmpty ? 1.0 : weights[i]
            inputs.append(MergeInput(kind: kind, checkpoint: try Checkpoint(path: path), weight: weight))
        }
        for (i, path) in loras.enumerated() {
            let weight = weights.isEmpty ? 1.0 : weights[paths.count + i]
            inputs.append(MergeInput(lora: try LoRAAdapter(path: path), weight: weight))
        }
        return (base, inputs)
    }
}
