/// The per-tensor statistics a method asks for (`StatisticsRequest`: rank windows, the Gram
/// matrix, the products of θ₀ and the τᵢ, DARE's L1 sums), computed by the worker that merges
/// the tensor, in passes over the tensor's chunks (`ChunkSource`: from its cache when the tensor
/// fits, else read again) before the merge pass.
enum TensorStatisticsPass {
    /// Tensors up to this many elements get their rank windows from a sorted copy of the keys
    /// (one pass); larger ones from radix selections (2 passes for Float, 4 for Double).
    static let sortedSelectionLimit = 1 << 18
    /// The largest tensor whose mask decisions are kept between the passes (`TensorStatistics.kept`):
    /// 2²⁷ elements, 16 MiB of bits per input; larger tensors decide again in the merge pass.
    static let keptBitsLimit = 1 << 27

    /// Gram matrix, products, DARE L1 sums and rank-window selections, in as few passes as possible;
    /// then the method's own accumulator (`TensorAccumulator`), in the passes it asks for.
    ///
    /// Rank windows come from each input's sorted magnitude keys when the tensor is small and
    /// whole in memory (cached, or one chunk), sorted one input at a time; otherwise from
    /// radix selections, run for as many inputs at once as `BufferBudget.counterBatch` allows
    /// (each further batch costs its own passes).
    static func compute<T: MergeScalar>(_ source: ChunkSource<T>, tensor: PlannedTensor, into statistics: TensorStatistics,
                                        context: ChunkContext) throws(MergeKitError) {
        let inputs = source.inputs.count
        let n = tensor.output.elementCount
        let request = tensor.method.statistics
        let windows = request.tensorRankWindow.map { window in (0..<inputs).map { window(n, $0) } } ?? []
        let bounded = windows.indices.filter { !windows[$0].isEmpty && (windows[$0].lowerBound > 0 || windows[$0].upperBound < n) }
        let wholeInMemory = source.cached || source.chunks.count == 1
        let sortKeys = !bounded.isEmpty && n <= Self.sortedSelectionLimit && wholeInMemory
        var lowerStatistics = [OrderStatistic?](repeating: nil, count: inputs)
        var upperStatistics = [OrderStatistic?](repeating: nil, count: inputs)
        var keys: [UInt64] = []
        /// The statistics at the ends of input i's window, from its values' sorted keys.
        func sortedStatistics(_ i: Int, _ values: UnsafeBufferPointer<T>) {
            let w = windows[i]
            keys.removeAll(keepingCapacity: true)
            keys.append(contentsOf: values.lazy.map { T.magnitudeKey($0) })
            keys.sort()
            if w.lowerBound > 0 { lowerStatistics[i] = OrderStatistic(sortedKeys: keys, rank: w.lowerBound) }
            if w.upperBound < n { upperStatistics[i] = OrderStatistic(sortedKeys: keys, rank: w.upperBound - 1) }
        }
        let selected = sortKeys ? [] : bounded
        let batchSize = max(1, BufferBudget.counterBatch(selections: 2 * selected.count) / 2)
        let batches = selected.isEmpty ? [[]] : stride(from: 0, to: selected.count, by: batchSize).map {
            Array(selected[$0..<min(selected.count, $0 + batchSize)])
        }
        var gram = [[Double]](repeating: [Double](repeating: 0, count: inputs), count: inputs)
        var l1 = [(before: Double, after: Double)](repeating: (0, 0), count: inputs)
        let keepDecisions = request.tensorDropL1?.keepsDecisions == true && n <= Self.keptBitsLimit
        var keptBits = keepDecisions ? [[UInt64]](repeating: [UInt64](repeating: 0, count: (n + 63) / 64), count: inputs) : []
        var products = request.tensorProducts.map { TensorProducts($0, shape: tensor.output.shape, inputs: inputs) }
        for (b, batch) in batches.enumerated() {
            var lowerSelections: [RadixSelection?] = batch.map { i in
                windows[i].lowerBound > 0 ? RadixSelection(rank: windows[i].lowerBound, keyBits: T.magnitudeKeyBits) : nil
            }
            var upperSelections: [RadixSelection?] = batch.map { i in
                windows[i].upperBound < n ? RadixSelection(rank: windows[i].upperBound - 1, keyBits: T.magnitudeKeyBits) : nil
            }
            let passes = batch.isEmpty ? 1 : T.magnitudeKeyBits / RadixSelection.digitBits
            for pass in 0..<passes {
                for chunk in source.chunks {
                    let (base, deltas) = try source.load(chunk)
                    if b == 0 && pass == 0 {
                        products?.accumulate(base: UnsafeBufferPointer(base), deltas: deltas, start: chunk.lowerBound)
                        if request.tensorGram {
                            for i in 0..<inputs {
                                for j in i..<inputs {
                                    gram[i][j] += Double(T.dot(UnsafeBufferPointer(deltas[i]), UnsafeBufferPointer(deltas[j])))
                                }
                            }
                        }
                        if let masks = request.tensorDropL1 {
                            for i in 0..<inputs {
                                // Σ|τ| and Σ|τ| over kept entries with BLAS asum (per chunk, summed in Double).
                                let kept: UnsafeMutableBufferPointer<T> = context.scratch(0, count: chunk.count)
                                T.copy(UnsafeBufferPointer(deltas[i]), kept)
                                masks.drop(kept, input: i, offset: chunk.lowerBound, context: context)
                                let sums = (before: Double(T.asum(UnsafeBufferPointer(deltas[i]))), after: Double(T.asum(UnsafeBufferPointer(kept))))
                                l1[i].before += sums.before
                                l1[i].after += sums.after
                                if keepDecisions {
                                    keptBits[i].withUnsafeMutableBufferPointer { bits in
                                        // A word at a time, without a branch on the (random) decision.
                                        var word: UInt64 = 0
                                        for (k, x) in kept.enumerated() {
                                            let j = chunk.lowerBound + k
                                            word |= UInt64(x != 0 ? 1 : 0) << UInt64(j & 63)
                                            if j & 63 == 63 { bits[j >> 6] |= word; word = 0 }
                                        }
                                        if word != 0 { bits[(chunk.upperBound - 1) >> 6] |= word }
                                    }
                                }
                            }
                        }
                        // A single chunk is the whole tensor.
                        if sortKeys && !source.cached {
                            for i in bounded { sortedStatistics(i, UnsafeBufferPointer(deltas[i])) }
                        }
                    }
                    for (s, i) in batch.enumerated() {
                        lowerSelections[s]?.observe(UnsafeBufferPointer(deltas[i]))
                        upperSelections[s]?.observe(UnsafeBufferPointer(deltas[i]))
                    }
                }
                for s in batch.indices {
                    lowerSelections[s]?.finishPass()
                    upperSelections[s]?.finishPass()
                }
            }
            for (s, i) in batch.enumerated() {
                lowerStatistics[i] = lowerSelections[s]?.statistic
                upperStatistics[i] = upperSelections[s]?.statistic
            }
        }
        if sortKeys && source.cached {
            for i in bounded { sortedStatistics(i, UnsafeBufferPointer(rebasing: source.buffers.cacheDeltas[i][0..<n])) }
        }
        for i in 0..<inputs { for j in 0..<i { gram[i][j] = gram[j][i] } }
        statistics.gram = request.tensorGram ? gram : []
        statistics.dropL1 = request.tensorDropL1 != nil ? l1 : []
        statistics.kept = keptBits
        statistics.products = products
        if let make = request.tensorAccumulator {
            let accumulator = make(tensor.output.shape, inputs)
            var pass = 0
            repeat {
                for chunk in source.chunks {
                    let (base, deltas) = try source.load(chunk)
                    context.elementOffset = chunk.lowerBound
                    accumulator.observe(deltas, base: base, chunk: chunk, pass: pass, context: context)
                }
                pass += 1
            } while accumulator.finishPass(pass - 1)
            statistics.accumulator = accumulator
        }
        statistics.windows = windows.indices.map { i in
            let w = windows[i]
            if w.isEmpty { return RankWindow.empty }
            return RankWindow(lower: w.lowerBound, lowerStatistic: lowerStatistics[i], upper: w.upperBound, upperStatistic: upperStatistics[i],
                              earlierRanksHigher: request.tensorRankTiesEarlierHigher)
        }
    }
}
