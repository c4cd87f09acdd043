import Testing
@testable import MergeKit

/// TIES's vector trim and threshold-histogram kernels (`BLAS.zeroBelow`, `BLAS.bracketCount`):
/// every build this CPU can run gives exactly what the plain loops (`zeroBelowBody`,
/// `bracketCountBody`) give, on keys that straddle the thresholds, signed zeros, ±∞ and NaN.
@Suite("Trim kernels: the plain loops' results in every build")
struct TrimKernelTests {
    static let lengths = [0, 1, 7, 15, 16, 17, 33, 100, 1000, 4099]

    /// Values drawn from a small set of magnitudes (so many keys tie a threshold exactly) with
    /// random signs, plus ±0, ±∞ and NaN.
    static func values(_ n: Int, _ rng: inout SplitMix64) -> [Float] {
        let magnitudes: [Float] = [0, 1e-30, 0.001, 0.25, 0.5, 0.5000001, 1, 3, 1e30, .infinity, .nan, .leastNonzeroMagnitude]
        return (0..<n).map { _ in
            let m = magnitudes[Int(rng.next() % UInt64(magnitudes.count))]
            return rng.next() % 2 == 0 ? m : -m
        }
    }

    @Test("zeroBelow: the loop's bits in every build", arguments: lengths)
    func zeroBelow(n: Int) {
        var rng = SplitMix64(seed: UInt64(n) &+ 31)
        let x = Self.values(n, &rng)
        for threshold in [Float(0.5), 0.001, 1e30, .infinity, 0].map({ UInt32($0.bitPattern) }) + [0x7FC0_0001, 0xFFFF_FFFF] {
            var expected = x
            expected.withUnsafeMutableBufferPointer { zeroBelowBody($0, UInt64(threshold), wide: false) }
            for level in LevelOneKernelTests.levels {
                var got = x
                got.withUnsafeMutableBufferPointer { BLAS.zeroBelow($0, threshold: threshold, level: level) }
                #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "n = \(n), threshold \(threshold), level \(level)")
            }
        }
    }

    @Test("bracketCount: the loop's counts in every build", arguments: lengths)
    func bracketCount(n: Int) {
        var rng = SplitMix64(seed: UInt64(n) &+ 32)
        let x = Self.values(n, &rng)
        let half = UInt32(Float(0.5).bitPattern)
        // Brackets around a tied key, at the bottom of the key range, and one holding ∞ and NaN keys.
        for (low, span) in [(half - 2, UInt32(8)), (0, 16), (UInt32(Float.infinity.bitPattern) - 1, 0x0040_0004), (half + 1, 0)] {
            var expectedCounts = [Int](repeating: 0, count: Int(span) + 1)
            let expectedBelow = x.withUnsafeBufferPointer { xp in
                expectedCounts.withUnsafeMutableBufferPointer { bracketCountBody(xp, UInt64(low), UInt64(low) + UInt64(span), $0.baseAddress!) }
            }
            for level in LevelOneKernelTests.levels {
                var counts = [Int](repeating: 0, count: Int(span) + 1)
                let below = x.withUnsafeBufferPointer { xp in
                    counts.withUnsafeMutableBufferPointer { BLAS.bracketCount(xp, low: low, span: span, into: $0.baseAddress!, level: level) }
                }
                #expect(below == expectedBelow, "n = \(n), low \(low), level \(level)")
                #expect(counts == expectedCounts, "n = \(n), low \(low), level \(level)")
            }
        }
        // Through the protocol (what the statistics pass calls), counts added to what is there.
        var counts = [Int](repeating: 1, count: 9)
        let below = x.withUnsafeBufferPointer { xp in counts.withUnsafeMutableBufferPointer { Float.bracketCount(xp, low: UInt64(half - 2), high: UInt64(half + 6), into: $0.baseAddress!) } }
        #expect(below == x.filter { $0.bitPattern & 0x7FFF_FFFF < half - 2 }.count)
        #expect(counts[2] == 1 + x.filter { abs($0) == 0.5 }.count)
    }
}

/// Passthrough's one-pass bfloat16 scale (`BLAS.scaleRoundBFloat16`) against the three steps it
/// replaces: s·(d + b), rounded to bfloat16 by the library's rounding, minus b.
@Suite("Passthrough's bfloat16 scale kernel")
struct ScaleRoundKernelTests {
    @Test("Same bits as scale, round, subtract, in every build", arguments: TrimKernelTests.lengths)
    func sameBits(n: Int) {
        var rng = SplitMix64(seed: UInt64(n) &+ 33)
        // bf16 rounding ties (…8000 low halves), ±∞, NaN, values whose product overflows.
        let d: [Float] = (0..<n).map { k in
            switch k % 9 {
            case 0: return Float(bitPattern: 0x3F80_8000)
            case 1: return .infinity
            case 2: return .nan
            case 3: return 3e38
            default: return Float((rng.value() * 2 - 1) * Double(1 << (rng.next() % 10)))
            }
        }
        let b: [Float] = (0..<n).map { _ in Float.roundedToNarrow(Float(rng.value() * 2 - 1), .BF16) }
        for s in [Float(0.5), 0.3, 0, -1.7, 2] {
            var expected = zip(d, b).map { s * ($0 + $1) }
            expected.withUnsafeMutableBufferPointer { Float.roundToNarrow($0, .BF16) }
            expected = zip(expected, b).map { $0 - $1 }
            for level in LevelOneKernelTests.levels {
                var got = [Float](repeating: 0, count: n)
                d.withUnsafeBufferPointer { dp in b.withUnsafeBufferPointer { bp in got.withUnsafeMutableBufferPointer {
                    BLAS.scaleRoundBFloat16(dp, base: bp, scale: s, into: $0, level: level)
                } } }
                #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "n = \(n), s = \(s), level \(level)")
            }
        }
    }
}

/// TIES's one-pass election and disjoint merge (`BLAS.tiesMerge`) against the separate kernels it
/// replaces (sum, `electSigns`, `accumulateAgreeing`, `divideByCount`/`divideByWeights`,
/// `countResolvedTies`), in every build.
@Suite("TIES's one-pass merge kernel")
struct TiesMergeKernelTests {
    /// Entries that cancel exactly (S = 0), signed zeros, NaN and ∞ among random values.
    static func deltas(_ m: Int, _ n: Int, _ rng: inout SplitMix64) -> [[Float]] {
        var d = (0..<m).map { _ in (0..<n).map { _ in Float((rng.value() * 2 - 1) * Double(1 << (rng.next() % 6))) } }
        for k in 0..<n where k % 7 == 0 && m >= 2 { d[1][k] = -d[0][k]; for j in 2..<m { d[j][k] = 0 } }
        for k in 0..<n where k % 11 == 3 { d[0][k] = -0.0 }
        for k in 0..<n where k % 13 == 5 { d[m - 1][k] = k % 2 == 0 ? .nan : -.infinity }
        return d
    }

    static func reference(_ d: [[Float]], increments: [Float], aggregation: TaskVectorMerge.Aggregation, tie: Float) -> (out: [Float], votes: Int, resolved: Int) {
        let n = d[0].count
        var total = [Float](repeating: 0, count: n), sign = total, out = total, count = total
        var votes = 0
        total.withUnsafeMutableBufferPointer { t in
            for x in d { x.withUnsafeBufferPointer { Float.axpy(1, $0, t) } }
            votes = sign.withUnsafeMutableBufferPointer { Float.electSigns(UnsafeBufferPointer(t), into: $0, tie: tie) }
        }
        for (x, increment) in zip(d, increments) {
            x.withUnsafeBufferPointer { xp in sign.withUnsafeBufferPointer { sp in out.withUnsafeMutableBufferPointer { op in count.withUnsafeMutableBufferPointer {
                Float.accumulateAgreeing(xp, sign: sp, out: op, count: $0, increment: increment)
            } } } }
        }
        out.withUnsafeMutableBufferPointer { op in count.withUnsafeBufferPointer {
            switch aggregation {
            case .mean: Float.divideByCount(op, count: $0, scale: 1)
            case .normalized: Float.divideByWeights(op, weights: $0, scale: 1)
            default: break
            }
        } }
        let resolved = total.withUnsafeBufferPointer { t in out.withUnsafeBufferPointer { Float.countResolvedTies(t, out: $0) } }
        return (out, votes, resolved)
    }

    @Test("Same bits, votes and tie counts as the separate kernels", arguments: [(1, 5), (2, 16), (3, 1000), (4, 4099), (3, 33)])
    func sameBits(m: Int, n: Int) {
        var rng = SplitMix64(seed: UInt64(m * 10_000 + n))
        let d = Self.deltas(m, n, &rng)
        for aggregation in [TaskVectorMerge.Aggregation.sum, .mean, .normalized] {
            let increments: [Float] = aggregation == .normalized ? (0..<m).map { Float($0) * 0.5 + 0.25 } : Array(repeating: 1, count: m)
            for tie: Float in [1, -1] {
                let expected = Self.reference(d, increments: increments, aggregation: aggregation, tie: tie)
                for level in LevelOneKernelTests.levels {
                    var out = [Float](repeating: 7, count: n)
                    var resolved = -1
                    let buffers = (0..<m).map { _ in UnsafeMutableBufferPointer<Float>.allocate(capacity: n) }
                    defer { buffers.forEach { $0.deallocate() } }
                    for i in 0..<m { _ = buffers[i].initialize(from: d[i]) }
                    let got = out.withUnsafeMutableBufferPointer {
                        BLAS.tiesMerge(buffers, increments: increments, aggregation: aggregation == .sum ? 0 : aggregation == .mean ? 1 : 2,
                                       tie: tie, into: $0, resolved: &resolved, level: level)
                    }
                    #expect(out.map(\.bitPattern) == expected.out.map(\.bitPattern), "m \(m) n \(n) \(aggregation) tie \(tie) level \(level)")
                    #expect(got == expected.votes)
                    #expect(resolved == expected.resolved)
                }
            }
        }
    }
}
