/// NearSwap (mergekit's `nearswap`, from the QuartetAnemoi merges): take the other model's value
/// where it is near the base's, and stay near the base where they differ much:
///
///     w = clamp(t / max(|θ₁ − θ₀|, 10⁻⁶), 0, 1)
///     θ = w·θ₁ + (1 − w)·θ₀  =  θ₀ + w·τ
///
/// per element, with exactly one model besides the base. Elements closer than `t` are swapped
/// whole (w = 1); farther ones move only the distance t towards θ₁ (w·|τ| = t). t ≤ 0 keeps the
/// base. `t` is a global parameter (filters and layer gradients allowed); mergekit has no
/// default for it, so a recipe must give it (the subcommand's default is 0.0001).
public struct NearSwap: MergeMethod {
    public static let info = MethodInfo(
        name: "nearswap",
        summary: "per entry θ₀ + w·τ, w = clamp(t/|τ|, 0, 1): swap in the model's values that are near the base's",
        reference: "mergekit nearswap (alchemonaut, QuartetAnemoi-70B)")

    /// The distance t.
    public let t: Double

    public init(t: Double = 0.0001) throws(MergeKitError) {
        try MethodParameter.nearswapDistance.check(t)
        self.t = t
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [JSONMember("t", .double(t))] }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.oneModel(weights, method: "nearswap", what: "merges exactly one model into the base")
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        let tau = deltas[0]
        let t = T(self.t), floor = T(1e-6)
        for j in 0..<out.count {
            let x = tau[j]
            let w = Swift.min(1, Swift.max(0, t / Swift.max(x.magnitude, floor)))
            out[j] = w * x
        }
    }
}

extension MethodParameter {
    /// nearswap's t: any finite number (mergekit imposes no range; t ≤ 0 keeps the base).
    public static let nearswapDistance = MethodParameter(name: "t", domain: .finite,
                                                         meaning: "the distance below which the model's value is taken whole, e.g. 0.0001")
}

extension NearSwap: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk], inputs: .unweighted,
        parameters: [.init("t", flag: "t", .number(.nearswapDistance),
                           doc: "Distance t: entries with |θ₁ − θ₀| ≤ t take θ₁, farther ones move t towards it.")],
        presets: [.init("default", defaults: ["t": .number(0.0001)])],
        recipeNames: [("nearswap", "default")],
        help: .init(abstract: "NearSwap: per entry θ₀ + w·τ with w = clamp(t/|τ|, 0, 1), one model besides the base.",
                    discussion: "A recipe must give t (mergekit has no default); the command's default is 0.0001.")
    ) { a throws(MergeKitError) in
        if !a.isCommandLine && !a.has("t") {
            throw MergeKitError(.invalidArgument, "nearswap needs t (mergekit has no default for it)", fix: "Add t under parameters, e.g. t: 0.0001")
        }
        return try NearSwap(t: a.number("t"))
    }
}
