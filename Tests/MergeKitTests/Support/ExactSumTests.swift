import Testing
@testable import MergeKit

@Suite("Exact sums")
struct ExactSumTests {
    /// A deterministic generator (SplitMix64), so the cases are the same on every run.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        /// A value of random sign, mantissa and exponent in 2^-40 … 2^40.
        mutating func double() -> Double {
            let mantissa = Double(next() >> 11) / Double(1 << 53)
            let exponent = Int(next() % 81) - 40
            return (next() & 1 == 0 ? 1 : -1) * (1 + mantissa) * Double(sign: .plus, exponent: exponent, significand: 1)
        }
    }

    @Test("Known answers: cancellation, a half-way case, tiny terms a naive sum loses, zero and no terms")
    func knownAnswers() {
        func sum(_ xs: [Double]) -> Double {
            var s = ExactSum()
            xs.forEach { s.add($0) }
            return s.value
        }
        #expect(sum([]) == 0)
        #expect(sum([1e100, 1, -1e100]) == 1)          // naive: 0
        #expect(sum([1, 1e-16, 1e-16]) == 1.0000000000000002)   // naive: 1 (each tiny term rounds away); math.fsum agrees
        // Python's math.fsum (the same algorithm's reference) gives 2.7755575615628914e-17.
        #expect(sum([0.1, 0.2, 0.3, -0.6]) == 2.7755575615628914e-17)
        // 1 + 2^-53 is exactly half-way between 1 and its successor: ties to even (1); a further
        // tiny positive term makes it round up.
        #expect(sum([1, 0x1p-53]) == 1)
        #expect(sum([1, 0x1p-53, 0x1p-100]) == 1.0.nextUp)
        #expect(sum([-1, -0x1p-53, -0x1p-100]) == -(1.0.nextUp))
        #expect(sum([3, -3]) == 0)
    }

    @Test("The value does not depend on the order of the terms or on how they are split among partial sums")
    func orderIndependent() {
        var generator = Generator(state: 7)
        for _ in 0..<200 {
            let terms = (0..<64).map { _ in generator.double() }
            var forward = ExactSum()
            terms.forEach { forward.add($0) }
            var backward = ExactSum()
            terms.reversed().forEach { backward.add($0) }
            // Split as threads would: three partial sums over interleaved terms, combined.
            var parts = [ExactSum(), ExactSum(), ExactSum()]
            for (k, term) in terms.enumerated() { parts[(k * 7) % 3].add(term) }
            var combined = ExactSum()
            parts.reversed().forEach { combined.add($0) }
            #expect(forward.value == backward.value && forward.value == combined.value)
            // The naive sum is close (its error is bounded by n·ε·Σ|x|).
            let naive = terms.reduce(0, +)
            #expect(abs(forward.value - naive) <= 64 * Double.ulpOfOne * terms.reduce(0) { $0 + abs($1) })
        }
    }
}
