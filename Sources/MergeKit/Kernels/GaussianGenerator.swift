#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Standard normal numbers from SplitMix64 (Vigna) and the Box–Muller transform, both outputs
/// used. Deterministic for a seed; the random test matrices of the randomized SVD.
struct GaussianGenerator: Sendable {
    private var state: UInt64
    private var spare: Double?

    init(seed: UInt64) { state = seed }

    /// The next SplitMix64 output.
    mutating func nextBits() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal number.
    mutating func next() -> Double {
        if let value = spare {
            spare = nil
            return value
        }
        // u1 in (0, 1] so that log(u1) is finite; u2 in [0, 1).
        let u1 = Double((nextBits() >> 11) + 1) * 0x1p-53
        let u2 = Double(nextBits() >> 11) * 0x1p-53
        let radius = (-2 * log(u1)).squareRoot()
        let angle = 2 * Double.pi * u2
        spare = radius * sin(angle)
        return radius * cos(angle)
    }
}
