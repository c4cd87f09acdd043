/// Merging linearized checkpoints (`LinearizedCheckpoint`): task vectors are θᵢ − θ₀ of the
/// `params` halves, merged by any method exactly as ordinary task vectors, and the merged model
/// is linearized again around the same θ₀:
///
///     params0.<name> = θ₀ (copied byte for byte from the base)
///     params.<name>  = θ₀ + merge(τ₁, …, τₙ)
///
/// Two explicit steps around the ordinary planner, which never sees the prefixes (`MergePlan.init`
/// runs them): before planning, `resolve(base:inputs:)` turns the linearized base and inputs into
/// an ordinary merge of views — the base's θ₀ half as the base, each linearized input's θ half as
/// a model (`baseHalf`, `views`); after planning, `plan(from:)` renames the planned tensors and
/// adds the θ₀ copies. Inputs may be linearized models (their θ₀ must be the base's, byte for
/// byte), ordinary models (post-hoc linearization of θ − θ₀) and task-vector files. With
/// `emit: .taskVector` the output is an ordinary task vector. The base must sit at its
/// linearization point (θ = θ₀, `LinearizedCheckpoint.checkUnmoved`): a linearized fine-tune
/// passed as the base is refused, since its own θ − θ₀ would be dropped.
struct LinearizedMerge {
    /// The base and inputs as given.
    let base: Checkpoint
    let inputs: [MergeInput]
    /// The ordinary merge planned instead: the base's θ₀ half, and the inputs with each linearized
    /// one replaced by its θ half (as a model, with its weight).
    let baseHalf: Checkpoint
    let views: [MergeInput]

    /// The linearized merge of `inputs` onto `base`, or nil when neither the base nor an input is
    /// linearized (an ordinary merge). Throws when only inputs are linearized, when the base has
    /// moved from its linearization point, or when an input was linearized around another θ₀.
    static func resolve(base: Checkpoint, inputs: [MergeInput]) throws(MergeKitError) -> LinearizedMerge? {
        guard LinearizedCheckpoint.isLinearized(base) else {
            if let input = inputs.first(where: { LinearizedCheckpoint.isLinearized($0.checkpoint) }) {
                throw MergeKitError(.baseMismatch, file: input.path,
                    "is a linearized checkpoint but the base (\(base.path)) is not; its task vector is θ − θ₀ of its own θ₀",
                    fix: "Pass the linearized base \(term: .asBase) (\(term: .linearization(base: base.path, output: "BASE-LIN")))")
            }
            return nil
        }
        let baseHalf = try LinearizedCheckpoint.half(.base, of: base)
        try LinearizedCheckpoint.checkUnmoved(base)
        var views: [MergeInput] = []
        for input in inputs {
            if LinearizedCheckpoint.isLinearized(input.checkpoint) {
                try LinearizedCheckpoint.checkSameBase(input.checkpoint, as: base)
                views.append(MergeInput(kind: .model, checkpoint: try LinearizedCheckpoint.half(.model, of: input.checkpoint),
                                        weight: input.weight))
            } else {
                views.append(input)
            }
        }
        return LinearizedMerge(base: base, inputs: inputs, baseHalf: baseHalf, views: views)
    }

    /// The plan of the linearized merge, from the plan of the ordinary merge of `baseHalf` and
    /// `views`: the same tensors as `params.*` after the base's θ₀ copied as `params0.*` (or, for
    /// task-vector outputs, the halves' plan as it is), on the real base and inputs (sweeps check
    /// that their plans share one base object).
    func plan(from halves: MergePlan) -> MergePlan {
        let method = halves.method, output = halves.output
        if output.emit == .taskVector {
            return MergePlan(base: base, inputs: inputs, method: method, output: output, tensors: halves.tensors,
                             shards: halves.shards, companions: halves.companions, skippedFiles: halves.skippedFiles, metadata: halves.metadata)
        }
        var items: [(spec: TensorSpec, make: (Int, TensorInfo) -> PlannedTensor)] = []
        for entry in baseHalf.entries {
            items.append((TensorSpec(name: LinearizedCheckpoint.Half.base.prefix + entry.name, dtype: entry.info.dtype, shape: entry.info.shape),
                          { shard, info in PlannedTensor(action: .copy, method: method, weights: [], base: entry, inputs: [],
                                                         computeInDouble: false, shard: shard, output: info) }))
        }
        for t in halves.tensors {
            items.append((TensorSpec(name: LinearizedCheckpoint.Half.model.prefix + t.name, dtype: t.output.dtype, shape: t.output.shape),
                          { shard, info in PlannedTensor(action: t.action, method: t.method, weights: t.weights, base: t.base,
                                                         inputs: t.inputs, computeInDouble: t.computeInDouble, shard: shard, output: info) }))
        }
        let metadata = halves.metadata.merging(LinearizedCheckpoint.describingMetadata(base.metadata)) { _, linearized in linearized }
        let (tensors, shards) = MergePlan.laidOut(items, output: output, metadata: metadata)
        var result = MergePlan(base: base, inputs: inputs, method: method, output: output, tensors: tensors, shards: shards,
                               companions: halves.companions, skippedFiles: halves.skippedFiles, metadata: metadata)
        result.generatedFiles = halves.generatedFiles
        return result
    }
}
