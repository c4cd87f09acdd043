import Dispatch
import Synchronization

/// The whole-model statistics passes that run before the merge pass (paper TIES's trim
/// thresholds, MetaGPT's norms), streaming over every merged tensor with flat memory.
///
/// Thresholds: per input, an exact radix selection of the k-th smallest |τ| over all d merged
/// elements, k = d − int(d·K): 2 passes with Float keys (4 when some tensor computes in Double),
/// 65,536 counters per input per worker, histograms summed after each pass. Norms: Σ τ² in the
/// first pass, kept per work item and summed in item order, so the result is the same for any
/// thread count.
struct ModelStatisticsPass {
    let plan: MergePlan
    let request: StatisticsRequest
    let threads: Int

    func run() throws(MergeKitError) -> ModelStatistics {
        let items = MergeExecutor.workItems(plan, wholeTensors: false, mergedOnly: true)
        let inputs = plan.inputs.count
        let elementCount = plan.tensors.filter { $0.action == .merge }.reduce(0) { $0 + $1.output.elementCount }
        let wide = plan.tensors.contains { $0.action == .merge && $0.computeInDouble }
        let keyBits = wide ? 64 : 32

        var selections: [RadixSelection?] = Array(repeating: nil, count: inputs)
        if let keep = request.globalKeepFraction, elementCount > 0 {
            // k-th smallest, 1-indexed, k = d − int(d·K); k ≤ 0 keeps everything.
            let k = elementCount - Int(Double(elementCount) * keep)
            if k >= 1 { selections = Array(repeating: RadixSelection(rank: k - 1, keyBits: keyBits), count: inputs) }
        }
        let passes = selections.contains { $0 != nil } ? keyBits / RadixSelection.digitBits : (request.globalSquaredNorms ? 1 : 0)
        var itemNorms = [[Double]](repeating: [], count: items.count)

        for pass in 0..<passes {
            let next = Atomic<Int>(0)
            let partials = Mutex<[[RadixSelection?]]>([])
            let norms = Mutex<[(Int, [Double])]>([])
            let failure = Mutex<MergeKitError?>(nil)
            let current = selections
            DispatchQueue.concurrentPerform(iterations: min(threads, max(1, items.count))) { _ in
                var local = current
                var localNorms: [(Int, [Double])] = []
                let floatBuffers = MergeExecutor.WorkerBuffers<Float>(inputs: inputs)
                var doubleBuffers: MergeExecutor.WorkerBuffers<Double>?
                let wantNorms = pass == 0 && request.globalSquaredNorms
                while failure.withLock({ $0 == nil }) {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard i < items.count else { break }
                    let item = items[i]
                    let tensor = plan.tensors[item.tensor]
                    do throws(MergeKitError) {
                        let norm: [Double]?
                        if tensor.computeInDouble {
                            if doubleBuffers == nil { doubleBuffers = MergeExecutor.WorkerBuffers<Double>(inputs: inputs) }
                            norm = try observe(tensor, item.range, doubleBuffers!, &local, norms: wantNorms)
                        } else {
                            norm = try observe(tensor, item.range, floatBuffers, &local, norms: wantNorms)
                        }
                        if let norm { localNorms.append((i, norm)) }
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                    }
                }
                partials.withLock { $0.append(local) }
                norms.withLock { $0 += localNorms }
            }
            if let error = failure.withLock({ $0 }) { throw error }
            for (i, norm) in norms.withLock({ $0 }) { itemNorms[i] = norm }
            let collected = partials.withLock { $0 }
            for input in 0..<inputs where selections[input] != nil {
                var merged = current[input]!
                for partial in collected { merged.merge(partial[input]!) }
                merged.finishPass()
                selections[input] = merged
            }
        }

        var statistics = ModelStatistics()
        statistics.elementCount = elementCount
        if request.globalKeepFraction != nil {
            statistics.thresholdKeys = selections.map { $0?.key ?? 0 }
            statistics.thresholdKeysAreWide = wide
        }
        if request.globalSquaredNorms {
            var totals = [Double](repeating: 0, count: inputs)
            for norm in itemNorms where !norm.isEmpty {
                for i in 0..<inputs { totals[i] += norm[i] }
            }
            statistics.squaredNorms = totals
        }
        return statistics
    }

    /// Counts one work item's |τ| keys (and returns its Σ τ² per input when asked).
    private func observe<T: MergeScalar>(_ tensor: PlannedTensor, _ range: Range<Int>, _ buffers: MergeExecutor.WorkerBuffers<T>,
                                         _ selections: inout [RadixSelection?], norms: Bool) throws(MergeKitError) -> [Double]? {
        let source = try MergeExecutor.ChunkSource(tensor: tensor, range: range, inputs: plan.inputs, buffers: buffers)
        var squares = [Double](repeating: 0, count: plan.inputs.count)
        for chunk in source.chunks {
            let (_, deltas) = try source.load(chunk)
            for i in selections.indices { selections[i]?.observe(UnsafeBufferPointer(deltas[i])) }
            if norms {
                for (i, delta) in deltas.enumerated() { squares[i] += Double(T.dot(UnsafeBufferPointer(delta), UnsafeBufferPointer(delta))) }
            }
        }
        return norms ? squares : nil
    }
}
