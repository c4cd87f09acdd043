import CBLAS

/// The element types merges compute in: `Float` for F32/F16/BF16 tensors, `Double` whenever an
/// input or the output is F64 (so F64 never loses precision silently).
///
/// This file is the only one that imports `CBLAS`: every BLAS call of the library goes through the
/// static functions below. Counts are `Int` on the Swift side and checked to fit BLAS's 32-bit
/// integers (`blasint`); callers pass chunks far smaller than that.
public protocol ComputeScalar: BinaryFloatingPoint, Sendable where Self.RawSignificand: FixedWidthInteger {
    /// y ← αx + y
    static func axpy(_ alpha: Self, _ x: UnsafeBufferPointer<Self>, _ y: UnsafeMutableBufferPointer<Self>)
    /// x ← αx
    static func scal(_ alpha: Self, _ x: UnsafeMutableBufferPointer<Self>)
    /// xᵀy, accumulated by BLAS in the element type.
    static func dot(_ x: UnsafeBufferPointer<Self>, _ y: UnsafeBufferPointer<Self>) -> Self
    /// ‖x‖₂ (BLAS scales to avoid overflow).
    static func nrm2(_ x: UnsafeBufferPointer<Self>) -> Self
    /// Σ|xᵢ|
    static func asum(_ x: UnsafeBufferPointer<Self>) -> Self
    /// y ← x
    static func copy(_ x: UnsafeBufferPointer<Self>, _ y: UnsafeMutableBufferPointer<Self>)
}

@inline(__always)
private func blasCount(_ n: Int) -> blasint {
    precondition(n >= 0 && n <= Int(blasint.max), "BLAS vector length \(n) out of range")
    return blasint(n)
}

extension Float: ComputeScalar {
    @inline(__always)
    public static func axpy(_ alpha: Float, _ x: UnsafeBufferPointer<Float>, _ y: UnsafeMutableBufferPointer<Float>) {
        precondition(x.count == y.count)
        guard x.count > 0 else { return }
        cblas_saxpy(blasCount(x.count), alpha, x.baseAddress, 1, y.baseAddress, 1)
    }
    @inline(__always)
    public static func scal(_ alpha: Float, _ x: UnsafeMutableBufferPointer<Float>) {
        guard x.count > 0 else { return }
        cblas_sscal(blasCount(x.count), alpha, x.baseAddress, 1)
    }
    @inline(__always)
    public static func dot(_ x: UnsafeBufferPointer<Float>, _ y: UnsafeBufferPointer<Float>) -> Float {
        precondition(x.count == y.count)
        guard x.count > 0 else { return 0 }
        return cblas_sdot(blasCount(x.count), x.baseAddress, 1, y.baseAddress, 1)
    }
    @inline(__always)
    public static func nrm2(_ x: UnsafeBufferPointer<Float>) -> Float {
        guard x.count > 0 else { return 0 }
        return cblas_snrm2(blasCount(x.count), x.baseAddress, 1)
    }
    @inline(__always)
    public static func asum(_ x: UnsafeBufferPointer<Float>) -> Float {
        guard x.count > 0 else { return 0 }
        return cblas_sasum(blasCount(x.count), x.baseAddress, 1)
    }
    @inline(__always)
    public static func copy(_ x: UnsafeBufferPointer<Float>, _ y: UnsafeMutableBufferPointer<Float>) {
        precondition(x.count == y.count)
        guard x.count > 0 else { return }
        cblas_scopy(blasCount(x.count), x.baseAddress, 1, y.baseAddress, 1)
    }
}

extension Double: ComputeScalar {
    @inline(__always)
    public static func axpy(_ alpha: Double, _ x: UnsafeBufferPointer<Double>, _ y: UnsafeMutableBufferPointer<Double>) {
        precondition(x.count == y.count)
        guard x.count > 0 else { return }
        cblas_daxpy(blasCount(x.count), alpha, x.baseAddress, 1, y.baseAddress, 1)
    }
    @inline(__always)
    public static func scal(_ alpha: Double, _ x: UnsafeMutableBufferPointer<Double>) {
        guard x.count > 0 else { return }
        cblas_dscal(blasCount(x.count), alpha, x.baseAddress, 1)
    }
    @inline(__always)
    public static func dot(_ x: UnsafeBufferPointer<Double>, _ y: UnsafeBufferPointer<Double>) -> Double {
        precondition(x.count == y.count)
        guard x.count > 0 else { return 0 }
        return cblas_ddot(blasCount(x.count), x.baseAddress, 1, y.baseAddress, 1)
    }
    @inline(__always)
    public static func nrm2(_ x: UnsafeBufferPointer<Double>) -> Double {
        guard x.count > 0 else { return 0 }
        return cblas_dnrm2(blasCount(x.count), x.baseAddress, 1)
    }
    @inline(__always)
    public static func asum(_ x: UnsafeBufferPointer<Double>) -> Double {
        guard x.count > 0 else { return 0 }
        return cblas_dasum(blasCount(x.count), x.baseAddress, 1)
    }
    @inline(__always)
    public static func copy(_ x: UnsafeBufferPointer<Double>, _ y: UnsafeMutableBufferPointer<Double>) {
        precondition(x.count == y.count)
        guard x.count > 0 else { return }
        cblas_dcopy(blasCount(x.count), x.baseAddress, 1, y.baseAddress, 1)
    }
}

/// Process-wide BLAS settings and the CPU-dependent C helpers of the shim.
public enum BLAS {
    /// Sets OpenBLAS's own thread count. Merges run BLAS single-threaded inside each worker so that
    /// results do not depend on how OpenBLAS splits a reduction (and workers are not oversubscribed).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
    }

    /// Whether the F16C half-precision conversion instructions are used on this machine.
    public static let hasF16C: Bool = mk_cpu_has_f16c() != 0

    /// Converts `count` IEEE half values at `source` (any alignment) to Float.
    @inline(__always)
    static func halfToFloat(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        mk_half_to_float(source, destination, count, hasF16C ? 1 : 0)
    }

    /// Converts `count` floats to IEEE half (round to nearest even) at `destination` (any alignment).
    @inline(__always)
    static func floatToHalf(_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, count: Int) {
        mk_float_to_half(source, destination, count, hasF16C ? 1 : 0)
    }

    /// Whether the AVX2 random-bit generator is used on this machine.
    public static let hasAVX2: Bool = mk_cpu_has_avx2() != 0

    /// out[k] = lowbias32(lowbias32((start + k) ⊕ a) + b) for k < count (DARE's random stream).
    @inline(__always)
    static func randomBits(_ out: UnsafeMutablePointer<UInt32>, count: Int, a: UInt32, b: UInt32, start: UInt32) {
        mk_random_bits(out, count, a, b, start, hasAVX2 ? 1 : 0)
    }

    /// The portable random-bit generator, for tests.
    static func randomBitsPortable(_ out: UnsafeMutablePointer<UInt32>, count: Int, a: UInt32, b: UInt32, start: UInt32) {
        mk_random_bits_portable(out, count, a, b, start)
    }

    /// The portable (non-F16C) conversions, exposed so tests can check both paths agree bit for bit.
    static func halfToFloatPortable(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        mk_half_to_float_portable(source, destination, count)
    }
    static func floatToHalfPortable(_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, count: Int) {
        mk_float_to_half_portable(source, destination, count)
    }
}
