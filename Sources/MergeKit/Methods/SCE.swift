/// SCE, "Select, Calculate, Erase" (Wan et al., "FuseChat: Knowledge Fusion of Chat Models",
/// 2024; mergekit's `sce`), per tensor over the N task vectors τᵢ (no per-model weights):
///
/// 1. **Select** (when `select_topk` = k_f < 1): vⱼ = the population variance of τ₁ⱼ … τ_Nⱼ;
///    with z the number of elements where vⱼ ≠ 0, keep the k = ⌊z·k_f⌋ elements of largest vⱼ
///    (among equal variances, earlier elements first) in every τᵢ and zero the rest (k = 0
///    zeroes everything). k is computed as mergekit does, in float32: ⌊fl(fl(z)·fl(k_f))⌋.
/// 2. **Calculate** the weights: mᵢ = mean over the tensor of τ̃ᵢ², wᵢ = mᵢ / Σₖ mₖ (wᵢ = 1/N
///    when Σₖ mₖ < 10⁻⁶, mergekit's floor).
/// 3. **Erase**: s = + where Σᵢ τ̃ᵢⱼ ≥ 0, else −; an entry takes part where sign(τ̃ᵢⱼ) = s
///    (zeros never do).
/// 4. θ = θ₀ + Σᵢ wᵢ τ̃ᵢⱼ [agrees] / max(Σᵢ wᵢ [agrees], 10⁻⁶).
///
/// Streaming with flat memory: the variances are recomputed per chunk; the k-th largest variance
/// comes from an exact radix selection over the tensor (`TensorAccumulator` passes, from memory
/// when the tensor fits the worker's cache), then one pass sums the selected τ̃ᵢ².
public struct SCE: MergeMethod {
    public static let info = MethodInfo(
        name: "sce",
        summary: "per tensor keep the entries of largest variance across models, weight each model by its mean τ², erase sign conflicts",
        reference: "Wan et al., FuseChat: Knowledge Fusion of Chat Models (2024), mergekit sce")

    /// k_f, the fraction of non-zero-variance entries kept.
    public let selectTopK: Double

    public init(selectTopK: Double = 1) throws(MergeKitError) {
        try MethodParameter.selectTopK.check(selectTopK)
        self.selectTopK = selectTopK
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [JSONMember("select_topk", .double(selectTopK))] }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.unitWeights(weights, method: "sce")
    }

    /// mergekit forms τᵢ in its `dtype` (`ComputeDType`).
    public var roundsTaskVectors: Bool { true }

    public var statistics: StatisticsRequest {
        var request = StatisticsRequest()
        let fraction = selectTopK
        request.tensorAccumulator = { shape, inputs in SCEStatistics(count: shape.reduce(1, *), inputs: inputs, selectTopK: fraction) }
        return request
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        let statistics = context.tensorStatistics.accumulator as! SCEStatistics
        statistics.select(deltas, context: context)
        let w = statistics.weights.map { T($0) }
        let floor = T(1e-6)
        for j in 0..<out.count {
            var total = T.zero
            for delta in deltas { total += delta[j] }
            let positive = total >= 0
            var sum = T.zero, weight = T.zero
            for (i, delta) in deltas.enumerated() {
                let x = delta[j]
                if positive ? x > 0 : x < 0 {
                    sum += x * w[i]
                    weight += w[i]
                }
            }
            out[j] = sum / Swift.max(weight, floor)
        }
    }
}

/// SCE's per-tensor numbers: the variance selection (the k-th largest variance, then a rank
/// window applied in index order) and the weights wᵢ.
final class SCEStatistics: TensorAccumulator {
    let count: Int
    let inputs: Int
    let selectTopK: Double
    /// Elements with a non-zero variance (pass 0).
    private(set) var nonZero = 0
    /// The number of elements kept: nil keeps all (select_topk ≥ 1), 0 none.
    private(set) var kept: Int?
    private var selection: RadixSelection?
    /// Passes of the radix selection (after pass 0).
    private var selectionPasses = 0
    /// The window of the pass summing τ̃² and the merge pass's (each visits the tensor in order).
    private var sumWindow: RankWindow?
    private var mergeWindow: RankWindow?
    private var squares: [Double]
    /// wᵢ, once the passes are done.
    private(set) var weights: [Double] = []

    init(count: Int, inputs: Int, selectTopK: Double) {
        self.count = count
        self.inputs = inputs
        self.selectTopK = selectTopK
        squares = [Double](repeating: 0, count: inputs)
    }

    /// The variances of one chunk (population variance across the inputs, computed in Double).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func variances<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], into v: UnsafeMutableBufferPointer<T>) {
        let n = Double(deltas.count)
        for j in 0..<v.count {
            var mean = 0.0
            for delta in deltas { mean += Double(delta[j]) }
            mean /= n
            var sum = 0.0
            for delta in deltas {
                let d = Double(delta[j]) - mean
                sum += d * d
            }
            v[j] = T(sum / n)
        }
    }

    private var selecting: Bool { selectTopK < 1 }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func observe<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeMutableBufferPointer<T>, chunk: Range<Int>,
                                 pass: Int, context: ChunkContext) {
        keyBits = T.magnitudeKeyBits
        if !selecting {
            for (i, delta) in deltas.enumerated() { squares[i] += Double(T.dot(UnsafeBufferPointer(delta), UnsafeBufferPointer(delta))) }
            return
        }
        let v: UnsafeMutableBufferPointer<T> = context.scratch(3, count: chunk.count)
        Self.variances(deltas, into: v)
        if pass == 0 {
            for x in v where x != 0 { nonZero += 1 }
        } else if selectionPasses < T.magnitudeKeyBits / RadixSelection.digitBits {
            selection!.observe(UnsafeBufferPointer(v))
        } else {
            // The selected entries' τ̃² (the window zeroes the variances outside it).
            sumWindow!.apply(v)
            for (i, delta) in deltas.enumerated() {
                var sum = 0.0
                for j in 0..<chunk.count where v[j] != 0 { sum += Double(delta[j]) * Double(delta[j]) }
                squares[i] += sum
            }
        }
    }

    /// Bits of the compute type's magnitude keys (the radix selection's passes).
    private var keyBits = 32

    func finishPass(_ pass: Int) -> Bool {
        if !selecting { return finish() }
        if pass == 0 {
            // mergekit: k = int(count_nonzero(v) * select_topk), a float32 product.
            let k = Int(Float(nonZero) * Float(selectTopK))
            kept = k
            guard k > 0 else { return finish() }
            selection = RadixSelection(rank: count - k, keyBits: keyBits)
            return true
        }
        if selectionPasses < keyBits / RadixSelection.digitBits {
            selection!.finishPass()
            selectionPasses += 1
            if selectionPasses == keyBits / RadixSelection.digitBits {
                let window = RankWindow(lower: count - kept!, lowerStatistic: selection!.statistic, upper: count, upperStatistic: nil,
                                        earlierRanksHigher: true)
                sumWindow = window
                mergeWindow = window
            }
            return true
        }
        return finish()
    }

    /// wᵢ from the sums of τ̃ᵢ²; no further pass.
    private func finish() -> Bool {
        let means = squares.map { $0 / Double(Swift.max(1, count)) }
        let total = means.reduce(0, +)
        weights = abs(total) < 1e-6 ? [Double](repeating: 1 / Double(inputs), count: inputs) : means.map { $0 / total }
        return false
    }

    /// Zeroes, in every τᵢ of the merge pass's chunk, the entries outside the selection.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func select<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], context: ChunkContext) {
        guard selecting else { return }
        guard kept != 0, mergeWindow != nil else {
            for delta in deltas { delta.update(repeating: 0) }
            return
        }
        let v: UnsafeMutableBufferPointer<T> = context.scratch(3, count: deltas[0].count)
        Self.variances(deltas, into: v)
        mergeWindow!.apply(v)
        for delta in deltas {
            for j in 0..<v.count where v[j] == 0 { delta[j] = 0 }
        }
    }
}

extension MethodParameter {
    /// SCE's select_topk: the kept fraction of the entries with non-zero variance.
    public static let selectTopK = MethodParameter(name: "select_topk", domain: .keptFraction,
                                                   meaning: "the fraction of entries of largest variance across the models kept, e.g. 0.5")
}

extension SCE: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk], inputs: .unweighted,
        parameters: [
            .init("select_topk", flag: "select-topk", .number(.selectTopK),
                  doc: "Fraction of the entries with non-zero variance kept (largest variance across the models), in (0, 1].", valueName: "k"),
            .int8Mask,
        ],
        presets: [.init("mergekit", defaults: ["select_topk": .number(1), "int8_mask": .bool(false)])],
        recipeNames: [("sce", "mergekit")],
        help: .init(abstract: "SCE: keep the entries of largest variance across models, weight models by mean τ², erase sign conflicts.")
    ) { a throws(MergeKitError) in
        try SCE(selectTopK: a.number("select_topk"))
    }
}
