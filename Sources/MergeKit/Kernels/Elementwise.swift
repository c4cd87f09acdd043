/// The elementwise inner loops of the merge methods, written once as `@inline(__always)` generic
/// bodies and instantiated as concrete `Float` and `Double` functions (the `MergeScalar`
/// requirements below), so that each compiles to a vectorised loop. Generic callers reach them
/// through one protocol call per chunk.
///
/// Two rules keep these loops vectorisable: constants are hoisted out of the loop (a literal in a
/// generic loop is an opaque conversion), and conditions become selects, never branches.
public protocol ElementwiseKernels {
    /// sign[k] = +1 for S > 0, −1 for S < 0 or NaN, `tie` for S = 0; returns Σ sign(S) (S = 0
    /// and NaN cast no vote).
    static func electSigns(_ total: UnsafeBufferPointer<Self>, into sign: UnsafeMutableBufferPointer<Self>, tie: Self) -> Int
    /// The rank window for a chunk holding boundary keys: keeps x where low < key < high, and
    /// where key equals a boundary and the element's ordinal among equals (counted from
    /// `lowOrdinal` / `highOrdinal`, updated in place) lies in the boundary's ordinal range.
    static func windowWithTies(_ x: UnsafeMutableBufferPointer<Self>, low: UInt64, hasLow: Bool, lowOrdinals: Range<Int>,
                               lowOrdinal: inout Int, high: UInt64, hasHigh: Bool, highOrdinals: Range<Int>, highOrdinal: inout Int)
    /// For two task vectors: how many entries are both non-zero, and how many of those have
    /// opposite signs.
    static func signConflicts(_ a: UnsafeBufferPointer<Self>, _ b: UnsafeBufferPointer<Self>) -> (both: Int, conflicts: Int)
    /// How many entries of d are non-zero and have the opposite sign of `sign`.
    static func countDisagreeing(_ d: UnsafeBufferPointer<Self>, sign: UnsafeBufferPointer<Self>) -> Int
    /// How many elements have a vote sum of exactly 0 yet a non-zero result: the elements whose
    /// value depends on how ties are resolved.
    static func countResolvedTies(_ total: UnsafeBufferPointer<Self>, out: UnsafeBufferPointer<Self>) -> Int
    /// For entries agreeing with the elected sign (d·sign > 0): out += d, count += increment.
    static func accumulateAgreeing(_ d: UnsafeBufferPointer<Self>, sign: UnsafeBufferPointer<Self>,
                                   out: UnsafeMutableBufferPointer<Self>, count: UnsafeMutableBufferPointer<Self>, increment: Self)
    /// For entries agreeing with the elected sign: out = max(out, |d|).
    static func maximumAgreeing(_ d: UnsafeBufferPointer<Self>, sign: UnsafeBufferPointer<Self>, out: UnsafeMutableBufferPointer<Self>)
    /// out = λ·x (+ base when given): a λ-sweep point, with exactly the roundings of a single merge's
    /// `scal(λ)` then `axpy(1, base)` (a product, then a sum; never fused). Returns whether some
    /// result's magnitude key reaches `limit` (`reaches`), for the output's finiteness check.
    @discardableResult
    static func scaleAdd(_ x: UnsafeBufferPointer<Self>, scale: Self, base: UnsafeBufferPointer<Self>?, into out: UnsafeMutableBufferPointer<Self>,
                         limit: UInt64) -> Bool
    /// Whether some `magnitudeKey(x[k])` is ≥ `limit` (0 < limit < the sign bit), in one
    /// vectorised pass: with `infinityKey`, whether x holds a NaN or ±∞.
    static func reaches(_ x: UnsafeBufferPointer<Self>, key limit: UInt64) -> Bool
    /// out += base (bit for bit `axpy(1, base, out)`), returning whether some sum's magnitude key
    /// reaches `limit`: θ₀ + τ and its finiteness check in one pass.
    static func addBase(_ base: UnsafeBufferPointer<Self>, into out: UnsafeMutableBufferPointer<Self>, limit: UInt64) -> Bool
    /// out = λ · out / max(1, count)
    static func divideByCount(_ out: UnsafeMutableBufferPointer<Self>, count: UnsafeBufferPointer<Self>, scale: Self)
    /// out = λ · (count == 0 ? out : out / count)
    static func divideByWeights(_ out: UnsafeMutableBufferPointer<Self>, weights: UnsafeBufferPointer<Self>, scale: Self)
    /// out = λ · sign · out, with 0 treated as +
    static func applySign(_ out: UnsafeMutableBufferPointer<Self>, sign: UnsafeBufferPointer<Self>, scale: Self)
    /// x = key(|x|) < threshold ? 0 : x, with 32- or 64-bit keys (`wide`).
    static func zeroBelow(_ x: UnsafeMutableBufferPointer<Self>, key threshold: UInt64, wide: Bool)
    /// DARE: x = bits < limit ? 0 : x (bits from `CounterRandom.fill`).
    static func drop(_ x: UnsafeMutableBufferPointer<Self>, bits: UnsafePointer<UInt32>, limit: UInt32)
    /// How many entries have the lower and the upper boundary key (absent bounds count 0).
    static func countBoundary(_ x: UnsafeBufferPointer<Self>, lowerKey: UInt64, hasLower: Bool,
                              upperKey: UInt64, hasUpper: Bool) -> (lower: Int, upper: Int)
    /// Keeps x where lowerKey < key(|x|) < upperKey (absent bounds do not apply), and where the
    /// key equals a boundary whose equals are all kept in this chunk (`keepLowerEquals`,
    /// `keepUpperEquals`); zeroes the rest.
    static func keepInside(_ x: UnsafeMutableBufferPointer<Self>, lowerKey: UInt64, hasLower: Bool, keepLowerEquals: Bool,
                           upperKey: UInt64, hasUpper: Bool, keepUpperEquals: Bool)
    /// Counts the magnitude keys below `low` and histograms those in low...high into `counts`
    /// (indexed by key − low); returns the count below. Keys are narrow (Float) keys.
    static func bracketCount(_ x: UnsafeBufferPointer<Self>, low: UInt64, high: UInt64, into counts: UnsafeMutablePointer<Int>) -> Int
    /// MagMax: out[k] = the d with the largest |d| (earliest on ties; NaN never wins).
    static func largestMagnitude(_ deltas: [UnsafeMutableBufferPointer<Self>], into out: UnsafeMutableBufferPointer<Self>)
}

// MARK: - Generic bodies

@inline(__always)
func electSignsBody<T: MergeScalar>(_ total: UnsafeBufferPointer<T>, _ sign: UnsafeMutableBufferPointer<T>, _ tie: T) -> Int {
    // Single-level selects of precomputed values only: nested conditionals become branches.
    let zero = T.zero, one: T = 1, minusOne: T = -1
    var votes: Int32 = 0
    for k in 0..<total.count {
        let t = total[k]
        let strict: T = t >= zero ? one : minusOne
        sign[k] = t == zero ? tie : strict
        let plus: Int32 = t > zero ? 1 : 0
        let minus: Int32 = t < zero ? 1 : 0
        votes &+= plus &- minus
    }
    return Int(votes)
}

@inline(__always)
func windowWithTiesBody<T: MergeScalar>(_ x: UnsafeMutableBufferPointer<T>, _ low: UInt64, _ hasLow: Bool, _ lowOrdinals: Range<Int>,
                                        _ lowOrdinal: inout Int, _ high: UInt64, _ hasHigh: Bool, _ highOrdinals: Range<Int>,
                                        _ highOrdinal: inout Int) {
    let zero = T.zero
    let lowKey = hasLow ? low : UInt64.max, highKey = hasHigh ? high : UInt64.max
    let lowMin = lowOrdinals.lowerBound, lowMax = lowOrdinals.upperBound
    let highMin = highOrdinals.lowerBound, highMax = highOrdinals.upperBound
    var lo = lowOrdinal, hi = highOrdinal
    for k in 0..<x.count {
        let v = x[k]
        let key = T.magnitudeKey(v)
        let atLow = key == lowKey, atHigh = key == highKey
        let aboveLow = !hasLow || key > low
        let belowHigh = !hasHigh || key < high
        let lowOK = aboveLow || (atLow && lo >= lowMin && lo < lowMax)
        let highOK = belowHigh || (atHigh && hi >= highMin && hi < highMax)
        lo &+= atLow ? 1 : 0
        hi &+= atHigh ? 1 : 0
        x[k] = lowOK && highOK ? v : zero
    }
    lowOrdinal = lo
    highOrdinal = hi
}

@inline(__always)
func signConflictsBody<T: MergeScalar>(_ a: UnsafeBufferPointer<T>, _ b: UnsafeBufferPointer<T>) -> (Int, Int) {
    let zero = T.zero
    var both: Int32 = 0, conflicts: Int32 = 0
    for k in 0..<a.count {
        let product = a[k] * b[k]
        let nonzero: Int32 = a[k] != zero && b[k] != zero ? 1 : 0
        let opposite: Int32 = product < zero ? 1 : 0
        both &+= nonzero
        conflicts &+= opposite
    }
    return (Int(both), Int(conflicts))
}

@inline(__always)
func countDisagreeingBody<T: MergeScalar>(_ d: UnsafeBufferPointer<T>, _ sign: UnsafeBufferPointer<T>) -> Int {
    let zero = T.zero
    var count: Int32 = 0
    for k in 0..<d.count {
        let disagree: Int32 = d[k] * sign[k] < zero ? 1 : 0
        count &+= disagree
    }
    return Int(count)
}

@inline(__always)
func countResolvedTiesBody<T: MergeScalar>(_ total: UnsafeBufferPointer<T>, _ out: UnsafeBufferPointer<T>) -> Int {
    let zero = T.zero
    var count: Int32 = 0
    for k in 0..<total.count {
        let tie: Int32 = total[k] == zero ? 1 : 0
        let nonzero: Int32 = out[k] != zero ? 1 : 0
        count &+= tie & nonzero
    }
    return Int(count)
}

@inline(__always)
func accumulateAgreeingBody<T: MergeScalar>(_ d: UnsafeBufferPointer<T>, _ sign: UnsafeBufferPointer<T>,
                                            _ out: UnsafeMutableBufferPointer<T>, _ count: UnsafeMutableBufferPointer<T>, _ increment: T) {
    let zero = T.zero
    for k in 0..<d.count {
        let v = d[k]
        let agree = v * sign[k] > zero
        let add: T = agree ? v : zero
        let inc: T = agree ? increment : zero
        out[k] += add
        count[k] += inc
    }
}

@inline(__always)
func maximumAgreeingBody<T: MergeScalar>(_ d: UnsafeBufferPointer<T>, _ sign: UnsafeBufferPointer<T>, _ out: UnsafeMutableBufferPointer<T>) {
    let zero = T.zero
    for k in 0..<d.count {
        let v = d[k]
        let a = abs(v)
        let magnitude: T = v * sign[k] > zero ? a : zero
        let current = out[k]
        out[k] = magnitude > current ? magnitude : current
    }
}

// The finiteness checks: key ≥ limit exactly when key + (signBit − limit) sets the sign bit (a
// key never has it, so the sum cannot wrap). OR-ing those sums is three plain integer vector
// operations per vector (and, add, or) in the key type's own width, even on baseline SSE2,
// which has no unsigned maximum.

@inline(__always)
func reachBias<B: FixedWidthInteger & UnsignedInteger>(_ limit: UInt64, _: B.Type) -> B {
    let signBit = B(1) << (B.bitWidth - 1)
    return signBit &- B(truncatingIfNeeded: limit)
}

@inline(__always)
func reached<B: FixedWidthInteger & UnsignedInteger>(_ accumulated: B) -> Bool {
    accumulated & (B(1) << (B.bitWidth - 1)) != 0
}

@inline(__always)
func scaleAddBody<T: MergeScalar>(_ x: UnsafeBufferPointer<T>, _ scale: T, _ base: UnsafeBufferPointer<T>?, _ out: UnsafeMutableBufferPointer<T>,
                                  _ limit: UInt64, key: (T) -> T.MagnitudeBits) -> Bool {
    let bias = reachBias(limit, T.MagnitudeBits.self)
    var accumulated: T.MagnitudeBits = 0
    if let base {
        for k in 0..<out.count {
            let product = scale * x[k]
            let sum = product + base[k]
            out[k] = sum
            accumulated |= key(sum) &+ bias
        }
    } else {
        for k in 0..<out.count {
            let product = scale * x[k]
            out[k] = product
            accumulated |= key(product) &+ bias
        }
    }
    return reached(accumulated)
}

@inline(__always)
func reachesBody<T: MergeScalar>(_ x: UnsafeBufferPointer<T>, _ limit: UInt64, key: (T) -> T.MagnitudeBits) -> Bool {
    let bias = reachBias(limit, T.MagnitudeBits.self)
    var accumulated: T.MagnitudeBits = 0
    for k in 0..<x.count { accumulated |= key(x[k]) &+ bias }
    return reached(accumulated)
}

@inline(__always)
func addBaseBody<T: MergeScalar>(_ base: UnsafeBufferPointer<T>, _ out: UnsafeMutableBufferPointer<T>, _ limit: UInt64,
                                 key: (T) -> T.MagnitudeBits) -> Bool {
    let bias = reachBias(limit, T.MagnitudeBits.self)
    var accumulated: T.MagnitudeBits = 0
    for k in 0..<out.count {
        let sum = out[k] + base[k]
        out[k] = sum
        accumulated |= key(sum) &+ bias
    }
    return reached(accumulated)
}

@inline(__always)
func divideByCountBody<T: MergeScalar>(_ out: UnsafeMutableBufferPointer<T>, _ count: UnsafeBufferPointer<T>, _ scale: T) {
    let one: T = 1
    for k in 0..<out.count {
        let c = count[k]
        let divisor: T = c > one ? c : one
        out[k] = scale * (out[k] / divisor)
    }
}

@inline(__always)
func divideByWeightsBody<T: MergeScalar>(_ out: UnsafeMutableBufferPointer<T>, _ weights: UnsafeBufferPointer<T>, _ scale: T) {
    let zero = T.zero, one: T = 1
    for k in 0..<out.count {
        let w = weights[k]
        let divisor: T = w == zero ? one : w
        out[k] = scale * (out[k] / divisor)
    }
}

@inline(__always)
func applySignBody<T: MergeScalar>(_ out: UnsafeMutableBufferPointer<T>, _ sign: UnsafeBufferPointer<T>, _ scale: T) {
    let zero = T.zero
    let negativeScale = -scale
    for k in 0..<out.count {
        let factor: T = sign[k] < zero ? negativeScale : scale
        out[k] *= factor
    }
}

@inline(__always)
func zeroBelowBody<T: MergeScalar>(_ x: UnsafeMutableBufferPointer<T>, _ threshold: UInt64, wide: Bool) {
    let zero = T.zero
    if wide {
        for k in 0..<x.count { let v = x[k]; x[k] = T.wideMagnitudeKey(v) < threshold ? zero : v }
    } else {
        for k in 0..<x.count { let v = x[k]; x[k] = T.magnitudeKey(v) < threshold ? zero : v }
    }
}

@inline(__always)
func dropBody<T: MergeScalar>(_ x: UnsafeMutableBufferPointer<T>, _ bits: UnsafePointer<UInt32>, _ limit: UInt32) {
    let zero = T.zero
    for k in 0..<x.count {
        let v = x[k]
        x[k] = bits[k] < limit ? zero : v
    }
}

@inline(__always)
func countBoundaryBody<T: MergeScalar>(_ x: UnsafeBufferPointer<T>, _ lowerKey: UInt64, _ hasLower: Bool,
                                       _ upperKey: UInt64, _ hasUpper: Bool) -> (Int, Int) {
    // An absent bound becomes a key no magnitude has (magnitude keys never set the top bit).
    let low = hasLower ? lowerKey : UInt64.max
    let high = hasUpper ? upperKey : UInt64.max
    var lows: Int32 = 0, highs: Int32 = 0
    for k in 0..<x.count {
        let key = T.magnitudeKey(x[k])
        let atLow: Int32 = key == low ? 1 : 0
        let atHigh: Int32 = key == high ? 1 : 0
        lows &+= atLow
        highs &+= atHigh
    }
    return (Int(lows), Int(highs))
}

@inline(__always)
func keepInsideBody<T: MergeScalar>(_ x: UnsafeMutableBufferPointer<T>, _ lowerKey: UInt64, _ hasLower: Bool, _ keepLowerEquals: Bool,
                                    _ upperKey: UInt64, _ hasUpper: Bool, _ keepUpperEquals: Bool) {
    let zero = T.zero
    // key ≥ lowFloor passes the lower bound; key ≤ highCeiling passes the upper one.
    let lowFloor: UInt64 = !hasLower ? 0 : (keepLowerEquals ? lowerKey : lowerKey &+ 1)
    let highCeiling: UInt64 = !hasUpper ? UInt64.max : (keepUpperEquals ? upperKey : upperKey &- 1)
    let emptyAbove = hasUpper && !keepUpperEquals && upperKey == 0
    for k in 0..<x.count {
        let v = x[k]
        let key = T.magnitudeKey(v)
        let inside = key >= lowFloor && key <= highCeiling && !emptyAbove
        x[k] = inside ? v : zero
    }
}

@inline(__always)
func bracketCountBody<T: MergeScalar>(_ x: UnsafeBufferPointer<T>, _ low: UInt64, _ high: UInt64,
                                      _ counts: UnsafeMutablePointer<Int>) -> Int {
    var below = 0
    let span = high &- low
    for k in 0..<x.count {
        let key = T.magnitudeKey(x[k])
        below &+= key < low ? 1 : 0
        let offset = key &- low
        if offset <= span { counts[Int(truncatingIfNeeded: offset)] &+= 1 }
    }
    return below
}

@inline(__always)
func largestMagnitudeBody<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], _ out: UnsafeMutableBufferPointer<T>) {
    let zero = T.zero
    out.initialize(repeating: zero)
    let best: UnsafeMutableBufferPointer<T> = .allocate(capacity: out.count)
    defer { best.deallocate() }
    best.initialize(repeating: zero)
    for delta in deltas {
        for k in 0..<out.count {
            let v = delta[k]
            let magnitude = abs(v)
            let previousBest = best[k], previous = out[k]
            let wins = magnitude > previousBest
            best[k] = wins ? magnitude : previousBest
            out[k] = wins ? v : previous
        }
    }
}
