import Foundation
import Testing
@testable import MergeKit

/// `MergeScalar.roundToNarrow`: the rounding of arithmetic emulated in a 16-bit dtype.
@Suite("Rounding to float16 and bfloat16 in place")
struct NarrowRoundingTests {
    /// The nearest value with `bits` significand bits (ties to even) and exponents from
    /// `minExponent` (subnormals below) to `maxExponent`, or ±∞ past the largest finite value:
    /// worked out in Double from the definition.
    static func nearest(_ x: Double, bits: Int, minExponent: Int, maxExponent: Int) -> Double {
        guard x.isFinite, x != 0 else { return x }
        let exponent = Swift.max(Int(x.exponent), minExponent)
        let quantum = Double(sign: .plus, exponent: exponent - (bits - 1), significand: 1)
        let scaled = x / quantum
        var q = scaled.rounded(.down)
        let rest = scaled - q
        if rest > 0.5 || (rest == 0.5 && q.truncatingRemainder(dividingBy: 2) != 0) { q += 1 }
        let value = q * quantum
        let largest = Double(sign: .plus, exponent: maxExponent, significand: 2 - Double(sign: .plus, exponent: -(bits - 1), significand: 1))
        return abs(value) > largest ? (x > 0 ? .infinity : -.infinity) : value
    }

    static func samples() -> [Float] {
        var random = SplitMix64(seed: 18)
        var values: [Float] = [0, -0.0, 1, -1, 65504, 65519.99, 65520, -65520, 1e-8, 2.9802322e-8, 5.9604645e-8, 6.1e-5,
                               1.0009765625 + 0.00048828125, 1 + 0.0009765625 * 1.5, 3.3895314e38, -3.4e38, .infinity, -.infinity]
        for _ in 0..<20000 {
            let bits = UInt32(truncatingIfNeeded: random.next())
            let value = Float(bitPattern: bits)
            if value.isFinite { values.append(value) }
        }
        for _ in 0..<5000 { values.append(Float(Double(random.next() % 1_000_000) / 1e6 - 0.5) * 0.01) }
        return values
    }

    @Test("Float rounds as the definition says: ties to even, subnormals, ±∞ past the largest value", arguments: [DType.F16, .BF16])
    func float(_ dtype: DType) {
        var values = Self.samples()
        let original = values
        values.withUnsafeMutableBufferPointer { Float.roundToNarrow($0, dtype) }
        for (x, r) in zip(original, values) {
            let expected = dtype == .F16 ? Self.nearest(Double(x), bits: 11, minExponent: -14, maxExponent: 15)
                                         : Self.nearest(Double(x), bits: 8, minExponent: -126, maxExponent: 127)
            #expect(Double(r) == expected && r.sign == x.sign, "\(x) → \(r), expected \(expected)")
        }
    }

    @Test("Double rounds to the same values as its exact value would (no double rounding through Float)", arguments: [DType.F16, .BF16])
    func double(_ dtype: DType) {
        // Halfway between two float16 (bfloat16) values plus a little less than a Float ulp: a
        // plain Double → Float conversion would land on the halfway point and round to even.
        let unit = dtype == .F16 ? 0.0009765625 : 0.0078125
        var values: [Double] = [1 + unit / 2 + 1e-12, 1 + unit / 2 - 1e-12, 1 + unit * 1.5, -(1 + unit / 2 + 1e-12)]
        let original = values
        values.withUnsafeMutableBufferPointer { Double.roundToNarrow($0, dtype) }
        let bits = dtype == .F16 ? 11 : 8, minExponent = dtype == .F16 ? -14 : -126, maxExponent = dtype == .F16 ? 15 : 127
        for (x, r) in zip(original, values) {
            #expect(r == Self.nearest(x, bits: bits, minExponent: minExponent, maxExponent: maxExponent), "\(x) → \(r)")
        }
        #expect(values[0] == 1 + unit && values[1] == 1 && values[2] == 1 + 2 * unit)
    }
}
