/// Post-hoc linearization (`merge-cli linearize`): the plan that copies a base (and a fine-tuned
/// model) into a linearized checkpoint (`LinearizedCheckpoint`), laid out like any output.
extension MergePlan {
    /// The plan that writes the linearized model of `model` around `base` (post-hoc
    /// linearization: θ₀ from `base`, θ from `model`, or θ = θ₀ without one), both copied byte for
    /// byte. `model` must have the base's tensors, shapes and float dtypes.
    public static func linearizing(base: Checkpoint, model: Checkpoint?, output: OutputSpec) throws(MergeKitError) -> MergePlan {
        for checkpoint in [base] + (model.map { [$0] } ?? []) where LinearizedCheckpoint.isLinearized(checkpoint) {
            throw MergeKitError(.invalidArgument, file: checkpoint.path, "is already a linearized checkpoint",
                fix: "Pass the ordinary (not linearized) base and fine-tuned checkpoints")
        }
        for checkpoint in [base] + (model.map { [$0] } ?? []) where WEMoEParameters.isWEMoE(checkpoint) {
            try CheckpointRole.linearizeInput.check(checkpoint)
        }
        if let model, TaskVectorFile.isTaskVector(model) {
            throw MergeKitError(.invalidArgument, file: model.path, "is a task vector, not a fine-tuned model θ",
                fix: "Linearize the base alone, then merge the task vector onto it (\(term: .applyTaskVector(base: "LIN", taskVector: model.path)))")
        }
        // The ordinary planner checks names, shapes, dtypes and the output path.
        let inputs = [MergeInput(kind: .model, checkpoint: model ?? base)]
        let method = try TaskArithmetic(scale: 1)
        let check = try MergePlan(base: base, inputs: inputs, method: method,
                                  output: OutputSpec(path: output.path, maxShardSize: output.maxShardSize, overwrite: output.overwrite, inputs: output.inputs))
        var items: [(spec: TensorSpec, make: (Int, TensorInfo) -> PlannedTensor)] = []
        for (half, entries) in [(LinearizedCheckpoint.Half.base, check.tensors.map(\.base)),
                                (.model, check.tensors.map { $0.inputs.first?.entry ?? $0.base })] {
            for entry in entries {
                items.append((TensorSpec(name: half.prefix + entry.name, dtype: entry.info.dtype, shape: entry.info.shape),
                              { shard, info in PlannedTensor(action: .copy, method: method, weights: [], base: entry, inputs: [],
                                                             computeInDouble: false, shard: shard, output: info) }))
            }
        }
        var metadata = LinearizedCheckpoint.describingMetadata(of: base)
        metadata["format"] = "pt"
        metadata["mergekit.linearized.base"] = base.path
        if let model { metadata["mergekit.linearized.model"] = model.path }
        let (tensors, shards) = laidOut(items, output: output, metadata: metadata)
        return MergePlan(base: base, inputs: inputs, method: method, output: output, tensors: tensors, shards: shards,
                         companions: check.companions, skippedFiles: check.skippedFiles, metadata: metadata)
    }
}
