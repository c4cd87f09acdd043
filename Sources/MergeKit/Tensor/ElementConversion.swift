/// Conversions between a tensor's stored dtype (little-endian, any alignment) and the compute
/// types `Float` and `Double`.
///
/// - bf16 -> f32 is a 16-bit shift; f32 -> bf16 rounds to nearest even exactly as PyTorch does
///   (`c10::round_to_nearest_even`: NaN becomes 0x7FC0, everything else `(u + 0x7FFF + lsb) >> 16`).
/// - f16 <-> f32 goes through the C shim: F16C instructions when the CPU has them, else a
///   bit-exact portable routine (both round to nearest even).
/// - Double -> 16-bit types first rounds to a Float *to odd*, then to the target: with Float's 13+
///   spare bits this gives the correctly rounded result without double rounding.
public protocol TensorElement {
    /// Converts `count` stored elements of `dtype` at `source` into `destination`.
    static func load(_ source: UnsafeRawPointer, dtype: DType, count: Int, into destination: UnsafeMutablePointer<Self>)
    /// destination = (stored values of `dtype` at `source`) − base, in one pass: the task vector
    /// of a fine-tuned chunk, without a separate subtraction. Returns whether every difference is
    /// finite (checked in the same pass): false when the value or the base holds a NaN or ±∞
    /// somewhere, or a difference overflows.
    @discardableResult
    static func loadDifference(_ source: UnsafeRawPointer, dtype: DType, count: Int, minus base: UnsafePointer<Self>,
                               into destination: UnsafeMutablePointer<Self>) -> Bool
    /// Converts `count` values to `dtype`, writing little-endian bytes at `destination`.
    static func store(_ source: UnsafePointer<Self>, count: Int, as dtype: DType, into destination: UnsafeMutableRawPointer)
}

extension Float: TensorElement {
    public static func load(_ source: UnsafeRawPointer, dtype: DType, count: Int, into destination: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .F32:
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
        case .BF16:
            for i in 0..<count {
                let h = source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian
                destination[i] = Float(bitPattern: UInt32(h) << 16)
            }
        case .F16:
            BLAS.halfToFloat(source, destination, count: count)
        case .F64:
            for i in 0..<count {
                destination[i] = Float(Double(bitPattern: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian))
            }
        default:
            preconditionFailure("\(dtype) is not a float dtype MergeKit computes with")
        }
    }

    @discardableResult
    public static func loadDifference(_ source: UnsafeRawPointer, dtype: DType, count: Int, minus base: UnsafePointer<Float>,
                                      into destination: UnsafeMutablePointer<Float>) -> Bool {
        // Whether some difference is non-finite, reduced in the conversion loop itself (see
        // `reachesBody`: the exponent field plus one ulp of it sets the sign bit only when all ones).
        var nonFinite: UInt32 = 0
        switch dtype {
        case .BF16:
            if let nonFiniteSeen = BLAS.bfloat16Difference(source, minus: base, into: destination, count: count) { return !nonFiniteSeen }
            for i in 0..<count {
                let h = source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian
                let d = Float(bitPattern: UInt32(h) << 16) - base[i]
                destination[i] = d
                nonFinite |= (d.bitPattern & 0x7F80_0000) &+ 0x0080_0000
            }
        case .F32:
            if let nonFiniteSeen = BLAS.float32Difference(source, minus: base, into: destination, count: count) { return !nonFiniteSeen }
            for i in 0..<count {
                let d = Float(bitPattern: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian) - base[i]
                destination[i] = d
                nonFinite |= (d.bitPattern & 0x7F80_0000) &+ 0x0080_0000
            }
        default:
            load(source, dtype: dtype, count: count, into: destination)
            for i in 0..<count {
                let d = destination[i] - base[i]
                destination[i] = d
                nonFinite |= (d.bitPattern & 0x7F80_0000) &+ 0x0080_0000
            }
        }
        return nonFinite & 0x8000_0000 == 0
    }

    public static func store(_ source: UnsafePointer<Float>, count: Int, as dtype: DType, into destination: UnsafeMutableRawPointer) {
        switch dtype {
        case .F32:
            destination.copyMemory(from: source, byteCount: count * 4)
        case .BF16:
            BLAS.floatToBFloat16(source, destination, count: count)
        case .F16:
            BLAS.floatToHalf(source, destination, count: count)
        case .F64:
            for i in 0..<count {
                destination.storeBytes(of: Double(source[i]).bitPattern.littleEndian, toByteOffset: 8 * i, as: UInt64.self)
            }
        default:
            preconditionFailure("\(dtype) is not a float dtype MergeKit writes")
        }
    }
}

extension Double: TensorElement {
    public static func load(_ source: UnsafeRawPointer, dtype: DType, count: Int, into destination: UnsafeMutablePointer<Double>) {
        switch dtype {
        case .F64:
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 8)
        case .F32:
            for i in 0..<count {
                destination[i] = Double(Float(bitPattern: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian))
            }
        case .BF16:
            for i in 0..<count {
                let h = source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian
                destination[i] = Double(Float(bitPattern: UInt32(h) << 16))
            }
        case .F16:
            withBlocks(count) { start, n, block in
                BLAS.halfToFloat(source + 2 * start, block, count: n)
                for j in 0..<n { destination[start + j] = Double(block[j]) }
            }
        default:
            preconditionFailure("\(dtype) is not a float dtype MergeKit computes with")
        }
    }

    @discardableResult
    public static func loadDifference(_ source: UnsafeRawPointer, dtype: DType, count: Int, minus base: UnsafePointer<Double>,
                                      into destination: UnsafeMutablePointer<Double>) -> Bool {
        load(source, dtype: dtype, count: count, into: destination)
        var nonFinite: UInt64 = 0
        for i in 0..<count {
            let d = destination[i] - base[i]
            destination[i] = d
            nonFinite |= (d.bitPattern & 0x7FF0_0000_0000_0000) &+ 0x0010_0000_0000_0000
        }
        return nonFinite & 0x8000_0000_0000_0000 == 0
    }

    public static func store(_ source: UnsafePointer<Double>, count: Int, as dtype: DType, into destination: UnsafeMutableRawPointer) {
        switch dtype {
        case .F64:
            destination.copyMemory(from: source, byteCount: count * 8)
        case .F32:
            for i in 0..<count {
                destination.storeBytes(of: Float(source[i]).bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
            }
        case .BF16:
            for i in 0..<count {
                destination.storeBytes(of: bfloat16Bits(floatRoundedToOdd(source[i])).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        case .F16:
            withBlocks(count) { start, n, block in
                for j in 0..<n { block[j] = floatRoundedToOdd(source[start + j]) }
                BLAS.floatToHalf(block, destination + 2 * start, count: n)
            }
        default:
            preconditionFailure("\(dtype) is not a float dtype MergeKit writes")
        }
    }
}

/// The bf16 bit pattern of `x`, rounded to nearest even (PyTorch's rule; NaN -> 0x7FC0).
@inline(__always)
func bfloat16Bits(_ x: Float) -> UInt16 {
    let u = x.bitPattern
    let isNaN = (u & 0x7FFF_FFFF) > 0x7F80_0000
    let rounded = UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    return isNaN ? 0x7FC0 : rounded
}

/// `x` rounded to a Float with round-to-odd (truncate, then set the last bit if inexact), the
/// standard first step of a double-rounding-free Double -> 16-bit float conversion.
@inline(__always)
func floatRoundedToOdd(_ x: Double) -> Float {
    if x.isNaN { return Float.nan }
    var f = Float(x)
    if Double(f) == x { return f }
    if abs(Double(f)) > abs(x) { f = f > 0 ? f.nextDown : f.nextUp }
    return Float(bitPattern: f.bitPattern | 1)
}

/// Runs `body` over `count` elements in blocks of at most 256, with a scratch Float buffer.
@inline(__always)
private func withBlocks(_ count: Int, _ body: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { block in
        var start = 0
        while start < count {
            let n = min(256, count - start)
            body(start, n, block.baseAddress!)
            start += n
        }
    }
}
