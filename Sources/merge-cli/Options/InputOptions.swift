import ArgumentParser
import MergeKit

/// Inputs shared by the merge commands whose methods take per-input weights: the checkpoints and
/// --weight.
struct InputOptions: MergeInputOptions {
    @OptionGroup var paths: InputPaths

    @Option(name: .customLong("weight"), parsing: .unconditionalSingleValue, help: ArgumentHelp("Weight wᵢ of each input, in order: every --model first, then every --task-vector, then every --lora. Give one per input or none (all 1). May be negative.", valueName: "w"))
    var weights: [Double] = []

    var base: String { paths.base }
    var models: [String] { paths.models }
    var taskVectors: [String] { paths.taskVectors }
    var loras: [String] { paths.loras }
    var count: Int { paths.count }

    func validate() throws {
        if !weights.isEmpty && weights.count != paths.count {
            throw ValidationError("Got \(weights.count) --weight values for \(paths.count) inputs; give one per input (models first, then task vectors, then LoRA adapters) or none.")
        }
        for weight in weights { try ArgumentCheck.value(weight, .weight, flag: "--weight") }
    }

    /// Opens the base and the inputs (headers only), with their weights.
    func open(quiet: Bool) throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        try paths.open(weights: weights, quiet: quiet)
    }
}
