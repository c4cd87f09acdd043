/// Exact order statistics of magnitudes with memory that does not depend on how many values
/// there are: a radix selection over the integer keys of |x| (`MergeScalar.magnitudeKey`).
///
/// Each pass histograms the next 16 bits of the keys that share the prefix found so far; after
/// `keyBits / 16` passes (2 for Float, 4 for Double) the key at `rank` is known exactly, together
/// with how many keys are strictly smaller. Values can be streamed in any order and in any
/// number of chunks, and histograms from several workers can be merged, so a whole-model
/// selection over billions of values needs 512 KB of counters and no sort.
struct RadixSelection: Sendable {
    static let digitBits = 16
    static let bins = 1 << digitBits

    /// The rank sought (0-based, ascending).
    let rank: Int
    let keyBits: Int
    /// The high bits determined so far.
    private(set) var prefix: UInt64 = 0
    private(set) var prefixBits = 0
    /// Keys strictly below the current prefix group.
    private(set) var below = 0
    /// Keys in the current prefix group (after the last pass: keys equal to `key`).
    private(set) var groupCount = 0
    private(set) var histogram: [Int]

    init(rank: Int, keyBits: Int) {
        precondition(rank >= 0 && keyBits % RadixSelection.digitBits == 0)
        self.rank = rank
        self.keyBits = keyBits
        histogram = [Int](repeating: 0, count: RadixSelection.bins)
    }

    /// A selection resumed where another process left it (`PartitionStatistics`): after the
    /// passes that found `prefix` (`prefixBits` bits) with `below` keys under it; no counts.
    init(rank: Int, keyBits: Int, prefix: UInt64, prefixBits: Int, below: Int) {
        self.init(rank: rank, keyBits: keyBits)
        self.prefix = prefix
        self.prefixBits = prefixBits
        self.below = below
    }

    var isDone: Bool { prefixBits == keyBits }

    /// The key at `rank` (valid once `isDone`).
    var key: UInt64 {
        precondition(isDone)
        return prefix
    }

    /// Number of keys strictly smaller than `key` (valid once `isDone`).
    var countLess: Int {
        precondition(isDone)
        return below
    }

    /// Number of keys equal to `key` (valid once `isDone`).
    var countEqual: Int {
        precondition(isDone)
        return groupCount
    }

    /// The finished order statistic.
    var statistic: OrderStatistic { OrderStatistic(key: key, countLess: countLess, countEqual: countEqual) }

    /// Counts the keys of a chunk of values (64-bit selections take the wide key of Float values).
    /// Inlined, so that the key function is inlined into the counting loop (called through the
    /// lazy map's closure, it cost per-tensor TIES a third more time).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    @inline(__always)
    mutating func observe<T: MergeScalar>(_ values: UnsafeBufferPointer<T>) {
        guard !isDone else { return }
        if keyBits == 64 && T.magnitudeKeyBits == 32 {
            observeKeys(values.lazy.map { T.wideMagnitudeKey($0) })
        } else {
            observeKeys(values.lazy.map { T.magnitudeKey($0) })
        }
    }

    /// Counts keys given directly (any order-preserving integer keys of `keyBits` bits, such as
    /// `SignedOrder`'s).
    @inline(__always)
    mutating func observe<S: Sequence>(keys: S) where S.Element == UInt64 {
        guard !isDone else { return }
        observeKeys(keys)
    }

    @inline(__always)
    private mutating func observeKeys<S: Sequence>(_ keys: S) where S.Element == UInt64 {
        let shift = UInt64(keyBits - prefixBits - RadixSelection.digitBits)
        let mask = UInt64(RadixSelection.bins - 1)
        let prefixShift = UInt64(keyBits - prefixBits)
        let prefix = self.prefix
        let first = prefixBits == 0
        histogram.withUnsafeMutableBufferPointer { counts in
            if first {
                for key in keys { counts[Int(truncatingIfNeeded: key &>> shift)] &+= 1 }
            } else {
                for key in keys {
                    if key &>> prefixShift == prefix {
                        counts[Int(truncatingIfNeeded: (key &>> shift) & mask)] &+= 1
                    }
                }
            }
        }
    }

    /// Adds another worker's counts for the same pass.
    mutating func merge(_ other: RadixSelection) {
        precondition(other.prefix == prefix && other.prefixBits == prefixBits && other.rank == rank)
        for i in histogram.indices { histogram[i] &+= other.histogram[i] }
    }

    /// Adds counts made elsewhere for this pass (another process's histogram of the same bins).
    mutating func add(counts: [Int]) {
        precondition(counts.count == histogram.count)
        for i in histogram.indices { histogram[i] &+= counts[i] }
    }

    /// Takes the counts of another selection over the same keys in the same pass: counts depend
    /// on the prefix, not on the rank, so of several selections at one prefix (every selection in
    /// its first pass) one can count for all.
    mutating func copyCounts(from other: RadixSelection) {
        precondition(other.prefix == prefix && other.prefixBits == prefixBits && other.keyBits == keyBits)
        histogram = other.histogram
    }

    /// Zeroes the counts (a worker's copy of a selection starts a pass from the shared prefix).
    mutating func clearCounts() {
        for i in histogram.indices { histogram[i] = 0 }
    }

    /// Ends a pass: narrows the prefix to the bin holding `rank` and clears the counts.
    mutating func finishPass() {
        precondition(!isDone)
        let target = rank - below
        var cumulative = 0
        var bin = 0
        while bin < RadixSelection.bins - 1 && cumulative + histogram[bin] <= target {
            cumulative += histogram[bin]
            bin += 1
        }
        precondition(cumulative + histogram[bin] > target, "rank \(rank) is beyond the values observed")
        below += cumulative
        groupCount = histogram[bin]
        prefix = prefix << UInt64(RadixSelection.digitBits) | UInt64(bin)
        prefixBits += RadixSelection.digitBits
        for i in histogram.indices { histogram[i] = 0 }
    }
}

/// The key at some rank of a multiset of keys, with how many keys are below it and equal to it.
struct OrderStatistic: Sendable, Equatable {
    let key: UInt64
    let countLess: Int
    let countEqual: Int

    /// The statistic at `rank` of `sortedKeys`.
    init(sortedKeys: [UInt64], rank: Int) {
        key = sortedKeys[rank]
        func firstIndex(where predicate: (UInt64) -> Bool) -> Int {
            var low = 0, high = sortedKeys.count
            while low < high {
                let mid = (low + high) / 2
                if predicate(sortedKeys[mid]) { high = mid } else { low = mid + 1 }
            }
            return low
        }
        let key = self.key
        countLess = firstIndex { $0 >= key }
        countEqual = firstIndex { $0 > key } - countLess
    }

    init(key: UInt64, countLess: Int, countEqual: Int) {
        self.key = key
        self.countLess = countLess
        self.countEqual = countEqual
    }
}

/// Keeps the elements whose ascending magnitude rank lies in `lower..<upper`, so exactly
/// `upper − lower` elements are kept whatever the ties. Among equal magnitudes, position decides
/// the rank: with `earlierRanksHigher` false, earlier elements rank lower (a stable ascending
/// sort, used to drop the smallest); with it true, earlier elements rank higher (a stable
/// descending sort, used to keep the largest). Elements must be visited in index order (the tie
/// ordinals carry over from chunk to chunk).
struct RankWindow: Sendable {
    struct Boundary: Sendable {
        let key: UInt64
        /// Elements equal to `key` are inside when `ordinals.contains(their ordinal among equals)`.
        let ordinals: Range<Int>
    }
    let lower: Boundary?
    let upper: Boundary?
    private var lowerOrdinal = 0
    private var upperOrdinal = 0

    /// A window from the order statistics at its ends: `lowerStatistic` at rank `lower` (nil when
    /// lower = 0) and `upperStatistic` at rank `upper − 1` (nil when upper = n).
    init(lower: Int, lowerStatistic: OrderStatistic?, upper: Int, upperStatistic: OrderStatistic?, earlierRanksHigher: Bool) {
        // The element with ordinal o among e equals (c below them) has ascending rank c + o, or
        // c + e − 1 − o when earlier elements rank higher.
        self.lower = lowerStatistic.map { s in
            Boundary(key: s.key, ordinals: earlierRanksHigher ? 0..<Swift.max(0, s.countLess + s.countEqual - lower)
                                                              : Swift.max(0, lower - s.countLess)..<Int.max)
        }
        self.upper = upperStatistic.map { s in
            Boundary(key: s.key, ordinals: earlierRanksHigher ? Swift.max(0, s.countLess + s.countEqual - upper)..<Int.max
                                                              : 0..<Swift.max(0, upper - s.countLess))
        }
    }

    /// A window keeping nothing.
    static let empty = RankWindow(keepNothing: ())
    private init(keepNothing: ()) {
        lower = Boundary(key: UInt64.max, ordinals: 0..<0)
        upper = nil
    }

    /// Zeroes the elements of `values` outside the window (in place), visiting them in order.
    /// Boundary ordinals advance by whole chunks: when every element equal to a boundary key in
    /// this chunk falls on the same side of the window's edge (all but at most two chunks per
    /// tensor), one vectorised pass does the chunk; otherwise it is walked element by element.
    mutating func apply<T: MergeScalar>(_ values: UnsafeMutableBufferPointer<T>) {
        let lowerKey = lower?.key ?? 0, upperKey = upper?.key ?? 0
        let counts = T.countBoundary(UnsafeBufferPointer(values), lowerKey: lowerKey, hasLower: lower != nil,
                                     upperKey: upperKey, hasUpper: upper != nil)
        /// Whether all `count` equals from ordinal `first` on are kept (true), dropped (false) or mixed (nil).
        func uniform(_ ordinals: Range<Int>, first: Int, count: Int) -> Bool? {
            if count == 0 { return true }
            let span = first..<(first + count)
            if ordinals.lowerBound <= span.lowerBound && span.upperBound <= ordinals.upperBound { return true }
            if span.upperBound <= ordinals.lowerBound || ordinals.upperBound <= span.lowerBound { return false }
            return nil
        }
        let keepLower = lower.map { uniform($0.ordinals, first: lowerOrdinal, count: counts.lower) } ?? true
        let keepUpper = upper.map { uniform($0.ordinals, first: upperOrdinal, count: counts.upper) } ?? true
        if let keepLower, let keepUpper {
            T.keepInside(values, lowerKey: lowerKey, hasLower: lower != nil, keepLowerEquals: keepLower,
                         upperKey: upperKey, hasUpper: upper != nil, keepUpperEquals: keepUpper)
            lowerOrdinal += counts.lower
            upperOrdinal += counts.upper
            return
        }
        T.windowWithTies(values, low: lowerKey, hasLow: lower != nil, lowOrdinals: lower?.ordinals ?? 0..<0, lowOrdinal: &lowerOrdinal,
                         high: upperKey, hasHigh: upper != nil, highOrdinals: upper?.ordinals ?? 0..<0, highOrdinal: &upperOrdinal)
    }
}
