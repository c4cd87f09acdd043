/// A unit of work: elements `range` of `plan.tensors[tensor]`.
struct WorkItem: Sendable {
    let tensor: Int
    let range: Range<Int>
    /// Input + output bytes this item moves (for progress).
    let bytes: Int
    let isLast: Bool
}

extension MergeExecutor {
    /// Elements per chunk of `tensor`: `chunkElements`, or, for a method that needs whole runs of
    /// a elements (`MergeMethod.chunkAlignment`), the largest multiple of a that fits it (a itself
    /// when a run is longer).
    static func chunkLength(_ tensor: PlannedTensor) -> Int {
        guard tensor.action == .merge else { return chunkElements }
        let a = max(1, tensor.method.chunkAlignment(shape: tensor.output.shape))
        return a <= chunkElements ? chunkElements / a * a : a
    }

    /// The longest chunk of any merged tensor of `plans`: the size of every chunk buffer a worker
    /// of these plans allocates (at least `chunkElements`).
    static func chunkCapacity(_ plans: [MergePlan]) -> Int {
        var capacity = chunkElements
        for plan in plans {
            for tensor in plan.tensors where tensor.action == .merge { capacity = max(capacity, chunkLength(tensor)) }
        }
        return capacity
    }

    /// The method of `tensor` when it merges this tensor whole (`WholeTensorMergeMethod`).
    static func wholeTensorMethod(_ tensor: PlannedTensor) -> (any WholeTensorMergeMethod)? {
        guard tensor.action == .merge, let method = tensor.method as? any WholeTensorMergeMethod,
              method.mergesWhole(shape: tensor.output.shape) else { return nil }
        return method
    }

    /// Chunks of every tensor; whole tensors for merged tensors whose method has per-tensor
    /// statistics (one worker must see the tensor's chunks in order) or merges them whole
    /// (`WholeTensorMergeMethod`), unless `chunked`.
    static func workItems(_ plan: MergePlan, chunked: Bool = false, mergedOnly: Bool = false) -> [WorkItem] {
        var items: [WorkItem] = []
        for (index, tensor) in plan.tensors.enumerated() {
            if mergedOnly && tensor.action != .merge { continue }
            let n = tensor.output.elementCount
            let bitsPerElement = tensor.base.info.dtype.bitWidth + tensor.output.dtype.bitWidth
                + tensor.inputs.reduce(0) { $0 + $1.bitsPerElement }
            let step: Int
            switch tensor.action {
            case .copy: step = max(1, (itemElements * 64) / max(1, tensor.base.info.dtype.bitWidth))
            case .merge:
                let chunk = chunkLength(tensor)
                step = !chunked && (tensor.method.statistics.needsTensorPasses || wholeTensorMethod(tensor) != nil) ? max(1, n)
                    : max(1, itemElements / chunk) * chunk
            }
            if n == 0 {
                items.append(WorkItem(tensor: index, range: 0..<0, bytes: 0, isLast: true))
                continue
            }
            // Sub-byte copies are written whole (their chunks would not fall on byte boundaries).
            let effectiveStep = tensor.base.info.dtype.byteWidth == nil ? n : step
            var lower = 0
            while lower < n {
                let upper = min(n, lower + effectiveStep)
                items.append(WorkItem(tensor: index, range: lower..<upper, bytes: (upper - lower) * bitsPerElement / 8,
                                      isLast: upper == n))
                lower = upper
            }
        }
        // Whole tensors are scheduled largest first, so that no large tensor starts last while
        // the other workers run out of work. Results do not depend on the order.
        items.sort { a, b in
            let wa = a.range.count > itemElements ? a.range.count : 0, wb = b.range.count > itemElements ? b.range.count : 0
            if wa != wb { return wa > wb }
            return (a.tensor, a.range.lowerBound) < (b.tensor, b.range.lowerBound)
        }
        return items
    }
}
