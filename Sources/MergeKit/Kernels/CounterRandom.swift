/// A counter-based random stream: the number drawn for element j of input i of a tensor is a
/// pure function of (seed, tensor name, i, j), so results do not depend on chunking, thread
/// count or the order work is done in, and anyone can recompute the exact mask (the numpy
/// reference in Fixtures/make_method_goldens.py does).
///
///     stream = mix(seed ⊕ mix(fnv1a64(name) ⊕ mix(i + 1)))
///     u_j    = mix(stream + (j + 1) · 0x9E3779B97F4A7C15) >> 11          (53 uniform bits)
///
/// where mix is SplitMix64's finaliser. Element j is dropped when u_j < ⌊p · 2⁵³⌋.
public struct CounterRandom: Sendable {
    static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// SplitMix64's output function.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// FNV-1a of the UTF-8 bytes of `name`.
    static func fnv1a(_ name: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    let stream: UInt64

    public init(seed: UInt64, tensor: String, input: Int) {
        stream = CounterRandom.mix(seed ^ CounterRandom.mix(CounterRandom.fnv1a(tensor) ^ CounterRandom.mix(UInt64(input) &+ 1)))
    }

    /// 53 uniform bits for element `index`.
    @inline(__always)
    public func bits(_ index: Int) -> UInt64 {
        CounterRandom.mix(stream &+ (UInt64(index) &+ 1) &* CounterRandom.golden) >> 11
    }

    /// The threshold on `bits` that drops with probability `p`.
    static func threshold(dropProbability p: Double) -> UInt64 {
        UInt64((p * 9_007_199_254_740_992.0).rounded(.down))
    }
}
