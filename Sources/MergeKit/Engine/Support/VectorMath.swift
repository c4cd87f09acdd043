/// Element-wise kernels of the engine, written as straight-line Float code without calls or
/// branches so that loops over them auto-vectorise in release builds (libm's `expf` and `erff` are
/// scalar calls, and the MLP activation alone evaluates one exponential per hidden unit per token:
/// 59 M per ViT-B/32 forward of 32 images).
enum VectorMath {
    /// eˣ to about 1 ulp (Cephes `expf`): n = round(x / ln 2) by the 1.5·2²³ rounding trick,
    /// r = x − n·ln 2 in two parts (Cody–Waite), eʳ ≈ 1 + r + r²·P(r) with a degree-5 P, then
    /// scaled by 2ⁿ built in the exponent field.
    ///
    /// x is clamped to [−87, 88] so that 2ⁿ stays a normal number: eˣ for x < −87 comes out as
    /// e⁻⁸⁷ ≈ 1.6e−38 instead of something smaller (harmless for softmax and sigmoid, the only
    /// users), and x > 88 as e⁸⁸ ≈ 1.65e38. NaN is not propagated faithfully.
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        let x = Swift.min(Swift.max(x, -87), 88)
        let magic: Float = 12_582_912  // 1.5·2²³: adding it rounds to an integer, kept in the low bits
        let shifted = x * 1.442_695_04 + magic
        let n = shifted - magic
        var r = x - n * 0.693_359_375
        r = r + n * 2.121_944_40e-4
        var p: Float = 1.987_569_150_0e-4
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        let er = p * (r * r) + r + 1
        let bits = (shifted.bitPattern &- 0x4B40_0000 &+ 127) &<< 23
        return er * Float(bitPattern: bits)
    }

    /// σ(x) = 1 / (1 + e⁻ˣ).
    @inline(__always)
    static func sigmoid(_ x: Float) -> Float {
        1 / (1 + exp(-x))
    }

    /// The standard normal CDF Φ(x) = ½ erfc(−x/√2), and the density φ(x) = e^(−x²/2)/√(2π).
    ///
    /// erfc(a) for a = |x|/√2 ≥ 0 uses Abramowitz & Stegun 7.1.26, t = 1/(1 + p·a),
    /// erfc(a) ≈ t·(a₁ + t(a₂ + t(a₃ + t(a₄ + t·a₅))))·e^(−a²), absolute error ≤ 1.5e−7; Φ is
    /// formed from erfc on both sides, so the left tail has no cancellation (1 + erf would).
    @inline(__always)
    static func normalCDFAndDensity(_ x: Float) -> (cdf: Float, density: Float) {
        let a = Swift.abs(x) * 0.707_106_781
        let t = 1 / (1 + 0.327_591_1 * a)
        var poly: Float = 1.061_405_429
        poly = poly * t - 1.453_152_027
        poly = poly * t + 1.421_413_741
        poly = poly * t - 0.284_496_736
        poly = poly * t + 0.254_829_592
        let gauss = exp(-a * a)
        let halfTail = 0.5 * t * poly * gauss  // ½ erfc(a) = Φ(−|x|)
        let cdf = x < 0 ? halfTail : 1 - halfTail
        return (cdf, 0.398_942_280_4 * gauss)
    }

    /// y[i] = x[i] + b[i] for i < n (the rows of a matrix plus a bias row).
    @inline(__always)
    static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { y[i] = x[i] + b[i] }
    }

    /// y[i] += x[i].
    @inline(__always)
    static func accumulate(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }

    /// Adds the `n`-vector `row` to each of the `rows` rows of the row-major `matrix`.
    static func addRow(_ row: UnsafePointer<Float>, to matrix: UnsafeMutablePointer<Float>, rows: Int, columns n: Int) {
        for r in 0..<rows { accumulate(matrix + r * n, row, count: n) }
    }

    /// Fills each of the `rows` rows of `matrix` with `row`.
    static func broadcastRow(_ row: UnsafePointer<Float>, into matrix: UnsafeMutablePointer<Float>, rows: Int, columns n: Int) {
        for r in 0..<rows { (matrix + r * n).update(from: row, count: n) }
    }

    /// sums[j] += Σ_r matrix[r, j] (column sums: a bias gradient).
    static func accumulateColumnSums(of matrix: UnsafePointer<Float>, rows: Int, columns n: Int, into sums: UnsafeMutablePointer<Float>) {
        for r in 0..<rows { accumulate(sums, matrix + r * n, count: n) }
    }

    /// Σ x[i]·y[i], accumulated in Float with 8 independent partial sums (vectorisable).
    @inline(__always)
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) -> Float {
        var s = SIMD8<Float>()
        var i = 0
        while i + 8 <= n {
            s += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var total = s.sum()
        while i < n { total += x[i] * y[i]; i += 1 }
        return total
    }

    /// Σ x[i], with 8 partial sums.
    @inline(__always)
    static func sum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var s = SIMD8<Float>()
        var i = 0
        while i + 8 <= n {
            s += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var total = s.sum()
        while i < n { total += x[i]; i += 1 }
        return total
    }

    /// max x[i] (−∞ for an empty row), with 8 partial maxima.
    @inline(__always)
    static func maximum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var m = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            m = pointwiseMax(m, UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self))
            i += 8
        }
        var result = m.max()
        while i < n { result = Swift.max(result, x[i]); i += 1 }
        return result
    }
}
