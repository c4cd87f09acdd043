/// DARE, "Drop And REscale" (Yu et al., "Language Models are Super Mario: Absorbing Abilities
/// from Homologous Models as a Free Lunch", ICML 2024):
///
///     τ̃ᵢ = (mᵢ ⊙ τᵢ) · r,   mᵢ ~ Bernoulli(1 − p) elementwise
///
/// then combined by task arithmetic (θ₀ + λ Σ wᵢ τ̃ᵢ) or by TIES's sign election and disjoint
/// merge (DARE-TIES; no magnitude trim — the random drop replaces it, as in mergekit's
/// `dare_ties`).
///
/// - p defaults to 0.9: the paper shows 90 % of delta parameters can be dropped with no loss.
/// - Rescaling r: `inverse` = 1/(1 − p) (the paper: keeps the expected value, default) or `l1`
///   = Σ|τ|/Σ|m ⊙ τ| per tensor (mergekit: keeps the L1 norm exactly; skipped when either is
///   below 1e-7).
/// - Randomness is counter-based (`CounterRandom`): the mask of element j of input i is a pure
///   function of (seed, tensor name, i, j). The same seed gives byte-identical outputs whatever
///   the thread count, chunking or shard layout; masks are independent across inputs and tensors.
///   (They cannot match PyTorch's generator; the goldens recompute this stream in numpy.)
/// - A dropped NaN disappears; a kept one propagates.
public struct DARE: TaskVectorMergeConfiguration {
    public static let info = MethodInfo(
        name: "dare",
        summary: "drop each τ entry with probability p, rescale the rest, then task arithmetic or TIES (seeded)",
        reference: "Yu et al., Language Models are Super Mario (ICML 2024)")

    public enum Combination: String, Sendable, CaseIterable {
        case taskArithmetic = "task-arithmetic"
        case ties
    }

    public let dropRate: TaskVectorMerge.PerInput
    public let seed: UInt64
    public let rescale: TaskVectorMerge.Rescale
    public let combination: Combination
    public let scale: Double
    let core: TaskVectorMerge

    /// - Parameters:
    ///   - dropRate: p ∈ [0, 1).
    ///   - combination: `.taskArithmetic` (default) or `.ties` (sign election + disjoint merge).
    ///   - vote, merge: for `.ties` (defaults: the TIES paper's mass vote and mean).
    public init(dropRate: TaskVectorMerge.PerInput = 0.9, seed: UInt64 = 0, rescale: TaskVectorMerge.Rescale = .inverse,
                combination: Combination = .taskArithmetic, vote: TaskVectorMerge.Consensus = .mass,
                merge: TaskVectorMerge.Aggregation = .mean, scale: Double = 1, normalize: Bool = false) throws(MergeKitError) {
        try MethodParameter.dropRate.check(dropRate)
        try MethodParameter.scale.check(scale)
        self.dropRate = dropRate
        self.seed = seed
        self.rescale = rescale
        self.combination = combination
        self.scale = scale
        let sparsification = TaskVectorMerge.Sparsification.random(DropMasks(probabilities: dropRate, seed: seed), rescale: rescale)
        switch combination {
        case .taskArithmetic:
            core = TaskVectorMerge(sparsification: sparsification, consensus: .none, aggregation: normalize ? .normalized : .sum, scale: scale)
        case .ties:
            guard vote != .none else {
                throw MergeKitError(.invalidArgument, "DARE-TIES needs a sign vote, mass or weighted, not none")
            }
            core = TaskVectorMerge(sparsification: sparsification, consensus: vote, aggregation: merge, scale: scale)
        }
    }

    public var info: MethodInfo { Self.info }
}

extension DARE.Combination: MethodChoice {}

extension DARE: DescribedMethod {
    /// Three presets: the paper's (the subcommand and the recipe name `dare`), and mergekit's
    /// `dare_ties` and `dare_linear` (L1 rescaling, weighted vote, `merge` = `sum`). A recipe gives p as `drop_rate` or, as mergekit does, as the kept
    /// fraction `density` = 1 − p; a model without `drop_rate` when another has one keeps every
    /// entry (p = 0). `rescale` also takes mergekit's true (l1) and false (none). In a recipe,
    /// `merge: normalized` with task arithmetic divides by Σwᵢ; the command line's --merge only
    /// applies with --combine ties.
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .scaled],
        parameters: [
            .weight,
            .init("density", flag: nil, .number(.density), scope: .perModel, doc: "mergekit's kept fraction 1 − p, in (0, 1]."),
            .init("drop_rate", flag: "drop-rate", .number(.dropRate), scope: .perModel,
                  doc: "Probability p of dropping each entry, in [0, 1).", valueName: "p"),
            .init("seed", flag: "seed", .seed, doc: "Seed of the random mask."),
            .init("rescale", flag: "rescale", .choice(TaskVectorMerge.Rescale.self),
                  doc: "inverse: × 1/(1 − p) (paper); l1: restore each tensor's L1 norm (mergekit)."),
            .init("combine", flag: "combine", .choice(Combination.self), doc: "How the dropped task vectors are combined."),
            .vote(flag: "vote", doc: "Sign vote when combining with ties."),
            .merge(flag: "merge", doc: "Merge of agreeing entries when combining with ties."),
            .lambda("λ."),
            .normalize,
            .int8Mask,
        ],
        presets: [
            .init("paper", defaults: ["density": .number(0.1), "drop_rate": .number(0.9), "seed": .number(0), "rescale": .string("inverse"),
                                      "combine": .string("task-arithmetic"), "vote": .string("mass"), "merge": .string("mean"),
                                      "lambda": .number(1), "normalize": .bool(false)]),
            .init("mergekit dare_ties", defaults: mergekitDefaults, fixed: ["combine": .string("ties")], normalizeSelectsMerge: true),
            .init("mergekit dare_linear", defaults: mergekitDefaults, fixed: ["combine": .string("task-arithmetic")], normalizeSelectsMerge: true),
        ],
        recipeNames: [("dare_ties", "mergekit dare_ties"), ("dare_linear", "mergekit dare_linear"), ("dare", "paper")],
        help: .init(abstract: "DARE: drop each τ entry with probability p, rescale the rest, then task arithmetic or TIES.",
                    discussion: "The same --seed gives byte-identical output for any --threads.")
    ) { a throws(MergeKitError) in
        let drop = a.has("drop_rate") ? a.perModel("drop_rate", absent: 0)
            : TaskVectorMerge.PerInput(a.perModel("density").values.map { 1 - $0 })
        let rescale: TaskVectorMerge.Rescale
        switch a.given("rescale") {
        case .bool(let b)?: rescale = b ? .l1 : .none
        case .string(let s)?:
            guard let r = TaskVectorMerge.Rescale(rawValue: s) else { throw a.invalid("rescale", String(reflecting: s), TaskVectorMerge.Rescale.words) }
            rescale = r
        default: rescale = try a.choice("rescale")
        }
        let combination: Combination = try a.choice("combine")
        let merge = try a.aggregation()
        if combination == .taskArithmetic && merge == .normalized && !a.isCommandLine {
            return try DARE(dropRate: drop, seed: a.seed, rescale: rescale, combination: .taskArithmetic, scale: a.number("lambda"),
                            normalize: true)
        }
        return try DARE(dropRate: drop, seed: a.seed, rescale: rescale, combination: combination, vote: try a.choice("vote"),
                        merge: merge, scale: a.number("lambda"))
    }

    private static let mergekitDefaults: [String: ParameterSetting] = [
        "density": .number(1), "seed": .number(0), "rescale": .string("l1"), "vote": .string("weighted"),
        "merge": .string("sum"), "lambda": .number(1), "normalize": .bool(false),
    ]
}
