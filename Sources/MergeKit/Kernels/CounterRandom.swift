/// A counter-based random stream: the number drawn for element j of input i of a tensor is a
/// pure function of (seed, tensor name, i, j), so results do not depend on chunking, thread
/// count or the order work is done in, and anyone can recompute the exact mask (the numpy
/// reference in Fixtures/make_method_goldens.py does).
///
///     stream = mix(seed ⊕ mix(fnv1a64(name) ⊕ mix(i + 1)))          (64 bits; a = low 32, b = high 32)
///     u_j    = lowbias32(lowbias32(j ⊕ a) + b)                       (32 uniform bits, j < 2³²)
///
/// mix is SplitMix64's finaliser; lowbias32 is the 32-bit integer hash
/// x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16 (all mod 2³²).
/// Element j is dropped when u_j < ⌊p · 2³²⌋. The 32-bit hash vectorises (AVX2 in the C shim,
/// chosen at run time), which keeps DARE at the speed of the rest of the merge.
public struct CounterRandom: Sendable {
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

    /// lowbias32, a 32-bit integer hash with low bias (C. Wellons).
    @inline(__always)
    static func lowbias32(_ value: UInt32) -> UInt32 {
        var x = value
        x ^= x >> 16
        x = x &* 0x7FEB_352D
        x ^= x >> 15
        x = x &* 0x846C_A68B
        x ^= x >> 16
        return x
    }

    let stream: UInt64
    var a: UInt32 { UInt32(truncatingIfNeeded: stream) }
    var b: UInt32 { UInt32(truncatingIfNeeded: stream >> 32) }

    public init(seed: UInt64, tensor: String, input: Int) {
        stream = CounterRandom.mix(seed ^ CounterRandom.mix(CounterRandom.fnv1a(tensor) ^ CounterRandom.mix(UInt64(input) &+ 1)))
    }

    /// The 32 random bits of element `index` (< 2³²).
    public func bits(_ index: Int) -> UInt32 {
        CounterRandom.lowbias32(CounterRandom.lowbias32(UInt32(truncatingIfNeeded: index) ^ a) &+ b)
    }

    /// bits(start + k) for k < count, written to `out` (vectorised).
    func fill(_ out: UnsafeMutablePointer<UInt32>, count: Int, start: Int) {
        precondition(start >= 0 && start + count <= 1 << 32, "DARE's random stream covers tensors of up to 2³² elements")
        BLAS.randomBits(out, count: count, a: a, b: b, start: UInt32(truncatingIfNeeded: start))
    }

    /// The threshold on `bits` that drops with probability `p` ∈ [0, 1): ⌊p · 2³²⌋.
    static func threshold(dropProbability p: Double) -> UInt32 {
        UInt32(min(4_294_967_295, (p * 4_294_967_296.0).rounded(.down)))
    }
}
