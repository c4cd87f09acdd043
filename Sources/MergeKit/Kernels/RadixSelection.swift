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
    private(set) var histogram: [Int]

    init(rank: Int, keyBits: Int) {
        precondition(rank >= 0 && keyBits % RadixSelection.digitBits == 0)
        self.rank = rank
        self.keyBits = keyBits
        histogram = [Int](repeating: 0, count: RadixSelection.bins)
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

    /// Counts the keys of a chunk of values (64-bit selections take the wide key of Float values).
    mutating func observe<T: MergeScalar>(_ values: UnsafeBufferPointer<T>) {
        guard !isDone else { return }
        if keyBits == 64 && T.magnitudeKeyBits == 32 {
            observeKeys(values.lazy.map { T.wideMagnitudeKey($0) })
        } else {
            observeKeys(values.lazy.map { T.magnitudeKey($0) })
        }
    }

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
        prefix = prefix << UInt64(RadixSelection.digitBits) | UInt64(bin)
        prefixBits += RadixSelection.digitBits
        for i in histogram.indices { histogram[i] = 0 }
    }
}

/// Keeps the elements whose ascending magnitude rank lies in `lower..<upper`, ranks among equal
/// magnitudes given by position (earlier elements rank lower), so exactly `upper − lower`
/// elements are kept whatever the ties. Elements must be visited in index order (`ordinals`
/// carry over from chunk to chunk).
struct RankWindow: Sendable {
    struct Boundary: Sendable {
        /// The magnitude key at the boundary rank.
        let key: UInt64
        /// Elements with this key whose ordinal among equals is < `ordinalLimit` (upper) or
        /// ≥ `ordinalLimit` (lower) are inside the window.
        let ordinalLimit: Int
    }
    let lower: Boundary?
    let upper: Boundary?
    private var lowerOrdinal = 0
    private var upperOrdinal = 0

    /// A window from finished selections: `lowerSelection` at rank `lower` (nil when lower = 0)
    /// and `upperSelection` at rank `upper − 1` (nil when upper = n).
    init(lower: Int, lowerSelection: RadixSelection?, upper: Int, upperSelection: RadixSelection?) {
        self.lower = lowerSelection.map { Boundary(key: $0.key, ordinalLimit: lower - $0.countLess) }
        self.upper = upperSelection.map { Boundary(key: $0.key, ordinalLimit: upper - $0.countLess) }
    }

    /// A window keeping nothing.
    static let empty = RankWindow(keepNothing: ())
    private init(keepNothing: ()) {
        lower = Boundary(key: UInt64.max, ordinalLimit: Int.max)
        upper = nil
    }

    /// Zeroes the elements of `values` outside the window (in place), visiting them in order.
    mutating func apply<T: MergeScalar>(_ values: UnsafeMutableBufferPointer<T>) {
        for i in values.indices {
            let key = T.magnitudeKey(values[i])
            var keep = true
            if let lower {
                if key < lower.key { keep = false } else if key == lower.key {
                    keep = lowerOrdinal >= lower.ordinalLimit
                    lowerOrdinal += 1
                }
            }
            if let upper {
                if key > upper.key { keep = false } else if key == upper.key {
                    keep = keep && upperOrdinal < upper.ordinalLimit
                    upperOrdinal += 1
                }
            }
            if !keep { values[i] = 0 }
        }
    }
}
