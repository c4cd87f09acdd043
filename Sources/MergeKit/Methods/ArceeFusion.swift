import Foundation

/// Arcee Fusion (mergekit's `arcee_fusion`): take the model's change only where it matters, by a
/// per-tensor outlier threshold on an importance score. With the base θ₀ and one model θ₁:
///
///     per row (the last dimension; a vector is one row):
///       p = softmax(θ₁,row) + 10⁻⁸,  q = softmax(θ₀,row) + 10⁻⁸,  KL_row = Σ p·log(p/q)
///     importanceⱼ = |τⱼ| · KL_row(j)
///     t = Q₂ + 1.5·(Q₃ − Q₁)     over the tensor's importances, Qₖ = the sorted importances at
///                                 index ⌊(k/4)·(n − 1)⌋ (0-based)
///     θ = θ₀ + τ · [importance ≥ t]
///
/// The KL divergences are computed in Double (mergekit: in the compute dtype) by a vectorised
/// kernel (`BLAS.softmaxDivergence`) as Σ q·g(p/q) with g(r) = r·log r − r + 1 ≥ 0, which equals
/// Σ p·log(p/q) since Σp = Σq, but sums terms of one sign: for rows that a fine-tune changes
/// little, the terms of Σ p·log(p/q) cancel to about a thousandth of their size, and the rounding
/// of the two softmax sums alone then costs the divergence about 9 of its 16 digits (2·10⁻⁹
/// relative on a row of 2,048 with τ a tenth of θ₀, even with exp and log correctly rounded).
/// Summed as here, it is within about 10⁻¹⁴ of the exact value, so an importance is |τ|·KL
/// correctly rounded to the compute type unless it lies within that of a rounding boundary.
/// The quantiles are exact over the whole tensor by a radix selection in signed order
/// (mergekit samples 10⁶ entries at random for tensors larger than that; here every tensor gets
/// its exact quantiles, so results are deterministic) and t is in the compute type. Each chunk
/// holds whole rows (`chunkAlignment`); the quantiles take one pass per 16 key bits before the
/// merge pass. The first pass keeps each row's divergence (one Double per row) for the later
/// passes and the merge pass, for tensors of at most `keptDivergencesLimit` rows; larger ones
/// compute them again in every pass.
public struct ArceeFusion: MergeMethod {
    public static let info = MethodInfo(
        name: "arcee-fusion",
        summary: "keep the model's τ entries whose |τ|·KL(softmax rows) is an outlier (≥ Q₂ + 1.5·IQR) per tensor",
        reference: "mergekit arcee_fusion (Arcee AI)")

    /// The most rows whose divergences a tensor keeps between its passes: 2²¹, 16 MiB of Doubles.
    static let keptDivergencesLimit = 1 << 21
    /// This merge's limit (tests lower it to take the path that computes the divergences again).
    let keptRows: Int

    public init() { keptRows = Self.keptDivergencesLimit }

    init(keptRows: Int) { self.keptRows = keptRows }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [] }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.oneModel(weights, method: "arcee_fusion", what: "fuses exactly one model into the base")
    }

    public var statistics: StatisticsRequest {
        var request = StatisticsRequest()
        let keptRows = keptRows
        request.tensorAccumulator = { shape, _ in FusionThreshold(shape: shape, keptRows: keptRows) }
        return request
    }

    public func chunkAlignment(shape: [Int]) -> Int { Self.rowLength(shape) }

    /// The softmax rows: the last dimension (the whole tensor for a vector or a scalar).
    static func rowLength(_ shape: [Int]) -> Int { Swift.max(1, shape.last ?? 1) }

    /// KL_row of one row of `count` values, θ₀ = `base` and θ₁ = θ₀ + `delta` (in Double, in the
    /// scratch slots 0 and 1).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func divergence<T: MergeScalar>(delta: UnsafePointer<T>, base: UnsafePointer<T>, count: Int, context: ChunkContext) -> Double {
        let x0: UnsafeMutableBufferPointer<Double> = context.scratch(0, count: count)
        let x1: UnsafeMutableBufferPointer<Double> = context.scratch(1, count: count)
        if T.self == Float.self {
            return base.withMemoryRebound(to: Float.self, capacity: count) { b in
                delta.withMemoryRebound(to: Float.self, capacity: count) { d in
                    BLAS.softmaxDivergence(base: b, delta: d, count: count, scratch0: x0.baseAddress!, scratch1: x1.baseAddress!)
                }
            }
        }
        return base.withMemoryRebound(to: Double.self, capacity: count) { b in
            delta.withMemoryRebound(to: Double.self, capacity: count) { d in
                BLAS.softmaxDivergence(base: b, delta: d, count: count, scratch0: x0.baseAddress!, scratch1: x1.baseAddress!)
            }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        let fusion = context.tensorStatistics.accumulator as! FusionThreshold
        let threshold = T(fusion.threshold)
        let delta = deltas[0], row = fusion.row
        precondition(out.count % row == 0 && context.elementOffset % row == 0)
        for start in stride(from: 0, to: out.count, by: row) {
            let kl = fusion.divergence(row: (context.elementOffset + start) / row, delta: delta.baseAddress! + start,
                                       base: base.baseAddress! + start, context: context)
            if T.self == Float.self {
                let tau = UnsafeRawPointer(delta.baseAddress! + start).assumingMemoryBound(to: Float.self)
                let kept = UnsafeMutableRawPointer(out.baseAddress! + start).assumingMemoryBound(to: Float.self)
                BLAS.fusionSelect(tau, count: row, divergence: kl, threshold: Float(fusion.threshold), into: kept)
            } else {
                for j in start..<(start + row) { out[j] = FusionThreshold.importance(delta[j], divergence: kl) >= threshold ? delta[j] : 0 }
            }
        }
    }
}

/// Arcee Fusion's threshold t = Q₂ + 1.5·(Q₃ − Q₁) of a tensor's importances, from three exact
/// radix selections in signed order; it keeps the tensor's row divergences from its first pass
/// for the others and the merge pass.
final class FusionThreshold: TensorAccumulator {
    let count: Int
    /// Elements per softmax row.
    let row: Int
    /// Whether the row divergences are kept (the tensor has at most `keptRows` rows).
    let keepsDivergences: Bool
    /// KL_row of the rows seen so far in the first pass (chunks arrive in index order), then of
    /// every row.
    private var divergences: [Double] = []
    private var selections: [RadixSelection] = []
    private var passes = 0
    private var bits = 0
    /// t, in the compute type's precision (valid after the passes).
    private(set) var threshold = 0.0

    init(shape: [Int], keptRows: Int) {
        count = shape.reduce(1, *)
        row = ArceeFusion.rowLength(shape)
        keepsDivergences = count / row <= keptRows
    }

    /// importance = |τ|·KL_row, rounded to the compute type.
    @inline(__always)
    static func importance<T: MergeScalar>(_ tau: T, divergence: Double) -> T { T(Double(tau.magnitude) * divergence) }

    /// KL_row of row `index` of the tensor (whose values start at `delta` and `base`): as kept by
    /// the first pass, or computed (and kept, in the first pass).
    @inline(__always)
    func divergence<T: MergeScalar>(row index: Int, delta: UnsafePointer<T>, base: UnsafePointer<T>, context: ChunkContext) -> Double {
        if index < divergences.count { return divergences[index] }
        let kl = ArceeFusion.divergence(delta: delta, base: base, count: row, context: context)
        if keepsDivergences && index == divergences.count { divergences.append(kl) }
        return kl
    }

    /// Counts a chunk's importance keys. In the first pass every selection is at the same (empty)
    /// prefix, so their counts are the same: the first counts, the others copy its counts in
    /// `finishPass`. In later passes only the keys under some selection's prefix are gathered
    /// (a few in a hundred), and each selection counts those.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func observe<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeMutableBufferPointer<T>, chunk: Range<Int>,
                                 pass: Int, context: ChunkContext) {
        if selections.isEmpty {
            bits = T.magnitudeKeyBits
            let last = Double(Swift.max(0, count - 1))
            selections = [0.25, 0.5, 0.75].map { RadixSelection(rank: Int(($0 * last).rounded(.down)), keyBits: T.magnitudeKeyBits) }
            if keepsDivergences { divergences.reserveCapacity(count / row) }
        }
        let delta = deltas[0]
        precondition(delta.count % row == 0 && chunk.lowerBound % row == 0)
        let first = selections[0].prefixBits == 0
        let shift = UInt64(bits - selections[0].prefixBits)
        let (p0, p1, p2) = (selections[0].prefix, selections[1].prefix, selections[2].prefix)
        let scratch: UnsafeMutableBufferPointer<Double> = context.scratch(3, count: delta.count)
        scratch.withMemoryRebound(to: UInt64.self) { keys in
            var gathered = 0
            for start in stride(from: 0, to: delta.count, by: row) {
                let kl = divergence(row: (chunk.lowerBound + start) / row, delta: delta.baseAddress! + start,
                                    base: base.baseAddress! + start, context: context)
                if T.self == Float.self {
                    let tau = UnsafeRawPointer(delta.baseAddress! + start).assumingMemoryBound(to: Float.self)
                    let prefixes = (UInt32(truncatingIfNeeded: p0), UInt32(truncatingIfNeeded: p1), UInt32(truncatingIfNeeded: p2))
                    gathered += BLAS.fusionKeys(tau, count: row, divergence: kl, into: keys.baseAddress! + gathered,
                                                under: first ? nil : prefixes, shift: Int(shift))
                } else if first {
                    for j in start..<(start + row) { keys[j] = SignedOrder.key(Self.importance(delta[j], divergence: kl)) }
                    gathered += row
                } else {
                    for j in start..<(start + row) {
                        let key = SignedOrder.key(Self.importance(delta[j], divergence: kl))
                        let top = key &>> shift
                        keys[gathered] = key
                        gathered &+= top == p0 || top == p1 || top == p2 ? 1 : 0
                    }
                }
            }
            if first {
                selections[0].observe(keys: UnsafeBufferPointer(rebasing: keys[0..<gathered]))
            } else {
                let under = UnsafeBufferPointer(rebasing: keys[0..<gathered])
                for s in selections.indices { selections[s].observe(keys: under) }
            }
        }
    }

    func finishPass(_ pass: Int) -> Bool {
        guard count > 0 else { return false }
        if selections[0].prefixBits == 0 {
            for s in selections.indices.dropFirst() { selections[s].copyCounts(from: selections[0]) }
        }
        for s in selections.indices { selections[s].finishPass() }
        passes += 1
        guard passes == bits / RadixSelection.digitBits else { return true }
        let q = selections.map { SignedOrder.value(key: $0.key, bits: bits) }
        if bits == 32 {
            let (q1, q2, q3) = (Float(q[0]), Float(q[1]), Float(q[2]))
            threshold = Double(q2 + 1.5 * (q3 - q1))
        } else {
            threshold = q[1] + 1.5 * (q[2] - q[0])
        }
        return false
    }
}

/// Integer keys whose unsigned order is the signed order of the floats (−∞ < … < −0 < +0 < … <
/// +∞), for exact selections over values of either sign.
/// With h = 2^(bits − 1) and m = the magnitude key: h + m for a positive x, h − 1 − m for a
/// negative one.
enum SignedOrder {
    @inline(__always)
    static func key<T: MergeScalar>(_ x: T) -> UInt64 {
        let half: UInt64 = 1 << UInt64(T.magnitudeKeyBits - 1)
        let magnitude = T.magnitudeKey(x)
        return x.sign == .minus ? half - 1 - magnitude : half | magnitude
    }

    /// The value of a key of `bits` bits (as a Double).
    static func value(key: UInt64, bits: Int) -> Double {
        let half: UInt64 = 1 << UInt64(bits - 1)
        let negative = key < half
        let magnitude = negative ? half - 1 - key : key - half
        let value = bits == 32 ? Double(Float(bitPattern: UInt32(truncatingIfNeeded: magnitude))) : Double(bitPattern: magnitude)
        return negative ? -value : value
    }
}

extension ArceeFusion: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk], inputs: .unweighted,
        parameters: [],
        presets: [.init("mergekit", defaults: [:])],
        recipeNames: [("arcee_fusion", "mergekit"), ("arcee-fusion", "mergekit")],
        help: .init(abstract: "Arcee Fusion: keep the model's τ entries whose importance |τ|·KL is an outlier of its tensor.",
                    discussion: "Exactly one model besides the base; no parameters.")
    ) { _ throws(MergeKitError) in
        ArceeFusion()
    }
}
