/// A sum of Doubles kept exactly, as non-overlapping partials (Shewchuk's expansion arithmetic), and
/// rounded once at the end: `value` is the exact sum correctly rounded to the nearest Double.
///
/// Why: the result does not depend on the order of the additions, so a sum formed by several
/// threads, each adding what it computed as it finishes, gives the same bits for any thread count
/// without holding every term until the end to add them in a fixed order. A handful of partials
/// suffice for sums of values of similar magnitude (at most one per 53 bits of dynamic range).
/// Terms must be finite; a non-finite term makes `value` non-finite.
struct ExactSum: Sendable, Equatable {
    /// Non-overlapping, increasing in magnitude; their exact sum is the sum.
    private(set) var partials: [Double] = []
    /// A NaN or ±∞ term (exact arithmetic does not apply to them).
    private var special: Double = 0

    init() {}

    /// Adds `x` exactly.
    mutating func add(_ x: Double) {
        guard x.isFinite else { special += x; return }
        var x = x
        var kept = 0
        for k in partials.indices {
            var y = partials[k]
            if abs(x) < abs(y) { swap(&x, &y) }
            let high = x + y
            let low = y - (high - x)
            if low != 0 {
                partials[kept] = low
                kept += 1
            }
            x = high
        }
        guard x.isFinite else { special += x; partials.removeAll(); return }
        partials.removeSubrange(kept...)
        partials.append(x)
    }

    /// Adds every term of `other` exactly.
    mutating func add(_ other: ExactSum) {
        for p in other.partials { add(p) }
        if other.special != 0 || other.special.isNaN { special += other.special }
    }

    /// The exact sum, correctly rounded (round half to even).
    var value: Double {
        if special != 0 || special.isNaN { return special }
        guard var n = partials.indices.last else { return 0 }
        var high = partials[n]
        var low = 0.0
        while n > 0 {
            let x = high
            let y = partials[n - 1]
            n -= 1
            high = x + y
            low = y - (high - x)
            if low != 0 { break }
        }
        // `high + low` is exact; if the rest below has the same sign as `low`, the rounding of
        // high + low that fell exactly half-way must go the other way.
        if n > 0 && ((low < 0 && partials[n - 1] < 0) || (low > 0 && partials[n - 1] > 0)) {
            let y = low * 2
            let x = high + y
            if y == x - high { high = x }
        }
        return high
    }
}
