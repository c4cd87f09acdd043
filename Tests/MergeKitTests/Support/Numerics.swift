import Testing

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

/// The one numeric comparison of the tests: the counts first (nothing more is compared when
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
