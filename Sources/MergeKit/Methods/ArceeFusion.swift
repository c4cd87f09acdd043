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
/// The KL divergences are computed in Double (mergekit: in the compute dtype), the quantiles
/// exactly over the whole tensor by a radix selection in signed order (mergekit samples 10⁶
/// entries at random for tensors larger than that; here every tensor gets its exact
/// quantiles, so results are deterministic) and t in the compute type. Each chunk holds whole
/// rows (`chunkAlignment`); the quantiles take one pass per 16 key bits before the merge pass.
public struct ArceeFusion: MergeMethod {
    public static let info = MethodInfo(
        name: "arcee-fusion",
        summary: "keep the model's τ entries whose |τ|·KL(softmax rows) is an outlier (≥ Q₂ + 1.5·IQR) per tensor",
        reference: "mergekit arcee_fusion (Arcee AI)")

    public init() {}

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [] }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.oneModel(weights, method: "arcee_fusion", what: "fuses exactly one model into the base")
    }

    public var statistics: StatisticsRequest {
        var request = StatisticsRequest()
        request.tensorAccumulator = { shape, _ in FusionThreshold(count: shape.reduce(1, *)) }
        return request
    }

    public func chunkAlignment(shape: [Int]) -> Int { Self.rowLength(shape) }

    /// The softmax rows: the last dimension (the whole tensor for a vector or a scalar).
    static func rowLength(_ shape: [Int]) -> Int { Swift.max(1, shape.last ?? 1) }

    /// importanceⱼ = |τⱼ|·KL_row of one chunk of whole rows, into `out`.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func importance<T: MergeScalar>(_ delta: UnsafeMutableBufferPointer<T>, base: UnsafeMutableBufferPointer<T>,
                                           row: Int, into out: UnsafeMutableBufferPointer<T>) {
        precondition(delta.count % row == 0)
        for start in stride(from: 0, to: delta.count, by: row) {
            var max1 = -Double.infinity, max0 = -Double.infinity
            for j in start..<(start + row) {
                max0 = Swift.max(max0, Double(base[j]))
                max1 = Swift.max(max1, Double(base[j]) + Double(delta[j]))
            }
            var sum1 = 0.0, sum0 = 0.0
            for j in start..<(start + row) {
                sum0 += exp(Double(base[j]) - max0)
                sum1 += exp(Double(base[j]) + Double(delta[j]) - max1)
            }
            var kl = 0.0
            for j in start..<(start + row) {
                let p = exp(Double(base[j]) + Double(delta[j]) - max1) / sum1 + 1e-8
                let q = exp(Double(base[j]) - max0) / sum0 + 1e-8
                kl += p * log(p / q)
            }
            for j in start..<(start + row) { out[j] = T(Double(delta[j].magnitude) * kl) }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        let threshold = T((context.tensorStatistics.accumulator as! FusionThreshold).threshold)
        let score: UnsafeMutableBufferPointer<T> = context.scratch(3, count: out.count)
        Self.importance(deltas[0], base: UnsafeMutableBufferPointer(mutating: base), row: Self.rowLength(context.shape), into: score)
        for j in 0..<out.count { out[j] = score[j] >= threshold ? deltas[0][j] : 0 }
    }
}

/// Arcee Fusion's threshold t = Q₂ + 1.5·(Q₃ − Q₁) of a tensor's importances, from three exact
/// radix selections in signed order.
final class FusionThreshold: TensorAccumulator {
    let count: Int
    private var selections: [RadixSelection] = []
    private var passes = 0
    private var bits = 0
    /// t, in the compute type's precision (valid after the passes).
    private(set) var threshold = 0.0

    init(count: Int) { self.count = count }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func observe<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeMutableBufferPointer<T>, chunk: Range<Int>,
                                 pass: Int, context: ChunkContext) {
        if selections.isEmpty {
            bits = T.magnitudeKeyBits
            let last = Double(Swift.max(0, count - 1))
            selections = [0.25, 0.5, 0.75].map { RadixSelection(rank: Int(($0 * last).rounded(.down)), keyBits: T.magnitudeKeyBits) }
        }
        let score: UnsafeMutableBufferPointer<T> = context.scratch(3, count: chunk.count)
        ArceeFusion.importance(deltas[0], base: base, row: ArceeFusion.rowLength(context.shape), into: score)
        for s in selections.indices { selections[s].observe(keys: score.lazy.map { SignedOrder.key($0) }) }
    }

    func finishPass(_ pass: Int) -> Bool {
        guard count > 0 else { return false }
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
