import Foundation
import Testing
@testable import MergeKit

// The tests' numeric comparisons, in one place: the error measures (`maxAbsError`,
// `normwiseError`), arrays against a reference (`expectClose`: absolute or normwise), and
// checkpoints against a reference in units in the last place of their dtype
// (`expectCheckpointsMatch`, `TestSupport.ulp`). Bounds with their own derivation (BLAS rounding
// bounds, Frobenius distances of decompositions) stay with their tests.

/// max |actual − expected|: the largest absolute difference; infinite when a difference is NaN
/// (a NaN never passes), 0 for no elements.
func maxAbsError<T: BinaryFloatingPoint>(_ actual: [T], _ expected: [Double]) -> Double {
    precondition(actual.count == expected.count)
    var worst = 0.0
    for (a, e) in zip(actual, expected) {
        let d = abs(Double(a) - e)
        worst = d.isNaN ? .infinity : max(worst, d)
    }
    return worst
}

/// max |actual − expected| / max |expected|: the error relative to the tensor's scale (elements
/// near zero would make an element-wise relative error meaningless); the absolute error when
/// every expected value is 0; infinite when a difference is NaN.
func normwiseError<T: BinaryFloatingPoint>(_ actual: [T], _ expected: [Double]) -> Double {
    precondition(actual.count == expected.count)
    var worst = 0.0, scale = 0.0
    for (a, e) in zip(actual, expected) {
        let d = abs(Double(a) - e)
        worst = d.isNaN ? .infinity : max(worst, d)
        scale = max(scale, abs(e))
    }
    return scale == 0 ? worst : worst / scale
}

/// Arrays against a reference: the counts first (nothing more is compared when
/// they differ), then the error against `tolerance` — the largest absolute difference, or with
/// `normwise` the largest difference relative to the largest |expected| (`normwiseError`). NaN
/// never passes. A failure names `what`, the worst element and both values.
/// - Returns: the error, for reporting (infinite when the counts differ or there is no reference).
@discardableResult
func expectClose<T: BinaryFloatingPoint>(_ actual: [T], _ expected: [Double]?, tolerance: Double = 1e-7, normwise: Bool = false,
                                         _ what: String = "values", sourceLocation: SourceLocation = #_sourceLocation) -> Double {
    guard let expected else {
        Issue.record("\(what): no reference", sourceLocation: sourceLocation)
        return .infinity
    }
    #expect(actual.count == expected.count, "\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
    guard actual.count == expected.count else { return .infinity }
    var worst = 0.0, worstIndex = 0
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let d = abs(Double(a) - e)
        if !(d <= worst) { worst = d.isNaN ? .infinity : d; worstIndex = i }
    }
    let error = normwise ? normwiseError(actual, expected) : maxAbsError(actual, expected)
    if !(error <= tolerance) {
        let measure = normwise ? "relative error" : "error"
        Issue.record("\(what): element \(worstIndex) is \(actual.isEmpty ? 0 : Double(actual[worstIndex])), expected \(expected.isEmpty ? 0 : expected[worstIndex]); \(measure) \(error) > \(tolerance)",
                     sourceLocation: sourceLocation)
    }
    return error
}

/// Compares two checkpoints tensor by tensor: same names, shapes and dtypes (checked first), and
/// values within `ulps` units in the last place of the dtype plus `absolute` (integers exactly).
/// `absolute` covers cancellation: a sum of terms of size ~0.02 that lands near 0 carries the
/// rounding error of its terms, which can be many ulps of the tiny result.
func expectCheckpointsMatch(_ actual: Checkpoint, _ expected: Checkpoint, ulps: Double = 1, absolute: Double = 0,
                            sourceLocation: SourceLocation = #_sourceLocation) {
    let a = TestSupport.values(actual), e = TestSupport.values(expected)
    #expect(a.keys.sorted() == e.keys.sorted(), "tensor names differ", sourceLocation: sourceLocation)
    for (name, exp) in e {
        guard let act = a[name] else { continue }
        #expect(act.info.shape == exp.info.shape, "\(name): shape", sourceLocation: sourceLocation)
        #expect(act.info.dtype == exp.info.dtype, "\(name): dtype", sourceLocation: sourceLocation)
        guard act.info.shape == exp.info.shape, act.info.dtype == exp.info.dtype else { continue }
        var worst = 0.0
        var worstIndex = 0
        for i in exp.values.indices {
            let x = act.values[i], y = exp.values[i]
            if x.isNaN && y.isNaN { continue }
            let err = max(0, abs(x - y) - absolute) / TestSupport.ulp(y, exp.info.dtype)
            if !(err <= worst) { worst = err; worstIndex = i }
        }
        #expect(worst <= ulps, "\(name): element \(worstIndex) is \(act.values[worstIndex]), expected \(exp.values[worstIndex]) (\(worst) ulp)",
                sourceLocation: sourceLocation)
    }
}

extension TestSupport {
    /// The spacing of representable values of `dtype` near `x` (one unit in the last place).
    static func ulp(_ x: Double, _ dtype: DType) -> Double {
        let bits: Int
        switch dtype {
        case .F16: bits = 10
        case .BF16: bits = 7
        case .F32: bits = 23
        default: bits = 52
        }
        let minExponent: Int = dtype == .F16 ? -14 : (dtype == .F64 ? -1022 : -126)
        let exponent = x == 0 ? minExponent : max(minExponent, Int(Foundation.floor(Foundation.log2(abs(x)))))
        return Foundation.pow(2.0, Double(exponent - bits))
    }
}
