/// TIES-Merging (Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
/// NeurIPS 2023; prateeky2806/ties-merging, as copied in FusionBench), in two clearly named
/// semantics:
///
/// **Paper** (the default: `trimScope = .global`, `vote = .mass`):
/// 1. Trim, per task over the whole model: with d elements and keep fraction K,
///    k = d − int(d·K); keep |τ| ≥ the k-th smallest |τ| (ties at the threshold all kept).
/// 2. Elect, per element: s = sign(Σₜ wₜτ̃ₜ); where s = 0 use the sign of Σ s over the whole model.
/// 3. Disjoint merge of the entries agreeing with s: `mean` (÷ their count, at least 1), `sum`,
///    or `max` (s·max|τ̃|). 4. θ = θ₀ + λ·merged.
/// Defaults K = 0.2 (20 %), `mean`, λ = 1: the paper's. (FusionBench uses `sum` and λ = 0.3.)
///
/// **mergekit** (`trimScope = .tensor`, `vote = .weighted`, `merge = .normalized`): per tensor
/// keep exactly max(1, ⌊density·n⌋) largest |τ| (ties broken by position), vote on the weighted
/// deltas wₜτ̃ₜ with a zero sum counting as +, sum the agreeing wₜτ̃ₜ and divide elementwise by
/// the sum of the agreeing weights (1 where that is 0), then × λ.
///
/// The global threshold is exact and found with flat memory: a radix selection over the bit
/// patterns of |τ| in two statistics passes (no concatenated model vector). The per-tensor trim is
/// a selection too (O(n)), not a sort. Zeros never agree with a sign; NaN compares as the
/// largest magnitude when trimming (as PyTorch sorts it) and never agrees when electing.
public struct TIES: TaskVectorMergeConfiguration {
    public static let info = MethodInfo(
        name: "ties",
        summary: "trim small |τ|, elect a sign per entry, average the agreeing entries (paper or mergekit semantics)",
        reference: "Yadav et al., TIES-Merging: Resolving Interference When Merging Models (NeurIPS 2023)")

    public enum TrimScope: String, Sendable, CaseIterable {
        /// The paper's: one threshold per task over the whole model.
        case global
        /// mergekit's: exactly ⌊density·n⌋ entries per tensor.
        case tensor
    }

    /// K, the kept fraction (per input with `.tensor` trim scope, as mergekit's per-model density).
    public let density: TaskVectorMerge.PerInput
    public let trimScope: TrimScope
    public let vote: TaskVectorMerge.Consensus
    public let merge: TaskVectorMerge.Aggregation
    public let scale: Double
    let core: TaskVectorMerge

    /// - Parameters:
    ///   - density: the fraction K of entries kept per task (paper: 20 %).
    ///   - trimScope: `.global` (paper, default) or `.tensor` (mergekit).
    ///   - vote: `.mass` (paper, default) or `.weighted` (mergekit).
    ///   - merge: `.mean` (paper, default), `.sum`, `.max`, or `.normalized` (mergekit).
    ///   - scale: λ (paper: 1).
    public init(density: TaskVectorMerge.PerInput = 0.2, trimScope: TrimScope = .global, vote: TaskVectorMerge.Consensus = .mass,
                merge: TaskVectorMerge.Aggregation = .mean, scale: Double = 1) throws(MergeKitError) {
        try MethodParameter.density.check(density)
        // A recipe gives each model its density; a global trim needs them equal and keeps one.
        var density = density
        if trimScope == .global && Set(density.values).count == 1 { density = .init(density.values[0]) }
        if trimScope == .global && density.values.count > 1 {
            throw MergeKitError(.invalidArgument, "a global trim takes one density for all models, got \(density)",
                fix: "Give one density, or use the per-tensor trim (trim scope tensor) for per-model densities")
        }
        try MethodParameter.scale.check(scale)
        guard vote != .none else {
            throw MergeKitError(.invalidArgument, "TIES needs a sign vote, mass or weighted, not none")
        }
        self.density = density
        self.trimScope = trimScope
        self.vote = vote
        self.merge = merge
        self.scale = scale
        let trim: TaskVectorMerge.Sparsification = trimScope == .global ? .globalMagnitude(keep: density[0]) : .tensorTopK(density: density)
        core = TaskVectorMerge(sparsification: trim, consensus: vote, aggregation: merge, scale: scale)
    }

    /// mergekit's `ties`: per-tensor trim, weighted vote, normalised by the agreeing weights.
    public static func mergekit(density: TaskVectorMerge.PerInput, scale: Double = 1) throws(MergeKitError) -> TIES {
        try TIES(density: density, trimScope: .tensor, vote: .weighted, merge: .normalized, scale: scale)
    }

    public var info: MethodInfo { Self.info }
}

extension TIES.TrimScope: MethodChoice {}

extension TIES: DescribedMethod {
    /// Two presets: the paper's (the subcommand) and mergekit's `ties` (recipes and sweeps).
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .scaled, .modelStatistics],
        parameters: [
            .weight,
            .init("density", flag: "density", .number(.density), scope: .perModel,
                  doc: "Fraction K of entries kept per task, in (0, 1].", valueName: "K"),
            .init("trim_scope", flag: "trim-scope", .choice(TrimScope.self),
                  doc: "global: one threshold per task over the whole model (paper); tensor: exactly ⌊K·n⌋ entries per tensor (mergekit)."),
            .vote(flag: "vote", doc: "mass: sign of the summed entries, ties by the model-wide majority (paper); weighted: zero counts as + (mergekit)."),
            .merge(flag: "merge", doc: "mean (paper), sum, max, or normalized (÷ the agreeing weights, mergekit)."),
            .lambda("λ, applied after merging."),
            .normalize,
            .int8Mask,
        ],
        presets: [
            .init("paper", defaults: ["density": .number(0.2), "trim_scope": .string("global"), "vote": .string("mass"),
                                      "merge": .string("mean"), "lambda": .number(1), "normalize": .bool(false)]),
            .init("mergekit", defaults: ["density": .number(1), "trim_scope": .string("tensor"), "vote": .string("weighted"),
                                         "merge": .string("normalized"), "lambda": .number(1), "normalize": .bool(true)],
                  normalizeSelectsMerge: true),
        ],
        recipeNames: [("ties", "mergekit")],
        help: .init(abstract: "TIES-Merging: trim small |τ|, elect a sign per entry, merge the agreeing entries.")
    ) { a throws(MergeKitError) in
        let scope: TrimScope = try a.choice("trim_scope")
        let merge = try a.aggregation()
        return try TIES(density: a.perModel("density"), trimScope: scope, vote: try a.choice("vote"), merge: merge, scale: a.number("lambda"))
    }
}
