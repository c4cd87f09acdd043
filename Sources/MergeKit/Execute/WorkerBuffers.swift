/// Per-worker buffers for one compute type, allocated on first use and reused.
final class WorkerBuffers<T: MergeScalar> {
    let base: UnsafeMutableBufferPointer<T>
    let out: UnsafeMutableBufferPointer<T>
    let deltas: [UnsafeMutableBufferPointer<T>]
    let bytes: UnsafeMutableRawBufferPointer
    /// Raw input bytes, for the base and each input: `readSpan` × 8 bytes each, and a work
    /// item's worth (`itemElements` × 8 bytes) for the base and the first input (copies and
    /// whole-tensor reads go through those).
    let staging: [UnsafeMutableRawPointer]
    /// Elements of each input staged at once (`BufferBudget.readElements`).
    let readSpan: Int
    /// Elements of each target's result staged before a write (`BufferBudget.outputSpan`).
    let outputSpan: Int
    /// All targets stage into one buffer and write each chunk at once (a very large sweep:
    /// `BufferBudget.sharesOutputStaging`).
    let sharesOutputStaging: Bool
    /// Scratch memory methods get through `ChunkContext.scratch`.
    let methodScratch: UnsafeMutableRawBufferPointer
    /// Copies of the deltas when there are several targets (methods overwrite theirs).
    let copies: [UnsafeMutableBufferPointer<T>]
    /// A group's unscaled result when several targets share it (λ sweeps).
    let unscaled: UnsafeMutableBufferPointer<T>
    /// Output staging for targets after the first (`bytes` serves the first).
    private var extraStaging: [UnsafeMutableRawPointer] = []
    /// Per input: the LoRA factors last used, kept while a worker stays on one tensor.
    private var loraProducts: [Int: LoRAProduct<T>] = [:]
    private(set) var cacheBase = UnsafeMutableBufferPointer<T>(start: nil, count: 0)
    private(set) var cacheDeltas: [UnsafeMutableBufferPointer<T>] = []
    private let inputs: Int

    /// Output staging for target `t` (`outputSpan` elements of up to 8 bytes; the first
    /// target's holds a work item).
    func outputStaging(_ t: Int) -> UnsafeMutableRawPointer {
        if t == 0 || sharesOutputStaging { return bytes.baseAddress! }
        while extraStaging.count < t { extraStaging.append(.allocate(byteCount: outputSpan * 8, alignment: 4096)) }
        return extraStaging[t - 1]
    }

    /// Elements of every chunk buffer: the longest chunk this worker handles
    /// (`MergeExecutor.chunkCapacity`, at least `chunkElements`).
    let capacity: Int

    /// - Parameter capacity: the longest chunk to hold (`MergeExecutor.chunkCapacity` of the plans).
    init(inputs: Int, targets: Int = 1, capacity: Int = MergeExecutor.chunkElements) {
        precondition(capacity >= MergeExecutor.chunkElements && capacity <= MergeExecutor.itemElements)
        self.inputs = inputs
        self.capacity = capacity
        readSpan = max(capacity, BufferBudget.readElements(inputs: inputs))
        outputSpan = max(capacity, BufferBudget.outputSpan(targets: targets))
        sharesOutputStaging = BufferBudget.sharesOutputStaging(targets: targets)
        copies = targets > 1 ? (0..<inputs).map { _ in .allocate(capacity: capacity) } : []
        unscaled = .allocate(capacity: targets > 1 ? capacity : 0)
        base = .allocate(capacity: capacity)
        out = .allocate(capacity: capacity)
        deltas = (0..<inputs).map { _ in .allocate(capacity: capacity) }
        bytes = .allocate(byteCount: MergeExecutor.itemElements * 8, alignment: 4096)
        let readSpan = readSpan
        staging = (0...inputs).map { i in .allocate(byteCount: (i < 2 ? MergeExecutor.itemElements : readSpan) * 8, alignment: 4096) }
        methodScratch = .allocate(byteCount: ChunkContext.scratchBytes(capacity: capacity), alignment: 64)
    }

    /// The factors of `module` for input `input`, read and converted unless already held.
    func loraProduct(input: Int, module: LoRAAdapter.Module) throws(MergeKitError) -> LoRAProduct<T> {
        if let held = loraProducts[input], held.module.a.name == module.a.name, held.module.a.file === module.a.file {
            return held
        }
        let product = try LoRAProduct<T>(module)
        loraProducts[input] = product
        return product
    }

    /// Grows the tensor cache to hold `elements` values per input and for the base.
    func reserveCache(elements: Int) {
        guard cacheBase.count < elements else { return }
        releaseCache()
        cacheBase = .allocate(capacity: elements)
        cacheDeltas = (0..<inputs).map { _ in .allocate(capacity: elements) }
    }

    private func releaseCache() {
        if cacheBase.baseAddress != nil { cacheBase.deallocate() }
        cacheDeltas.forEach { $0.deallocate() }
        cacheBase = UnsafeMutableBufferPointer(start: nil, count: 0)
        cacheDeltas = []
    }

    deinit {
        base.deallocate()
        out.deallocate()
        deltas.forEach { $0.deallocate() }
        bytes.deallocate()
        extraStaging.forEach { $0.deallocate() }
        copies.forEach { $0.deallocate() }
        unscaled.deallocate()
        staging.forEach { $0.deallocate() }
        methodScratch.deallocate()
        releaseCache()
    }
}
