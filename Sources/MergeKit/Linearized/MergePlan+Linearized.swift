/// Merging linearized checkpoints (`LinearizedCheckpoint`): task vectors are θᵢ − θ₀ of the
/// `params` halves, merged by any method exactly as ordinary task vectors, and the merged model
/// is linearized again around the same θ₀:
///
///     params0.<name> = θ₀ (copied byte for byte from the base)
///     params.<name>  = θ₀ + merge(τ₁, …, τₙ)
///
/// The general planner never sees the prefixes: `MergePlan.init` calls `linearized(…)` first,
/// which plans the merge on views (the base's θ₀ half as the base, each input's θ half as a
/// model) and then renames the planned tensors and adds the θ₀ copies. Inputs may be linearized
/// models (their θ₀ must be the base's, byte for byte), ordinary models (post-hoc linearization
/// of θ − θ₀) and task-vector files. With `emit: .taskVector` the output is an ordinary task vector.
/// The base must sit at its linearization point (θ = θ₀, `LinearizedCheckpoint.checkUnmoved`):
/// a linearized fine-tune passed as the base is refused, since its own θ − θ₀ would be dropped.
extension MergePlan {
    /// The plan of a merge onto a linearized base, or nil when neither the base nor an input is
    /// linearized (an ordinary merge).
    static func linearized(base: Checkpoint, inputs: [MergeInput], method: any MergeMethod, output: OutputSpec,
                           parameters: (@Sendable (String) throws(MergeKitError) -> TensorParameters)?) throws(MergeKitError) -> MergePlan? {
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
        let plan = try MergePlan(base: baseHalf, inputs: views, method: method, output: output, parameters: parameters)
        // The real base and inputs (sweeps check that their plans share one base object).
        if output.emit == .taskVector {
            return MergePlan(base: base, inputs: inputs, method: method, output: output, tensors: plan.tensors,
                             shards: plan.shards, companions: plan.companions, skippedFiles: plan.skippedFiles, metadata: plan.metadata)
        }
        var items: [(spec: TensorSpec, make: (Int, TensorInfo) -> PlannedTensor)] = []
        for entry in baseHalf.entries {
            items.append((TensorSpec(name: LinearizedCheckpoint.Half.base.prefix + entry.name, dtype: entry.info.dtype, shape: entry.info.shape),
                          { shard, info in PlannedTensor(action: .copy, method: method, weights: [], base: entry, inputs: [],
                                                         computeInDouble: false, shard: shard, output: info) }))
        }
        for t in plan.tensors {
            items.append((TensorSpec(name: LinearizedCheckpoint.Half.model.prefix + t.name, dtype: t.output.dtype, shape: t.output.shape),
                          { shard, info in PlannedTensor(action: t.action, method: t.method, weights: t.weights, base: t.base,
                                                         inputs: t.inputs, computeInDouble: t.computeInDouble, shard: shard, output: info) }))
        }
        let metadata = plan.metadata.merging(LinearizedCheckpoint.describingMetadata(base.metadata)) { _, linearized in linearized }
        let (tensors, shards) = laidOut(items, output: output, metadata: metadata)
        var result = MergePlan(base: base, inputs: inputs, method: method, output: output, tensors: tensors, shards: shards,
                               companions: plan.companions, skippedFiles: plan.skippedFiles, metadata: metadata)
        result.generatedFiles = plan.generatedFiles
        return result
    }

    /// Output files for `items` in order, split into shards at the output's maximum shard size as
    /// `init(base:inputs:method:output:parameters:)` does, with each tensor's place in its shard.
    static func laidOut(_ items: [(spec: TensorSpec, make: (Int, TensorInfo) -> PlannedTensor)], output: OutputSpec,
                        metadata: [String: String]) -> (tensors: [PlannedTensor], shards: [OutputShard]) {
        let limit = output.isDirectory ? (output.maxShardSize ?? OutputSpec.defaultMaxShardSize) : Int.max
        var groups: [[Int]] = [[]]
        var groupBytes = 0
        for (i, item) in items.enumerated() {
            if !groups[groups.count - 1].isEmpty && groupBytes + item.spec.byteCount > limit {
                groups.append([])
                groupBytes = 0
            }
            groups[groups.count - 1].append(i)
            groupBytes += item.spec.byteCount
        }
        var tensors: [PlannedTensor] = []
        var shards: [OutputShard] = []
        func digits(_ n: Int) -> String { String(repeating: "0", count: max(0, 5 - String(n).count)) + String(n) }
        for (shardIndex, group) in groups.enumerated() {
            let fileName = !output.isDirectory ? FileSystem.lastComponent(of: output.path)
                : groups.count == 1 ? Checkpoint.singleFileName
                : "model-\(digits(shardIndex + 1))-of-\(digits(groups.count)).safetensors"
            let layout = SafeTensorsLayout(specs: group.map { items[$0].spec }, metadata: metadata)
            shards.append(OutputShard(fileName: fileName, layout: layout))
            for (position, i) in group.enumerated() { tensors.append(items[i].make(shardIndex, layout.tensors[position])) }
        }
        return (tensors, shards)
    }

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
