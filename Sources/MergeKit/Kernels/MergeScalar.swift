/// The element types merge kernels run on (`Float`, `Double`): BLAS operations, dtype
/// conversions, and an order-preserving integer key of |x| for exact magnitude selection.
public protocol MergeScalar: ComputeScalar, TensorElement, ElementwiseKernels {
    /// The unsigned integer of the type's width (UInt32 for Float): magnitude bits in vectorised
    /// reductions.
    associatedtype MagnitudeBits: FixedWidthInteger & UnsignedInteger
    /// Bits of `magnitudeKey` (32 for Float, 64 for Double).
    static var magnitudeKeyBits: Int { get }
    /// The bit pattern of |x|: for non-negative floats, integer order equals value order
    /// (+0 and −0 both map to 0; NaN maps above +∞, so NaNs count as the largest magnitudes,
    /// as they do in PyTorch's sort).
    static func magnitudeKey(_ x: Self) -> UInt64
    /// The 64-bit key of |x| as a Double (exact for Float), for selections over a model whose
    /// tensors mix Float and Double compute.
    static func wideMagnitudeKey(_ x: Self) -> UInt64
    /// `magnitudeKey(+∞)`: keys at or above it are ±∞ and NaN.
    static var infinityKey: UInt64 { get }
    /// The smallest magnitude key whose value is stored as ±∞ or NaN in `dtype` (values that round
    /// past the dtype's largest finite number included): a computed result with a key below it
    /// is written as a finite value.
    static func overflowKey(storingAs dtype: DType) -> UInt64
    /// Rounds every value to the nearest `dtype` value (F16 or BF16; ties to even, as PyTorch
    /// casts), kept in this type: the emulation of arithmetic in a 16-bit dtype (`ComputeDType`).
    static func roundToNarrow(_ x: UnsafeMutableBufferPointer<Self>, _ dtype: DType)
    /// The dtype that stores this type's values as they are (F32 for Float, F64 for Double).
    static var dtype: DType { get }
}

extension Float: MergeScalar {
    public typealias MagnitudeBits = UInt32
    public static var magnitudeKeyBits: Int { 32 }
    public static var dtype: DType { .F32 }
    public static var infinityKey: UInt64 { 0x7F80_0000 }
    public static func overflowKey(storingAs dtype: DType) -> UInt64 {
        switch dtype {
        // bf16 rounds (u + 0x7FFF + lsb) >> 16: from 0x7F7F8000 on (lsb 1) that reaches 0x7F80 (∞).
        case .BF16: return 0x7F7F_8000
        // 65520 = 65504 + half an ulp rounds (to even) to ∞ in binary16.
        case .F16: return 0x477F_F000
        default: return infinityKey
        }
    }
    @inline(__always)
    public static func magnitudeKey(_ x: Float) -> UInt64 { UInt64(x.bitPattern & 0x7FFF_FFFF) }
    @inline(__always)
    public static func wideMagnitudeKey(_ x: Float) -> UInt64 { Double(x).bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
}

extension Double: MergeScalar {
    public typealias MagnitudeBits = UInt64
    public static var magnitudeKeyBits: Int { 64 }
    public static var dtype: DType { .F64 }
    public static var infinityKey: UInt64 { 0x7FF0_0000_0000_0000 }
    public static func overflowKey(storingAs dtype: DType) -> UInt64 {
        switch dtype {
        // Double → 16-bit types round to a Float *to odd* first, which keeps values below the
        // Float threshold below it; so the thresholds are the Float ones, exactly.
        case .BF16, .F16: return Double(Float(bitPattern: UInt32(Float.overflowKey(storingAs: dtype)))).bitPattern
        // Half-way between Float's largest finite value (odd significand) and 2¹²⁸ rounds to ∞.
        case .F32: return (Double(Float.greatestFiniteMagnitude) + Double(Float.greatestFiniteMagnitude.ulp) / 2).bitPattern
        default: return infinityKey
        }
    }
    @inline(__always)
    public static func magnitudeKey(_ x: Double) -> UInt64 { x.bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
    @inline(__always)
    public static func wideMagnitudeKey(_ x: Double) -> UInt64 { magnitudeKey(x) }
}
