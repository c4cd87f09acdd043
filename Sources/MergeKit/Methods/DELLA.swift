/// DELLA (Deep et al., "DELLA-Merging: Reducing Interference in Model Merging through
/// Magnitude-Based Sampling", 2024), with mergekit's `della` and `della_linear` semantics:
///
/// 1. **MagPrune**, per task and row: rank the row's |τ| ascending, r = 0 … L − 1 (ties by
///    position); keep element j with probability pⱼ = (d − ε) + 2ε · r/(L − 1), from d − ε for
///    the smallest to d + ε for the largest (a row of one element keeps with d). Rows are
///    mergekit's: the last dimension of a matrix, the whole of a vector, dimension 1 of a tensor
///    with more dimensions (for each index of the others). d = 1 keeps everything; otherwise
///    d − ε > 0 and d + ε < 1 are required (as mergekit does).
/// 2. **Rescale** the kept entries: `l1` to the tensor's L1 norm Σ|τ|/Σ|τ̃| (mergekit's
///    `rescale: true`, the default; skipped when either sum is below 1e-7), `inverse` ÷ pⱼ (the
///    paper's expected-value rescaling), or `none`.
/// 3. **Combine**: `della` elects s = + where Σ wᵢτ̃ᵢ ≥ 0 and divides the sum of the agreeing
///    wᵢτ̃ᵢ by the sum of their weights (`normalize: true`, the default; false sums them);
///    `della_linear` adds Σ wᵢτ̃ᵢ (÷ Σwᵢ with `normalize: true`). θ = θ₀ + λ·merged.
///
/// The drop is random. mergekit draws it from PyTorch's generator, which cannot be reproduced;
/// here, as for DARE, element j of input i is kept when the counter-based u_j (`CounterRandom`,
/// a pure function of seed, tensor name, i and j) is below ⌊pⱼ·2³²⌋, so a seed gives the same
/// bytes for any thread count or chunking, and the keep probabilities are mergekit's exactly.
/// Each chunk holds whole rows (`chunkAlignment`), so ranks are exact with memory of one chunk.
public struct DELLA: TaskVectorMergeConfiguration {
    public static let info = MethodInfo(
        name: "della",
        summary: "drop τ entries at random with keep probabilities ranked by magnitude per row, rescale, then TIES-style or linear merge (seeded)",
        reference: "Deep et al., DELLA-Merging (2024), mergekit della / della_linear")

    public typealias Combination = DARE.Combination

    public let masks: MagnitudeDropMasks
    public let rescale: TaskVectorMerge.Rescale
    public let combination: Combination
    public let scale: Double
    let core: TaskVectorMerge

    /// - Parameters:
    ///   - density: d, the mean keep probability per input (or one for all), in (0, 1].
    ///   - epsilon: ε, the half-width of the keep probabilities around d, in [0, 1).
    ///   - normalize: divide by the (agreeing) weights' sum.
    public init(density: TaskVectorMerge.PerInput = 1, epsilon: TaskVectorMerge.PerInput = 0.15, seed: UInt64 = 0,
                rescale: TaskVectorMerge.Rescale = .l1, combination: Combination = .ties, normalize: Bool = true,
                scale: Double = 1) throws(MergeKitError) {
        try MethodParameter.density.check(density)
        try MethodParameter.epsilon.check(epsilon)
        try MethodParameter.scale.check(scale)
        let count = Swift.max(density.values.count, epsilon.values.count)
        for i in 0..<count where density[i] < 1 && !(density[i] - epsilon[i] > 0 && density[i] + epsilon[i] < 1) {
            throw MergeKitError(.invalidArgument,
                "density ± epsilon must lie in (0, 1), not \(MethodParameter.format(density[i])) ± \(MethodParameter.format(epsilon[i]))",
                fix: "Choose epsilon below both density and 1 − density (mergekit's default epsilon is 0.15)")
        }
        masks = MagnitudeDropMasks(densities: density, epsilons: epsilon, seed: seed)
        self.rescale = rescale
        self.combination = combination
        self.scale = scale
        let sparsification = TaskVectorMerge.Sparsification.magnitudeRandom(masks, rescale: rescale)
        switch combination {
        case .ties:
            core = TaskVectorMerge(sparsification: sparsification, consensus: .weighted, aggregation: normalize ? .normalized : .sum, scale: scale)
        case .taskArithmetic:
            core = TaskVectorMerge(sparsification: sparsification, consensus: .none, aggregation: normalize ? .normalized : .sum, scale: scale)
        }
    }

    public var info: MethodInfo { Self.info }
}

/// DELLA's masks for all inputs: one seed, a density d and an ε per input (or one for all).
public struct MagnitudeDropMasks: Sendable, Equatable {
    public let densities: TaskVectorMerge.PerInput
    public let epsilons: TaskVectorMerge.PerInput
    public let seed: UInt64

    public init(densities: TaskVectorMerge.PerInput, epsilons: TaskVectorMerge.PerInput, seed: UInt64) {
        self.densities = densities
        self.epsilons = epsilons
        self.seed = seed
    }

    /// The runs ranked together for a tensor of `shape`: `run` consecutive elements hold `groups`
    /// interleaved rows (`groups` = 1 for vectors and matrices; a row is every `groups`-th element).
    static func layout(_ shape: [Int]) -> (run: Int, groups: Int) {
        guard shape.count >= 2 else { return (Swift.max(1, shape.first ?? 1), 1) }
        let inner = shape.dropFirst(2).reduce(1, *)
        return (Swift.max(1, shape[1] * inner), Swift.max(1, inner))
    }

    /// pⱼ for the element of ascending rank `rank` (0-based) among `length`.
    static func keepProbability(rank: Int, length: Int, density: Double, epsilon: Double) -> Double {
        length == 1 ? density : (density - epsilon) + 2 * epsilon * Double(rank) / Double(length - 1)
    }

    /// The keep probability of every element of `values` (a whole tensor of `shape`), for tests
    /// and for comparing with mergekit's assignment.
    public static func keepProbabilities(_ values: [Float], shape: [Int], density: Double, epsilon: Double) -> [Double] {
        let (run, groups) = layout(shape)
        let length = run / groups
        var p = [Double](repeating: density, count: values.count)
        for start in stride(from: 0, to: values.count, by: run) {
            for g in 0..<groups {
                let positions = (0..<length).map { start + $0 * groups + g }
                let order = positions.indices.sorted { a, b in
                    let ka = Float.magnitudeKey(values[positions[a]]), kb = Float.magnitudeKey(values[positions[b]])
                    return ka != kb ? ka < kb : a < b
                }
                for (rank, j) in order.enumerated() {
                    p[positions[j]] = keepProbability(rank: rank, length: length, density: density, epsilon: epsilon)
                }
            }
        }
        return p
    }

    /// Zeroes the dropped entries of input `input`'s chunk (whole runs, starting at element
    /// `offset`); with `inverse`, divides each kept entry by its keep probability.
    ///
    /// Float rows are ranked by an LSD radix sort of (key << 32 | index) on the key's bytes (a
    /// byte every key shares is skipped), which keeps equal keys in index order; Double rows (64-bit
    /// keys) by a comparison sort of the indices.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func apply<T: MergeScalar>(_ values: UnsafeMutableBufferPointer<T>, input: Int, offset: Int, context: ChunkContext, inverse: Bool) {
        let density = densities[input], epsilon = epsilons[input]
        guard density < 1, values.count > 0 else { return }
        let (run, groups) = Self.layout(context.shape)
        precondition(offset % run == 0 && values.count % run == 0, "DELLA's chunks must hold whole rows")
        let bits = context.bitsScratch
        CounterRandom(seed: seed, tensor: context.tensor, input: input).fill(bits, count: values.count, start: offset)
        let length = run / groups
        let first: UnsafeMutableBufferPointer<Double> = context.scratch(1, count: length)
        let second: UnsafeMutableBufferPointer<Double> = context.scratch(2, count: length)
        // pᵣ and its threshold ⌊pᵣ·2³²⌋ depend only on the rank: computed once per chunk, not per row.
        let table: UnsafeMutableBufferPointer<Double> = context.scratch(3, count: length)
        let thresholds = UnsafeMutableRawPointer(table.baseAddress!).bindMemory(to: UInt64.self, capacity: length)
        for rank in 0..<length {
            thresholds[rank] = UInt64(Self.threshold(Self.keepProbability(rank: rank, length: length, density: density, epsilon: epsilon)))
        }
        first.withMemoryRebound(to: UInt64.self) { packed in
            second.withMemoryRebound(to: UInt64.self) { spare in
                for start in stride(from: 0, to: values.count, by: run) {
                    for g in 0..<groups {
                        let order: UnsafeMutableBufferPointer<UInt64>
                        if T.magnitudeKeyBits == 32 {
                            for k in 0..<length { packed[k] = T.magnitudeKey(values[start + k * groups + g]) << 32 | UInt64(k) }
                            order = Self.radixSort(packed, spare: spare)
                        } else {
                            let sorted = (0..<length).sorted { a, b in
                                let ka = T.magnitudeKey(values[start + a * groups + g]), kb = T.magnitudeKey(values[start + b * groups + g])
                                return ka != kb ? ka < kb : a < b
                            }
                            for (rank, k) in sorted.enumerated() { packed[rank] = UInt64(k) }
                            order = packed
                        }
                        if inverse {
                            for rank in 0..<length {
                                let j = start + Int(truncatingIfNeeded: order[rank] & 0xFFFF_FFFF) * groups + g
                                if UInt64(bits[j]) < thresholds[rank] {
                                    values[j] = values[j] * T(1 / Self.keepProbability(rank: rank, length: length, density: density, epsilon: epsilon))
                                } else {
                                    values[j] = 0
                                }
                            }
                        } else {
                            for rank in 0..<length {
                                let j = start + Int(truncatingIfNeeded: order[rank] & 0xFFFF_FFFF) * groups + g
                                let v = values[j]
                                values[j] = UInt64(bits[j]) < thresholds[rank] ? v : 0  // a select: the draw is unpredictable
                            }
                        }
                    }
                }
            }
        }
    }

    /// ⌊p·2³²⌋ for p ∈ [0, 1) (`CounterRandom.threshold`, without the call to floor).
    @inline(__always)
    static func threshold(_ p: Double) -> UInt32 {
        UInt32(truncatingIfNeeded: Swift.min(4_294_967_295, Int64(p * 4_294_967_296.0)))
    }

    /// Sorts (key << 32 | index) values by their high 32 bits, stably, a byte at a time; returns
    /// the buffer holding the result (`values` or `spare`). One pass counts every byte of every
    /// key (the counts do not depend on the order); then one scatter pass per byte that differs
    /// between keys.
    static func radixSort(_ values: UnsafeMutableBufferPointer<UInt64>, spare: UnsafeMutableBufferPointer<UInt64>) -> UnsafeMutableBufferPointer<UInt64> {
        var source = values, target = spare
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 4 * 256) { c in
            c.initialize(repeating: 0)
            for v in values {
                let key = Int(truncatingIfNeeded: v >> 32)
                c[key & 0xFF] += 1
                c[256 + (key >> 8) & 0xFF] += 1
                c[512 + (key >> 16) & 0xFF] += 1
                c[768 + (key >> 24) & 0xFF] += 1
            }
            for digit in 0..<4 {
                let counts = UnsafeMutableBufferPointer(rebasing: c[(digit * 256)..<(digit * 256 + 256)])
                // A byte every key shares leaves the order as it is.
                if counts.contains(values.count) { continue }
                var sum = 0
                for i in 0..<256 {
                    let n = counts[i]
                    counts[i] = sum
                    sum += n
                }
                let shift = UInt64(32 + 8 * digit)
                for v in source {
                    let d = Int(truncatingIfNeeded: (v >> shift) & 0xFF)
                    target[counts[d]] = v
                    counts[d] += 1
                }
                swap(&source, &target)
            }
        }
        return source
    }
}

extension MagnitudeDropMasks: RandomMask {
    /// Ranking every row is the cost of a DELLA merge: the L1 statistics pass keeps its decisions.
    public var keepsDecisions: Bool { true }

    public func drop<T: MergeScalar>(_ values: UnsafeMutableBufferPointer<T>, input: Int, offset: Int, context: ChunkContext) {
        apply(values, input: input, offset: offset, context: context, inverse: false)
    }
}

extension MethodParameter {
    /// DELLA's ε: the half-width of the keep probabilities around the density.
    public static let epsilon = MethodParameter(name: "epsilon", domain: .fractionBelowOne,
                                                meaning: "the spread of the keep probabilities around the density, e.g. 0.15")
}

extension DELLA: DescribedMethod {
    /// Two presets, mergekit's `della` (the subcommand: TIES-style sign election, normalised)
    /// and `della_linear` (a weighted sum); both with mergekit's defaults (density 1 keeps
    /// every entry, ε 0.15, L1 rescaling, λ 1).
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .scaled],
        parameters: [
            .weight,
            .init("density", flag: "density", .number(.density), scope: .perModel,
                  doc: "Mean keep probability d per entry, in (0, 1] (1 keeps everything).", valueName: "d"),
            .init("epsilon", flag: "epsilon", .number(.epsilon), scope: .perModel,
                  doc: "Spread ε: keep probabilities run from d − ε (smallest |τ| in a row) to d + ε (largest).", valueName: "ε"),
            .init("seed", flag: "seed", .seed, doc: "Seed of the random mask."),
            .init("rescale", flag: "rescale", .choice(TaskVectorMerge.Rescale.self),
                  doc: "l1: restore each tensor's L1 norm (mergekit); inverse: ÷ each entry's keep probability (paper); none."),
            .init("combine", flag: "combine", .choice(Combination.self),
                  doc: "ties: elect a sign, merge the agreeing entries (della); task-arithmetic: add them (della_linear)."),
            .init("normalize", flag: "normalize", .flag, doc: "Divide by the sum of the (agreeing) weights."),
            .lambda("λ."),
            .int8Mask,
        ],
        presets: [
            .init("mergekit della", defaults: defaults.merging(["combine": .string("ties"), "normalize": .bool(true)]) { $1 }),
            .init("mergekit della_linear", defaults: defaults.merging(["combine": .string("task-arithmetic"), "normalize": .bool(false)]) { $1 },
                  fixed: ["combine": .string("task-arithmetic")]),
        ],
        recipeNames: [("della", "mergekit della"), ("della_linear", "mergekit della_linear")],
        help: .init(abstract: "DELLA: drop τ entries with keep probabilities ranked by magnitude per row, rescale, then merge.",
                    discussion: "The same --seed gives byte-identical output for any --threads.")
    ) { a throws(MergeKitError) in
        let rescale: TaskVectorMerge.Rescale
        switch a.given("rescale") {
        case .bool(let b)?: rescale = b ? .l1 : .none
        default: rescale = try a.choice("rescale")
        }
        return try DELLA(density: a.perModel("density"), epsilon: a.perModel("epsilon"), seed: a.seed, rescale: rescale,
                         combination: try a.choice("combine"), normalize: a.bool("normalize"), scale: a.number("lambda"))
    }

    private static let defaults: [String: ParameterSetting] = [
        "density": .number(1), "epsilon": .number(0.15), "seed": .number(0), "rescale": .string("l1"), "lambda": .number(1),
        "int8_mask": .bool(false),
    ]
}
