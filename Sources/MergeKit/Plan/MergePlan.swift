/// A validated, complete description of one merge, made before any heavy work.
///
/// Everything a user can get wrong is checked here (see `MergePlan.init`), so that execution
/// only fails for reasons outside the user's control (a full disk, a file changed underneath).
public struct MergePlan: Sendable {
    public let base: Checkpoint
    public let inputs: [MergeInput]
    /// The method (for tensors without their own parameters, whole-model statistics and metadata).
    public let method: any MergeMethod
    public internal(set) var output: OutputSpec
    /// Output tensors in output order (shard by shard, data order within a shard).
    public let tensors: [PlannedTensor]
    public let shards: [OutputShard]
    /// Companion files (config.json, tokenizer files, ...) copied from the base directory.
    public internal(set) var companions: [String]
    /// Files of the base's directory a directory output does not get (not companions, or links
    /// out of the model's tree; `Checkpoint.companionSelection()`), for the caller to mention.
    public var skippedFiles: [Checkpoint.SkippedFile] = []
    /// `__metadata__` written into every output file.
    public let metadata: [String: String]
    /// Files written into a directory output besides the weights (a model card, the recipe),
    /// by name. Ignored for single-file outputs.
    public var generatedFiles: [String: [UInt8]] = [:]
    /// Values set in the copied config.json besides its dtype (a layer-wise recipe's layer counts
    /// and per-layer lists).
    var configEdits: [ConfigRewriter.Edit] = []
    /// The output vocabulary when the models' vocabularies are merged (a recipe's
    /// `tokenizer_source`), in words, for `--dry-run`.
    var vocabulary: String?
    /// Where each output tensor is read from when it is not the inputs' tensor of the same name (a
    /// layer-wise recipe): "checkpoint: tensor" per source, for `--dry-run`.
    var origins: [String: [String]] = [:]

    /// Tensor bytes read from the inputs (base included) for merged tensors and copies.
    public var inputBytes: Int {
        tensors.reduce(0) { total, t in
            total + t.base.info.byteCount + t.inputs.reduce(0) { $0 + $1.byteCount }
        }
    }

    /// Tensor bytes written.
    public var outputBytes: Int { shards.reduce(0) { $0 + $1.layout.dataSize } }
}
