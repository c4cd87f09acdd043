extension LoRAAdapter {
    /// The adapter applied to one base model: each targeted module oriented and checked against
    /// the base tensor it changes, and PEFT's refusals that need the base's module names.
    struct Binding {
        /// Targeted modules by base tensor name, with `transposed` decided from the base.
        let modules: [String: Module]
        /// What keeps the adapter from merging into this base.
        let problems: [MergeKitError]
    }

    /// Binds the adapter to `base`.
    ///
    /// **Modules of the base.** PEFT walks the model's modules; MergeKit takes every dotted prefix
    /// of a base tensor name as a module (`model.layers.0.self_attn.q_proj.weight` gives `model`,
    /// `model.layers`, …, `model.layers.0.self_attn.q_proj`). As PEFT does, it refuses a config that
    /// targets none of them (“Target modules … not found”, “All modules were excluded”), and one
    /// that targets a module LoRA does not adapt (a container such as `self_attn`, a norm): a module
    /// is adaptable when the base has a `<name>.weight` of two or more dimensions. (Modules without
    /// tensors, such as activations, are invisible here; PEFT would refuse those too.)
    ///
    /// **Orientation.** PEFT takes τ = s·B·A for nn.Linear (weight [out, in]) and s·(B·A)ᵀ for
    /// transformers' Conv1D (weight [in, out]) and for embeddings, whatever `fan_in_fan_out` says.
    /// MergeKit has no module classes and reads the class from the base weight's shape: [B rows,
    /// A columns] is a Linear, [A columns, B rows] a Conv1D. A square weight fits both; it takes the
    /// class most of the adapter's non-square Linear/Conv1D targets show, else the class most of the
    /// base's non-square weights with a bias show (a bias has `out` elements: [out, in] with bias
    /// [out] is a Linear, [in, out] with bias [out] a Conv1D, which always has one), else Linear;
    /// a tie goes to `fan_in_fan_out`. Embedding factors (`lora_embedding_A/B`) are always transposed.
    func bind(to base: Checkpoint) -> Binding {
        var problems: [MergeKitError] = []
        let file = weights.path
        let configPath = FileSystem.join(path, Self.configFileName)
        let baseFix = "Use the base the adapter was trained on" + (config.baseModelNameOrPath.map { " (base_model_name_or_path: \($0))" } ?? "")

        // Targets the base does not have (the key mapping is named).
        var present: [Module] = []
        for module in modules {
            guard base.entry(named: module.target) != nil else {
                let similar = base.tensorNames.first { $0.hasSuffix("." + module.target) || module.target.hasSuffix("." + $0) }
                var fix = "The key \(module.a.name) maps to the base tensor \(module.target); " + baseFix.prefix(1).lowercased() + baseFix.dropFirst()
                if let similar { fix += ". The base has \(similar): its tensor names follow another layout (e.g. saved without a wrapper prefix)" }
                problems.append(MergeKitError(.extraTensor, file: file, tensor: module.a.name,
                    "targets \(module.target), which the base (\(base.path)) does not have", fix: fix))
                continue
            }
            present.append(module)
        }

        // PEFT's selection over the base's modules.
        if problems.isEmpty, let problem = selectionProblem(base, configPath: configPath) {
            problems.append(problem)
        }

        // Orientation, then shapes.
        func linearShape(_ m: Module) -> [Int] { [m.b.info.shape[0], m.a.info.shape[1]] }
        func conv1DShape(_ m: Module) -> [Int] { [m.a.info.shape[1], m.b.info.shape[0]] }
        var linear = 0, conv1D = 0
        for module in present where !module.embedding && linearShape(module) != conv1DShape(module) {
            let shape = base.entry(named: module.target)!.info.shape
            if shape == linearShape(module) { linear += 1 } else if shape == conv1DShape(module) { conv1D += 1 }
        }
        if linear == 0 && conv1D == 0 { (linear, conv1D) = Self.biasEvidence(base) }
        let squareIsConv1D = linear == conv1D ? (linear > 0 && config.fanInFanOut) : conv1D > linear

        var bound: [String: Module] = [:]
        for module in present {
            let shape = base.entry(named: module.target)!.info.shape
            let transposed: Bool
            if module.embedding {
                transposed = true
            } else if shape == linearShape(module) && shape == conv1DShape(module) {
                transposed = squareIsConv1D
            } else {
                transposed = shape == conv1DShape(module)
            }
            let oriented = module.oriented(transposed: transposed)
            guard oriented.deltaShape == shape else {
                let orientation = module.embedding ? "(B·A)ᵀ (an Embedding)" : "B·A (a Linear) or (B·A)ᵀ (a Conv1D)"
                problems.append(MergeKitError(.shapeMismatch, file: file, tensor: module.a.name,
                    "gives a delta \(orientation) of shape \(oriented.deltaShape) (A \(module.a.info.shape), B \(module.b.info.shape)) for \(module.target), but the base (\(base.path)) has \(shape)",
                    fix: baseFix))
                continue
            }
            bound[module.target] = oriented
        }
        return Binding(modules: bound, problems: problems)
    }

    /// PEFT's refusals once it has walked the model: no module selected, or a selected module that
    /// LoRA does not adapt. Nil when the selection is one PEFT accepts.
    private func selectionProblem(_ base: Checkpoint, configPath: String) -> MergeKitError? {
        var names = Set<String>()
        for tensor in base.tensorNames {
            var prefix = Substring(tensor)
            while let dot = prefix.lastIndex(of: ".") {
                prefix = prefix[..<dot]
                names.insert(String(prefix))
            }
        }
        var targeted = 0, excluded = 0, unmatched = 0
        var unsupported: String?
        for name in names.sorted() {
            let weight = base.entry(named: name + ".weight")
            let adaptable = (weight?.info.shape.count ?? 0) >= 2
            switch config.select(name, linear: adaptable) {
            case .targeted:
                targeted += 1
                if !adaptable && unsupported == nil { unsupported = name }
            case .excluded: excluded += 1
            case .unmatched: unmatched += 1
            }
        }
        let fix = "Fix target_modules / exclude_modules / layers_to_transform in \(Self.configFileName): a list entry selects the modules whose name equals it or ends with .<entry>; a string must match the whole name (e.g. \".*\\\\.q_proj\")"
        if let unsupported {
            let kind = base.entry(named: unsupported + ".weight") == nil ? "a container of other modules, or a module without a weight" : "not a Linear, Conv1D or Embedding layer (its weight has one dimension)"
            return MergeKitError(.invalidArgument, file: configPath,
                "selects the base module \(unsupported), which is \(kind); PEFT refuses to adapt it (“Target module … is not supported”)", fix: fix)
        }
        guard targeted == 0 else { return nil }
        let detail: String
        if excluded > 0 && unmatched == 0 {
            detail = "excludes every module of the base (\(base.path)); PEFT refuses the adapter (“All modules were excluded”)"
        } else if excluded == 0 {
            detail = "selects no module of the base (\(base.path)) with target_modules \(describe(config.targetModules))"
                + (config.layersToTransform.map { " and layers_to_transform \($0)" } ?? "")
                + "; PEFT refuses the adapter (“Target modules … not found in the base model”)"
        } else {
            detail = "selects no module of the base (\(base.path)) once exclude_modules is applied; PEFT refuses the adapter (“No modules were targeted for adaptation”)"
        }
        return MergeKitError(.invalidArgument, file: configPath, detail, fix: fix)
    }

    private func describe(_ selector: ModuleSelector) -> String {
        switch selector {
        case .names(let list): return "[" + list.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
        case .pattern(let text): return "\"\(text)\" (a regular expression for the whole name)"
        case .allLinear: return "\"all-linear\""
        }
    }

    /// (Linear, Conv1D) counts among the base's non-square 2-D weights that have a 1-D bias: the
    /// bias has `out` elements, the weight's first dimension for a Linear, its second for a Conv1D.
    private static func biasEvidence(_ base: Checkpoint) -> (Int, Int) {
        var linear = 0, conv1D = 0
        for entry in base.entries where entry.name.hasSuffix(".weight") {
            let shape = entry.info.shape
            guard shape.count == 2, shape[0] != shape[1],
                  let bias = base.entry(named: String(entry.name.dropLast("weight".count)) + "bias"), bias.info.shape.count == 1 else { continue }
            if bias.info.shape[0] == shape[0] { linear += 1 } else if bias.info.shape[0] == shape[1] { conv1D += 1 }
        }
        return (linear, conv1D)
    }
}
