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
