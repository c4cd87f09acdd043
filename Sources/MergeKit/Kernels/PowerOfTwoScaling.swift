/// Exact rescaling of a matrix by a power of two around a decomposition, so that an SVD never
/// overflows or underflows on values the element type can hold.
///
/// An SVD forms sums of squares, norms and products of singular values: with entries near the
/// largest finite Float (±3·10³⁸) they overflow to ±∞ (and a threshold σ₁·max(m, n)·ε turns every
/// singular value into "numerically zero"); with entries near the smallest normal (10⁻³⁸) they
/// fall into subnormals and lose their digits. The SVD-based commands therefore multiply each
/// matrix by 2⁻ᵉ, where 2ᵉ is the power of two at or below its largest magnitude (so the largest
/// becomes [1, 2), or [1, 4) when e must be even), decompose it, and multiply the result by 2ᵉ.
///
/// Multiplying by a power of two only changes exponents, so it is exact (as long as no value
/// leaves the normal range, which the choice of e rules out for the values that matter), and the
/// decomposed matrix depends only on the input's significands: 2ᵏ·A is decomposed exactly like A,
/// and its result is exactly 2ᵏ times A's.
enum PowerOfTwoScaling {
    /// The largest |x| of `values`; NaN if any is NaN, +∞ if any is infinite (and none NaN).
    static func largestMagnitude<T: ComputeScalar>(_ values: UnsafeBufferPointer<T>) -> T {
        var largest: T = 0
        for x in values {
            let a = x.magnitude
            if a.isNaN { return a }
            if a > largest { largest = a }
        }
        return largest
    }

    /// The exponent e with 2ᵉ ≤ `largest` < 2ᵉ⁺¹ (rounded down to even when `even`); nil when
    /// `largest` is zero or not finite.
    static func exponent<T: ComputeScalar>(of largest: T, even: Bool = false) -> Int? {
        guard largest.isFinite, largest > 0 else { return nil }
        let e = Int(largest.exponent)
        return even ? e - ((e % 2) + 2) % 2 : e
    }

    /// values ← values·2ᵉ, exactly unless a result leaves the finite range (it becomes ±∞) or
    /// falls below the normal range (it is rounded, as the product would be). Done in steps the
    /// element type can hold as a factor.
    static func scale<T: ComputeScalar>(_ values: UnsafeMutableBufferPointer<T>, byPowerOfTwo e: Int) {
        guard e != 0, !values.isEmpty else { return }
        let step = Int(T.greatestFiniteMagnitude.exponent) - 1
        var remaining = e
        while remaining != 0 {
            let part = max(-step, min(step, remaining))
            T.scal(T(sign: .plus, exponent: T.Exponent(part), significand: 1), values)
            remaining -= part
        }
    }

    /// 2ᵉ·x for a scalar (in Double, where every exponent a Float or Double matrix can need fits
    /// except the extremes of Double, which round to 0 or ±∞ as the product would).
    static func scaled(_ x: Double, byPowerOfTwo e: Int) -> Double {
        x * Double(sign: .plus, exponent: e / 2, significand: 1) * Double(sign: .plus, exponent: e - e / 2, significand: 1)
    }
}
