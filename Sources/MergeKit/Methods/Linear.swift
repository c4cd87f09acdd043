/// Linear merge / weighted average (model soups: Wortsman et al., ICML 2022; mergekit `linear`):
///
///     normalised:     θ = Σᵢ wᵢ θᵢ / Σᵢ wᵢ  = θ₀ + Σᵢ wᵢ τᵢ / Σᵢ wᵢ
///     not normalised: θ = Σᵢ wᵢ θᵢ          = θ₀ + Σᵢ wᵢ τᵢ + (Σᵢ wᵢ − 1) θ₀
///
/// over the fine-tuned models θᵢ (the base only anchors task-vector inputs and supplies the
/// layout and companions). Normalised by default (mergekit's default; weights 1 give the uniform
/// "simple average" of the model-soups paper). Weights summing to 0 are rejected when normalising.
/// NaN and ±∞ propagate elementwise.
public struct Linear: MergeMethod {
    public static let info = MethodInfo(
        name: "linear",
        summary: "weighted average Σwᵢθᵢ/Σwᵢ of the models (or the plain weighted sum)",
        reference: "Wortsman et al., Model soups (ICML 2022)")

    public let normalize: Bool

    public init(normalize: Bool = true) {
        self.normalize = normalize
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [JSONMember("normalize", .bool(normalize))] }

    public func validate(weights: [Double]) throws(MergeKitError) {
        if normalize && abs(weights.reduce(0, +)) < 1e-12 {
            throw MergeKitError(.invalidArgument,
                "the weights \(weights) sum to 0, so the normalised average Σwᵢθᵢ/Σwᵢ is undefined",
                fix: "Change the weights, or turn normalisation off for the plain weighted sum")
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        if let narrow = context.rounding {
            combineRounded(deltas, base: base, weights: weights, into: out, narrow: narrow)
            return
        }
        let total = weights.reduce(0, +)
        let denominator: T = normalize ? total : 1
        out.initialize(repeating: 0)
        for (delta, weight) in zip(deltas, weights) {
            T.axpy(weight / denominator, UnsafeBufferPointer(delta), out)
        }
        if !normalize && total != 1 { T.axpy(total - 1, base, out) }
    }

    /// mergekit's `linear` in a 16-bit `dtype` (`ComputeDType`; θ₀ and θᵢ = θ₀ + τᵢ arrive
    /// rounded to it): it computes on the weights in float32, r = Σ wᵢθᵢ by fused multiply-adds
    /// in input order (÷ Σwᵢ when normalised), and rounds r once to the 16-bit type. The result
    /// is r − θ₀, exact, so that the executor's θ₀ + τ gives r itself.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    private func combineRounded<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                                weights: [T], into out: UnsafeMutableBufferPointer<T>, narrow: DType) {
        out.initialize(repeating: 0)
        for (delta, weight) in zip(deltas, weights) {
            for k in out.indices { out[k] = out[k].addingProduct(delta[k] + base[k], weight) }
        }
        if normalize {
            let total = weights.reduce(0, +)
            for k in out.indices { out[k] = out[k] / total }
        }
        T.roundToNarrow(out, narrow)
        for k in out.indices { out[k] = out[k] - base[k] }
    }
}

extension Linear: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .baseOptional],
        parameters: [.weight, .init("normalize", flag: "normalize", .flag, doc: "Divide by the sum of the weights.")],
        presets: [.init("default", defaults: ["normalize": .bool(true)])],
        recipeNames: [("linear", "default")],
        help: .init(abstract: "Weighted average Σwᵢθᵢ/Σwᵢ of the models (--no-normalize: the plain weighted sum).")
    ) { a throws(MergeKitError) in
        Linear(normalize: a.bool("normalize"))
    }
}
