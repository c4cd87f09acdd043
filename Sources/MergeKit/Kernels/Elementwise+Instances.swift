// The concrete instances of the generic bodies in Elementwise.swift: one Float and one Double
// function per kernel, each compiled to its own vectorised loop.

extension Float: ElementwiseKernels {
    public static func electSigns(_ total: UnsafeBufferPointer<Float>, into sign: UnsafeMutableBufferPointer<Float>, tie: Float) -> Int {
        electSignsBody(total, sign, tie)
    }
    public static func windowWithTies(_ x: UnsafeMutableBufferPointer<Float>, low: UInt64, hasLow: Bool, lowOrdinals: Range<Int>,
                                      lowOrdinal: inout Int, high: UInt64, hasHigh: Bool, highOrdinals: Range<Int>, highOrdinal: inout Int) {
        windowWithTiesBody(x, low, hasLow, lowOrdinals, &lowOrdinal, high, hasHigh, highOrdinals, &highOrdinal)
    }
    public static func signConflicts(_ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>) -> (both: Int, conflicts: Int) {
        signConflictsBody(a, b)
    }
    public static func countDisagreeing(_ d: UnsafeBufferPointer<Float>, sign: UnsafeBufferPointer<Float>) -> Int {
        countDisagreeingBody(d, sign)
    }
    public static func countResolvedTies(_ total: UnsafeBufferPointer<Float>, out: UnsafeBufferPointer<Float>) -> Int {
        countResolvedTiesBody(total, out)
    }
    public static func accumulateAgreeing(_ d: UnsafeBufferPointer<Float>, sign: UnsafeBufferPointer<Float>,
                                          out: UnsafeMutableBufferPointer<Float>, count: UnsafeMutableBufferPointer<Float>, increment: Float) {
        accumulateAgreeingBody(d, sign, out, count, increment)
    }
    public static func maximumAgreeing(_ d: UnsafeBufferPointer<Float>, sign: UnsafeBufferPointer<Float>, out: UnsafeMutableBufferPointer<Float>) {
        maximumAgreeingBody(d, sign, out)
    }
    @discardableResult
    public static func scaleAdd(_ x: UnsafeBufferPointer<Float>, scale: Float, base: UnsafeBufferPointer<Float>?, into out: UnsafeMutableBufferPointer<Float>,
                                limit: UInt64) -> Bool {
        scaleAddBody(x, scale, base, out, limit) { $0.bitPattern & 0x7FFF_FFFF }
    }
    public static func reaches(_ x: UnsafeBufferPointer<Float>, key limit: UInt64) -> Bool {
        guard let start = x.baseAddress else { return false }
        if let x86 = BLAS.reaches(start, count: x.count, bias: reachBias(limit, UInt32.self)) { return x86 }
        return reachesBody(x, limit) { $0.bitPattern & 0x7FFF_FFFF }
    }
    public static func addBase(_ base: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<Float>, limit: UInt64) -> Bool {
        guard let start = out.baseAddress, let baseStart = base.baseAddress else { return false }
        if let x86 = BLAS.addReaches(start, base: baseStart, count: out.count, bias: reachBias(limit, UInt32.self)) { return x86 }
        return addBaseBody(base, out, limit) { $0.bitPattern & 0x7FFF_FFFF }
    }
    public static func divideByCount(_ out: UnsafeMutableBufferPointer<Float>, count: UnsafeBufferPointer<Float>, scale: Float) {
        divideByCountBody(out, count, scale)
    }
    public static func divideByWeights(_ out: UnsafeMutableBufferPointer<Float>, weights: UnsafeBufferPointer<Float>, scale: Float) {
        divideByWeightsBody(out, weights, scale)
    }
    public static func applySign(_ out: UnsafeMutableBufferPointer<Float>, sign: UnsafeBufferPointer<Float>, scale: Float) {
        applySignBody(out, sign, scale)
    }
    public static func zeroBelow(_ x: UnsafeMutableBufferPointer<Float>, key threshold: UInt64, wide: Bool) {
        // Float keys fit 32 bits: the vector kernel (the same integer compares, any build).
        if !wide, threshold <= UInt64(UInt32.max) {
            BLAS.zeroBelow(x, threshold: UInt32(threshold))
        } else {
            zeroBelowBody(x, threshold, wide: wide)
        }
    }
    public static func drop(_ x: UnsafeMutableBufferPointer<Float>, bits: UnsafePointer<UInt32>, limit: UInt32) {
        dropBody(x, bits, limit)
    }
    public static func countBoundary(_ x: UnsafeBufferPointer<Float>, lowerKey: UInt64, hasLower: Bool,
                                     upperKey: UInt64, hasUpper: Bool) -> (lower: Int, upper: Int) {
        countBoundaryBody(x, lowerKey, hasLower, upperKey, hasUpper)
    }
    public static func keepInside(_ x: UnsafeMutableBufferPointer<Float>, lowerKey: UInt64, hasLower: Bool, keepLowerEquals: Bool,
                                  upperKey: UInt64, hasUpper: Bool, keepUpperEquals: Bool) {
        keepInsideBody(x, lowerKey, hasLower, keepLowerEquals, upperKey, hasUpper, keepUpperEquals)
    }
    public static func bracketCount(_ x: UnsafeBufferPointer<Float>, low: UInt64, high: UInt64, into counts: UnsafeMutablePointer<Int>) -> Int {
        // Float keys fit 32 bits: the vector kernel counts exactly as the loop does.
        if low <= high, high <= UInt64(UInt32.max) {
            return BLAS.bracketCount(x, low: UInt32(low), span: UInt32(high - low), into: counts)
        }
        return bracketCountBody(x, low, high, counts)
    }
    public static func largestMagnitude(_ deltas: [UnsafeMutableBufferPointer<Float>], into out: UnsafeMutableBufferPointer<Float>) {
        largestMagnitudeBody(deltas, out)
    }
}

extension Double: ElementwiseKernels {
    public static func electSigns(_ total: UnsafeBufferPointer<Double>, into sign: UnsafeMutableBufferPointer<Double>, tie: Double) -> Int {
        electSignsBody(total, sign, tie)
    }
    public static func windowWithTies(_ x: UnsafeMutableBufferPointer<Double>, low: UInt64, hasLow: Bool, lowOrdinals: Range<Int>,
                                      lowOrdinal: inout Int, high: UInt64, hasHigh: Bool, highOrdinals: Range<Int>, highOrdinal: inout Int) {
        windowWithTiesBody(x, low, hasLow, lowOrdinals, &lowOrdinal, high, hasHigh, highOrdinals, &highOrdinal)
    }
    public static func signConflicts(_ a: UnsafeBufferPointer<Double>, _ b: UnsafeBufferPointer<Double>) -> (both: Int, conflicts: Int) {
        signConflictsBody(a, b)
    }
    public static func countDisagreeing(_ d: UnsafeBufferPointer<Double>, sign: UnsafeBufferPointer<Double>) -> Int {
        countDisagreeingBody(d, sign)
    }
    public static func countResolvedTies(_ total: UnsafeBufferPointer<Double>, out: UnsafeBufferPointer<Double>) -> Int {
        countResolvedTiesBody(total, out)
    }
    public static func accumulateAgreeing(_ d: UnsafeBufferPointer<Double>, sign: UnsafeBufferPointer<Double>,
                                          out: UnsafeMutableBufferPointer<Double>, count: UnsafeMutableBufferPointer<Double>, increment: Double) {
        accumulateAgreeingBody(d, sign, out, count, increment)
    }
    public static func maximumAgreeing(_ d: UnsafeBufferPointer<Double>, sign: UnsafeBufferPointer<Double>, out: UnsafeMutableBufferPointer<Double>) {
        maximumAgreeingBody(d, sign, out)
    }
    @discardableResult
    public static func scaleAdd(_ x: UnsafeBufferPointer<Double>, scale: Double, base: UnsafeBufferPointer<Double>?, into out: UnsafeMutableBufferPointer<Double>,
                                limit: UInt64) -> Bool {
        scaleAddBody(x, scale, base, out, limit) { $0.bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
    }
    public static func reaches(_ x: UnsafeBufferPointer<Double>, key limit: UInt64) -> Bool {
        reachesBody(x, limit) { $0.bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
    }
    public static func addBase(_ base: UnsafeBufferPointer<Double>, into out: UnsafeMutableBufferPointer<Double>, limit: UInt64) -> Bool {
        addBaseBody(base, out, limit) { $0.bitPattern & 0x7FFF_FFFF_FFFF_FFFF }
    }
    public static func divideByCount(_ out: UnsafeMutableBufferPointer<Double>, count: UnsafeBufferPointer<Double>, scale: Double) {
        divideByCountBody(out, count, scale)
    }
    public static func divideByWeights(_ out: UnsafeMutableBufferPointer<Double>, weights: UnsafeBufferPointer<Double>, scale: Double) {
        divideByWeightsBody(out, weights, scale)
    }
    public static func applySign(_ out: UnsafeMutableBufferPointer<Double>, sign: UnsafeBufferPointer<Double>, scale: Double) {
        applySignBody(out, sign, scale)
    }
    public static func zeroBelow(_ x: UnsafeMutableBufferPointer<Double>, key threshold: UInt64, wide: Bool) {
        zeroBelowBody(x, threshold, wide: wide)
    }
    public static func drop(_ x: UnsafeMutableBufferPointer<Double>, bits: UnsafePointer<UInt32>, limit: UInt32) {
        dropBody(x, bits, limit)
    }
    public static func countBoundary(_ x: UnsafeBufferPointer<Double>, lowerKey: UInt64, hasLower: Bool,
                                     upperKey: UInt64, hasUpper: Bool) -> (lower: Int, upper: Int) {
        countBoundaryBody(x, lowerKey, hasLower, upperKey, hasUpper)
    }
    public static func keepInside(_ x: UnsafeMutableBufferPointer<Double>, lowerKey: UInt64, hasLower: Bool, keepLowerEquals: Bool,
                                  upperKey: UInt64, hasUpper: Bool, keepUpperEquals: Bool) {
        keepInsideBody(x, lowerKey, hasLower, keepLowerEquals, upperKey, hasUpper, keepUpperEquals)
    }
    public static func bracketCount(_ x: UnsafeBufferPointer<Double>, low: UInt64, high: UInt64, into counts: UnsafeMutablePointer<Int>) -> Int {
        bracketCountBody(x, low, high, counts)
    }
    public static func largestMagnitude(_ deltas: [UnsafeMutableBufferPointer<Double>], into out: UnsafeMutableBufferPointer<Double>) {
        largestMagnitudeBody(deltas, out)
    }
}
