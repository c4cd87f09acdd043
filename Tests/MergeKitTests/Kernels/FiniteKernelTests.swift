import Foundation
import Testing
@testable import MergeKit

/// The vectorised finiteness checks agree with the conversions they guard: a value reaches
/// `overflowKey(storingAs: dtype)` exactly when storing it in `dtype` gives ±Inf or NaN.
@Suite("Finiteness kernels")
struct FiniteKernelTests {
    /// Values around every threshold (each ± a few ulps), plus ±0, ±Inf, NaN and ordinary values.
    static func probes<T: MergeScalar>(_: T.Type) -> [T] where T.MagnitudeBits == T.RawSignificand {
        var values: [T] = [0, -0, 1, -2.5, .infinity, -.infinity, .nan, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        for dtype in [DType.F16, .BF16, .F32, .F64] {
            let key = T.overflowKey(storingAs: dtype)
            var center = T(sign: .plus, exponentBitPattern: 0, significandBitPattern: 0)
            withUnsafeMutableBytes(of: &center) { raw in
                if T.self == Float.self { raw.storeBytes(of: UInt32(key), as: UInt32.self) } else { raw.storeBytes(of: key, as: UInt64.self) }
            }
            var v = center
            for _ in 0..<3 { v = v.nextDown }
            for _ in 0..<7 {
                values.append(v)
                values.append(-v)
                v = v.nextUp
            }
        }
        return values
    }

    func check<T: MergeScalar>(_: T.Type) where T.MagnitudeBits == T.RawSignificand {
        let values = Self.probes(T.self)
        for dtype in [DType.F16, .BF16, .F32, .F64] {
            let limit = T.overflowKey(storingAs: dtype)
            for value in values {
                var stored = [UInt8](repeating: 0, count: 8)
                var back = [Double](repeating: 0, count: 1)
                var source = [value]
                stored.withUnsafeMutableBytes { T.store(&source, count: 1, as: dtype, into: $0.baseAddress!) }
                stored.withUnsafeBytes { Double.load($0.baseAddress!, dtype: dtype, count: 1, into: &back) }
                let reached = [value].withUnsafeBufferPointer { T.reaches($0, key: limit) }
                #expect(reached == !back[0].isFinite, "\(T.self) \(value) as \(dtype): stored \(back[0]), reaches \(reached)")
                // The fused kernels agree with `reaches`.
                var out = [value]
                let added = out.withUnsafeMutableBufferPointer { o in [T.zero].withUnsafeBufferPointer { T.addBase($0, into: o, limit: limit) } }
                #expect(added == reached, "addBase \(T.self) \(value) \(dtype)")
                let scaled = out.withUnsafeMutableBufferPointer { o in
                    [value].withUnsafeBufferPointer { T.scaleAdd($0, scale: 1, base: nil, into: o, limit: limit) }
                }
                #expect(scaled == reached, "scaleAdd \(T.self) \(value) \(dtype)")
            }
        }
    }

    @Test("reaches(overflowKey) ⇔ the stored value is not finite, for Float and Double into every float dtype")
    func thresholds() {
        check(Float.self)
        check(Double.self)
    }

    @Test("The AVX2 kernels give the portable loops' bits and verdicts (lengths around the vector width, every special value)")
    func avx2MatchesPortable() throws {
        var rng = SplitMix64(seed: 11)
        let specials: [Float] = [.nan, .infinity, -.infinity, .greatestFiniteMagnitude, 65519, 65520, -0.0, 1e-45]
        for n in [0, 1, 7, 8, 9, 33, 1000] {
            for planted in [nil] + specials.map(Optional.some) {
                var values = (0..<n).map { _ in Float(rng.uniform() * 4 - 2) }
                let base = (0..<n).map { _ in Float(rng.uniform() * 2 - 1) }
                if let planted, n > 0 { values[rng.next(in: 0...(n - 1))] = planted }
                // bf16 and f32 differences
                let bf16 = values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
                var fast = [Float](repeating: 0, count: n), slow = fast
                let fastFlag = bf16.withUnsafeBytes { BLAS.bfloat16Difference($0.baseAddress!, minus: base, into: &fast, count: n) }
                let slowFlag = bf16.withUnsafeBytes { BLAS.bfloat16Difference($0.baseAddress!, minus: base, into: &slow, count: n, portable: true) }
                #expect(slowFlag == nil)
                if let fastFlag {
                    for i in 0..<n { slow[i] = Float(bitPattern: UInt32(bf16[i]) << 16) - base[i] }
                    #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern) && fastFlag == slow.contains { !$0.isFinite }, "bf16 n=\(n)")
                    let f32Flag = values.withUnsafeBytes { BLAS.float32Difference($0.baseAddress!, minus: base, into: &fast, count: n) }
                    for i in 0..<n { slow[i] = values[i] - base[i] }
                    #expect(fast.map(\.bitPattern) == slow.map(\.bitPattern) && f32Flag == slow.contains { !$0.isFinite }, "f32 n=\(n)")
                    for dtype in [DType.F16, .BF16, .F32] {
                        let limit = Float.overflowKey(storingAs: dtype)
                        var sums = values
                        let added = BLAS.addReaches(&sums, base: base, count: n, bias: reachBias(limit, UInt32.self))
                        let expected = (0..<n).map { values[$0] + base[$0] }
                        #expect(sums.map(\.bitPattern) == expected.map(\.bitPattern), "add n=\(n)")
                        #expect(added == expected.contains { Float.magnitudeKey($0) >= limit }, "add \(dtype) n=\(n)")
                        #expect(BLAS.reaches(values, count: n, bias: reachBias(limit, UInt32.self)) == values.contains { Float.magnitudeKey($0) >= limit })
                    }
                }
            }
        }
    }

    @Test("loadDifference reports a non-finite difference anywhere in a chunk, for every input dtype")
    func loadDifference() {
        for dtype in [DType.F16, .BF16, .F32, .F64] {
            let n = 37
            for bad in [nil, 0, 17, 36] as [Int?] {
                for kind in [Double.nan, .infinity, -.infinity] {
                    var values = (0..<n).map { Double($0) * 0.25 - 3 }
                    if let bad { values[bad] = kind }
                    var raw = [UInt8](repeating: 0, count: n * 8)
                    raw.withUnsafeMutableBytes { Double.store(values, count: n, as: dtype, into: $0.baseAddress!) }
                    let base = [Float](repeating: 0.5, count: n), baseD = [Double](repeating: 0.5, count: n)
                    var outF = [Float](repeating: 0, count: n), outD = [Double](repeating: 0, count: n)
                    let finiteF = raw.withUnsafeBytes { Float.loadDifference($0.baseAddress!, dtype: dtype, count: n, minus: base, into: &outF) }
                    let finiteD = raw.withUnsafeBytes { Double.loadDifference($0.baseAddress!, dtype: dtype, count: n, minus: baseD, into: &outD) }
                    #expect(finiteF == (bad == nil) && finiteD == (bad == nil), "\(dtype) \(String(describing: bad)) \(kind)")
                }
            }
        }
        // A difference of finite values that overflows is not finite either.
        var out = [Float](repeating: 0, count: 1)
        let huge = [Float.greatestFiniteMagnitude]
        let finite = huge.withUnsafeBytes { Float.loadDifference($0.baseAddress!, dtype: .F32, count: 1, minus: [-Float.greatestFiniteMagnitude], into: &out) }
        #expect(!finite && out[0] == .infinity)
    }
}
