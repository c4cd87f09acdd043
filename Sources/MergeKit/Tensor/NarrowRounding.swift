/// Rounding to a 16-bit float in place (`MergeScalar.roundToNarrow`), for arithmetic emulated in
/// a 16-bit dtype (`ComputeDType`): each value becomes the F16 or BF16 value a PyTorch cast gives
/// (round to nearest, ties to even; values past the largest finite one become ±∞), still held as
/// a Float or Double.
///
/// Floats go through the output conversions and back, a block of 256 at a time in a stack buffer
/// (F16C and AVX2 where the CPU has them), so the rounding is the very one outputs are stored
/// with. A Double is first rounded to a Float *to odd* (`floatRoundedToOdd`), which makes the
/// second rounding exact.
extension Float {
    public static func roundToNarrow(_ x: UnsafeMutableBufferPointer<Float>, _ dtype: DType) {
        guard let start = x.baseAddress else { return }
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 256) { block in
            let bits = UnsafeMutableRawPointer(block.baseAddress!)
            var offset = 0
            while offset < x.count {
                let n = Swift.min(256, x.count - offset)
                store(start + offset, count: n, as: dtype, into: bits)
                load(bits, dtype: dtype, count: n, into: start + offset)
                offset += n
            }
        }
    }
}

extension Double {
    public static func roundToNarrow(_ x: UnsafeMutableBufferPointer<Double>, _ dtype: DType) {
        for k in x.indices {
            x[k] = Double(Float.roundedToNarrow(floatRoundedToOdd(x[k]), dtype))
        }
    }
}

extension MergeScalar {
    /// `x` rounded to the nearest `dtype` value (`roundToNarrow`).
    static func roundedToNarrow(_ x: Self, _ dtype: DType) -> Self {
        var value = x
        withUnsafeMutablePointer(to: &value) { roundToNarrow(UnsafeMutableBufferPointer(start: $0, count: 1), dtype) }
        return value
    }
}
