import Foundation

/// The plan-wide checks of `MergePlan.planned`: the arguments (inputs, output dtype, shard size,
/// weights, the method's own weight rules) and each input's kind and base.
extension MergePlan {
    /// Problems with the arguments themselves, before any tensor is looked at.
    static func checkArguments(inputs: [MergeInput], method: any MergeMethod, output: OutputSpec, into problems: inout ProblemList) {
        if inputs.isEmpty {
            problems.add(MergeKitError(.invalidArgument, "no fine-tuned models, task vectors or LoRA adapters to merge",
                fix: "Give at least one fine-tuned model, task vector or LoRA adapter"))
        }
        if let dtype = output.dtype, !dtype.isMergeable {
            problems.add(MergeKitError(.invalidArgument, "output dtype \(dtype.rawValue) is not one MergeKit writes",
                fix: "Use one of F32, F16, BF16, F64"))
        }
        if let size = output.maxShardSize {
            if size <= 0 {
                problems.add(MergeKitError(.invalidArgument, "maximum shard size \(size) must be positive",
                    fix: "Give a positive size, e.g. 2 GB"))
            } else if !output.isDirectory {
                problems.add(MergeKitError(.invalidArgument, file: output.path,
                    "a single .safetensors output cannot be sharded",
                    fix: "Give an output directory (a path not ending in .safetensors) to write shards"))
            }
        }
        for input in inputs where !input.weight.isFinite {
            problems.add(MergeKitError(.invalidArgument, file: input.path,
                MethodParameter.weight.problem(input.weight, label: MethodParameter.weight.name)!))
        }
        if !inputs.isEmpty && inputs.allSatisfy({ $0.weight.isFinite }) {
            do throws(MergeKitError) {
                try method.validate(weights: inputs.map(\.weight))
            } catch {
                problems.add(error)
            }
        }

    }

    /// A task-vector file given as a model would be taken as θ (≈ 0: the merge would erase the
    /// base), and a full model given as a task vector would be added as τ (≈ 2θ): both are
    /// refused with the fix. A file is a task vector when its metadata says so
    /// (`mergekit.kind = task_vector`); a `--task-vector` input without that metadata (made by
    /// another tool) is a full model when it lies near the base (`TaskVectorFile.relativeDistance`).
    static func checkInputKinds(base: Checkpoint, inputs: [MergeInput], into problems: inout ProblemList) {
        for input in inputs {
            switch input.kind {
            case .model where TaskVectorFile.isTaskVector(input.checkpoint):
                problems.add(MergeKitError(.invalidArgument, file: input.path,
                    "is a task vector (its metadata says \(TaskVectorFile.kindKey) = \(TaskVectorFile.kindValue)) but was given as a fine-tuned model, so its τ would be taken as θ",
                    fix: "\(term: .passAsTaskVector.atStart) \(input.path) (in a recipe: task_vector: \(input.path))"))
            case .taskVector where !TaskVectorFile.isTaskVector(input.checkpoint):
                // Needs values: a planned base (a later stage of a multi-document recipe) is
                // compared when the stage runs, on the written checkpoint.
                guard !base.isPlanned, let r = TaskVectorFile.relativeDistance(input.checkpoint, toBase: base), r < TaskVectorFile.fullModelDistance else { continue }
                problems.add(MergeKitError(.invalidArgument, file: input.path,
                    "was given as a task vector but is a full model: its values lie within \(String(format: "%.3g", 100 * r))% of the base's (a task vector lies near 0), so adding it as τ would about double the weights",
                    fix: "\(term: .passAsModel.atStart) \(input.path) (in a recipe: model: \(input.path)), or make its task vector with \(term: .taskVectorExtraction())"))
            default:
                continue
            }
        }
    }

    /// Task-vector inputs that record their base's fingerprint must match this base.
    /// Returns the base's fingerprint when it had to be computed. A planned base's fingerprint
    /// needs its values: it is checked when the stage runs, on the written checkpoint.
    static func checkTaskVectorBases(base: Checkpoint, inputs: [MergeInput], into problems: inout ProblemList) -> String? {
        var fingerprint: String?
        for input in inputs where input.kind == .taskVector && !base.isPlanned {
            guard let recorded = input.checkpoint.metadata?[TaskVectorFile.fingerprintKey] else { continue }
            let actual = fingerprint ?? BaseFingerprint.compute(base)
            fingerprint = actual
            if recorded != actual {
                let madeFrom = input.checkpoint.metadata?[TaskVectorFile.baseKey].map { " (made from \($0))" } ?? ""
                problems.add(MergeKitError(.baseMismatch, file: input.path,
                    "is a task vector of another base model\(madeFrom): its base fingerprint does not match \(base.path)",
                    fix: "Apply it to the base it was made from, or recompute it with \(term: .taskVectorExtraction(base: base.path))"))
            }
        }
        return fingerprint
    }
}
