import Foundation

/// The Karcher (Riemannian) mean of the models on the hypersphere, mergekit's `karcher`, each
/// tensor flattened, over the models and the base when there is one (mergekit's base takes part
/// as one more model), with equal weights α = 1/N:
///
///     nᵢ = ‖θᵢ‖,  uᵢ = θᵢ / nᵢ; the models with nᵢ > tol take part (none: θ = 0)
///     m  = Σ α′uᵢ / ‖Σ α′uᵢ‖ over them (α′ = 1/their number), or their first u when that norm < tol
///     repeat at most max_iter times:
///         g = Σ α′ · Ωᵢ/sin Ωᵢ · (uᵢ − cos Ωᵢ · m) over the uᵢ with Ωᵢ = arccos(uᵢ·m) ≥ tol
///         stop when ‖g‖ < tol;  m ← cos‖g‖ · m + sin‖g‖ · g/‖g‖, normalised when its norm > tol
///     θ  = (Σ α nᵢ over all N) · m
///
/// Every step combines the same vectors, so the whole iteration runs on the tensor's inner
/// products (`SphericalMergeMethod`) — no pass over the tensor per iteration. The base, when
/// there is one, counts as the last model (mergekit keeps a base listed among the models at its
/// place; the order matters only for the starting point when the units cancel). The command line
/// always has a base: `--base B --model A --model C` averages A, C and B.
public struct Karcher: SphericalMergeMethod {
    public static let info = MethodInfo(
        name: "karcher",
        summary: "Karcher (Riemannian) mean of the models, and the base, on the hypersphere",
        reference: "Karcher mean on the hypersphere; mergekit's karcher")

    /// Whether the base takes part as one of the models.
    public let includesBase: Bool
    public let maxIterations: Int
    public let tolerance: Double

    public init(includesBase: Bool = true, maxIterations: Int = 10, tolerance: Double = 1e-5) throws(MergeKitError) {
        try MethodParameter.iterations.check(Double(maxIterations))
        try MethodParameter.tolerance.check(tolerance)
        self.includesBase = includesBase
        self.maxIterations = maxIterations
        self.tolerance = tolerance
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] {
        [JSONMember("max_iter", .int(maxIterations)), JSONMember("tol", .double(tolerance)), JSONMember("includes_base", .bool(includesBase))]
    }
    var axis: TensorProducts.Axis { .flattened }
    var usesBase: Bool { true }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.unitWeights(weights, method: "karcher")
    }

    func coefficients(_ gram: TensorProducts.Gram, weights: [Double]) -> [Double] {
        let points = weights.indices.map { gram.model($0) } + (includesBase ? [gram.base] : [])
        if points.count == 1 { return points[0] }
        let alpha = 1 / Double(points.count)
        let norms = points.map { gram.norm($0) }
        let units = zip(points, norms).map { p, norm in norm == 0 ? p.map { _ in 0 } : p.map { $0 / norm } }
        let valid = points.indices.filter { norms[$0] > tolerance }
        guard !valid.isEmpty else { return points[0].map { _ in 0 } }
        let weight = 1 / Double(valid.count)
        var mean = MultiSlerp.combination(valid.map { units[$0] }, Array(repeating: weight, count: valid.count))
        let meanNorm = gram.norm(mean)
        mean = meanNorm < tolerance ? units[valid[0]] : mean.map { $0 / meanNorm }
        for _ in 0..<maxIterations {
            var tangent = [Double](repeating: 0, count: mean.count)
            for i in valid {
                let cosine = Swift.min(1, Swift.max(-1, gram.dot(mean, units[i])))
                let angle = acos(cosine)
                if angle < tolerance { continue }
                let factor = weight * angle / sin(angle)
                for k in tangent.indices { tangent[k] += factor * (units[i][k] - cosine * mean[k]) }
            }
            let tangentNorm = gram.norm(tangent)
            if tangentNorm < tolerance { break }
            mean = zip(mean, tangent).map { cos(tangentNorm) * $0 + sin(tangentNorm) * $1 / tangentNorm }
            let norm = gram.norm(mean)
            if norm > tolerance { mean = mean.map { $0 / norm } }
        }
        let scale = norms.reduce(0) { $0 + alpha * $1 }
        return mean.map { scale * $0 }
    }
}

extension Karcher: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .baseOptional, .baseAmongModels], inputs: .unweighted,
        parameters: [
            .init("max_iter", flag: "max-iter", .number(.iterations), doc: "The most iterations of the mean.", valueName: "n"),
            .init("tol", flag: "tol", .number(.tolerance), doc: "The angle and norm below which the iteration stops.", valueName: "tol"),
        ],
        presets: [.init("mergekit", defaults: ["max_iter": .number(10), "tol": .number(1e-5)])],
        recipeNames: [("karcher", "mergekit")],
        help: .init(abstract: "Karcher mean: the Riemannian mean of the models (and the base) on the hypersphere.",
                    discussion: """
                        Each tensor of the --model inputs and of --base (which takes part as one more model, as \
                        mergekit's base_model does) is averaged on the unit sphere by the Karcher iteration and \
                        scaled to the models' mean norm. To average only some models, give one of them as --base. \
                        A recipe without base_model averages its models alone.
                        """)
    ) { a throws(MergeKitError) in
        let iterations = a.number("max_iter")
        try MethodParameter.iterations.check(iterations)
        return try Karcher(includesBase: a.hasBaseModel, maxIterations: Int(iterations), tolerance: a.number("tol"))
    }
}
