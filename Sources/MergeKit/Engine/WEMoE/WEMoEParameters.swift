import Foundation

/// The parameters of a weight-ensembling mixture-of-experts (WEMoE) CLIP image encoder (Tang et
/// al., "Merging Multi-Task Models via Weight-Ensembling Mixture of Experts", ICML 2024;
/// docs/METHODS.md §7), upscaled from a pre-trained θ₀ and T fine-tuned models θₜ:
///
/// - every tensor except the encoder MLPs is merged by task arithmetic, θ₀ + λ·Σₜ(θₜ − θ₀),
///   λ = 0.3 by default (the papers' task-arithmetic setting);
/// - each layer's MLP (fc1, fc2: weights and biases) keeps the pre-trained MLP W₀ as its base and
///   the T MLP task vectors τₜ = Wₜ − W₀ as frozen experts, mixed per sample by a router:
///   W = W₀ + Σₜ rₜ τₜ (see `WEMoEMLP`);
/// - router of depth 2 (the default, FusionBench's `Depth_2_Gate`): r(h) = fc2(ReLU(fc1 h)),
///   fc1: D → D, fc2: D → T, weights ~ N(0, 0.01²), fc1 bias 0, fc2 bias λ; depth 1: r(h) = fc h,
///   fc: D → T, weight ~ N(0, 0.01²), bias λ; depth 0: one learned vector r = w ∈ ℝᵀ, w = λ.
///   With fc2's bias λ the model starts near task arithmetic (exactly there when fc2's weight is
///   zero, and for depth 0); the N(0, 0.01²) weights perturb rₜ by about 0.01 per task.
///
/// ## Checkpoint layout (one safetensors file, F32)
///
/// Names mirror FusionBench's `WeightEnsemblingMoE` module attributes under the MLP's path
/// `<prefix>encoder.layers.{i}.mlp.` (prefix `vision_model.`), in its state-dict order:
///
/// | tensor                                       | shape      | depth |
/// |----------------------------------------------|------------|-------|
/// | `….mlp.gate.fc1.weight`, `.bias`             | [D, D], [D] | 2    |
/// | `….mlp.gate.fc2.weight`, `.bias`             | [T, D], [T] | 2    |
/// | `….mlp.gate.fc.weight`, `.bias`              | [T, D], [T] | 1    |
/// | `….mlp.gate.weight`                          | [T]         | 0    |
/// | `….mlp.base_model.fc{1,2}.{weight,bias}`     | as the MLP  | all  |
/// | `….mlp.task_vectors.{t}.fc{1,2}.{weight,bias}` | as the MLP | all |
///
/// Every other tensor keeps its transformers name (task-arithmetic merged). `__metadata__`:
/// `format` = `pt`, `merge_method` = `wemoe`, `wemoe.num_experts`, `wemoe.router_depth`,
/// `wemoe.init_lambda`, `wemoe.experts` (a JSON array of the fine-tuned models' paths),
/// `wemoe.trained_steps`, and `wemoe.config` (the encoder's config.json as JSON) so that the file
/// is self-describing.
public final class WEMoEParameters: @unchecked Sendable {
    public let config: CLIPVisionConfig
    /// T, the number of experts (fine-tuned models).
    public let experts: Int
    /// Hidden layers of each router: 0, 1 or 2 (FusionBench's `router_hidden_layers`).
    public let routerDepth: Int
    /// λ of the task-arithmetic part and of the routers' initial bias.
    public let initLambda: Float
    /// Paths (or names) of the experts, for the metadata.
    public var expertNames: [String]
    /// Test-time-adaptation steps the routers have had (metadata).
    public var trainedSteps: Int = 0
    /// Tensors of the file it was loaded from that the model does not use (only when loading
    /// allowed them).
    public internal(set) var ignoredTensors: [String] = []
    /// Every non-MLP tensor merged by task arithmetic; the MLP slots hold the pre-trained MLP W₀.
    public let merged: CLIPVisionParameters
    /// Per layer: [T + 1, f·D + f] — row 0 is the base fc1 (weight then bias), row t the task
    /// vector τₜ of fc1; a mixture is one GEMM, [1, r₁ … r_T] × stack.
    let fc1Stacks: [FloatBuffer]
    /// Per layer: [T + 1, D·f + D], the same for fc2.
    let fc2Stacks: [FloatBuffer]
    /// Every layer's router parameters, one flat vector (what test-time adaptation trains), layer
    /// after layer, each in `routerTensorNames` order.
    let routers: FloatBuffer

    /// Whether `depth` is a router depth WEMoE defines.
    public static func isValidDepth(_ depth: Int) -> Bool { (0...2).contains(depth) }

    init(merged: CLIPVisionParameters, experts: Int, routerDepth: Int, initLambda: Float, expertNames: [String]) {
        precondition(experts >= 1 && WEMoEParameters.isValidDepth(routerDepth))
        self.config = merged.config
        self.merged = merged
        self.experts = experts
        self.routerDepth = routerDepth
        self.initLambda = initLambda
        self.expertNames = expertNames
        let c = merged.config, d = c.hiddenSize, f = c.intermediateSize
        fc1Stacks = (0..<c.numHiddenLayers).map { _ in FloatBuffer(count: (experts + 1) * (f * d + f)) }
        fc2Stacks = (0..<c.numHiddenLayers).map { _ in FloatBuffer(count: (experts + 1) * (d * f + d)) }
        routers = FloatBuffer(count: c.numHiddenLayers * WEMoEParameters.routerSize(depth: routerDepth, width: d, experts: experts))
    }

    /// Floats of one layer's router.
    static func routerSize(depth: Int, width d: Int, experts t: Int) -> Int {
        routerShapes(depth: depth, width: d, experts: t).reduce(0) { $0 + $1.1.reduce(1, *) }
    }

    /// One router's tensors (names relative to the MLP, FusionBench's gate attributes) and shapes.
    static func routerShapes(depth: Int, width d: Int, experts t: Int) -> [(String, [Int])] {
        switch depth {
        case 0: return [("gate.weight", [t])]
        case 1: return [("gate.fc.weight", [t, d]), ("gate.fc.bias", [t])]
        default: return [("gate.fc1.weight", [d, d]), ("gate.fc1.bias", [d]), ("gate.fc2.weight", [t, d]), ("gate.fc2.bias", [t])]
        }
    }

    /// Floats of one layer's router.
    var routerSize: Int { WEMoEParameters.routerSize(depth: routerDepth, width: config.hiddenSize, experts: experts) }

    /// The router parameters of layer `l`.
    func router(_ l: Int) -> UnsafeMutablePointer<Float> { routers.pointer + l * routerSize }

    /// The MLP path of layer `l`, e.g. `vision_model.encoder.layers.3.mlp.`.
    func mlpPrefix(_ l: Int) -> String { merged.prefix + "encoder.layers.\(l).mlp." }

    /// Pointers into a router buffer laid out as `routerShapes`.
    static func routerViews(_ base: UnsafeMutablePointer<Float>, depth: Int, width d: Int, experts t: Int) -> RouterParameters {
        switch depth {
        case 0:
            return RouterParameters(depth: 0, hidden: nil, output: nil, vector: base, width: d, experts: t)
        case 1:
            return RouterParameters(depth: 1, hidden: nil,
                                    output: LinearParameters(weight: base, bias: base + t * d, inputs: d, outputs: t),
                                    vector: nil, width: d, experts: t)
        default:
            let hidden = LinearParameters(weight: base, bias: base + d * d, inputs: d, outputs: d)
            let out = base + d * d + d
            return RouterParameters(depth: 2, hidden: hidden,
                                    output: LinearParameters(weight: out, bias: out + t * d, inputs: d, outputs: t),
                                    vector: nil, width: d, experts: t)
        }
    }

    func routerViews(_ l: Int) -> RouterParameters {
        WEMoEParameters.routerViews(router(l), depth: routerDepth, width: config.hiddenSize, experts: experts)
    }

    /// Sets every router to FusionBench's initialisation: weights N(0, 0.01²) from a SplitMix64 +
    /// Box–Muller stream on `seed` (layer by layer, in tensor order), hidden biases 0, output biases
    /// (or the depth-0 vector) λ.
    public func initializeRouters(seed: UInt64) {
        var rng = GaussianGenerator(seed: seed)
        let d = config.hiddenSize, t = experts
        for l in 0..<config.numHiddenLayers {
            let r = routerViews(l)
            func normal(_ p: UnsafeMutablePointer<Float>, _ n: Int) { for i in 0..<n { p[i] = Float(0.01 * rng.next()) } }
            switch routerDepth {
            case 0:
                r.vector!.update(repeating: initLambda, count: t)
            case 1:
                normal(r.output!.weight, t * d)
                r.output!.bias!.update(repeating: initLambda, count: t)
            default:
                normal(r.hidden!.weight, d * d)
                r.hidden!.bias!.update(repeating: 0, count: d)
                normal(r.output!.weight, t * d)
                r.output!.bias!.update(repeating: initLambda, count: t)
            }
        }
    }

    /// Zeroes the routers' output weights (keeping the biases): r = λ exactly, the task-arithmetic
    /// model. For tests and for users who want an exact task-arithmetic start.
    public func zeroRouterOutputWeights() {
        let d = config.hiddenSize, t = experts
        for l in 0..<config.numHiddenLayers {
            if let out = routerViews(l).output { out.weight.update(repeating: 0, count: t * d) }
        }
    }

    /// Every router tensor's name and its element range in `routerValues`.
    public var routerTensors: [(name: String, range: Range<Int>)] {
        var out: [(String, Range<Int>)] = []
        var offset = 0
        for l in 0..<config.numHiddenLayers {
            for (local, shape) in WEMoEParameters.routerShapes(depth: routerDepth, width: config.hiddenSize, experts: experts) {
                let n = shape.reduce(1, *)
                out.append((mlpPrefix(l) + local, offset..<offset + n))
                offset += n
            }
        }
        return out
    }

    /// The router parameters of every layer as one flat array (layer after layer).
    public var routerValues: [Float] { routers.array }

    /// Replaces every router parameter.
    public func setRouterValues(_ values: [Float]) {
        precondition(values.count == routers.count, "expected \(routers.count) router parameters")
        values.withUnsafeBufferPointer { routers.pointer.update(from: $0.baseAddress!, count: routers.count) }
    }

    // MARK: Upscaling

    /// Upscales a pre-trained encoder and T fine-tuned ones (loaded one at a time by `model(t)`,
    /// so only one is in memory) to a WEMoE model with routers initialised from `seed`.
    public static func upscale(base: CLIPVisionParameters, experts: Int, names: [String], scale lambda: Float = 0.3,
                               routerDepth: Int = 2, seed: UInt64 = 0,
                               model: (Int) throws(MergeKitError) -> CLIPVisionParameters) throws(MergeKitError) -> WEMoEParameters {
        precondition(experts >= 1 && names.count == experts && isValidDepth(routerDepth))
        let merged = base.copy()
        let result = WEMoEParameters(merged: merged, experts: experts, routerDepth: routerDepth, initLambda: lambda, expertNames: names)
        let c = base.config
        // Row 0 of every stack: the pre-trained MLP.
        for l in 0..<c.numHiddenLayers {
            result.copyMLP(from: base, layer: l, row: 0)
        }
        for t in 0..<experts {
            let finetuned = try model(t)
            let tau = try CLIPVisionParameters.difference(finetuned, base, file: names[t])
            merged.add(tau, scale: lambda)
            for l in 0..<c.numHiddenLayers { result.copyMLP(from: tau, layer: l, row: t + 1) }
        }
        // The MLP slots of `merged` keep W₀ (the experts carry the rest).
        for l in 0..<c.numHiddenLayers {
            for name in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
                merged.setValues(base.values(of: result.mlpPrefix(l) + name)!, of: result.mlpPrefix(l) + name)
            }
        }
        result.initializeRouters(seed: seed)
        return result
    }

    /// Copies layer `l`'s MLP tensors of `source` into row `row` of the layer's stacks.
    private func copyMLP(from source: CLIPVisionParameters, layer l: Int, row: Int) {
        let d = config.hiddenSize, f = config.intermediateSize
        let p = mlpPrefix(l)
        let w1 = fc1Stacks[l].pointer + row * (f * d + f), w2 = fc2Stacks[l].pointer + row * (d * f + d)
        w1.update(from: source.pointer(p + "fc1.weight"), count: f * d)
        (w1 + f * d).update(from: source.pointer(p + "fc1.bias"), count: f)
        w2.update(from: source.pointer(p + "fc2.weight"), count: d * f)
        (w2 + d * f).update(from: source.pointer(p + "fc2.bias"), count: d)
    }

    // MARK: Saving

    /// Where a tensor of the checkpoint lives in memory.
    enum Slot {
        /// A tensor of `merged`, by name.
        case merged(String)
        /// Layer `layer`'s router buffer, at `offset`.
        case router(layer: Int, offset: Int)
        /// Layer `layer`'s fc1 (`second` false) or fc2 stack, at `offset`.
        case stack(layer: Int, second: Bool, offset: Int)
    }

    /// Every tensor of the checkpoint in file order, with its shape and where it lives: the
    /// merged encoder's tensors (`merged`, in state-dict order) with each layer's
    /// `….mlp.fc1.weight` … `fc2.bias` replaced by the router and the T + 1 MLP rows. Computed
    /// without allocating, so that `load` checks a file before building anything.
    static func fileLayout(merged: [CLIPVisionParameters.Tensor], prefix: String, config c: CLIPVisionConfig,
                           experts: Int, routerDepth: Int) -> [(name: String, shape: [Int], slot: Slot)] {
        let d = c.hiddenSize, f = c.intermediateSize
        var out: [(String, [Int], Slot)] = []
        var layer = 0
        for tensor in merged {
            let name = tensor.name
            if name.hasSuffix(".mlp.fc1.weight") {
                let p = prefix + "encoder.layers.\(layer).mlp."
                var offset = 0
                for (local, shape) in routerShapes(depth: routerDepth, width: d, experts: experts) {
                    out.append((p + local, shape, .router(layer: layer, offset: offset)))
                    offset += shape.reduce(1, *)
                }
                for row in 0...experts {
                    let owner = row == 0 ? "base_model." : "task_vectors.\(row - 1)."
                    let w1 = row * (f * d + f), w2 = row * (d * f + d)
                    out.append((p + owner + "fc1.weight", [f, d], .stack(layer: layer, second: false, offset: w1)))
                    out.append((p + owner + "fc1.bias", [f], .stack(layer: layer, second: false, offset: w1 + f * d)))
                    out.append((p + owner + "fc2.weight", [d, f], .stack(layer: layer, second: true, offset: w2)))
                    out.append((p + owner + "fc2.bias", [d], .stack(layer: layer, second: true, offset: w2 + d * f)))
                }
                layer += 1
            } else if name.contains(".mlp.fc") {
                continue
            } else {
                out.append((name, tensor.shape, .merged(name)))
            }
        }
        return out
    }

    /// Every tensor of the checkpoint with a pointer to its values, in file order.
    func namedTensors() -> [(name: String, shape: [Int], values: UnsafePointer<Float>)] {
        WEMoEParameters.fileLayout(merged: merged.tensors, prefix: merged.prefix, config: config, experts: experts,
                                   routerDepth: routerDepth).map { name, shape, slot in
            switch slot {
            case .merged(let name): return (name, shape, UnsafePointer(merged.pointer(name)))
            case .router(let layer, let offset): return (name, shape, UnsafePointer(router(layer) + offset))
            case .stack(let layer, let second, let offset):
                return (name, shape, UnsafePointer((second ? fc2Stacks : fc1Stacks)[layer].pointer + offset))
            }
        }
    }

    /// The `__metadata__` of a saved checkpoint.
    var metadata: [String: String] {
        [
            "format": "pt",
            "merge_method": "wemoe",
            "wemoe.num_experts": String(experts),
            "wemoe.router_depth": String(routerDepth),
            "wemoe.init_lambda": String(initLambda),
            "wemoe.trained_steps": String(trainedSteps),
            "wemoe.experts": JSONValue.array(expertNames.map { .string($0) }).serialized(),
            "wemoe.config": config.json.serialized(),
            "wemoe.projection": merged.projectionName ?? "",
        ]
    }

    /// Writes the checkpoint (F32) to `path`: a `.safetensors` file, or a directory holding
    /// `model.safetensors` and `config.json` (copied from `configSource` when given, else generated).
    /// Atomic: written to a temporary sibling and renamed into place. The output is checked
    /// against `inputs` (every path the model was built from) and `configSource` by `OutputGuard`.
    /// - Returns: what happened around the output (stale temporaries removed, …).
    @discardableResult
    public func save(to path: String, configSource: String? = nil, overwrite: Bool = false,
                     inputs: [String] = []) throws(MergeKitError) -> [OutputNote] {
        try OutputGuard.check(output: path, overwrite: overwrite, inputs: inputs + (configSource.map { [$0] } ?? []))
        let tensors = namedTensors()
        let layout = SafeTensorsLayout(specs: tensors.map { TensorSpec(name: $0.name, dtype: .F32, shape: $0.shape) }, metadata: metadata)
        let spec = OutputSpec(path: path, overwrite: overwrite)
        let writer = try CheckpointWriter(output: spec, shards: [OutputShard(fileName: "model.safetensors", layout: layout)])
        for (info, tensor) in zip(layout.tensors, tensors) {
            let raw = UnsafeRawBufferPointer(start: UnsafeRawPointer(tensor.values), count: info.end - info.begin)
            try writer.write(raw, dataOffset: info.begin, shard: 0)
        }
        var companions: [(source: String, name: String)] = []
        var generated: [String: [UInt8]] = [:]
        if spec.isDirectory {
            if let configSource { companions.append((configSource, "config.json")) } else {
                generated["config.json"] = Array((config.json.serialized(indent: 2) + "\n").utf8)
            }
        }
        try writer.commit(companions: companions, generated: generated) { _, bytes in bytes }
        return writer.notes
    }

    // MARK: Loading

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

/// Pointers to one layer's router inside a flat buffer (parameters or gradients).
struct RouterParameters {
    /// 0, 1 or 2.
    let depth: Int
    /// fc1 (D → D) of a depth-2 router.
    var hidden: LinearParameters?
    /// The layer producing the T routing logits: fc2 (depth 2) or fc (depth 1).
    var output: LinearParameters?
    /// The learned routing vector [T] of a depth-0 router.
    var vector: UnsafeMutablePointer<Float>?
    let width: Int
    let experts: Int
}

extension CLIPVisionConfig {
    /// This config as a transformers `CLIPVisionConfig` config.json (model_type
    /// `clip_vision_model`), which `CLIPVisionConfig.load` reads back unchanged.
    var json: JSONValue {
        .object([
            JSONMember("architectures", .array([.string("CLIPVisionModelWithProjection")])),
            JSONMember("model_type", .string("clip_vision_model")),
            JSONMember("hidden_size", .int(hiddenSize)),
            JSONMember("intermediate_size", .int(intermediateSize)),
            JSONMember("num_hidden_layers", .int(numHiddenLayers)),
            JSONMember("num_attention_heads", .int(numAttentionHeads)),
            JSONMember("num_channels", .int(numChannels)),
            JSONMember("image_size", .int(imageSize)),
            JSONMember("patch_size", .int(patchSize)),
            JSONMember("projection_dim", .int(projectionDim)),
            JSONMember("hidden_act", .string(hiddenAct.rawValue)),
            JSONMember("layer_norm_eps", .number("\(layerNormEps)")),  // Float's shortest form: 1e-05
        ])
    }
}
