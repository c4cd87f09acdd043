/// Passthrough (mergekit's `passthrough`): one model's tensors, each optionally multiplied by a
/// scale:
///
///     θ = s·θ₁   (s = 1 where no scale is given; in task-vector form θ₀ + s·τ + (s − 1)·θ₀)
///
/// Exactly one model. Without a base (as mergekit requires) the model anchors itself, τ = 0 and
/// the result is θ₀ + (s − 1)·θ₀: exactly θ₁ for s = 1 and exactly 0 for s = 0 (the usual use: a
/// `scale` filter zeroing `o_proj` and `down_proj` of repeated layers in a frankenmerge).
/// `scale` may be given per model or under `parameters`, with filters and layer gradients; a
/// filter list that matches no condition for a tensor leaves it unscaled (mergekit's None).
public struct Passthrough: MergeMethod {
    public static let info = MethodInfo(
        name: "passthrough",
        summary: "one model's tensors unchanged, or multiplied by a per-tensor scale",
        reference: "mergekit passthrough")

    /// s.
    public let scale: Double

    public init(scale: Double = 1) throws(MergeKitError) {
        try MethodParameter.passthroughScale.check(scale)
        self.scale = scale
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [JSONMember("scale", .double(scale))] }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.oneModel(weights, method: "passthrough")
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        out.initialize(repeating: 0)
        if scale == 1 {
            T.axpy(1, UnsafeBufferPointer(deltas[0]), out)
            return
        }
        if let narrow = context.rounding {
            // mergekit in a 16-bit dtype (`ComputeDType`): s·θ₁ rounded once; the result is
            // that minus θ₀, exact, so that θ₀ + τ gives it.
            let s = T(scale)
            if narrow == .BF16, T.self == Float.self {
                // The usual case (a bfloat16 recipe) in one pass.
                BLAS.scaleRoundBFloat16(UnsafeBufferPointer(deltas[0]) as! UnsafeBufferPointer<Float>, base: base as! UnsafeBufferPointer<Float>,
                                        scale: Float(scale), into: out as! UnsafeMutableBufferPointer<Float>)
                return
            }
            for k in out.indices { out[k] = s * (deltas[0][k] + base[k]) }
            T.roundToNarrow(out, narrow)
            for k in out.indices { out[k] = out[k] - base[k] }
            return
        }
        // s·τ + (s − 1)·θ₀, so that θ₀ + result = s·θ₁ (exactly 0 for s = 0 and a base-less recipe).
        T.axpy(T(scale), UnsafeBufferPointer(deltas[0]), out)
        T.axpy(T(scale - 1), base, out)
    }
}

extension MethodParameter {
    /// passthrough's scale: any finite number.
    public static let passthroughScale = MethodParameter(name: "scale", domain: .finite,
                                                         meaning: "the factor the model's tensor is multiplied by, e.g. 0 to zero it")
}

extension Passthrough: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .baseOptional], inputs: .unweighted,
        parameters: [.init("scale", flag: "factor", .number(.passthroughScale), scope: .perModel,
                           doc: "Factor s the model's tensors are multiplied by (mergekit's scale; filters in a recipe).", valueName: "s")],
        presets: [.init("default", defaults: ["scale": .number(1)])],
        recipeNames: [("passthrough", "default")],
        help: .init(abstract: "Passthrough: one model's tensors, optionally multiplied by a scale.",
                    discussion: "In a recipe the model needs no base_model; scale filters pick tensors (e.g. o_proj: 0).")
    ) { a throws(MergeKitError) in
        try Passthrough(scale: a.number("scale", model: (a.models?.isEmpty ?? true) ? nil : 0, fallback: 1))
    }
}
