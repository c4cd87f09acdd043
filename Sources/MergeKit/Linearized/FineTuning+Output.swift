extension FineTuning {
    /// Writes the fine-tuned model next to everything else of the base checkpoint it started from.
    ///
    /// Ordinary: the base's tensors, the encoder's replaced by θ (each in the base tensor's
    /// dtype); linearized: `params0.*` = the base's tensors byte for byte and `params.*` = the same
    /// with θ (`LinearizedCheckpoint`), so that the result merges with the linearization
    /// of the same base. Companion files (config.json) are copied; written atomically.
    /// - Parameter metadata: extra `__metadata__` (e.g. the hyper-parameters).
    /// - Returns: what happened around the output (stale temporaries removed, …).
    @discardableResult
    public static func write(theta: CLIPVisionParameters, base: Checkpoint, linearized: Bool, output: OutputSpec,
                             metadata extra: [String: String] = [:]) throws(MergeKitError) -> [OutputNote] {
        // The ordinary planner checks the output path (and that the base is mergeable at all).
        let check = try MergePlan(base: base, inputs: [MergeInput(kind: .model, checkpoint: base)], method: try TaskArithmetic(scale: 1),
                                  output: OutputSpec(path: output.path, maxShardSize: output.maxShardSize, overwrite: output.overwrite, inputs: output.inputs))
        var metadata = linearized ? LinearizedCheckpoint.describingMetadata(of: base) : [:]
        metadata["format"] = "pt"
        metadata.merge(extra) { _, new in new }
        enum Source { case copy(Checkpoint.Entry), theta(Checkpoint.Entry) }
        var sources: [Source] = []
        var items: [(spec: TensorSpec, make: (Int, TensorInfo) -> PlannedTensor)] = []
        let method = try TaskArithmetic(scale: 1)
        func add(_ name: String, _ entry: Checkpoint.Entry, _ source: Source) {
            sources.append(source)
            items.append((TensorSpec(name: name, dtype: entry.info.dtype, shape: entry.info.shape),
                          { shard, info in PlannedTensor(action: .copy, method: method, weights: [], base: entry, inputs: [],
                                                         computeInDouble: false, shard: shard, output: info) }))
        }
        for entry in base.entries {
            let moved: Source = theta.tensor(named: entry.name) != nil && entry.info.dtype.isMergeable ? .theta(entry) : .copy(entry)
            if linearized {
                add(LinearizedCheckpoint.Half.base.prefix + entry.name, entry, .copy(entry))
                add(LinearizedCheckpoint.Half.model.prefix + entry.name, entry, moved)
            } else {
                add(entry.name, entry, moved)
            }
        }
        let (tensors, shards) = MergePlan.laidOut(items, output: output, metadata: metadata)
        let writer = try CheckpointWriter(output: output, shards: shards)
        do throws(MergeKitError) {
            for (tensor, source) in zip(tensors, sources) {
                switch source {
                case .copy(let entry):
                    try writer.write(entry.file.bytes(of: entry.info), dataOffset: tensor.output.begin, shard: tensor.shard)
                case .theta(let entry):
                    let values = theta.values(of: entry.name)!
                    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: tensor.output.byteCount, alignment: 16)
                    defer { bytes.deallocate() }
                    values.withUnsafeBufferPointer { Float.store($0.baseAddress!, count: $0.count, as: entry.info.dtype, into: bytes.baseAddress!) }
                    try writer.write(UnsafeRawBufferPointer(bytes), dataOffset: tensor.output.begin, shard: tensor.shard)
                }
            }
            let companions = try check.companions.map { name throws(MergeKitError) in (source: try base.companionSource(name), name: name) }
            try writer.commit(companions: companions) { _, bytes in bytes }
        } catch {
            writer.abort()
            throw error
        }
        return writer.notes
    }
}
