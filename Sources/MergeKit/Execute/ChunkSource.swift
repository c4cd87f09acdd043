/// Where a worker's chunks of one tensor come from. Input bytes are read with `pread`,
/// `readElements` per input at a time, into the worker's staging buffers,
/// and converted chunk by chunk. A tensor read more than once (per-tensor statistics) is
/// converted once into the worker's cache when it fits `tensorCacheBytes`; otherwise each pass
/// reads it again.
final class ChunkSource<T: MergeScalar> {
    let tensor: PlannedTensor
    let range: Range<Int>
    let inputs: [MergeInput]
    let buffers: WorkerBuffers<T>
    let cached: Bool
    /// The base checkpoint's path, for errors.
    let basePath: String
    /// What a NaN or ±∞ in the task vectors does (`FiniteCheck`): fail, or (for `analyze`)
    /// count as τ = 0.
    let handling: FiniteCheck.Handling
    /// Per input: the non-finite elements excluded so far (`.exclude` only).
    private(set) var nonFiniteCounts: [FiniteCheck.Counts]
    /// Start of the element group currently in the staging buffers.
    private var stagedGroup: Int?
    /// Whether τ is read as stored for some input (a task vector, LoRA product or zero), so
    /// the base must be checked on its own (τ = θ − θ₀ covers it for fine-tuned models).
    private let checksBase: Bool

    /// Under a 16-bit compute dtype (`ComputeDType`): the dtype θ₀ and every θᵢ are rounded to as
    /// they are loaded (mergekit casts what it loads to its `dtype`), and whether τᵢ = θᵢ − θ₀ is
    /// rounded to it too (`MergeMethod.roundsTaskVectors`). A task vector or LoRA input is a τ:
    /// rounded when τ is.
    struct Rounding {
        let dtype: DType
        let taskVectors: Bool

        /// The rounding `plan`'s merge of `tensor` asks for, or nil.
        init?(_ plan: MergePlan, _ tensor: PlannedTensor) {
            guard let dtype = plan.output.compute.rounding else { return nil }
            self.dtype = dtype
            taskVectors = tensor.method.roundsTaskVectors
        }
    }
    let rounding: Rounding?

    /// Elements per chunk (`MergeExecutor.chunkLength`; at most the buffers' capacity).
    let chunkLength: Int
    /// Elements of each input staged at once: a multiple of `chunkLength`, so chunks never cross a group.
    private let span: Int

    /// `multiPass`: the tensor will be read more than once, so cache it when it fits.
    /// `chunkLength`: the tensor's chunk length (`MergeExecutor.chunkLength`), `chunkElements` by default.
    init(tensor: PlannedTensor, range: Range<Int>, inputs: [MergeInput], basePath: String, buffers: WorkerBuffers<T>,
         multiPass: Bool = false, handling: FiniteCheck.Handling = .fail,
         chunkLength: Int = MergeExecutor.chunkElements, rounding: Rounding? = nil) throws(MergeKitError) {
        precondition(chunkLength <= buffers.capacity)
        self.rounding = rounding
        self.chunkLength = chunkLength
        span = buffers.readSpan / chunkLength * chunkLength
        self.tensor = tensor
        self.range = range
        self.inputs = inputs
        self.buffers = buffers
        self.basePath = basePath
        self.handling = handling
        nonFiniteCounts = Array(repeating: FiniteCheck.Counts(), count: tensor.inputs.count)
        checksBase = zip(tensor.inputs, inputs).contains { source, input in
            if case .tensor = source, input.kind == .model { return false }
            return true
        }
        let bytes = range.count * (inputs.count + 1) * MemoryLayout<T>.stride
        cached = multiPass && range.count > MergeExecutor.chunkElements && bytes <= MergeExecutor.tensorCacheBytes
        if cached {
            buffers.reserveCache(elements: range.count)
            // Convert every chunk once; τ = θᵢ − θ₀ is formed here too.
            for chunk in chunks {
                let offset = chunk.lowerBound - range.lowerBound
                let cachedBase = UnsafeMutableBufferPointer(rebasing: buffers.cacheBase[offset..<(offset + chunk.count)])
                let cachedDeltas = buffers.cacheDeltas.prefix(tensor.inputs.count).map {
                    UnsafeMutableBufferPointer(rebasing: $0[offset..<(offset + chunk.count)])
                }
                try convert(chunk, base: cachedBase, deltas: cachedDeltas)
            }
        }
    }

    var chunks: [Range<Int>] {
        stride(from: range.lowerBound, to: range.upperBound, by: chunkLength).map {
            $0..<min(range.upperBound, $0 + chunkLength)
        }
    }

    /// θ₀ and τᵢ for `chunk` (chunks in order within a pass). Statistics passes only read
    /// them; the merge pass, the last use, may overwrite them (cached slices included).
    func load(_ chunk: Range<Int>) throws(MergeKitError) -> (base: UnsafeMutableBufferPointer<T>, deltas: [UnsafeMutableBufferPointer<T>]) {
        let n = chunk.count
        if cached {
            let offset = chunk.lowerBound - range.lowerBound
            return (UnsafeMutableBufferPointer(rebasing: buffers.cacheBase[offset..<(offset + n)]),
                    buffers.cacheDeltas.prefix(tensor.inputs.count).map { UnsafeMutableBufferPointer(rebasing: $0[offset..<(offset + n)]) })
        }
        let base = UnsafeMutableBufferPointer(rebasing: buffers.base[0..<n])
        let deltas = (0..<tensor.inputs.count).map { UnsafeMutableBufferPointer(rebasing: buffers.deltas[$0][0..<n]) }
        try convert(chunk, base: base, deltas: deltas)
        return (base, deltas)
    }

    /// Converts `chunk` from the staged bytes (reading the next group first when needed).
    /// LoRA inputs are materialised for the whole group when it is staged (s·B·A for the
    /// group's rows, one GEMM per row block) and copied from there; zero inputs are zeroed.
    private func convert(_ chunk: Range<Int>, base: UnsafeMutableBufferPointer<T>, deltas: [UnsafeMutableBufferPointer<T>]) throws(MergeKitError) {
        let group = range.lowerBound + (chunk.lowerBound - range.lowerBound) / span * span
        if stagedGroup != group {
            let groupEnd = min(range.upperBound, group + span)
            try TensorReader(tensor.base).read(elements: group..<groupEnd, into: buffers.staging[0])
            for (i, source) in tensor.inputs.enumerated() {
                switch source {
                case .tensor(let entry):
                    try TensorReader(entry).read(elements: group..<groupEnd, into: buffers.staging[i + 1])
                case .lora(let module):
                    let product = try buffers.loraProduct(input: i, module: module)
                    product.materialize(group..<groupEnd, into: buffers.staging[i + 1].assumingMemoryBound(to: T.self))
                case .zero:
                    break
                }
            }
            stagedGroup = group
        }
        let skip = chunk.lowerBound - group
        let baseWidth = tensor.base.info.dtype.byteWidth!
        T.load(buffers.staging[0] + skip * baseWidth, dtype: tensor.base.info.dtype, count: chunk.count, into: base.baseAddress!)
        if let rounding, tensor.base.info.dtype != rounding.dtype { T.roundToNarrow(base, rounding.dtype) }
        // Every τ is checked for NaN and ±∞ in the pass that forms it (FiniteCheck).
        var finite = true
        for (i, source) in tensor.inputs.enumerated() {
            switch source {
            case .tensor(let entry):
                let width = entry.info.dtype.byteWidth!
                var raw = UnsafeRawPointer(buffers.staging[i + 1] + skip * width)
                if inputs[i].kind == .model {
                    var dtype = entry.info.dtype
                    if let rounding, dtype != rounding.dtype {
                        // θᵢ rounded first, then τᵢ formed from it (in place).
                        T.load(raw, dtype: dtype, count: chunk.count, into: deltas[i].baseAddress!)
                        T.roundToNarrow(deltas[i], rounding.dtype)
                        (raw, dtype) = (UnsafeRawPointer(deltas[i].baseAddress!), T.dtype)
                    }
                    finite = T.loadDifference(raw, dtype: dtype, count: chunk.count, minus: UnsafePointer(base.baseAddress!),
                                              into: deltas[i].baseAddress!) && finite
                } else {
                    T.load(raw, dtype: entry.info.dtype, count: chunk.count, into: deltas[i].baseAddress!)
                    finite = !T.reaches(UnsafeBufferPointer(deltas[i]), key: T.infinityKey) && finite
                }
            case .lora:
                let values = UnsafePointer(buffers.staging[i + 1].assumingMemoryBound(to: T.self) + skip)
                T.copy(UnsafeBufferPointer(start: values, count: chunk.count), deltas[i])
                finite = !T.reaches(UnsafeBufferPointer(deltas[i]), key: T.infinityKey) && finite
            case .zero:
                deltas[i].update(repeating: 0)
            }
        }
        if let rounding, rounding.taskVectors {
            for delta in deltas.prefix(tensor.inputs.count) { T.roundToNarrow(delta, rounding.dtype) }
        }
        if checksBase { finite = !T.reaches(UnsafeBufferPointer(base), key: T.infinityKey) && finite }
        if !finite {
            let checked = tensor.inputs.enumerated().map { i, source in
                FiniteCheck.Input(input: inputs[i], source: source,
                                  raw: source.entry.map { UnsafeRawPointer(buffers.staging[i + 1] + skip * $0.info.dtype.byteWidth!) })
            }
            try FiniteCheck.resolveInputs(tensor, inputs: checked, basePath: basePath, chunkStart: chunk.lowerBound,
                                          base: UnsafeBufferPointer(base), deltas: deltas, handling: handling, counts: &nonFiniteCounts)
        }
    }
}
