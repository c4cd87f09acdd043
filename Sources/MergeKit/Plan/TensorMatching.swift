/// Matching tensors (`MergePlan.planned`): every base tensor with each input's (same name, shape
/// and a compatible dtype; a LoRA adapter's module or zero), its output dtype and compute type,
/// and its method and weights; then every input tensor the base lacks.
extension MergePlan {
    /// One base tensor matched with the inputs, before the output is laid out.
    struct MatchedTensor {
        let action: PlannedTensor.Action
        let base: Checkpoint.Entry
        /// Parallel to the inputs (empty for copies).
        let inputs: [InputSource]
        /// Computed in Double (some input or the output is F64).
        let double: Bool
        /// The output dtype.
        let dtype: DType
        let parameters: TensorParameters
    }

    /// The base's tensors in order, matched with the inputs'; every mismatch is added to `problems`.
    /// Task-vector outputs leave out non-float tensors.
    static func matchTensors(base: Checkpoint, inputs: [MergeInput], method: any MergeMethod, output: OutputSpec,
                             parameters: (@Sendable (String) throws(MergeKitError) -> TensorParameters)?,
                             into problems: inout ProblemList) -> [MatchedTensor] {
        var planned: [MatchedTensor] = []
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
                    if VocabularyTensors.isVocabulary(info.name), other.info.shape.dropFirst() == info.shape.dropFirst(),
                       let mismatch = VocabularyMerge.mismatch(base: base, model: input.checkpoint,
                                                               fix: "Merge them with a recipe that gives tokenizer_source: base (the output keeps the base's vocabulary, each model's rows placed by token) or union (every model's tokens)") {
                        problems.add(mismatch)
                        continue
                    }
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
                // Rounded to a 16-bit type after every operation, a merge needs no Double.
                if output.compute.rounding != nil { double = false }
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
                planned.append(MatchedTensor(action: .merge, base: entry, inputs: inputEntries, double: double, dtype: outDType, parameters: chosen))
            } else {
                planned.append(MatchedTensor(action: .copy, base: entry, inputs: [], double: false, dtype: info.dtype, parameters: uniform))
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
        return planned
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
}
