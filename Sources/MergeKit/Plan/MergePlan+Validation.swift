import Foundation

/// Building a plan: every check that can fail because of the user's inputs runs here, before a
/// byte is written. Problems are collected and reported together (up to `maximumReported`).
extension MergePlan {
    /// At most this many problems are listed in one error.
    static let maximumReported = 12

    /// - Parameter parameters: per-tensor method and weights (nil: `method` and the inputs' weights
    ///   everywhere). Methods needing whole-model statistics must not vary what those are.
    public init(base: Checkpoint, inputs: [MergeInput], method: any MergeMethod, output: OutputSpec,
                parameters: (@Sendable (String) throws(MergeKitError) -> TensorParameters)? = nil) throws(MergeKitError) {
        // A linearized base: plan on its halves (Linearized/MergePlan+Linearized.swift).
        if let plan = try Self.linearized(base: base, inputs: inputs, method: method, output: output, parameters: parameters) {
            self = plan
            return
        }
        var problems = ProblemList()

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

        if !output.isSweepPoint {
            let read = [base.path] + inputs.flatMap { [$0.path, $0.checkpoint.path] } + output.inputs
            OutputGuard.check(output: output.path, isDirectory: output.isDirectory, overwrite: output.overwrite, inputs: read, into: &problems)
        }
        let fingerprint = Self.checkTaskVectorBases(base: base, inputs: inputs, into: &problems)
        Self.checkInputKinds(base: base, inputs: inputs, into: &problems)

        // Per tensor: every input has it, with the same shape and a compatible dtype.
        var planned: [(action: PlannedTensor.Action, base: Checkpoint.Entry, inputs: [InputSource], double: Bool, dtype: DType,
                       parameters: TensorParameters)] = []
        planned.reserveCapacity(base.entries.count)
        let uniform = TensorParameters(method: method, weights: inputs.map(\.weight))
        let global = method.statistics
        let bindings = inputs.map { $0.adapter?.bind(to: base) }
        for entry in base.entries {
            let info = entry.info
            let mergeable = info.dtype.isMergeable
            if output.emit == .taskVector && !mergeable { continue }
            var inputEntries: [InputSource] = []
            inputEntries.reserveCapacity(inputs.count)
            var double = info.dtype == .F64
            for (input, binding) in zip(inputs, bindings) {
                if let adapter = input.adapter, let binding {
                    if let source = Self.loraSource(adapter, binding, for: entry, base: base, mergeable: mergeable, into: &problems) {
                        if case .lora(let module) = source, module.a.info.dtype == .F64 || module.b.info.dtype == .F64 { double = true }
                        inputEntries.append(source)
                    }
                    continue
                }
                guard let other = input.checkpoint.entry(named: info.name) else {
                    if mergeable {
                        problems.add(MergeKitError(.missingTensor, file: input.path, tensor: info.name,
                            "is in the base (\(base.path)) but not in this \(input.kind == .model ? "model" : "task vector")",
                            fix: "Merge checkpoints of the same architecture, or recompute the task vector against this base"))
                    }
                    continue
                }
                if other.info.shape != info.shape {
                    problems.add(MergeKitError(.shapeMismatch, file: input.path, tensor: info.name,
                        "has shape \(other.info.shape) but the base (\(base.path)) has \(info.shape)",
                        fix: "Merge only checkpoints fine-tuned from this base (same architecture and sizes)"))
                    continue
                }
                let compatible = mergeable ? other.info.dtype.isMergeable : other.info.dtype == info.dtype
                if !compatible {
                    problems.add(MergeKitError(.dtypeMismatch, file: input.path, tensor: info.name,
                        "is \(other.info.dtype.rawValue) but the base (\(base.path)) has \(info.dtype.rawValue)",
                        fix: mergeable ? "Float tensors can only be merged with float tensors (F32, F16, BF16, F64)"
                                       : "Non-float tensors are copied from the base and must have the same dtype in every model"))
                    continue
                }
                if other.info.dtype == .F64 { double = true }
                inputEntries.append(.tensor(other))
            }
            if mergeable {
                let outDType = output.dtype ?? (output.emit == .model ? info.dtype : (double ? .F64 : .F32))
                if outDType == .F64 { double = true }
                var chosen = uniform
                if let parameters {
                    do throws(MergeKitError) {
                        chosen = try parameters(info.name)
                        try chosen.method.validate(weights: chosen.weights)
                        let local = chosen.method.statistics
                        if local.globalKeepFraction != global.globalKeepFraction || local.globalSquaredNorms != global.globalSquaredNorms
                            || local.majoritySign != global.majoritySign {
                            throw MergeKitError(.invalidArgument, tensor: info.name,
                                "\(method.info.name) needs whole-model statistics, so its trim, norms and vote cannot vary between tensors",
                                fix: "Use one value for the whole model (a per-tensor trim such as trim_scope: tensor can vary)")
                        }
                    } catch {
                        problems.add(error)
                    }
                }
                planned.append((.merge, entry, inputEntries, double, outDType, chosen))
            } else {
                planned.append((.copy, entry, [], false, info.dtype, uniform))
            }
        }
        for (input, binding) in zip(inputs, bindings) {
            if let adapter = input.adapter, let binding {
                Self.checkLoRATargets(adapter, binding, base: base, into: &problems)
                continue
            }
            for other in input.checkpoint.entries where base.entry(named: other.name) == nil {
                problems.add(MergeKitError(.extraTensor, file: input.path, tensor: other.name,
                    "is not in the base (\(base.path)); the merged model would silently drop it",
                    fix: "Merge only checkpoints with the base's tensors (remove extra heads or adapters first)"))
            }
        }
        try problems.throwIfAny()

        // Output layout: shards in base order, split at the maximum shard size.
        let specs = planned.map { TensorSpec(name: $0.base.name, dtype: $0.dtype, shape: $0.base.info.shape) }
        let limit = output.isDirectory ? (output.maxShardSize ?? OutputSpec.defaultMaxShardSize) : Int.max
        var groups: [[Int]] = [[]]
        var groupBytes = 0
        for (i, spec) in specs.enumerated() {
            if !groups[groups.count - 1].isEmpty && groupBytes + spec.byteCount > limit {
                groups.append([])
                groupBytes = 0
            }
            groups[groups.count - 1].append(i)
            groupBytes += spec.byteCount
        }

        var metadata = ["format": "pt", "mergekit.method": method.info.name,
                        "mergekit.parameters": JSONValue.object(method.parameters + [
                            JSONMember("weights", .array(inputs.map { .double($0.weight) })),
                        ]).serialized()]
        if output.emit == .taskVector {
            metadata[TaskVectorFile.kindKey] = TaskVectorFile.kindValue
            metadata[TaskVectorFile.baseKey] = base.path
            metadata[TaskVectorFile.fingerprintKey] = fingerprint ?? BaseFingerprint.compute(base)
            metadata[TaskVectorFile.sourcesKey] = JSONValue.array(inputs.map { .string($0.path) }).serialized()
        }

        var shards: [OutputShard] = []
        var tensors: [PlannedTensor] = []
        tensors.reserveCapacity(planned.count)
        for (shardIndex, group) in groups.enumerated() {
            let fileName: String
            if !output.isDirectory {
                fileName = FileSystem.lastComponent(of: output.path)
            } else if groups.count == 1 {
                fileName = Checkpoint.singleFileName
            } else {
                fileName = "model-\(Self.fiveDigits(shardIndex + 1))-of-\(Self.fiveDigits(groups.count)).safetensors"
            }
            let layout = SafeTensorsLayout(specs: group.map { specs[$0] }, metadata: metadata)
            shards.append(OutputShard(fileName: fileName, layout: layout))
            for (position, i) in group.enumerated() {
                let p = planned[i]
                tensors.append(PlannedTensor(action: p.action, method: p.parameters.method, weights: p.parameters.weights,
                                             base: p.base, inputs: p.inputs, computeInDouble: p.double,
                                             shard: shardIndex, output: layout.tensors[position]))
            }
        }

        let selection = output.isDirectory && output.emit == .model ? try base.companionSelection() : Checkpoint.CompanionSelection()
        self.init(base: base, inputs: inputs, method: method, output: output, tensors: tensors, shards: shards,
                  companions: selection.companions.map(\.name), skippedFiles: selection.skipped, metadata: metadata)
    }

    /// Where a LoRA adapter's τ for base tensor `entry` comes from: its module's factors when it
    /// targets the tensor (which must be a float tensor; `binding` has checked τ's shape), else
    /// zero. Copied (non-float) tensors get no source. Problems name the adapter file, the key and the fix.
    private static func loraSource(_ adapter: LoRAAdapter, _ binding: LoRAAdapter.Binding, for entry: Checkpoint.Entry, base: Checkpoint,
                                   mergeable: Bool, into problems: inout ProblemList) -> InputSource? {
        if let saved = adapter.savedBaseLayers[entry.name], !adapter.savedBaseLayerMatches(entry) {
            problems.add(MergeKitError(.baseMismatch, file: adapter.weights.path, tensor: saved.name,
                "is a saved copy of \(entry.name) that differs from the base (\(base.path)): the adapter was trained with a resized or retrained embedding",
                fix: "Merge the adapter with PEFT (merge_and_unload) and \(term: .passResultAsModel), or use the base it was saved with"))
            return nil
        }
        guard let module = binding.modules[entry.name] else { return mergeable ? .zero : nil }
        guard mergeable else {
            problems.add(MergeKitError(.dtypeMismatch, file: adapter.weights.path, tensor: module.a.name,
                "targets \(entry.name), which is \(entry.info.dtype.rawValue) in the base (\(base.path)); only float tensors can take a LoRA delta",
                fix: "Use the base the adapter was trained on"))
            return nil
        }
        return .lora(module)
    }

    /// The adapter's problems with this base: targets it lacks, shapes, PEFT's module selection
    /// (`LoRAAdapter.bind(to:)`), and saved base-layer copies of tensors it lacks.
    private static func checkLoRATargets(_ adapter: LoRAAdapter, _ binding: LoRAAdapter.Binding, base: Checkpoint,
                                         into problems: inout ProblemList) {
        for (target, saved) in adapter.savedBaseLayers.sorted(by: { $0.key < $1.key }) where base.entry(named: target) == nil {
            problems.add(MergeKitError(.extraTensor, file: adapter.weights.path, tensor: saved.name,
                "is a saved copy of \(target), which the base (\(base.path)) does not have", fix: "Use the base the adapter was trained on"))
        }
        for problem in binding.problems { problems.add(problem) }
    }

    private static func fiveDigits(_ n: Int) -> String {
        let s = String(n)
        return s.count >= 5 ? s : String(repeating: "0", count: 5 - s.count) + s
    }

    /// A task-vector file given as a model would be taken as θ (≈ 0: the merge would erase the
    /// base), and a full model given as a task vector would be added as τ (≈ 2θ): both are
    /// refused with the fix. A file is a task vector when its metadata says so
    /// (`mergekit.kind = task_vector`); a `--task-vector` input without that metadata (made by
    /// another tool) is a full model when it lies near the base (`TaskVectorFile.relativeDistance`).
    private static func checkInputKinds(base: Checkpoint, inputs: [MergeInput], into problems: inout ProblemList) {
        for input in inputs {
            switch input.kind {
            case .model where TaskVectorFile.isTaskVector(input.checkpoint):
                problems.add(MergeKitError(.invalidArgument, file: input.path,
                    "is a task vector (its metadata says \(TaskVectorFile.kindKey) = \(TaskVectorFile.kindValue)) but was given as a fine-tuned model, so its τ would be taken as θ",
                    fix: "\(term: .passAsTaskVector.atStart) \(input.path) (in a recipe: task_vector: \(input.path))"))
            case .taskVector where !TaskVectorFile.isTaskVector(input.checkpoint):
                guard let r = TaskVectorFile.relativeDistance(input.checkpoint, toBase: base), r < TaskVectorFile.fullModelDistance else { continue }
                problems.add(MergeKitError(.invalidArgument, file: input.path,
                    "was given as a task vector but is a full model: its values lie within \(String(format: "%.3g", 100 * r))% of the base's (a task vector lies near 0), so adding it as τ would about double the weights",
                    fix: "\(term: .passAsModel.atStart) \(input.path) (in a recipe: model: \(input.path)), or make its task vector with \(term: .taskVectorExtraction())"))
            default:
                continue
            }
        }
    }

    /// Task-vector inputs that record their base's fingerprint must match this base.
    /// Returns the base's fingerprint when it had to be computed.
    private static func checkTaskVectorBases(base: Checkpoint, inputs: [MergeInput], into problems: inout ProblemList) -> String? {
        var fingerprint: String?
        for input in inputs where input.kind == .taskVector {
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

/// Problems found while planning, reported together.
struct ProblemList {
    private(set) var items: [MergeKitError] = []
    private var overflow = 0

    mutating func add(_ problem: MergeKitError) {
        // The same problem found again (e.g. at several sweep points) is reported once.
        if items.contains(where: { $0.description == problem.description }) { return }
        if items.count < MergePlan.maximumReported { items.append(problem) } else { overflow += 1 }
    }

    func throwIfAny() throws(MergeKitError) {
        guard let first = items.first else { return }
        guard items.count > 1 else { throw first }
        var summary = MergeKitError(first.code, "\(items.count + overflow) problems found before merging:")
        summary.problems = items
        if overflow > 0 { summary.problems.append(MergeKitError(first.code, "… and \(overflow) more")) }
        throw summary
    }
}
