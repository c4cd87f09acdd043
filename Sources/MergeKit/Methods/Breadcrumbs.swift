/// Model Breadcrumbs (Davari & Belilovsky, "Model Breadcrumbs: Scaling Multi-Task Model Merging
/// with Sparse Masks", ECCV 2024), with mergekit's `breadcrumbs` (magnitude_outliers) rule:
///
///     per tensor and task, rank |τ| ascending (ties by position); with n entries
///     keep = ⌊density·n⌋, top = ⌊γ·n⌋, bottom = max(0, n − keep − top);
///     τ̃ keeps ranks bottom ..< bottom + keep  (drops the γ outliers and the smallest)
///     θ = θ₀ + λ Σ wᵢ τ̃ᵢ
///
/// With `vote` other than `.none` the kept entries then go through TIES's sign election and
/// disjoint merge (mergekit's `breadcrumbs_ties`).
///
/// Defaults: density 0.1 and γ = 0.01 (mergekit's γ default; the paper masks the top ~1 % and
/// keeps a sparse band below it), λ = 1. When density + γ > 1 fewer outliers are dropped so
/// that `keep` entries remain. Selections are exact and O(n). NaN ranks as the largest magnitude.
public struct Breadcrumbs: TaskVectorMergeConfiguration {
    public static let info = MethodInfo(
        name: "breadcrumbs",
        summary: "per tensor drop the largest γ (outliers) and the smallest |τ|, keep a density band, then task arithmetic",
        reference: "Davari & Belilovsky, Model Breadcrumbs (ECCV 2024)")

    public let density: TaskVectorMerge.PerInput
    public let gamma: TaskVectorMerge.PerInput
    public let scale: Double
    let core: TaskVectorMerge

    public init(density: TaskVectorMerge.PerInput = 0.1, gamma: TaskVectorMerge.PerInput = 0.01, scale: Double = 1,
                vote: TaskVectorMerge.Consensus = .none, merge: TaskVectorMerge.Aggregation = .sum) throws(MergeKitError) {
        try MethodParameter.density.check(density)
        try MethodParameter.gamma.check(gamma)
        try MethodParameter.scale.check(scale)
        self.density = density
        self.gamma = gamma
        self.scale = scale
        core = TaskVectorMerge(sparsification: .tensorOutliers(density: density, gamma: gamma), consensus: vote,
                               aggregation: merge, scale: scale)
    }

    public var info: MethodInfo { Self.info }
}

extension Breadcrumbs: DescribedMethod {
    /// Two presets: task arithmetic on the kept band (the subcommand, mergekit's `breadcrumbs`) and
    /// mergekit's `breadcrumbs_ties` (a weighted sign vote first).
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .scaled],
        parameters: [
            .weight,
            .init("density", flag: "density", .number(.density), scope: .perModel,
                  doc: "Fraction of entries kept per tensor, in (0, 1].", valueName: "d"),
            .init("gamma", flag: "gamma", .number(.gamma), scope: .perModel,
                  doc: "Fraction of largest entries dropped as outliers, in [0, 1).", valueName: "γ"),
            .lambda("λ."),
            .normalize,
            .vote(flag: nil, doc: "The sign vote before merging: none, mass or weighted."),
            .merge(flag: nil, doc: "Merge of the kept (agreeing) entries: sum, mean, max or normalized."),
            .int8Mask,
        ],
        presets: [
            .init("default", defaults: defaults.merging(["vote": .string("none")]) { $1 }, normalizeSelectsMerge: true),
            .init("mergekit breadcrumbs_ties", defaults: defaults.merging(["vote": .string("weighted")]) { $1 }, normalizeSelectsMerge: true),
        ],
        recipeNames: [("breadcrumbs", "default"), ("breadcrumbs_ties", "mergekit breadcrumbs_ties")],
        help: .init(abstract: "Model Breadcrumbs: per tensor drop the largest γ and the smallest |τ|, keep a density band, then add.")
    ) { a throws(MergeKitError) in
        let merge = try a.aggregation()
        return try Breadcrumbs(density: a.perModel("density"), gamma: a.perModel("gamma"), scale: a.number("lambda"),
                               vote: try a.choice("vote"), merge: merge)
    }

    private static let defaults: [String: ParameterSetting] = [
        "density": .number(0.1), "gamma": .number(0.01), "lambda": .number(1), "normalize": .bool(false), "merge": .string("sum"),
    ]
}
