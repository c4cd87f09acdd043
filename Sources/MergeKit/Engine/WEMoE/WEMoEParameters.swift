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
}
