import Foundation

extension WEMoEParameters {
    /// Whether a checkpoint holds a WEMoE model (`merge_method` = `wemoe` in its metadata, or
    /// router tensors named `….mlp.gate.…`).
    public static func isWEMoE(_ checkpoint: Checkpoint) -> Bool {
        if checkpoint.metadata?["merge_method"] == "wemoe" { return true }
        return checkpoint.tensorNames.contains { $0.contains(".mlp.gate.") }
    }

    /// Loads a WEMoE checkpoint written by `save` (or laid out the same way by PyTorch code).
    public static func load(path: String, allowUnused: Bool = false) throws(MergeKitError) -> WEMoEParameters {
        let checkpoint = try Checkpoint(path: path)
        return try load(from: checkpoint, allowUnused: allowUnused)
    }

    /// What a WEMoE checkpoint's header and metadata say, before anything is allocated.
    struct Description {
        let config: CLIPVisionConfig
        let prefix: String
        let experts: Int
        let routerDepth: Int
        let projection: String?
        let initLambda: Float
        let trainedSteps: Int
        let expertNames: [String]
    }

    /// Reads the shape of a WEMoE checkpoint from its names and metadata: the encoder's config
    /// (config.json next to it, else `wemoe.config`), the prefix, T (task vectors of layer 0), the
    /// router depth (layer 0's gate), and checks the metadata that states them (`wemoe.num_experts`,
    /// `wemoe.router_depth`, `wemoe.init_lambda` finite, `wemoe.trained_steps` a count).
    static func describe(_ checkpoint: Checkpoint) throws(MergeKitError) -> Description {
        let file = checkpoint.path
        let fix: MergeKitError.Text = "Upscale the model with \(term: .wemoeUpscaling()) (see the README's WEMoE section for the layout)"
        let metadata = checkpoint.metadata ?? [:]
        guard isWEMoE(checkpoint) else {
            throw MergeKitError(.invalidArgument, file: file, "is not a WEMoE checkpoint (no merge_method \"wemoe\" in its metadata and no ….mlp.gate.… tensors)", fix: fix)
        }
        // The encoder's shape: config.json next to it, else the copy in the metadata.
        let config: CLIPVisionConfig
        if let configPath = try? CLIPVisionModel.configPath(for: checkpoint) {
            config = try CLIPVisionConfig.load(path: configPath)
        } else if let text = metadata["wemoe.config"] {
            let json: JSONValue
            do { json = try JSONParser.parse(Array(text.utf8)) } catch {
                throw MergeKitError(.metadataInvalid, file: file, "its wemoe.config metadata is not valid JSON (\(error.description))", fix: fix)
            }
            config = try CLIPVisionConfig(json: json, file: file)
        } else {
            throw MergeKitError(.fileNotFound, file: file, "has no config.json next to it and no wemoe.config metadata",
                                fix: "Put the base model's config.json next to the WEMoE checkpoint")
        }
        // The layout: prefix from the patch embedding, experts from the task vectors, depth from the gate.
        guard let anchor = checkpoint.tensorNames.first(where: { $0.hasSuffix(CLIPVisionParameters.anchorName) }) else {
            throw MergeKitError(.missingTensor, file: file, tensor: "vision_model." + CLIPVisionParameters.anchorName, "is missing", fix: fix)
        }
        let prefix = String(anchor.dropLast(CLIPVisionParameters.anchorName.count))
        let mlp0 = prefix + "encoder.layers.0.mlp."
        var experts = 0
        while checkpoint.entry(named: mlp0 + "task_vectors.\(experts).fc1.weight") != nil { experts += 1 }
        guard experts >= 1 else {
            throw MergeKitError(.missingTensor, file: file, tensor: mlp0 + "task_vectors.0.fc1.weight", "is missing; a WEMoE model has at least one expert", fix: fix)
        }
        let depth: Int
        if checkpoint.entry(named: mlp0 + "gate.fc1.weight") != nil { depth = 2 }
        else if checkpoint.entry(named: mlp0 + "gate.fc.weight") != nil { depth = 1 }
        else if checkpoint.entry(named: mlp0 + "gate.weight") != nil { depth = 0 }
        else {
            throw MergeKitError(.missingTensor, file: file, tensor: mlp0 + "gate.fc1.weight", "is missing (no router of depth 2, 1 or 0 found)", fix: fix)
        }
        if let stated = metadata["wemoe.num_experts"], stated != String(experts) {
            throw MergeKitError(.metadataInvalid, file: file, "its metadata says \(stated) experts but it holds \(counted(experts, "task vector")) per layer", fix: fix)
        }
        if let stated = metadata["wemoe.router_depth"], stated != String(depth) {
            throw MergeKitError(.metadataInvalid, file: file, "its metadata says router depth \(stated) but layer 0's router has depth \(depth)", fix: fix)
        }
        var lambda: Float = 0.3
        if let text = metadata["wemoe.init_lambda"] {
            guard let value = Float(text), value.isFinite else {
                throw MergeKitError(.metadataInvalid, file: file, "its wemoe.init_lambda \"\(text)\" is not a finite number", fix: fix)
            }
            lambda = value
        }
        var steps = 0
        if let text = metadata["wemoe.trained_steps"] {
            guard let value = Int(text), (0...(1 << 53)).contains(value) else {
                throw MergeKitError(.metadataInvalid, file: file, "its wemoe.trained_steps \"\(text)\" is not a count of steps", fix: fix)
            }
            steps = value
        }
        let projection: String? = {
            if let p = metadata["wemoe.projection"] { return p.isEmpty ? nil : p }
            return checkpoint.entry(named: "visual_projection.weight") != nil ? "visual_projection.weight" : nil
        }()
        var names: [String] = (0..<experts).map { "expert \($0)" }
        if let text = metadata["wemoe.experts"], let json = try? JSONParser.parse(Array(text.utf8)), case .array(let items) = json,
           items.count == experts {
            names = items.map { $0.stringValue ?? "" }
        }
        return Description(config: config, prefix: prefix, experts: experts, routerDepth: depth, projection: projection,
                           initLambda: lambda, trainedSteps: steps, expertNames: names)
    }

    /// Checks a WEMoE checkpoint from its header alone (nothing is allocated or read): its
    /// description (`describe`), then every tensor of the layout it implies (present, float,
    /// shape), then that no tensor is left unused (another layer, a further expert) unless
    /// `allowUnused`. Returns the description and the unused tensors.
    static func check(_ checkpoint: Checkpoint, allowUnused: Bool) throws(MergeKitError) -> (description: Description, unused: [String]) {
        let file = checkpoint.path
        let fix: MergeKitError.Text = "Upscale the model with \(term: .wemoeUpscaling()) (see the README's WEMoE section for the layout)"
        let shape = try describe(checkpoint)
        let experts = shape.experts, depth = shape.routerDepth
        let layout = fileLayout(merged: CLIPVisionParameters.layout(shape.config, prefix: shape.prefix, projectionName: shape.projection),
                                prefix: shape.prefix, config: shape.config, experts: experts, routerDepth: depth)
        for tensor in layout {
            guard let entry = checkpoint.entry(named: tensor.name) else {
                throw MergeKitError(.missingTensor, file: file, tensor: tensor.name,
                                    "is missing; a WEMoE model with \(counted(experts, "expert")) and router depth \(depth) needs it", fix: fix)
            }
            guard DType.mergeableTypes.contains(entry.info.dtype) else {
                throw MergeKitError(.dtypeMismatch, file: file, tensor: tensor.name, "is \(entry.info.dtype.rawValue); WEMoE tensors are float")
            }
            guard entry.info.shape == tensor.shape else {
                throw MergeKitError(.shapeMismatch, file: file, tensor: tensor.name,
                                    "has shape \(entry.info.shape) but the layout implies \(tensor.shape)",
                                    fix: "Check that config.json belongs to these weights")
            }
        }
        let unused = try CLIPVisionParameters.unusedTensors(of: checkpoint, used: Set(layout.map(\.name)), allowUnused: allowUnused,
            fix: "Check that config.json belongs to these weights and that every layer has the same \(counted(experts, "expert")) and router depth \(depth)")
        return (shape, unused)
    }

    /// Loads a WEMoE checkpoint written by `save` (or laid out the same way by PyTorch code),
    /// after checking it (`check`): a tensor the model does not use is an error unless
    /// `allowUnused` (then it is listed in `ignoredTensors`).
    public static func load(from checkpoint: Checkpoint, allowUnused: Bool = false) throws(MergeKitError) -> WEMoEParameters {
        let (shape, unused) = try check(checkpoint, allowUnused: allowUnused)
        let config = shape.config, experts = shape.experts, depth = shape.routerDepth
        let merged = CLIPVisionParameters(config: config, prefix: shape.prefix, projectionName: shape.projection)
        let result = WEMoEParameters(merged: merged, experts: experts, routerDepth: depth, initLambda: shape.initLambda,
                                     expertNames: shape.expertNames)
        result.trainedSteps = shape.trainedSteps
        result.ignoredTensors = unused
        for tensor in result.namedTensors() {
            let entry = checkpoint.entry(named: tensor.name)!
            let count = tensor.shape.reduce(1, *)
            if count > 0 {
                Float.load(entry.file.bytes(of: entry.info).baseAddress!, dtype: entry.info.dtype, count: count,
                           into: UnsafeMutablePointer(mutating: tensor.values))
            }
        }
        // The merged MLP slots mirror the base MLP (row 0 of the stacks).
        let d = config.hiddenSize, f = config.intermediateSize
        for l in 0..<config.numHiddenLayers {
            let p = result.mlpPrefix(l), w1 = result.fc1Stacks[l].pointer, w2 = result.fc2Stacks[l].pointer
            merged.pointer(p + "fc1.weight").update(from: w1, count: f * d)
            merged.pointer(p + "fc1.bias").update(from: w1 + f * d, count: f)
            merged.pointer(p + "fc2.weight").update(from: w2, count: d * f)
            merged.pointer(p + "fc2.bias").update(from: w2 + d * f, count: d)
        }
        return result
    }
}
