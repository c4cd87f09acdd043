/// Collects a sample of the task vectors (Float tensors only; the same positions for every input).
struct SampleVisitor: ChunkVisitor {
    var values: [[Float]]
    init(inputs: Int) { values = Array(repeating: [], count: inputs) }
    mutating func begin(item: Int) {}
    mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {
        for (i, delta) in deltas.enumerated() { values[i] += delta.lazy.map { Float($0) } }
    }

    /// Σ sign(Σᵢ wᵢ τ̃ᵢ) over the sample, trimming below `thresholds` (sum in input order).
    func votes(thresholds: [UInt64], weights: [Float]) -> Int {
        guard let count = values.first?.count else { return 0 }
        var votes = 0
        for k in 0..<count {
            var total: Float = 0
            for i in values.indices where Float.magnitudeKey(values[i][k]) >= thresholds[i] { total += weights[i] * values[i][k] }
            votes += total > 0 ? 1 : (total < 0 ? -1 : 0)
        }
        return votes
    }
}

/// The full pass: keys below each bracket, a histogram of keys inside it, and Σ τ² per item.
struct FullPassVisitor: ChunkVisitor {
    let brackets: [ClosedRange<UInt64>]?
    let norms: Bool
    var below: [Int]
    var histograms: [[Int]]
    var itemNorms: [(Int, [Double])] = []

    init(inputs: Int, brackets: [ClosedRange<UInt64>]?, norms: Bool, bins: Int) {
        self.brackets = brackets
        self.norms = norms
        below = Array(repeating: 0, count: inputs)
        histograms = brackets == nil ? [] : Array(repeating: Array(repeating: 0, count: bins), count: inputs)
    }

    mutating func begin(item: Int) {
        if norms { itemNorms.append((item, Array(repeating: 0, count: below.count))) }
    }

    mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {
        for (i, delta) in deltas.enumerated() {
            if let brackets {
                let bracket = brackets[i]
                below[i] += histograms[i].withUnsafeMutableBufferPointer { counts in
                    T.bracketCount(UnsafeBufferPointer(delta), low: bracket.lowerBound, high: bracket.upperBound, into: counts.baseAddress!)
                }
            }
            if norms { itemNorms[itemNorms.count - 1].1[i] += Double(T.dot(UnsafeBufferPointer(delta), UnsafeBufferPointer(delta))) }
        }
    }
}

/// One pass of the exact radix selection, for the inputs the bracket did not settle.
struct RadixVisitor: ChunkVisitor {
    let inputs: [Int]
    var selections: [RadixSelection]
    init(inputs: [Int], selections: [RadixSelection]) {
        self.inputs = inputs
        self.selections = selections.map { var s = $0; s.clearCounts(); return s }
    }
    mutating func begin(item: Int) {}
    mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {
        for (s, input) in inputs.enumerated() { selections[s].observe(UnsafeBufferPointer(deltas[input])) }
    }
}
