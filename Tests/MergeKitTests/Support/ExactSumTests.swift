import Testing
@testable import MergeKit

@Suite("Exact sums")
struct ExactSumTests {
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
        var random = SplitMix64(seed: 7)
        for _ in 0..<200 {
            // Random sign, mantissa and exponent in 2^-40 … 2^40.
            let terms = (0..<64).map { _ in
                (random.next() & 1 == 0 ? 1.0 : -1.0) * (1 + random.uniform()) * Double(sign: .plus, exponent: random.next(in: -40...40), significand: 1)
            }
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
