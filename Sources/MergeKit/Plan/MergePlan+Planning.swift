import Foundation

/// Building a plan: every check that can fail because of the user's inputs runs here, before a
/// byte is written. Problems are collected and reported together (up to `maximumReported`).
///
/// The steps: linearized checkpoints become an ordinary merge of their halves (`LinearizedMerge`);
/// the arguments and inputs are checked (PlanChecks.swift) and the output path
/// (`OutputGuard`); models with tied embeddings take part with their embedding as the head the
/// others store (`VocabularyTensors.presentingTiedHeads`); every base tensor is matched with the
/// inputs' (TensorMatching.swift); the output is laid out (`OutputLayout`) and its companions
/// chosen.
extension MergePlan {
    /// At most this many problems are listed in one error.
    static let maximumReported = 12

    /// - Parameter parameters: per-tensor method and weights (nil: `method` and the inputs' weights
    ///   everywhere). Methods needing whole-model statistics must not vary what those are.
    public init(base: Checkpoint, inputs: [MergeInput], method: any MergeMethod, output: OutputSpec,
                parameters: (@Sendable (String) throws(MergeKitError) -> TensorParameters)? = nil) throws(MergeKitError) {
        // Linearized checkpoints: the ordinary merge of their halves, relabelled (LinearizedMerge).
        if let linearized = try LinearizedMerge.resolve(base: base, inputs: inputs) {
            let halves = try Self.planned(base: linearized.baseHalf, inputs: linearized.views, method: method, output: output,
                                          parameters: parameters)
            self = linearized.plan(from: halves)
        } else {
            self = try Self.planned(base: base, inputs: inputs, method: method, output: output, parameters: parameters)
        }
    }

    /// Every path a merge of `inputs` into `base` reads, for `OutputGuard`: the checkpoints (and
    /// adapter directories) and the output's other inputs. Planned checkpoints (a multi-document
    /// recipe's intermediates) are not on disk yet: their work directory is checked instead.
    static func readPaths(base: Checkpoint, inputs: [MergeInput], output: OutputSpec) -> [String] {
        [base].filter { !$0.isPlanned }.map(\.path) + inputs.filter { !$0.checkpoint.isPlanned }.flatMap { [$0.path, $0.checkpoint.path] }
            + output.inputs
    }

    /// The ordinary planner (no linearized checkpoints): checks, tensor matching, output layout.
    static func planned(base: Checkpoint, inputs: [MergeInput], method: any MergeMethod, output: OutputSpec,
                        parameters: (@Sendable (String) throws(MergeKitError) -> TensorParameters)?) throws(MergeKitError) -> MergePlan {
        let (base, inputs, untied) = VocabularyTensors.presentingTiedHeads(base: base, inputs: inputs, emit: output.emit)
        var problems = ProblemList()
        Self.checkArguments(inputs: inputs, method: method, output: output, into: &problems)
        if !output.isSweepPoint {
            let read = Self.readPaths(base: base, inputs: inputs, output: output)
            OutputGuard.check(output: output.path, isDirectory: output.isDirectory, overwrite: output.overwrite, inputs: read, into: &problems)
        }
        let fingerprint = Self.checkTaskVectorBases(base: base, inputs: inputs, into: &problems)
        Self.checkInputKinds(base: base, inputs: inputs, into: &problems)

        let planned = Self.matchTensors(base: base, inputs: inputs, method: method, output: output, parameters: parameters,
                                        into: &problems)
        try problems.throwIfAny()

        var metadata = ["format": "pt", "mergekit.method": method.info.name,
                        "mergekit.parameters": JSONValue.object(method.parameters + [
                            JSONMember("weights", .array(inputs.map { .double($0.weight) })),
                        ]).serialized()]
        if output.emit == .taskVector {
            metadata[TaskVectorFile.kindKey] = TaskVectorFile.kindValue
            metadata[TaskVectorFile.baseKey] = base.path
            // (A planned base's fingerprint is computed when the stage runs; this plan is never written.)
            metadata[TaskVectorFile.fingerprintKey] = fingerprint ?? (base.isPlanned ? "" : BaseFingerprint.compute(base))
            metadata[TaskVectorFile.sourcesKey] = JSONValue.array(inputs.map { .string($0.path) }).serialized()
        }

        // Output layout: shards in base order, split at the maximum shard size.
        let specs = planned.map { TensorSpec(name: $0.base.name, dtype: $0.dtype, shape: $0.base.info.shape) }
        let (shards, placements) = OutputLayout.layOut(specs, output: output, metadata: metadata)
        let tensors = zip(planned, placements).map { p, placement in
            PlannedTensor(action: p.action, method: p.parameters.method, weights: p.parameters.weights, base: p.base, inputs: p.inputs,
                          computeInDouble: p.double, shard: placement.shard, output: placement.info)
        }

        let selection = output.isDirectory && output.emit == .model ? try base.companionSelection() : Checkpoint.CompanionSelection()
        var plan = MergePlan(base: base, inputs: inputs, method: method, output: output, tensors: tensors, shards: shards,
                             companions: selection.companions.map(\.name), skippedFiles: selection.skipped, metadata: metadata)
        if untied, let edit = VocabularyTensors.tieEdit(false, config: VocabularyTensors.config(of: base)) { plan.configEdits.append(edit) }
        return plan
    }
}
