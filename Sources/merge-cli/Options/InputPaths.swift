import ArgumentParser
import MergeKit

/// The checkpoints a merge reads: the base, fine-tuned models, task-vector files and PEFT LoRA
/// adapters. Methods that set their own per-task coefficients (TSV-M, Iso-C) take these alone;
/// the others take `InputOptions`, these with --weight.
struct InputPaths: MergeInputOptions {
    @Option(name: .long, help: ArgumentHelp("The pre-trained base checkpoint θ₀ (file or directory, or a Hugging Face id org/name[@revision]).", valueName: "path"))
    var base: String

    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned checkpoint θᵢ (path or org/name[@revision]); its task vector θᵢ − θ₀ is computed on the fly. Repeatable.", valueName: "path"))
    var models: [String] = []

    @Option(name: .customLong("task-vector"), help: ArgumentHelp("A task-vector file τᵢ (from `merge-cli task-vector`). Repeatable.", valueName: "path"))
    var taskVectors: [String] = []

    @Option(name: .customLong("lora"), help: ArgumentHelp("A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors, or adapter_model.bin) or Hugging Face id; its task vector is (lora_alpha/r)·B·A on every module it targets and zero elsewhere. Repeatable.", valueName: "dir"))
    var loras: [String] = []

    @OptionGroup var hub: HubOptions

    /// The number of inputs.
    var count: Int { models.count + taskVectors.count + loras.count }

    /// No --weight: every input weighs 1.
    var weights: [Double] { [] }

    func validate() throws {
        if models.isEmpty && taskVectors.isEmpty && loras.isEmpty {
            throw ValidationError("Give at least one --model, --task-vector or --lora to merge.")
        }
        try HubOptions.check([base], flag: "--base")
        try HubOptions.check(models, flag: "--model")
        try HubOptions.check(loras, flag: "--lora")
    }

    /// Opens the base and the inputs (headers only), all with weight 1.
    func open(quiet: Bool) throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        try open(weights: [], quiet: quiet)
    }

    /// Opens the base and the inputs (headers only) with `weights` (in input order; empty: all 1).
    /// Hugging Face ids are downloaded first when the cache lacks them (`HubOptions`), and every
    /// one missing is reported together.
    func open(weights: [Double], quiet: Bool) throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        var hubbed: [(text: String, kind: HubFiles.Kind)] = [(self.base, .model)]
        for model in models { hubbed.append((model, .model)) }
        for lora in loras { hubbed.append((lora, .adapter)) }
        let located = try hub.locator(for: hubbed, quiet: quiet).paths(hubbed)
        let base = try Checkpoint(path: located[0])
        var inputs: [MergeInput] = []
        let paths = zip(models, located[1...]).map { (MergeInput.Kind.model, $1) } + taskVectors.map { (MergeInput.Kind.taskVector, $0) }
        for (i, (kind, path)) in paths.enumerated() {
            let weight = weights.isEmpty ? 1.0 : weights[i]
            inputs.append(MergeInput(kind: kind, checkpoint: try Checkpoint(path: path), weight: weight))
        }
        for (i, path) in located.suffix(loras.count).enumerated() {
            let weight = weights.isEmpty ? 1.0 : weights[paths.count + i]
            inputs.append(MergeInput(lora: try LoRAAdapter(path: path), weight: weight))
        }
        return (base, inputs)
    }
}
