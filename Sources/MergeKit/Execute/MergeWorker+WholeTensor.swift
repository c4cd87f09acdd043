extension MergeWorker {
    /// Merges a whole tensor for target `t` with a `WholeTensorMergeMethod`: the method loads
    /// the task vectors one input at a time (`loadWhole`) and writes τ₁ into a tensor-sized
    /// buffer; θ₀ + α·τ₁ (or α·τ₁) is formed by `finish`, converted and written a work item's
    /// worth at a time. With several targets (a sweep), τ₁ is kept in `shared` for the targets whose
    /// method has the same name, key and weights, so each tensor is decomposed once.
    func mergeWhole<T: MergeScalar>(_ item: WorkItem, target t: Int, method: any WholeTensorMergeMethod,
                                            _ buffers: WorkerBuffers<T>,
                                            shared: inout [String: UnsafeMutableBufferPointer<T>]) throws(MergeKitError) {
        let tensor = targets[t].plan.tensors[item.tensor]
        let n = tensor.output.elementCount
        precondition(item.range == 0..<n, "a tensor merged whole must be one work item")
        let out = try ScratchMemory.allocate(T.self, count: n, tensor: tensor.name, purpose: "the merged matrix")
        defer { ScratchMemory.release(out) }
        let key = "\(method.info.name)|\(method.wholeTensorKey)|\(tensor.weights)"
        if let known = shared[key] {
            T.copy(UnsafeBufferPointer(known), out)
        } else {
            out.initialize(repeating: 0)
            let context = ChunkContext(tensor: tensor.name, shape: tensor.output.shape, model: targets[t].model,
                                       statistics: TensorStatistics(), scratch: buffers.methodScratch)
            let deltas = TensorDeltas<T>(tensor: tensor.name, shape: tensor.output.shape, count: tensor.inputs.count) { i, destination throws(MergeKitError) in
                try self.loadWhole(tensor, input: i, into: destination, buffers)
            }
            try method.combineTensor(deltas, weights: tensor.weights.map { T($0) }, into: out, context: context)
            if targets.count > 1 {
                let copy = try ScratchMemory.allocate(T.self, count: n, tensor: tensor.name, purpose: "the merged matrix shared by the sweep's plans")
                T.copy(UnsafeBufferPointer(out), copy)
                shared[key] = copy
            }
        }
        let emit = targets[t].plan.output.emit
        let width = tensor.output.dtype.byteWidth!, baseWidth = tensor.base.info.dtype.byteWidth!
        var group = 0
        while group < n {
            let end = Swift.min(n, group + MergeExecutor.itemElements)
            if emit == .model {
                try TensorReader(tensor.base).read(elements: group..<end, into: buffers.staging[0])
            }
            var lower = group
            while lower < end {
                let upper = Swift.min(end, lower + MergeExecutor.chunkElements)
                let base = UnsafeMutableBufferPointer(rebasing: buffers.base[0..<(upper - lower)])
                if emit == .model {
                    T.load(buffers.staging[0] + (lower - group) * baseWidth, dtype: tensor.base.info.dtype, count: upper - lower,
                           into: base.baseAddress!)
                }
                // Written right away, so every target stages in the one work-item-sized buffer.
                // α·τ₁ (+ θ₀): `finish` applies the scale.
                try finish(tensor, lower..<upper, result: UnsafeMutableBufferPointer(rebasing: out[lower..<upper]),
                           scale: method.lambda ?? 1, base: emit == .model ? base : nil, target: t,
                           into: buffers.bytes.baseAddress! + (lower - group) * width)
                lower = upper
            }
            try targets[t].sink?.write(UnsafeRawBufferPointer(start: buffers.bytes.baseAddress!, count: (end - group) * width),
                                        dataOffset: tensor.output.begin + group * width, shard: tensor.shard)
            group = end
        }
    }

    /// τ of input `i` for the whole tensor into `destination`, a work item's worth of bytes
    /// read at a time, checked chunk by chunk against the base as the chunked merge checks
    /// it (`FiniteCheck`): a NaN or ±∞ is reported naming the file.
    func loadWhole<T: MergeScalar>(_ tensor: PlannedTensor, input i: Int, into destination: UnsafeMutableBufferPointer<T>,
                                           _ buffers: WorkerBuffers<T>) throws(MergeKitError) {
        let n = tensor.output.elementCount
        precondition(destination.count == n)
        let source = tensor.inputs[i]
        switch source {
        case .tensor:
            break
        case .lora(let module):
            // s·B·A for the whole tensor, one GEMM per row block.
            try buffers.loraProduct(input: i, module: module).materialize(0..<n, into: destination.baseAddress!)
        case .zero:
            // τ = 0 agrees with any base value.
            destination.update(repeating: 0)
            return
        }
        let isModel = plan.inputs[i].kind == .model
        let baseWidth = tensor.base.info.dtype.byteWidth!
        var counts = [FiniteCheck.Counts()]
        var group = 0
        while group < n {
            let end = Swift.min(n, group + MergeExecutor.itemElements)
            if let entry = source.entry {
                try TensorReader(entry).read(elements: group..<end, into: buffers.staging[1])
            }
            try TensorReader(tensor.base).read(elements: group..<end, into: buffers.staging[0])
            var lower = group
            while lower < end {
                let count = Swift.min(end, lower + MergeExecutor.chunkElements) - lower
                let target = UnsafeMutableBufferPointer(start: destination.baseAddress! + lower, count: count)
                let base = UnsafeMutableBufferPointer(rebasing: buffers.base[0..<count])
                T.load(buffers.staging[0] + (lower - group) * baseWidth, dtype: tensor.base.info.dtype, count: count,
                       into: base.baseAddress!)
                let raw = source.entry.map { UnsafeRawPointer(buffers.staging[1] + (lower - group) * $0.info.dtype.byteWidth!) }
                let finite: Bool
                if let raw, let entry = source.entry, isModel {
                    finite = T.loadDifference(raw, dtype: entry.info.dtype, count: count, minus: UnsafePointer(base.baseAddress!),
                                              into: target.baseAddress!)
                } else {
                    if let raw, let entry = source.entry { T.load(raw, dtype: entry.info.dtype, count: count, into: target.baseAddress!) }
                    finite = !T.reaches(UnsafeBufferPointer(target), key: T.infinityKey)
                        && !T.reaches(UnsafeBufferPointer(base), key: T.infinityKey)
                }
                if !finite {
                    try FiniteCheck.resolveInputs(tensor, inputs: [FiniteCheck.Input(input: plan.inputs[i], source: source, raw: raw)],
                                                  basePath: plan.base.path, chunkStart: lower, base: UnsafeBufferPointer(base),
                                                  deltas: [target], counts: &counts)
                }
                lower += count
            }
            group = end
        }
    }
}
