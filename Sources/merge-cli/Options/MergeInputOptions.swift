import ArgumentParser
import MergeKit

/// What a merge command reads: the base and the inputs, opened (headers only), with their weights.
protocol MergeInputOptions: ParsableArguments {
    /// The number of inputs (models, task vectors and LoRA adapters).
    var count: Int { get }
    /// The --weight values (empty: every input weighs 1).
    var weights: [Double] { get }
    /// Downloads the Hugging Face models the cache lacks (announced unless `quiet`), then opens.
    func open(quiet: Bool) throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput])
}
