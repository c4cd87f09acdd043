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
                fix: "Pass at least one --model, --task-vector or --lora"))
        }
        if let dtype = output.dtype, !dtype.isMergeable {
            problems.add(MergeKitError(.invalidArgument, "output dtype \(dtype.rawValue) is not one MergeKit writes",
                fix: "Use one of F32, F16, BF16, F64"))
        }
        if let size = output.maxShardSize {
            if size <= 0 {
                problems.add(MergeKitError(.invalidArgument, "maximum shard size \(size) must be positive",
                    fix: "Pass e.g. --max-shard-size 2G"))
            } else if !output.isDirectory {
                problems.add(MergeKitError(.invalidArgument, file: output.path,
                    "a single .safetensors output cannot be sharded",
                    fix: "Give an output directory (a path not ending in .safetensors) to write shards"))
            }
        }
        for input in inputs where !input.weight.isFinite {
            problems.add(MergeKitError(.invalidArgument, file: input.path, "weight \(input.weight) is not a finite number",
                fix: "Pass finite --weight values"))
        }
        if !inputs.isEmpty && inputs.allSatisfy({ $0.weight.isFinite }) {
            do throws(MergeKitError) {
                try method.validate(weights: inputs.map(\.weight))
            } catch {
                problems.add(error)
            }
        }

        Self.checkOutputPath(output, checkpoints: [base] + inputs.map(\.checkpoint), into: &problems)
        let fingerprint = Self.checkTaskVectorBases(base: base, inputs: inputs, into: &problems)

        // Per tensor: every input has it, with the same shape and a compatible dtype.
        var planned: [(action: PlannedTensor.Action, base: Checkpoint.Entry, inputs: [InputSource], double: Bool, dtype: DType,
                       parameters: TensorParameters)] = []
        planned.reserveCapacity(base.entries.count)
        let uniform = TensorParameters(method: method, weights: inputs.map(\.weight))
        let global = method.statistics
        for entry in base.entries {
            let info = entry.info
            let mergeable = info.dtype.isMergeable
            if output.emit == .taskVector && !mergeable { continue }
            var inputEntries: [InputSource] = []
            inputEntries.reserveCapacity(inputs.count)
            var double = info.dtype == .F64
            for input in inputs {
                if let adapter = input.adapter {
                    if let source = Self.loraSource(adapter, for: entry, base: base, mergeable: mergeable, into: &problems) {
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
        for input in inputs {
            if let adapter = input.adapter {
                Self.checkLoRATargets(adapter, base: base, into: &problems)
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
    /// targets the tensor (which must be a float tensor of τ's shape), else zero. Copied
    /// (non-float) tensors get no source. Problems name the adapter file, the key and the fix.
    private static func loraSource(_ adapter: LoRAAdapter, for entry: Checkpoint.Entry, base: Checkpoint, mergeable: Bool,
                                   into problems: inout ProblemList) -> InputSource? {
        if let saved = adapter.savedBaseLayers[entry.name], !adapter.savedBaseLayerMatches(entry) {
            problems.add(MergeKitError(.baseMismatch, file: adapter.weights.path, tensor: saved.name,
                "is a saved copy of \(entry.name) that differs from the base (\(base.path)): the adapter was trained with a resized or retrained embedding",
                fix: "Merge the adapter with PEFT (merge_and_unload) and pass the result with --model, or use the base it was saved with"))
            return nil
        }
        guard let module = adapter.module(forTarget: entry.name) else { return mergeable ? .zero : nil }
        let file = adapter.weights.path
        guard mergeable else {
            problems.add(MergeKitError(.dtypeMismatch, file: file, tensor: module.a.name,
                "targets \(entry.name), which is \(entry.info.dtype.rawValue) in the base (\(base.path)); only float tensors can take a LoRA delta",
                fix: "Use the base the adapter was trained on"))
            return nil
        }
        let shape = module.deltaShape
        guard shape == entry.info.shape else {
            let orientation = module.transposed ? "(B·A)ᵀ" : "B·A"
            var fix = "Use the base the adapter was trained on" + (adapter.config.baseModelNameOrPath.map { " (base_model_name_or_path: \($0))" } ?? "")
            if shape.count == 2 && [shape[1], shape[0]] == entry.info.shape {
                fix = adapter.config.fanInFanOut
                    ? "The base stores this weight as [out, in] (nn.Linear): set \"fan_in_fan_out\": false in \(LoRAAdapter.configFileName)"
                    : "The base stores this weight as [in, out] (GPT-2's Conv1D): set \"fan_in_fan_out\": true in \(LoRAAdapter.configFileName)"
            }
            problems.add(MergeKitError(.shapeMismatch, file: file, tensor: module.a.name,
                "gives a delta \(orientation) of shape \(shape) (A \(module.a.info.shape), B \(module.b.info.shape)) for \(entry.name), but the base (\(base.path)) has \(entry.info.shape)",
                fix: fix))
            return nil
        }
        return .lora(module)
    }

    /// Every module the adapter targets must map to a base tensor
    /// (`base_model.model.<name>.lora_A.weight` → `<name>.weight`).
    private static func checkLoRATargets(_ adapter: LoRAAdapter, base: Checkpoint, into problems: inout ProblemList) {
        for (target, saved) in adapter.savedBaseLayers.sorted(by: { $0.key < $1.key }) where base.entry(named: target) == nil {
            problems.add(MergeKitError(.extraTensor, file: adapter.weights.path, tensor: saved.name,
                "is a saved copy of \(target), which the base (\(base.path)) does not have", fix: "Use the base the adapter was trained on"))
        }
        for module in adapter.modules where base.entry(named: module.target) == nil {
            let similar = base.tensorNames.first { $0.hasSuffix("." + module.target) || module.target.hasSuffix("." + $0) }
            var fix = "The key \(module.a.name) maps to the base tensor \(module.target); use the base the adapter was trained on"
                + (adapter.config.baseModelNameOrPath.map { " (base_model_name_or_path: \($0))" } ?? "")
            if let similar { fix += ". The base has \(similar): its tensor names follow another layout (e.g. saved without a wrapper prefix)" }
            problems.add(MergeKitError(.extraTensor, file: adapter.weights.path, tensor: module.a.name,
                "targets \(module.target), which the base (\(base.path)) does not have", fix: fix))
        }
    }

    private static func fiveDigits(_ n: Int) -> String {
        let s = String(n)
        return s.count >= 5 ? s : String(repeating: "0", count: 5 - s.count) + s
    }

    /// Refuses an output that is an input, lies inside an input directory, contains an input, or
    /// already exists (unless overwriting). Symlinks are resolved before comparing.
    private static func checkOutputPath(_ output: OutputSpec, checkpoints: [Checkpoint], into problems: inout ProblemList) {
        let target = FileSystem.canonicalPath(forNew: output.path)
        let targetIdentity = FileSystem.identity(of: output.path)
        for checkpoint in checkpoints {
            guard let source = FileSystem.realPath(checkpoint.path) else { continue }
            let sameFile = targetIdentity.map { id in checkpoint.fileIdentities.contains(id) } ?? false
            if target == source || sameFile || target.hasPrefix(source + "/") || source.hasPrefix(target + "/") {
                problems.add(MergeKitError(.outputIsInput, file: output.path,
                    "is, contains or lies inside the input \(checkpoint.path); writing there could destroy an input",
                    fix: "Choose an output path outside every input"))
                return
            }
        }
        let parent = FileSystem.parentDirectory(of: target)
        if FileSystem.kind(of: parent) != .directory {
            problems.add(MergeKitError(.fileNotFound, file: output.path, "cannot be created: the directory \(parent) does not exist",
                fix: "Create the directory first"))
        } else if FileSystem.exists(output.path) && !output.overwrite {
            problems.add(MergeKitError(.outputExists, file: output.path, "already exists",
                fix: "Choose a new output path, or pass --overwrite to replace it once the merge has succeeded"))
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
                    fix: "Apply it to the base it was made from, or recompute it with `merge-cli task-vector --base \(base.path)`"))
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
        guard var first = items.first else { return }
        guard items.count > 1 else { throw first }
        var lines = ["\(items.count + overflow) problems found before merging:"]
        lines += items.map { "  - \($0.description)" }
        if overflow > 0 { lines.append("  - … and \(overflow) more") }
        first.detail = lines.joined(separator: "\n")
        first.file = nil
        first.tensor = nil
        first.fix = nil
        throw first
    }
}
