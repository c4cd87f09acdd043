extension MergePlan {
    /// The plan of `merge-cli convert`: every tensor of `checkpoint` (any format a `Checkpoint`
    /// reads: safetensors, or PyTorch's `.bin`/`.pt`), in its order and dtype, copied byte for byte
    /// into `output` as safetensors — one file, or a directory sharded at the output's shard size
    /// with the index and the checkpoint's companions (config.json, tokenizer files). It runs as
    /// any merge runs (`MergeRun`): streamed through staging buffers, written atomically.
    ///
    /// Tensors that share bytes in the source (tied weights of a PyTorch state dict) are written
    /// once per name: safetensors has no aliasing. The output's `__metadata__` is the source's (a
    /// PyTorch checkpoint has none) with `format` set to `pt`, as transformers expects. A dtype
    /// for the output is refused: converting copies, it never rounds.
    public init(converting checkpoint: Checkpoint, output: OutputSpec) throws(MergeKitError) {
        var problems = ProblemList()
        if output.dtype != nil {
            problems.add(MergeKitError(.invalidArgument, "converting copies every tensor in its own dtype; an output dtype cannot be given",
                fix: "Convert first, then merge with the output dtype you want"))
        }
        if output.emit != .model {
            problems.add(MergeKitError(.invalidArgument, "converting writes the checkpoint itself, not a task vector",
                fix: "Leave out the task-vector output"))
        }
        OutputGuard.check(output: output.path, isDirectory: output.isDirectory, overwrite: output.overwrite,
                          inputs: [checkpoint.path] + output.inputs, into: &problems)
        try problems.throwIfAny()
        var metadata = checkpoint.metadata ?? [:]
        metadata["format"] = "pt"
        let method = try Passthrough()
        let items = checkpoint.entries.map { entry in
            (spec: TensorSpec(name: entry.name, dtype: entry.info.dtype, shape: entry.info.shape),
             make: { (shard: Int, info: TensorInfo) in
                 PlannedTensor(action: .copy, method: method, weights: [], base: entry, inputs: [], computeInDouble: false,
                               shard: shard, output: info)
             })
        }
        let (tensors, shards) = MergePlan.laidOut(items, output: output, metadata: metadata)
        let selection = output.isDirectory ? try checkpoint.companionSelection() : Checkpoint.CompanionSelection()
        self.init(base: checkpoint, inputs: [], method: method, output: output, tensors: tensors, shards: shards,
                  companions: selection.companions.map(\.name), skippedFiles: selection.skipped, metadata: metadata)
    }
}
