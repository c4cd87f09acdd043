import Testing
@testable import MergeKit

/// Stored dtype <-> compute type conversions, checked exhaustively where the input space is small
/// (every 16-bit pattern) and against independent references elsewhere: Swift's own correctly
/// rounded `Float16` conversions, and a nearest-neighbour search done in exact Double arithmetic.
/// Randomness comes from a seeded SplitMix64, so a failure reproduces.
@Suite("Element conversion")
struct ElementConversionTests {
    // MARK: - Helpers

    enum Compute: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case float = "Float", double = "Double"
        var testDescription: String { rawValue }
    }

    /// The two 16-bit float formats, described independently of the code under test.
    enum Format16: Sendable {
        case f16, bf16

        /// Positive infinity's bit pattern.
        var infinityPattern: UInt16 { self == .f16 ? 0x7C00 : 0x7F80 }

        /// The value of a positive finite pattern, decoded from its fields; the infinity pattern
        /// stands for the next power of two (what rounding with an unbounded exponent would give),
        /// so overflow follows IEEE's rule: |x| at or past the midpoint max..2^emax+1 becomes inf.
        func value(_ p: UInt16) -> Double {
            let mantissaBits = self == .f16 ? 10 : 7
            let bias = self == .f16 ? 15 : 127
            let exponent = Int(p >> UInt16(mantissaBits))
            let mantissa = Double(Int(p) & ((1 << mantissaBits) - 1))
            let scale = Double(1 << mantissaBits)
            if exponent == 0 { return mantissa / scale * Self.pow2(1 - bias) }
            return (1 + mantissa / scale) * Self.pow2(exponent - bias)
        }

        static func pow2(_ e: Int) -> Double { Double(sign: .plus, exponent: e, significand: 1) }

        /// `x` rounded to nearest, ties to even mantissa, overflowing to infinity; nil for NaN.
        /// Brackets |x| between two neighbouring patterns by binary search and compares it with
        /// their midpoint, which (like every step here) is exact in Double.
        func rounded(_ x: Double) -> UInt16? {
            if x.isNaN { return nil }
            let sign: UInt16 = x.sign == .minus ? 0x8000 : 0
            let a = Swift.abs(x)
            if a >= value(infinityPattern) { return sign | infinityPattern }
            var lo: UInt16 = 0, hi = infinityPattern // value(lo) <= a < value(hi)
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2
                if value(mid) <= a { lo = mid } else { hi = mid }
            }
            let vlo = value(lo), vhi = value(hi)
            if vlo == a { return sign | lo }
            let midpoint = (vlo + vhi) / 2
            let p = a < midpoint ? lo : a > midpoint ? hi : (lo & 1 == 0 ? lo : hi)
            return sign | p
        }

        /// The midpoint between positive finite pattern `p` and the next one up (exact in Float
        /// and Double; for the largest finite value it is the overflow threshold).
        func midpointAbove(_ p: UInt16) -> Double { (value(p) + value(p + 1)) / 2 }
    }

    /// Little-endian bytes of `words`.
    static func bytes<W: FixedWidthInteger>(_ words: [W]) -> [UInt8] {
        words.map(\.littleEndian).withUnsafeBytes { Array($0) }
    }

    /// The little-endian words in `bytes`.
    static func words<W: FixedWidthInteger>(_ bytes: [UInt8], as _: W.Type = W.self) -> [W] {
        let count = bytes.count / MemoryLayout<W>.size
        return bytes.withUnsafeBytes { raw in
            (0..<count).map { W(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<W>.size, as: W.self)) }
        }
    }

    /// `values` stored as `dtype` by `T.store` at byte `offset` of a larger buffer; checks the
    /// bytes around the destination were left alone.
    static func stored<T: TensorElement>(_ values: [T], as dtype: DType, offset: Int = 0,
                                         sourceLocation: SourceLocation = #_sourceLocation) -> [UInt8] {
        let width = dtype.byteWidth!
        let end = offset + values.count * width
        let fill: UInt8 = 0xA5
        var buffer = [UInt8](repeating: fill, count: end + 16)
        if !values.isEmpty {
            buffer.withUnsafeMutableBytes { raw in
                values.withUnsafeBufferPointer { T.store($0.baseAddress!, count: values.count, as: dtype, into: raw.baseAddress! + offset) }
            }
        }
        #expect(buffer[..<offset].allSatisfy { $0 == fill } && buffer[end...].allSatisfy { $0 == fill },
                "\(T.self).store(as: \(dtype)) wrote outside its destination", sourceLocation: sourceLocation)
        return Array(buffer[offset..<end])
    }

    /// `bytes` of `dtype` loaded by `T.load` from byte `offset` of a larger buffer.
    static func loaded<T: TensorElement & BinaryFloatingPoint>(_ bytes: [UInt8], dtype: DType, as _: T.Type,
                                                               offset: Int = 0) -> [T] {
        let count = bytes.count / dtype.byteWidth!
        let source = [UInt8](repeating: 0x5A, count: offset) + bytes + [0x5A, 0x5A]
        var result = [T](repeating: 12345, count: count)
        if count > 0 {
            source.withUnsafeBytes { raw in
                result.withUnsafeMutableBufferPointer { T.load(raw.baseAddress! + offset, dtype: dtype, count: count, into: $0.baseAddress!) }
            }
        }
        return result
    }

    /// Collects the first few mismatches of a large comparison for one readable expectation.
    struct Mismatches {
        let label: String
        var count = 0
        var examples: [String] = []
        init(_ label: String) { self.label = label }
        mutating func record(_ description: @autoclosure () -> String) {
            count += 1
            if examples.count < 8 { examples.append(description()) }
        }
        func check(sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(count == 0, "\(label): \(count) mismatches, e.g. \(examples.joined(separator: "; "))", sourceLocation: sourceLocation)
        }
    }

    static func hex<W: FixedWidthInteger>(_ w: W) -> String {
        "0x" + String(w, radix: 16, uppercase: true)
    }

    /// Whether `actual` is what converting half `h` to Float must give, `expected` being Swift's
    /// conversion: same bits, or for NaN: NaN with h's sign and payload, and for a quiet NaN the
    /// exact bits (a signalling NaN may or may not be quietened).
    static func matchesHalfConversion(_ actual: Float, _ expected: Float, half h: UInt16) -> Bool {
        guard expected.isNaN else { return actual.bitPattern == expected.bitPattern }
        guard actual.isNaN, actual.sign == expected.sign else { return false }
        let payload = UInt32(h & 0x1FF) << 13
        if h & 0x200 != 0 { return actual.bitPattern == expected.bitPattern }
        return actual.bitPattern & 0x003F_FFFF == payload
    }

    /// Converts `source` in chunks of 1, 2, …, 19, 1, 2, … elements, so the F16C vector body and
    /// its scalar tail both run at every position.
    static func chunked(count: Int, _ convert: (_ start: Int, _ n: Int) -> Void) {
        var start = 0, size = 1
        while start < count {
            let n = min(size, count - start)
            convert(start, n)
            start += n
            size = size % 19 + 1
        }
    }

    // MARK: - F16 -> Float

    @Test("F16 -> Float: all 65536 half patterns equal Swift's Float(Float16), F16C and portable paths, unaligned source",
          arguments: [0, 1, 3])
    func halfToFloatAllPatterns(offset: Int) {
        let patterns = Array(0...UInt16.max)
        let source = [UInt8](repeating: 0xEE, count: offset) + Self.bytes(patterns)
        let n = patterns.count
        var viaLoad = [Float](repeating: 0, count: n)
        var viaChunks = [Float](repeating: 0, count: n)
        var viaPortable = [Float](repeating: 0, count: n)
        source.withUnsafeBytes { raw in
            let base = raw.baseAddress! + offset
            viaLoad.withUnsafeMutableBufferPointer { Float.load(base, dtype: .F16, count: n, into: $0.baseAddress!) }
            viaPortable.withUnsafeMutableBufferPointer { BLAS.halfToFloatPortable(base, $0.baseAddress!, count: n) }
            viaChunks.withUnsafeMutableBufferPointer { dst in
                Self.chunked(count: n) { start, k in Float.load(base + 2 * start, dtype: .F16, count: k, into: dst.baseAddress! + start) }
            }
        }
        for (label, actual) in [("Float.load(.F16)", viaLoad), ("Float.load(.F16) in chunks", viaChunks),
                                ("BLAS.halfToFloatPortable", viaPortable)] {
            var mismatches = Mismatches("\(label), offset \(offset)")
            for h in patterns {
                let expected = Float(Float16(bitPattern: h))
                let got = actual[Int(h)]
                if !Self.matchesHalfConversion(got, expected, half: h) {
                    mismatches.record("\(Self.hex(h)) -> \(Self.hex(got.bitPattern)), expected \(Self.hex(expected.bitPattern))")
                }
            }
            mismatches.check()
        }
    }

    @Test("F16 -> Float: the F16C and portable paths agree bit for bit on all 65536 patterns, signalling NaNs included")
    func halfToFloatPathsAgree() {
        let patterns = Array(0...UInt16.max)
        let source = Self.bytes(patterns)
        let viaLoad = Self.loaded(source, dtype: .F16, as: Float.self, offset: 1)
        var viaPortable = [Float](repeating: 0, count: patterns.count)
        source.withUnsafeBytes { raw in
            viaPortable.withUnsafeMutableBufferPointer { BLAS.halfToFloatPortable(raw.baseAddress!, $0.baseAddress!, count: patterns.count) }
        }
        var mismatches = Mismatches("Float.load(.F16) vs BLAS.halfToFloatPortable")
        for h in patterns where viaLoad[Int(h)].bitPattern != viaPortable[Int(h)].bitPattern {
            mismatches.record("\(Self.hex(h)): \(Self.hex(viaLoad[Int(h)].bitPattern)) vs \(Self.hex(viaPortable[Int(h)].bitPattern))")
        }
        // vcvtph2ps quietens a signalling NaN (sets 0x00400000); the portable routine must do the
        // same, or results would depend on the machine and on where an element falls in a call.
        mismatches.check()
    }

    @Test("F16 -> Double: all 65536 half patterns equal Swift's Double(Float16), across 256-element blocks, unaligned source")
    func halfToDoubleAllPatterns() {
        let patterns = Array(0...UInt16.max)
        // 65533 elements from pattern 3: not a multiple of the 256-element block nor of 8.
        let slice = Array(patterns[3...])
        let actual = Self.loaded(Self.bytes(slice), dtype: .F16, as: Double.self, offset: 1)
        var mismatches = Mismatches("Double.load(.F16)")
        for (i, h) in slice.enumerated() {
            let expected = Double(Float16(bitPattern: h))
            let ok = expected.isNaN ? actual[i].isNaN && actual[i].sign == expected.sign : actual[i].bitPattern == expected.bitPattern
            if !ok { mismatches.record("\(Self.hex(h)) -> \(actual[i]), expected \(expected)") }
        }
        mismatches.check()
    }

    // MARK: - Float -> F16

    /// Specials, the overflow and underflow thresholds, every half value, the midpoint above it
    /// and the floats on either side of that midpoint (both signs), and `randomCount` random bit
    /// patterns.
    static func floatToHalfInputs(randomCount: Int) -> [Float] {
        var inputs: [Float] = [
            0, -0, .infinity, -.infinity, .nan, -.nan, .signalingNaN, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC1_2345),
            65504, -65504, 65519.99, -65519.99, 65520, -65520, 65520.01, 65536, 1e10, .greatestFiniteMagnitude,
            0x1p-24, 0x1p-25, -0x1p-25, Float(0x1p-25).nextUp, Float(0x1p-25).nextDown, 3 * 0x1p-26, -3 * 0x1p-26,
            1023 * 0x1p-24, 0x1p-14, Float(0x1p-14).nextDown, 0x1.ffcp-15, 0x1.ffep-15, .leastNonzeroMagnitude,
            .leastNormalMagnitude, 1, -1, 0.1, 1.0009765625, 1.00048828125, 1.00146484375, 2049, 2051,
        ]
        for p in UInt16(0)..<0x7C00 {
            let v = Float(Format16.f16.value(p))
            let m = Float(Format16.f16.midpointAbove(p))
            for x in [v, m, m.nextDown, m.nextUp] { inputs.append(x); inputs.append(-x) }
        }
        var rng = SplitMix64(seed: 0xF16)
        for _ in 0..<randomCount {
            let bits = UInt32(truncatingIfNeeded: rng.next())
            // Half the samples land in or near half's range, where rounding is interesting.
            if bits & 1 == 0 {
                inputs.append(Float(bitPattern: bits))
            } else {
                let exponent = UInt32(rng.next(in: 100...145))
                inputs.append(Float(bitPattern: (bits & 0x807F_FFFF) | exponent << 23))
            }
        }
        return inputs
    }

    /// `inputs` stored as a 16-bit dtype three ways, each at an odd (unaligned) address: one
    /// `Float.store` call (the CPU-specific kernel where there is one), `Float.store` in chunks of
    /// 1–19 elements (vector and tail loops), and the shim's portable loop.
    static func storedThreeWays(_ inputs: [Float], as dtype: DType,
                                portable: (UnsafePointer<Float>, UnsafeMutableRawPointer, Int) -> Void)
        -> (store: [UInt16], chunks: [UInt16], portable: [UInt16]) {
        let n = inputs.count
        let viaStore: [UInt16] = words(stored(inputs, as: dtype, offset: 1))
        var chunkBytes = [UInt8](repeating: 0, count: 2 * n + 1)
        var portableBytes = [UInt8](repeating: 0, count: 2 * n + 1)
        inputs.withUnsafeBufferPointer { src in
            chunkBytes.withUnsafeMutableBytes { raw in
                chunked(count: n) { start, k in Float.store(src.baseAddress! + start, count: k, as: dtype, into: raw.baseAddress! + 1 + 2 * start) }
            }
            portableBytes.withUnsafeMutableBytes { portable(src.baseAddress!, $0.baseAddress! + 1, n) }
        }
        return (viaStore, words(Array(chunkBytes.dropFirst())), words(Array(portableBytes.dropFirst())))
    }

    @Test("Float -> F16: equals Swift's correctly rounded Float16(x) on specials, every rounding boundary and 1M random floats; F16C and portable; unaligned destination")
    func floatToHalf() {
        let inputs = Self.floatToHalfInputs(randomCount: 1_000_000)
        let (viaStore, viaChunks, viaPortable) = Self.storedThreeWays(inputs, as: .F16, portable: BLAS.floatToHalfPortable)
        for (label, actual) in [("Float.store(as: .F16)", viaStore), ("Float.store(as: .F16) in chunks", viaChunks),
                                ("BLAS.floatToHalfPortable", viaPortable)] {
            var mismatches = Mismatches(label)
            for (i, x) in inputs.enumerated() {
                let got = actual[i]
                let ok: Bool
                if x.isNaN {
                    ok = Float16(bitPattern: got).isNaN && (got & 0x8000 != 0) == (x.sign == .minus)
                } else {
                    ok = got == Float16(x).bitPattern
                }
                if !ok { mismatches.record("\(x) (\(Self.hex(x.bitPattern))) -> \(Self.hex(got)), expected \(Self.hex(Float16(x).bitPattern))") }
            }
            mismatches.check()
        }
        // The NaNs the two paths produce are the same too (the F16C instruction and the portable
        // code both keep the top payload bits and set the quiet bit).
        var nanMismatches = Mismatches("F16C vs portable NaN bits")
        for (i, x) in inputs.enumerated() where x.isNaN && viaStore[i] != viaPortable[i] {
            nanMismatches.record("\(Self.hex(x.bitPattern)): \(Self.hex(viaStore[i])) vs \(Self.hex(viaPortable[i]))")
        }
        nanMismatches.check()
    }

    @Test("Float -> F16 known answers: underflow and overflow thresholds, ties to even")
    func floatToHalfKnownAnswers() {
        let cases: [(Float, UInt16)] = [
            (0x1p-24, 0x0001),           // smallest subnormal half
            (0x1p-25, 0x0000),           // half of it: tie, to even (zero)
            (-0x1p-25, 0x8000),
            (Float(0x1p-25).nextUp, 0x0001),
            (3 * 0x1p-26, 0x0001),       // 0.75 ulp
            (3 * 0x1p-25, 0x0002),       // 1.5 ulp: tie, to even (2)
            (5 * 0x1p-25, 0x0002),       // 2.5 ulp: tie, to even (2)
            (1023 * 0x1p-24, 0x03FF),    // largest subnormal
            (0x1.ffcp-15, 0x0400),       // 1023.5 ulp: tie, to even (smallest normal)
            (0x1.ff8p-15, 0x03FF),       // 1023.25 ulp
            (1 + 0x1p-11, 0x3C00),       // tie between 1 and 1+2^-10: to even (1)
            (1 + 3 * 0x1p-11, 0x3C02),   // tie between 1+2^-10 and 1+2^-9: to even
            (65504, 0x7BFF),
            (65519.99, 0x7BFF),          // just below the overflow threshold
            (65520, 0x7C00),             // the threshold: tie, to even (inf)
            (-65520, 0xFC00),
        ]
        let actual: [UInt16] = Self.words(Self.stored(cases.map(\.0), as: .F16, offset: 1))
        var portable = [UInt16](repeating: 0, count: cases.count)
        cases.map(\.0).withUnsafeBufferPointer { src in
            portable.withUnsafeMutableBytes { BLAS.floatToHalfPortable(src.baseAddress!, $0.baseAddress!, count: cases.count) }
        }
        for (i, (x, expected)) in cases.enumerated() {
            #expect(actual[i] == expected, "\(x) -> \(Self.hex(actual[i])), expected \(Self.hex(expected))")
            #expect(UInt16(littleEndian: portable[i]) == expected, "portable: \(x) -> \(Self.hex(portable[i])), expected \(Self.hex(expected))")
        }
    }

    // MARK: - BF16

    @Test("BF16 -> Float and Double: all 65536 patterns are the upper half of a Float, unaligned source")
    func bfloat16LoadAllPatterns() {
        let patterns = Array(0...UInt16.max)
        let source = Self.bytes(patterns)
        let floats = Self.loaded(source, dtype: .BF16, as: Float.self, offset: 1)
        let doubles = Self.loaded(source, dtype: .BF16, as: Double.self, offset: 3)
        var floatMismatches = Mismatches("Float.load(.BF16)")
        var doubleMismatches = Mismatches("Double.load(.BF16)")
        for h in patterns {
            let expected = Float(bitPattern: UInt32(h) << 16)
            let f = floats[Int(h)], d = doubles[Int(h)]
            if f.bitPattern != expected.bitPattern { floatMismatches.record("\(Self.hex(h)) -> \(Self.hex(f.bitPattern))") }
            let dOK = expected.isNaN ? d.isNaN && d.sign == expected.sign : d.bitPattern == Double(expected).bitPattern
            if !dOK { doubleMismatches.record("\(Self.hex(h)) -> \(d)") }
        }
        floatMismatches.check()
        doubleMismatches.check()
    }

    /// Every bf16 value, its upper midpoint and the floats around it (both signs), specials, and
    /// random floats.
    static func floatToBFloat16Inputs(randomCount: Int) -> [Float] {
        var inputs: [Float] = [
            0, -0, .infinity, -.infinity, .nan, -.nan, .signalingNaN, Float(bitPattern: 0xFFC1_2345), Float(bitPattern: 0x7F80_0001),
            .greatestFiniteMagnitude, -.greatestFiniteMagnitude, Float(bitPattern: 0x7F7F_8000), Float(bitPattern: 0x7F7F_7FFF),
            Float(bitPattern: 0xFF7F_8000), Float(bitPattern: 0xFF7F_7FFF), .leastNonzeroMagnitude, -.leastNonzeroMagnitude,
            .leastNormalMagnitude, Float(bitPattern: 0x0000_8000), Float(bitPattern: 0x0001_8000), Float(bitPattern: 0x007F_FFFF),
        ]
        for h in UInt32(0)..<0x7F80 {
            for low: UInt32 in [0, 0x7FFF, 0x8000, 0x8001] {
                let u = h << 16 | low
                inputs.append(Float(bitPattern: u))
                inputs.append(Float(bitPattern: u | 0x8000_0000))
            }
        }
        var rng = SplitMix64(seed: 0xBF16)
        for _ in 0..<randomCount { inputs.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        return inputs
    }

    @Test("Float -> BF16: nearest even against a Double reference (overflow to inf from 0x7F7F8000, NaN -> 0x7FC0) on every halfway point and 1M random floats; AVX2 and portable paths, in chunks; unaligned destination")
    func floatToBFloat16() {
        let inputs = Self.floatToBFloat16Inputs(randomCount: 1_000_000)
        let (viaStore, viaChunks, viaPortable) = Self.storedThreeWays(inputs, as: .BF16, portable: BLAS.floatToBFloat16Portable)
        for (label, actual) in [("Float.store(as: .BF16)\(BLAS.hasAVX2 ? " (AVX2)" : "")", viaStore),
                                ("Float.store(as: .BF16) in chunks of 1-19", viaChunks),
                                ("BLAS.floatToBFloat16Portable", viaPortable)] {
            var mismatches = Mismatches(label)
            for (i, x) in inputs.enumerated() {
                let expected = Format16.bf16.rounded(Double(x)) ?? 0x7FC0
                if actual[i] != expected {
                    mismatches.record("\(x) (\(Self.hex(x.bitPattern))) -> \(Self.hex(actual[i])), expected \(Self.hex(expected))")
                }
            }
            mismatches.check()
        }
    }

    @Test("Float -> BF16 known answers: ties to even, PyTorch's overflow threshold, NaN")
    func floatToBFloat16KnownAnswers() {
        let cases: [(UInt32, UInt16)] = [
            (0x3F80_8000, 0x3F80), // 1 + 2^-8: tie between 1 (even) and 1 + 2^-7
            (0x3F81_8000, 0x3F82), // tie between 0x3F81 (odd) and 0x3F82
            (0x3F80_8001, 0x3F81),
            (0x3F81_7FFF, 0x3F81),
            (0x7F7F_7FFF, 0x7F7F), // just below the overflow threshold
            (0x7F7F_8000, 0x7F80), // the threshold: inf, as PyTorch
            (0xFF7F_8000, 0xFF80),
            (0x7F7F_FFFF, 0x7F80), // Float.greatestFiniteMagnitude
            (0x0000_8000, 0x0000), // subnormal tie to even (zero)
            (0x0001_8000, 0x0002),
            (0x7FC0_0000, 0x7FC0),
            (0xFFC1_2345, 0x7FC0), // any NaN, with any sign and payload
            (0x7F80_0001, 0x7FC0), // a signalling NaN that truncation would turn into inf
        ]
        let actual: [UInt16] = Self.words(Self.stored(cases.map { Float(bitPattern: $0.0) }, as: .BF16, offset: 3))
        for (i, (u, expected)) in cases.enumerated() {
            #expect(actual[i] == expected, "\(Self.hex(u)) -> \(Self.hex(actual[i])), expected \(Self.hex(expected))")
        }
    }

    // MARK: - Double

    @Test("F64 <-> Double is bit exact (NaN payloads included), unaligned source and destination")
    func doubleF64Exact() {
        var rng = SplitMix64(seed: 0xF64)
        var patterns: [UInt64] = [0, 0x8000_0000_0000_0000, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000,
                                  0x7FF8_0000_0000_0000, 0x7FF0_0000_0000_0001, 0xFFFF_FFFF_FFFF_FFFF, 1, 0x7FEF_FFFF_FFFF_FFFF]
        for _ in 0..<100_000 { patterns.append(rng.next()) }
        let source = Self.bytes(patterns)
        let loaded = Self.loaded(source, dtype: .F64, as: Double.self, offset: 5)
        #expect(loaded.map(\.bitPattern) == patterns)
        let restored = Self.stored(loaded, as: .F64, offset: 3)
        #expect(restored == source)
    }

    @Test("Double <-> F32: load is exact, store is Swift's correctly rounded Float(d)")
    func doubleF32() {
        var rng = SplitMix64(seed: 0xF32)
        var floatPatterns: [UInt32] = [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 1, 0x7F7F_FFFF, 0x0080_0000]
        for _ in 0..<100_000 { floatPatterns.append(UInt32(truncatingIfNeeded: rng.next())) }
        let loaded = Self.loaded(Self.bytes(floatPatterns), dtype: .F32, as: Double.self, offset: 1)
        var loadMismatches = Mismatches("Double.load(.F32)")
        for (i, u) in floatPatterns.enumerated() {
            let f = Float(bitPattern: u)
            let ok = f.isNaN ? loaded[i].isNaN && loaded[i].sign == f.sign : loaded[i].bitPattern == Double(f).bitPattern
            if !ok { loadMismatches.record("\(Self.hex(u)) -> \(loaded[i])") }
        }
        loadMismatches.check()

        // Doubles in and around Float's range, including the overflow and underflow edges.
        var doubles: [Double] = [0, -0, .infinity, -.infinity, .nan, 1e300, -1e300, 1e-300, -1e-300,
                                 Double(Float.greatestFiniteMagnitude), Double(Float.greatestFiniteMagnitude).nextUp,
                                 0x1.ffffffp127, 0x1.fffffefffffffp127, 0x1p-150, 0x1.0000000000001p-150, 0x1p-149 * 1.5]
        for _ in 0..<100_000 {
            let bits = rng.next()
            let exponent = UInt64(rng.next(in: (1023 - 152)...(1023 + 130)))
            doubles.append(Double(bitPattern: (bits & 0x800F_FFFF_FFFF_FFFF) | exponent << 52))
        }
        let stored: [UInt32] = Self.words(Self.stored(doubles, as: .F32, offset: 3))
        var storeMismatches = Mismatches("Double.store(as: .F32)")
        for (i, d) in doubles.enumerated() {
            let expected = Float(d)
            let got = Float(bitPattern: stored[i])
            let ok = d.isNaN ? got.isNaN : got.bitPattern == expected.bitPattern
            if !ok { storeMismatches.record("\(d) -> \(Self.hex(stored[i])), expected \(Self.hex(expected.bitPattern))") }
        }
        storeMismatches.check()
    }

    /// Doubles that sit a hair above or below a 16-bit midpoint, so close that converting to
    /// Float first lands exactly on the midpoint and a second round-to-nearest-even goes the wrong
    /// way (both signs of each).
    static func doubleRoundingTraps(_ format: Format16, rng: inout SplitMix64, count: Int) -> [Double] {
        var traps: [Double] = []
        for _ in 0..<count {
            let p = UInt16(rng.next(in: 0...Int(format.infinityPattern - 2)))
            let lo = format.value(p), hi = format.value(p + 1)
            let midpoint = (lo + hi) / 2
            // Far below half a Float ulp at the midpoint (>= 2^-25 of it; the midpoint is a normal
            // Float, or for bf16 subnormals a multiple of Float's 2^-149 spacing).
            let delta = midpoint * 0x1p-30
            // The side on which naive rounding errs: above the midpoint when ties go down (p even).
            let trap = p & 1 == 0 ? midpoint + delta : midpoint - delta
            traps.append(trap)
            traps.append(-trap)
        }
        return traps
    }

    /// What converting through Float with round-to-nearest twice gives: the wrong answer on traps.
    static func naiveDoubleRounding(_ d: Double, _ format: Format16) -> UInt16 {
        let f = Float(d)
        return format == .bf16 ? bfloat16Bits(f) : Float16(f).bitPattern
    }

    /// Random doubles spread over the format's range and beyond, specials, and the doubles next
    /// to every midpoint.
    static func doubleTo16Inputs(_ format: Format16, rng: inout SplitMix64, randomCount: Int) -> [Double] {
        let maxExponent = format == .f16 ? 17 : 129
        let minExponent = format == .f16 ? -27 : -136
        var inputs: [Double] = [0, -0, .infinity, -.infinity, .nan, -.nan, .signalingNaN, 1e300, -1e300, 1e-300, -1e-300,
                                .leastNonzeroMagnitude, .greatestFiniteMagnitude, Double(Float.greatestFiniteMagnitude),
                                Double(Float.greatestFiniteMagnitude).nextUp, 0x1p-150, 0x1p-149, 0x1.8p-149]
        for p in UInt16(0)..<format.infinityPattern where p % 3 == 0 || p >= format.infinityPattern - 4 {
            let m = format.midpointAbove(p)
            for x in [format.value(p), m, m.nextUp, m.nextDown] { inputs.append(x); inputs.append(-x) }
        }
        for _ in 0..<randomCount {
            let bits = rng.next()
            let exponent = UInt64(1023 + rng.next(in: minExponent...maxExponent))
            inputs.append(Double(bitPattern: (bits & 0x800F_FFFF_FFFF_FFFF) | exponent << 52))
        }
        return inputs
    }

    @Test("Double -> F16 and BF16 are correctly rounded (no double rounding through Float), unaligned destination",
          arguments: [Format16.f16, .bf16])
    func doubleTo16Bit(_ format: Format16) {
        let dtype: DType = format == .f16 ? .F16 : .BF16
        var rng = SplitMix64(seed: format == .f16 ? 0xD16 : 0xDBF16)
        let traps = Self.doubleRoundingTraps(format, rng: &rng, count: 5_000)

        // The traps are what they claim: d is not a Float, and rounding through Float misses.
        var notTraps = Mismatches("\(dtype) trap construction")
        for d in traps {
            let m = Float(d)
            let expected = format.rounded(d)!
            if Double(m) == d || Self.naiveDoubleRounding(d, format) == expected {
                notTraps.record("\(d)")
            }
        }
        notTraps.check()

        let inputs = traps + Self.doubleTo16Inputs(format, rng: &rng, randomCount: 100_000)
        let actual: [UInt16] = Self.words(Self.stored(inputs, as: dtype, offset: 1))
        var mismatches = Mismatches("Double.store(as: \(dtype))")
        var referenceDisagreements = Mismatches("reference vs Swift's Float16(Double)")
        for (i, d) in inputs.enumerated() {
            let got = actual[i]
            let ok: Bool
            if let expected = format.rounded(d) {
                ok = got == expected
                if format == .f16, Float16(d).bitPattern != expected {
                    referenceDisagreements.record("\(d): \(Self.hex(expected)) vs \(Self.hex(Float16(d).bitPattern))")
                }
            } else {
                ok = format == .bf16 ? got == 0x7FC0 : Float16(bitPattern: got).isNaN
            }
            if !ok { mismatches.record("\(d) -> \(Self.hex(got)), expected \(format.rounded(d).map { Self.hex($0) } ?? "NaN")") }
        }
        mismatches.check()
        referenceDisagreements.check()
    }

    @Test("Double -> BF16 known answer: a double just above a halfway point that Float rounds onto it")
    func doubleToBFloat16DoubleRoundingExample() {
        // 1 + 2^-8 is halfway between bf16 1.0 (0x3F80, even) and 1 + 2^-7 (0x3F81); 2^-40 more is
        // nearer 0x3F81, but Float(d) == 1 + 2^-8 exactly, which then ties to even 0x3F80.
        let d = 1 + 0x1p-8 + 0x1p-40
        #expect(Float(d) == 1 + 0x1p-8)
        #expect(bfloat16Bits(Float(d)) == 0x3F80)
        let actual: [UInt16] = Self.words(Self.stored([d, -d], as: .BF16, offset: 1))
        #expect(actual == [0x3F81, 0xBF81])
        let half: [UInt16] = Self.words(Self.stored([1 + 0x1p-11 + 0x1p-40], as: .F16, offset: 1))
        #expect(half == [0x3C01])
    }

    // MARK: - Round trips and special values

    /// Bit patterns of `dtype` (no NaNs) whose values the compute type represents exactly.
    static func representablePatterns(_ dtype: DType, _ compute: Compute, rng: inout SplitMix64) -> [UInt8] {
        switch dtype {
        case .F16:
            return Self.bytes(Array(0...UInt16.max).filter { !Float16(bitPattern: $0).isNaN })
        case .BF16:
            return Self.bytes(Array(0...UInt16.max).filter { !Float(bitPattern: UInt32($0) << 16).isNaN })
        case .F32:
            var patterns: [UInt32] = [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 1, 0x807F_FFFF, 0x7F7F_FFFF]
            while patterns.count < 100_000 {
                let u = UInt32(truncatingIfNeeded: rng.next())
                if !Float(bitPattern: u).isNaN { patterns.append(u) }
            }
            return Self.bytes(patterns)
        default:
            var patterns: [UInt64] = [0, 0x8000_0000_0000_0000, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000]
            while patterns.count < 100_000 {
                let d: Double
                if compute == .double {
                    d = Double(bitPattern: rng.next())
                } else {
                    d = Double(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())))
                }
                if !d.isNaN { patterns.append(d.bitPattern) }
            }
            if compute == .double { patterns.append(Double.leastNonzeroMagnitude.bitPattern) }
            return Self.bytes(patterns)
        }
    }

    static func roundTrip<T: TensorElement & BinaryFloatingPoint>(_ bytes: [UInt8], _ dtype: DType, as type: T.Type,
                                                                  sourceLocation: SourceLocation = #_sourceLocation) {
        for (loadOffset, storeOffset) in [(1, 3), (2, 1), (5, 7), (0, 0)] {
            let values = Self.loaded(bytes, dtype: dtype, as: T.self, offset: loadOffset)
            let restored = Self.stored(values, as: dtype, offset: storeOffset, sourceLocation: sourceLocation)
            #expect(restored == bytes, "\(dtype) via \(T.self): bytes changed (offsets \(loadOffset), \(storeOffset))",
                    sourceLocation: sourceLocation)
            let again = Self.loaded(restored, dtype: dtype, as: T.self, offset: storeOffset)
            let same = zip(values, again).allSatisfy { $0 == $1 && $0.sign == $1.sign }
            #expect(same, "\(dtype) via \(T.self): values changed", sourceLocation: sourceLocation)
        }
    }

    @Test("Representable values survive store -> load exactly, for every mergeable dtype and compute type, unaligned buffers",
          arguments: DType.mergeableTypes, Compute.allCases)
    func roundTrips(dtype: DType, compute: Compute) {
        var rng = SplitMix64(seed: 0x7217 &+ UInt64(dtype.bitWidth))
        let bytes = Self.representablePatterns(dtype, compute, rng: &rng)
        switch compute {
        case .float: Self.roundTrip(bytes, dtype, as: Float.self)
        case .double: Self.roundTrip(bytes, dtype, as: Double.self)
        }
    }

    /// The stored patterns of ±0, ±inf in `dtype`, and whether a pattern is a NaN, from Swift's
    /// own types (BF16 being the top half of a Float).
    static func specialPatterns(_ dtype: DType) -> (zero: UInt64, negativeZero: UInt64, infinity: UInt64, negativeInfinity: UInt64, isNaN: (UInt64) -> Bool) {
        func make(_ bits: (Double) -> UInt64, _ isNaN: @escaping (UInt64) -> Bool) -> (UInt64, UInt64, UInt64, UInt64, (UInt64) -> Bool) {
            (bits(0), bits(-0.0), bits(.infinity), bits(-.infinity), isNaN)
        }
        switch dtype {
        case .F16: return make({ UInt64(Float16($0).bitPattern) }, { Float16(bitPattern: UInt16($0)).isNaN })
        case .BF16: return make({ UInt64(Float($0).bitPattern >> 16) }, { Float(bitPattern: UInt32($0) << 16).isNaN })
        case .F32: return make({ UInt64(Float($0).bitPattern) }, { Float(bitPattern: UInt32($0)).isNaN })
        default: return make({ $0.bitPattern }, { Double(bitPattern: $0).isNaN })
        }
    }

    static func checkSpecialValues<T: TensorElement & BinaryFloatingPoint>(_ dtype: DType, as _: T.Type,
                                                                           sourceLocation: SourceLocation = #_sourceLocation) {
        let width = dtype.byteWidth!
        // Repeated so the F16C vector body (8 at a time) and the scalar tail both see each value.
        let once: [T] = [0, -0.0, .infinity, -.infinity, .nan, -.nan]
        let values = Array(repeating: once, count: 3).flatMap { $0 }
        let bytes = Self.stored(values, as: dtype, offset: 1, sourceLocation: sourceLocation)
        let patterns: [UInt64] = (0..<values.count).map { i in
            (0..<width).reduce(UInt64(0)) { $0 | UInt64(bytes[i * width + $1]) << (8 * $1) }
        }
        let special = Self.specialPatterns(dtype)
        for (i, v) in values.enumerated() {
            let p = patterns[i]
            let ok: Bool
            if v.isNaN {
                ok = special.isNaN(p) && (dtype != .BF16 || p == 0x7FC0)
            } else if v.isInfinite {
                ok = p == (v < 0 ? special.negativeInfinity : special.infinity)
            } else {
                ok = p == (v.sign == .minus ? special.negativeZero : special.zero)
            }
            #expect(ok, "\(T.self) \(v) stored as \(dtype) gave \(Self.hex(p))", sourceLocation: sourceLocation)
        }
        let back = Self.loaded(bytes, dtype: dtype, as: T.self, offset: 3)
        for (i, v) in values.enumerated() {
            let b = back[i]
            let ok = v.isNaN ? b.isNaN : b == v && b.sign == v.sign
            #expect(ok, "\(T.self) \(v) through \(dtype) came back as \(b)", sourceLocation: sourceLocation)
        }
        // Stored NaNs of any sign and payload load as NaN.
        let nanPatterns: [UInt64] = dtype == .F16 ? [0x7E00, 0xFE00, 0x7C01, 0xFDFF, 0x7FFF]
            : dtype == .BF16 ? [0x7FC0, 0xFFC0, 0x7F81, 0xFFFF, 0x7FA5]
            : dtype == .F32 ? [0x7FC0_0000, 0xFFC0_0000, 0x7F80_0001, 0xFFFF_FFFF]
            : [0x7FF8_0000_0000_0000, 0xFFF8_0000_0000_0000, 0x7FF0_0000_0000_0001, 0xFFFF_FFFF_FFFF_FFFF]
        let nanBytes = nanPatterns.flatMap { p in (0..<width).map { UInt8(truncatingIfNeeded: p >> (8 * $0)) } }
        let nans = Self.loaded(nanBytes, dtype: dtype, as: T.self, offset: 1)
        for (p, v) in zip(nanPatterns, nans) {
            #expect(special.isNaN(p) && v.isNaN, "\(dtype) \(Self.hex(p)) loaded into \(T.self) as \(v)", sourceLocation: sourceLocation)
        }
    }

    @Test("Special values 0, -0, ±inf, NaN for every mergeable dtype and both compute types",
          arguments: DType.mergeableTypes, Compute.allCases)
    func specialValues(dtype: DType, compute: Compute) {
        switch compute {
        case .float: Self.checkSpecialValues(dtype, as: Float.self)
        case .double: Self.checkSpecialValues(dtype, as: Double.self)
        }
    }
}
