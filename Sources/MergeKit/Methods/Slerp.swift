import Foundation

/// Spherical linear interpolation between the base model and one other model, per tensor, as
/// mergekit's `slerp` computes it (Shoemake, "Animating rotation with quaternion curves",
/// SIGGRAPH 1985), each tensor flattened into one vector:
///
///     v₀ = θ₀ (the base),  v₁ = θ₁ (the other model)
///     nₖ = ‖vₖ‖, taken as 1 when ≤ ε = 1e-8
///     d  = clamp(v₀·v₁ / (n₀n₁), −1, 1)
///     |d| > 0.9995 (nearly colinear or antipodal):  θ = (1 − t)·v₀ + t·v₁
///     otherwise, Ω = arccos d:                      θ = sin((1 − t)Ω)/sin Ω · v₀ + sin(tΩ)/sin Ω · v₁
///
/// so t = 0 gives the base and t = 1 the other model. The vectors themselves are not normalised
/// (only the angle is taken between their directions), as in mergekit. t varies per tensor in
/// recipes (filters and layer gradients). Computed from the tensor's inner products
/// (`SphericalMergeMethod`): τ = θ − θ₀ = (c₀ + c₁ − 1)·θ₀ + c₁·τ₁, so t = 0 gives exactly θ₀,
/// and t = 1 gives θ₀ + τ₁, which is θ₁ exactly when θ₁ − θ₀ is exact in the compute type (BF16
/// and F16 inputs always; F32 elements within a factor 2 of the base's) and one rounding away
/// otherwise.
///
/// Two models: the base and one other (a recipe may list the base among its models, as mergekit
/// recipes do; that entry is the base). t outside [0, 1] is refused (mergekit extrapolates).
public struct Slerp: SphericalMergeMethod {
    public static let info = MethodInfo(
        name: "slerp",
        summary: "spherical interpolation between the base and one other model, t per tensor",
        reference: "Shoemake (SIGGRAPH 1985); mergekit's slerp")

    /// mergekit's thresholds: |cos Ω| above this interpolates linearly, norms at or below ε count as 1.
    static let colinearThreshold = 0.9995
    static let epsilon = 1e-8

    public let t: Double

    public init(t: Double) throws(MergeKitError) {
        try MethodParameter.t.check(t)
        self.t = t
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [JSONMember("t", .double(t))] }
    var axis: TensorProducts.Axis { .flattened }
    var usesBase: Bool { true }

    public func validate(weights: [Double]) throws(MergeKitError) {
        guard weights.count == 1 else {
            throw MergeKitError(.invalidArgument,
                "slerp interpolates between the base and exactly one other model, but \(weights.count) models besides the base were given",
                fix: "Give the base and one other model (mergekit: two models, one of them the base_model); for more models use multislerp or karcher")
        }
        try ParameterCheck.unitWeights(weights, method: "slerp")
    }

    func coefficients(_ gram: TensorProducts.Gram, weights: [Double]) -> [Double] {
        let v0 = gram.base, v1 = gram.model(0)
        let (c0, c1) = Self.interpolation(t: t, dot: gram.dot(v0, v1), norms: (gram.norm(v0), gram.norm(v1)))
        return zip(v0, v1).map { c0 * $0 + c1 * $1 }
    }

    /// The coefficients of v₀ and v₁, given v₀·v₁ and the norms.
    static func interpolation(t: Double, dot: Double, norms: (Double, Double)) -> (Double, Double) {
        let n0 = norms.0 > epsilon ? norms.0 : 1, n1 = norms.1 > epsilon ? norms.1 : 1
        let cosine = Swift.min(1, Swift.max(-1, dot / n0 / n1))
        guard abs(cosine) <= colinearThreshold else { return (1 - t, t) }
        let angle = acos(cosine)
        return (sin((1 - t) * angle) / sin(angle), sin(t * angle) / sin(angle))
    }
}

extension Slerp: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .baseAmongModels], inputs: .unweighted,
        parameters: [.init("t", flag: "t", .number(.t), doc: "The position between the base (0) and the other model (1).", valueName: "t")],
        presets: [.init("mergekit", defaults: ["t": .number(0.5)])],
        recipeNames: [("slerp", "mergekit")],
        help: .init(abstract: "SLERP: spherical interpolation between the base and one other model.",
                    discussion: """
                        Each tensor is interpolated along the great circle between the base's and the other model's \
                        weights (flattened), at position t: t = 0 gives the base, t = 1 the other model. Nearly \
                        colinear tensors (|cos| > 0.9995) are interpolated linearly, as mergekit does. A recipe \
                        gives t per tensor with filters and layer gradients and must give it for every tensor.
                        """)
    ) { a throws(MergeKitError) in
        if !a.isCommandLine && (!a.has("t") || !a.tensor.isEmpty && a.given("t") == nil) {
            throw MergeKitError(.invalidArgument, tensor: a.tensor.isEmpty ? nil : a.tensor, a.has("t") ? "slerp has no t for this tensor (no condition of t matches it)" : "slerp needs t",
                                fix: "Give t for every tensor, e.g. end the list of conditions with one without a filter: {value: 0.5}")
        }
        return try Slerp(t: a.number("t"))
    }
}
