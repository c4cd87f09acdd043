import Foundation

/// Multi-SLERP, mergekit's `multislerp`: a weighted barycentre of several models on the
/// hypersphere, of their task vectors when there is a base, else of the models themselves, each
/// tensor flattened:
///
///     vᵢ = τᵢ (with a base) or θᵢ;  wᵢ ← wᵢ / Σw (normalize_weights, the default)
///     nᵢ = ‖vᵢ‖,  uᵢ = vᵢ / (nᵢ + ε)                              (ε = eps, 1e-8)
///     m  = Σ wᵢuᵢ / ‖Σ wᵢuᵢ‖                         (the weighted mean direction)
///     g  = Σ wᵢ(uᵢ − (uᵢ·m)·m),  γ = ‖g‖ + ε         (the mean of the tangent vectors at m)
///     s  = (Σ wᵢnᵢ)·(cos γ · m + sin γ / γ · g)       (back onto the sphere, at the mean norm)
///     θ  = θ₀ + s (with a base), or s
///
/// One model gives that model. When the weighted unit vectors cancel (‖Σ wᵢuᵢ‖ < ε) mergekit
/// interpolates linearly for two models, Σ wᵢvᵢ, and fails for more; here every count gets
/// Σ wᵢvᵢ (the merge of a tensor cannot fail after planning). Computed from the tensor's inner
/// products (`SphericalMergeMethod`). A recipe without base_model works on the models themselves
/// (its first model only anchors the task vectors); the command line always has a base.
public struct MultiSlerp: SphericalMergeMethod {
    public static let info = MethodInfo(
        name: "multislerp",
        summary: "weighted spherical barycentre of several models' task vectors (or of the models)",
        reference: "Goddard, Multi-SLERP; mergekit's multislerp")

    public let baseRelative: Bool
    public let normalizeWeights: Bool
    public let epsilon: Double

    public init(baseRelative: Bool = true, normalizeWeights: Bool = true, epsilon: Double = 1e-8) throws(MergeKitError) {
        try MethodParameter.normEpsilon.check(epsilon)
        self.baseRelative = baseRelative
        self.normalizeWeights = normalizeWeights
        self.epsilon = epsilon
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] {
        [JSONMember("normalize_weights", .bool(normalizeWeights)), JSONMember("eps", .double(epsilon)),
         JSONMember("base_relative", .bool(baseRelative))]
    }
    var axis: TensorProducts.Axis { .flattened }
    var usesBase: Bool { !baseRelative }

    public func validate(weights: [Double]) throws(MergeKitError) {
        if normalizeWeights && weights.count > 1 && abs(weights.reduce(0, +)) < 1e-12 {
            throw MergeKitError(.invalidArgument, "the weights \(weights) sum to 0, so normalize_weights (wᵢ/Σw) is undefined",
                                fix: "Change the weights, or turn normalize_weights off")
        }
    }

    func coefficients(_ gram: TensorProducts.Gram, weights: [Double]) -> [Double] {
        let n = weights.count
        let vectors = (0..<n).map { baseRelative ? gram.taskVector($0) : gram.model($0) }
        var result: [Double]
        if n == 1 {
            result = gram.model(0)
        } else {
            let total = weights.reduce(0, +)
            let w = normalizeWeights ? weights.map { $0 / total } : weights
            let norms = vectors.map { gram.norm($0) }
            let units = zip(vectors, norms).map { v, norm in v.map { $0 / (norm + epsilon) } }
            let sum = Self.combination(units, w)
            let sumNorm = gram.norm(sum)
            if sumNorm < epsilon {
                result = Self.combination(vectors, w)
            } else {
                let mean = sum.map { $0 / sumNorm }
                let tangents = units.map { u in zip(u, mean).map { $0 - gram.dot(u, mean) * $1 } }
                let tangent = Self.combination(tangents, w)
                let angle = gram.norm(tangent) + epsilon
                let scale = zip(norms, w).reduce(0) { $0 + $1.0 * $1.1 }
                result = zip(mean, tangent).map { scale * (cos(angle) * $0 + sin(angle) / angle * $1) }
            }
            if baseRelative { result[0] += 1 }
        }
        return result
    }

    /// Σ wᵢvᵢ of coefficient vectors.
    static func combination(_ vectors: [[Double]], _ weights: [Double]) -> [Double] {
        var total = [Double](repeating: 0, count: vectors[0].count)
        for (v, w) in zip(vectors, weights) {
            for k in total.indices { total[k] += w * v[k] }
        }
        return total
    }
}

extension MultiSlerp: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .baseOptional, .baseAmongModels],
        parameters: [
            .weight,
            .init("normalize_weights", flag: "normalize-weights", .flag, doc: "Divide the weights by their sum."),
            .init("eps", flag: nil, .number(.normEpsilon), doc: "mergekit's ε, added to norms."),
        ],
        presets: [.init("mergekit", defaults: ["normalize_weights": .bool(true), "eps": .number(1e-8)])],
        recipeNames: [("multislerp", "mergekit")],
        help: .init(abstract: "Multi-SLERP: the weighted spherical barycentre of several models' task vectors.",
                    discussion: """
                        The task vectors are projected onto the unit sphere, averaged in the tangent space at their \
                        weighted mean direction, mapped back and scaled to their weighted mean norm, then added to \
                        the base. A recipe without base_model averages the models themselves, as mergekit does.
                        """)
    ) { a throws(MergeKitError) in
        try MultiSlerp(baseRelative: a.hasBaseModel, normalizeWeights: a.bool("normalize_weights"), epsilon: a.number("eps"))
    }
}
