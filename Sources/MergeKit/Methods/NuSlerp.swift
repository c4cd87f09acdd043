import Foundation

/// NuSLERP, mergekit's `nuslerp`: spherical interpolation between two models at the position
/// their weights give, of their task vectors when there is a base, else of the models themselves:
///
///     t  = w₂ / (w₁ + w₂)             (0.5 when |w₁ + w₂| < 1e-6)
///     with a base:  v₁ = τ₁, v₂ = τ₂, θ = θ₀ + s(v₁, v₂);   without one:  θ = s(θ₁, θ₂)
///     s: cos Ω = clamp(v₁·v₂ / (max(‖v₁‖, 1e-7)·max(‖v₂‖, 1e-7)), −1, 1)
///        1 − cos²Ω ≤ 1e-16 (colinear):  (1 − t)·v₁ + t·v₂
///        otherwise:                      (sin((1 − t)Ω)·v₁ + sin(tΩ)·v₂) / sin Ω
///
/// over each tensor flattened (`nuslerp_flatten`, the default), or else each run along the last
/// axis (a matrix's rows), or with `nuslerp_row_wise` each run along the first axis (a matrix's
/// columns: mergekit's `dim=0`). Computed from the tensor's inner products per vector
/// (`SphericalMergeMethod`).
///
/// Exactly two models besides the base. A recipe without base_model interpolates the models
/// themselves (its first model only anchors the task vectors, which does not change the result);
/// the command line always has a base, so it computes the base-relative form.
public struct NuSlerp: SphericalMergeMethod {
    public static let info = MethodInfo(
        name: "nuslerp",
        summary: "spherical interpolation of two models (their task vectors, given a base) at t = w₂/(w₁ + w₂)",
        reference: "mergekit's nuslerp")

    /// Interpolate the task vectors (a base model is given) rather than the models.
    public let baseRelative: Bool
    /// Whole tensors (rather than rows or columns).
    public let flatten: Bool
    /// Columns (runs along the first axis) rather than rows, when not flattened.
    public let rowWise: Bool

    public init(baseRelative: Bool = true, flatten: Bool = true, rowWise: Bool = false) {
        self.baseRelative = baseRelative
        self.flatten = flatten
        self.rowWise = rowWise
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] {
        [JSONMember("nuslerp_flatten", .bool(flatten)), JSONMember("nuslerp_row_wise", .bool(rowWise)),
         JSONMember("base_relative", .bool(baseRelative))]
    }
    var axis: TensorProducts.Axis { flatten ? .flattened : rowWise ? .firstAxis : .lastAxis }
    var usesBase: Bool { !baseRelative }

    public func validate(weights: [Double]) throws(MergeKitError) {
        guard weights.count == 2 else {
            throw MergeKitError(.invalidArgument, "nuslerp interpolates between exactly two models besides the base, but \(weights.count) were given",
                                fix: "Give two models (and optionally the base); for more models use multislerp or karcher")
        }
    }

    func coefficients(_ gram: TensorProducts.Gram, weights: [Double]) -> [Double] {
        let total = weights[0] + weights[1]
        let t = abs(total) < 1e-6 ? 0.5 : weights[1] / total
        let v1 = baseRelative ? gram.taskVector(0) : gram.model(0)
        let v2 = baseRelative ? gram.taskVector(1) : gram.model(1)
        let n1 = Swift.max(gram.norm(v1), 1e-7), n2 = Swift.max(gram.norm(v2), 1e-7)
        let cosine = Swift.min(1, Swift.max(-1, gram.dot(v1, v2) / (n1 * n2)))
        let c1: Double, c2: Double
        if 1 - cosine * cosine <= 1e-16 {
            (c1, c2) = (1 - t, t)
        } else {
            let angle = acos(cosine)
            (c1, c2) = (sin((1 - t) * angle) / sin(angle), sin(t * angle) / sin(angle))
        }
        var c = zip(v1, v2).map { c1 * $0 + c2 * $1 }
        if baseRelative { c[0] += 1 }
        return c
    }
}

extension NuSlerp: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .baseOptional, .baseAmongModels],
        parameters: [
            .weight,
            .init("nuslerp_flatten", flag: "flatten", .flag, doc: "Interpolate each tensor as one vector (else row by row)."),
            .init("nuslerp_row_wise", flag: "row-wise", .flag,
                  doc: "Without --flatten: interpolate along the first axis (a matrix's columns) instead of the last."),
        ],
        presets: [.init("mergekit", defaults: ["nuslerp_flatten": .bool(true), "nuslerp_row_wise": .bool(false)])],
        recipeNames: [("nuslerp", "mergekit")],
        help: .init(abstract: "NuSLERP: spherical interpolation of two models' task vectors at t = w₂/(w₁ + w₂).",
                    discussion: """
                        The two --model inputs' task vectors are interpolated along their great circle at t = w₂/(w₁ + w₂) \
                        (--weight; equal weights give the midpoint) and added to the base. A recipe without base_model \
                        interpolates the two models themselves, as mergekit does.
                        """)
    ) { a throws(MergeKitError) in
        NuSlerp(baseRelative: a.hasBaseModel, flatten: a.bool("nuslerp_flatten"), rowWise: a.bool("nuslerp_row_wise"))
    }
}
