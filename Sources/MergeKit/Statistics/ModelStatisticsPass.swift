/// The whole-model statistics passes that run before the merge pass (paper TIES's trim
/// thresholds, MetaGPT's norms), streaming over every merged tensor with flat memory.
///
/// **Thresholds** — per input, the exact k-th smallest |τ| over all d merged elements,
/// k = d − int(d·K), without ever holding the model:
/// 1. a *sample* pass reads ~2²⁰ elements spread over every work item and brackets the k-th
///    magnitude key between two sample quantiles, wide enough (6 standard errors) that it lies
///    inside with overwhelming probability;
/// 2. one *full* pass counts, per input, the keys below the bracket and histograms the keys inside
///    it (at most 2¹⁸ distinct keys: 2 MB of counters per input per worker; fewer for many inputs,
///    `BufferBudget.bracketBins`). If the k-th key falls inside the bracket, the histogram gives
///    it exactly;
/// 3. otherwise (an unlucky sample, heavy ties, or Double keys) an exact radix selection runs:
///    2 more passes with Float keys, 4 with Double keys, 65,536 counters per input per worker —
///    for many inputs in batches of `BufferBudget.counterBatch` inputs, each with its passes.
/// Either way the result is exact; the bracket only saves passes. The sample holds 2²⁰ values per
/// input, fewer for many inputs (`BufferBudget.sampleTarget`).
///
/// **Majority** (TIES's mass vote) — predicted from the sample with the estimated thresholds;
/// the merge pass counts the exact vote and the executor checks the prediction.
///
/// **Norms** — Σ τ² in the full pass, kept per work item and summed in item order, so the
/// result is the same for any thread count.
struct ModelStatisticsPass {
    let plan: MergePlan
    let request: StatisticsRequest
    let threads: Int
    /// NaN and ±∞ in the task vectors fail (merges), or count as 0 and are reported to the
    /// visitors (`analyze`).
    var handling: FiniteCheck.Handling = .fail

    func run() throws(MergeKitError) -> ModelStatistics {
        let items = TaskVectorPass.mergedRanges(plan)
        let pass = TaskVectorPass(plan: plan, threads: threads, handling: handling)
        let inputs = plan.inputs.count
        let elementCount = items.reduce(0) { $0 + $1.range.count }
        let wide = plan.tensors.contains { $0.action == .merge && $0.computeInDouble }
        var statistics = ModelStatistics()
        statistics.elementCount = elementCount
        let bins = BufferBudget.bracketBins(inputs: inputs)

        var rank: Int?
        if let keep = request.globalKeepFraction, elementCount > 0 {
            // k-th smallest, 1-indexed, k = d − int(d·K); k ≤ 0 keeps everything.
            let k = elementCount - Int(Double(elementCount) * keep)
            if k >= 1 { rank = k - 1 }
        }

        // Sample pass and bracket (Float keys only).
        var brackets: [ClosedRange<UInt64>]?
        if let rank, !wide {
            let rate = min(1, Double(BufferBudget.sampleTarget(inputs: inputs)) / Double(elementCount))
            // Zero-element tensors have nothing to sample (their range is empty, and a sample of at
            // least one element would read past them).
            let sampled = items.filter { !$0.range.isEmpty }.map { item in
                (item.tensor, item.range.lowerBound..<(item.range.lowerBound + max(1, Int((Double(item.range.count) * rate).rounded(.up)))))
            }
            let visitors = try pass.run(sampled) { SampleVisitor(inputs: inputs) }
            var estimates: [UInt64] = []
            brackets = (0..<inputs).map { input in
                var keys = visitors.flatMap { $0.values[input].lazy.map { Float.magnitudeKey($0) } }
                keys.sort()
                let q = (Double(rank) + 0.5) / Double(elementCount)
                estimates.append(keys.isEmpty ? 0 : keys[min(keys.count - 1, Int(q * Double(keys.count)))])
                return Self.bracket(sortedSample: keys, rank: rank, total: elementCount, bins: bins)
            }
            if request.majoritySign {
                // Predict the majority from the sample with the estimated thresholds.
                var votes = 0
                for visitor in visitors {
                    votes += visitor.votes(thresholds: estimates, weights: plan.inputs.map { Float($0.weight) })
                }
                statistics.majority = votes >= 0 ? (votes == 0 ? 0 : 1) : -1
            }
        }

        // Full pass: bracket histograms and norms.
        var thresholds: [UInt64]? = request.globalKeepFraction == nil ? nil : Array(repeating: 0, count: inputs)
        var unresolved = rank == nil ? [] : Array(0..<inputs)
        if request.globalSquaredNorms || brackets != nil {
            let ranges = items
            let currentBrackets = brackets
            let visitors = try pass.run(ranges) {
                FullPassVisitor(inputs: inputs, brackets: currentBrackets, norms: request.globalSquaredNorms, bins: bins)
            }
            if request.globalSquaredNorms {
                var itemNorms = [[Double]](repeating: [], count: items.count)
                for visitor in visitors { for (i, norm) in visitor.itemNorms { itemNorms[i] = norm } }
                var totals = [Double](repeating: 0, count: inputs)
                for norm in itemNorms where !norm.isEmpty { for i in 0..<inputs { totals[i] += norm[i] } }
                statistics.squaredNorms = totals
            }
            if let brackets, let rank {
                unresolved = []
                for input in 0..<inputs {
                    let below = visitors.reduce(0) { $0 + $1.below[input] }
                    var histogram = [Int](repeating: 0, count: bins)
                    for visitor in visitors {
                        for (bin, count) in visitor.histograms[input].enumerated() where count != 0 { histogram[bin] += count }
                    }
                    var cumulative = below
                    var found: UInt64?
                    if rank >= below {
                        for bin in 0..<bins {
                            cumulative += histogram[bin]
                            if cumulative > rank { found = brackets[input].lowerBound + UInt64(bin); break }
                        }
                    }
                    if let found { thresholds![input] = found } else { unresolved.append(input) }
                }
            }
        }

        // Exact radix selection for whatever the bracket did not settle, in batches of inputs
        // whose counters fit the budget.
        if let rank, !unresolved.isEmpty {
            let keyBits = wide ? 64 : 32
            let ranges = items
            let batch = BufferBudget.counterBatch(selections: unresolved.count)
            for start in stride(from: 0, to: unresolved.count, by: batch) {
                let pending = Array(unresolved[start..<min(unresolved.count, start + batch)])
                var selections = pending.map { _ in RadixSelection(rank: rank, keyBits: keyBits) }
                for _ in 0..<(keyBits / RadixSelection.digitBits) {
                    let current = selections
                    let visitors = try pass.run(ranges) { RadixVisitor(inputs: pending, selections: current) }
                    for s in selections.indices {
                        var merged = current[s]
                        for visitor in visitors { merged.merge(visitor.selections[s]) }
                        merged.finishPass()
                        selections[s] = merged
                    }
                }
                for (s, input) in pending.enumerated() { thresholds![input] = selections[s].key }
            }
        }

        if let thresholds {
            statistics.thresholdKeys = thresholds
            statistics.thresholdKeysAreWide = wide
        }
        return statistics
    }

    /// The key range holding the sample quantile at rank/total ± 6 standard errors (plus a
    /// margin for small samples), narrowed to `bins` keys around the estimate.
    static func bracket(sortedSample keys: [UInt64], rank: Int, total: Int, bins: Int) -> ClosedRange<UInt64> {
        guard !keys.isEmpty else { return 0...0 }
        let m = Double(keys.count)
        let q = (Double(rank) + 0.5) / Double(total)
        let delta = 6 * (q * (1 - q) / m).squareRoot() + 4 / m
        let index = { (p: Double) in min(keys.count - 1, max(0, Int((p * m).rounded(.down)))) }
        var low = keys[index(q - delta)]
        var high = keys[index(q + delta)]
        if high - low >= UInt64(bins) {
            let estimate = keys[index(q)]
            let half = UInt64(bins / 2)
            low = max(low, estimate >= half ? estimate - half : 0)
            high = min(high, low + UInt64(bins) - 1)
        }
        return low...high
    }
}
