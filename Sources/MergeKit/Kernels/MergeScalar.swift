/// The element types merge kernels run on (`Float`, `Double`): BLAS operations, dtype
/// conversions, and an order-preserving integer key of |x| for exact magnitude selection.
public protocol MergeScalar: ComputeScalar, TensorElement, ElementwiseKernels {
    /// Bits of `magnitudeKey` (32 for Float, 64 for Double).
    static var magnitudeKeyBits: Int { get }
    /// The bit pattern of |x|: for non-negative floats, integer order equals value order
    /// (+0 and −0 both map to 0; NaN maps above +∞, so NaNs count as the largest magnitudes,
    /// as they do in PyTorch's sort).
    static func magnitudeKey(_ x: Self) -> UInt64
    /// The 64-bit key of |x| as a Double (exact for Float), for selections over a model whose
    /// tensors mix Float and Double compute.
    static func wideMagnitudeKey(_ x: Self) -> UInt64
}

extension Float: MergeScalar {
    public static var magnitudeKeyBits: Int { 32 }
    @inline(__always)
    public static func magnitudeKey(_ x: Float) -> UInt64 { UInt64(x.bitPattern & 0x7FFF_FFFF) }
    @inline(__always)
    public static func wideMagnitudeKey(_ x: Float) -> UInt64 { Double(x).bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
}

extension Double: MergeScalar {
    public static var magnitudeKeyBits: Int { 64 }
    @inline(__always)
    public static func magnitudeKey(_ x: Double) -> UInt64 { x.bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
    @inline(__always)
    public static func wideMagnitudeKey(_ x: Double) -> UInt64 { magnitudeKey(x) }
}
