import Dispatch
import Foundation
import Synchronization

/// Progress of a running merge, reported after each chunk.
public struct MergeProgress: Sendable {
    public let completedBytes: Int
    public let totalBytes: Int
    public let completedTensors: Int
    public let totalTensors: Int
}

/// What a finished merge wrote.
public struct MergeResult: Sendable {
    public struct File: Sendable {
        public let path: String
        public let bytes: Int
    }
    public let outputPath: String
    public let files: [File]
    public let tensorsMerged: Int
    public let tensorsCopied: Int
    public let inputBytes: Int
    public let outputBytes: Int
    public let seconds: Double
}

/// Runs a `MergePlan`: a bounded pool of workers streams over the tensors chunk by chunk —
/// read the inputs from their mappings, convert to the compute type, apply the method, convert to
/// the output dtype and `pwrite` at the tensor's precomputed offset — then commits the output
/// atomically.
///
/// Memory stays flat in model size: each worker owns scratch buffers of `chunkElements` values per
/// input, and mapped input pages are released (`madvise`) as soon as a chunk is consumed. Results
/// do not depend on the thread count: chunks are computed independently, with BLAS
/// single-threaded, and each lands at a fixed offset.
public enum MergeExecutor {
    /// Elements per chunk (4 MB of Float per input buffer).
    public static let chunkElements = 1 << 20

    public static func run(_ plan: MergePlan, threads requested: Int? = nil,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> MergeResult {
        let start = Date()
        let threads = max(1, requested ?? ProcessInfo.processInfo.activeProcessorCount)
        BLAS.setThreads(1)
        let writer = try CheckpointWriter(output: plan.output, shards: plan.shards)

        let items = workItems(plan)
        let totalBytes = items.reduce(0) { $0 + $1.bytes }
        let next = Atomic<Int>(0)
        let doneBytes = Atomic<Int>(0)
        let doneTensors = Atomic<Int>(0)
        let failure = Mutex<MergeKitError?>(nil)
        let failed = Atomic<Bool>(false)

        DispatchQueue.concurrentPerform(iterations: min(threads, max(1, items.count))) { _ in
            let worker = Worker(plan: plan, writer: writer)
            while !failed.load(ordering: .relaxed) {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < items.count else { break }
                do throws(MergeKitError) {
                    try worker.process(items[i])
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                    failed.store(true, ordering: .relaxed)
                    break
                }
                let bytes = doneBytes.wrappingAdd(items[i].bytes, ordering: .relaxed).newValue
                let tensors = items[i].isLast ? doneTensors.wrappingAdd(1, ordering: .relaxed).newValue
                                              : doneTensors.load(ordering: .relaxed)
                progress?(MergeProgress(completedBytes: bytes, totalBytes: totalBytes,
                                        completedTensors: tensors, totalTensors: plan.tensors.count))
            }
        }
        if let error = failure.withLock({ $0 }) {
            writer.abort()
            throw error
        }

        let companions = plan.companions.map { (source: FileSystem.join(plan.base.directory!, $0), name: $0) }
        try writer.commit(companions: companions) { name, bytes in
            name == "config.json" ? ConfigRewriter.settingDType(plan.output.dtype, in: bytes) : bytes
        }

        let files = plan.shards.map { shard in
            MergeResult.File(path: plan.output.isDirectory ? FileSystem.join(plan.output.path, shard.fileName) : plan.output.path,
                             bytes: shard.layout.fileSize)
        }
        return MergeResult(outputPath: plan.output.path, files: files,
                           tensorsMerged: plan.tensors.filter { $0.action == .merge }.count,
                           tensorsCopied: plan.tensors.filter { $0.action == .copy }.count,
                           inputBytes: plan.inputBytes, outputBytes: plan.outputBytes,
                           seconds: Date().timeIntervalSince(start))
    }

    /// A chunk of one tensor: elements `range` of `plan.tensors[tensor]`.
    struct WorkItem: Sendable {
        let tensor: Int
        let range: Range<Int>
        /// Input + output bytes this chunk moves (for progress).
        let bytes: Int
        let isLast: Bool
    }

    static func workItems(_ plan: MergePlan) -> [WorkItem] {
        var items: [WorkItem] = []
        for (index, tensor) in plan.tensors.enumerated() {
            let n = tensor.output.elementCount
            let bytesPerElement = tensor.base.info.dtype.bitWidth + tensor.inputs.reduce(0) { $0 + $1.info.dtype.bitWidth }
            // Copies of non-mergeable tensors move raw bytes; split them by bytes, not elements.
            let step = tensor.action == .copy ? max(1, (chunkElements * 4 * 8) / max(1, tensor.base.info.dtype.bitWidth)) : chunkElements
            if n == 0 {
                items.append(WorkItem(tensor: index, range: 0..<0, bytes: 0, isLast: true))
                continue
            }
            var lower = 0
            while lower < n {
                let upper = min(n, lower + step)
                items.append(WorkItem(tensor: index, range: lower..<upper, bytes: (upper - lower) * bytesPerElement / 8,
                                      isLast: upper == n))
                lower = upper
            }
        }
        return items
    }

    /// One worker's scratch buffers and the per-chunk pipeline.
    final class Worker {
        let plan: MergePlan
        let writer: CheckpointWriter
        private lazy var floatScratch = Scratch<Float>(inputs: plan.inputs.count)
        private lazy var doubleScratch = Scratch<Double>(inputs: plan.inputs.count)
        private let floatWeights: [Float]
        private let doubleWeights: [Double]

        init(plan: MergePlan, writer: CheckpointWriter) {
            self.plan = plan
            self.writer = writer
            doubleWeights = plan.inputs.map(\.weight)
            floatWeights = doubleWeights.map { Float($0) }
        }

        func process(_ item: WorkItem) throws(MergeKitError) {
            let tensor = plan.tensors[item.tensor]
            guard !item.range.isEmpty else { return }
            switch tensor.action {
            case .copy:
                try copy(tensor, item.range)
            case .merge:
                if tensor.computeInDouble {
                    try merge(tensor, item.range, doubleScratch, weights: doubleWeights)
                } else {
                    try merge(tensor, item.range, floatScratch, weights: floatWeights)
                }
            }
        }

        private func copy(_ tensor: PlannedTensor, _ range: Range<Int>) throws(MergeKitError) {
            let bits = tensor.base.info.dtype.bitWidth
            // Sub-byte tensors are one item (range = whole tensor), so these divisions are exact.
            let lower = range.lowerBound * bits / 8
            let upper = range.upperBound * bits / 8
            let source = tensor.base.file.bytes(of: tensor.base.info)
            try writer.write(UnsafeRawBufferPointer(rebasing: source[lower..<upper]),
                             dataOffset: tensor.output.begin + lower, shard: tensor.shard)
            let offset = tensor.base.file.fileOffset(of: tensor.base.info)
            tensor.base.file.release((offset + lower)..<(offset + upper))
        }

        private func merge<T: ComputeScalar & TensorElement>(_ tensor: PlannedTensor, _ range: Range<Int>,
                                                             _ scratch: Scratch<T>, weights: [T]) throws(MergeKitError) {
            let n = range.count
            let base = UnsafeMutableBufferPointer(rebasing: scratch.base[0..<n])
            load(tensor.base, range, into: base)
            var deltas: [UnsafeMutableBufferPointer<T>] = []
            deltas.reserveCapacity(tensor.inputs.count)
            for (i, entry) in tensor.inputs.enumerated() {
                let delta = UnsafeMutableBufferPointer(rebasing: scratch.deltas[i][0..<n])
                load(entry, range, into: delta)
                if plan.inputs[i].kind == .model { T.axpy(-1, UnsafeBufferPointer(base), delta) }
                deltas.append(delta)
            }
            let out = UnsafeMutableBufferPointer(rebasing: scratch.out[0..<n])
            let context = ChunkContext(tensor: tensor.name, shape: tensor.output.shape,
                                       elementOffset: range.lowerBound, tensorElementCount: tensor.output.elementCount)
            plan.method.combine(deltas, weights: weights, into: out, context: context)
            if plan.output.emit == .model { T.axpy(1, UnsafeBufferPointer(base), out) }

            let dtype = tensor.output.dtype
            let width = dtype.byteWidth!
            T.store(out.baseAddress!, count: n, as: dtype, into: scratch.bytes.baseAddress!)
            try writer.write(UnsafeRawBufferPointer(start: scratch.bytes.baseAddress!, count: n * width),
                             dataOffset: tensor.output.begin + range.lowerBound * width, shard: tensor.shard)
        }

        private func load<T: TensorElement>(_ entry: Checkpoint.Entry, _ range: Range<Int>, into buffer: UnsafeMutableBufferPointer<T>) {
            let width = entry.info.dtype.byteWidth!
            let bytes = entry.file.bytes(of: entry.info)
            T.load(bytes.baseAddress! + range.lowerBound * width, dtype: entry.info.dtype, count: range.count, into: buffer.baseAddress!)
            // The values now live in the scratch buffer: drop the mapped pages from our resident set.
            release(entry, range)
        }

        private func release(_ entry: Checkpoint.Entry, _ range: Range<Int>) {
            let width = entry.info.dtype.byteWidth!
            let offset = entry.file.fileOffset(of: entry.info)
            entry.file.release((offset + range.lowerBound * width)..<(offset + range.upperBound * width))
        }
    }

    /// Per-worker buffers for one compute type, allocated on first use and reused for every chunk.
    final class Scratch<T: ComputeScalar> {
        let base: UnsafeMutableBufferPointer<T>
        let out: UnsafeMutableBufferPointer<T>
        let deltas: [UnsafeMutableBufferPointer<T>]
        let bytes: UnsafeMutableRawBufferPointer

        init(inputs: Int) {
            base = .allocate(capacity: MergeExecutor.chunkElements)
            out = .allocate(capacity: MergeExecutor.chunkElements)
            deltas = (0..<inputs).map { _ in .allocate(capacity: MergeExecutor.chunkElements) }
            bytes = .allocate(byteCount: MergeExecutor.chunkElements * 8, alignment: 64)
        }

        deinit {
            base.deallocate()
            out.deallocate()
            deltas.forEach { $0.deallocate() }
            bytes.deallocate()
        }
    }
}

/// Keeps a copied `config.json` truthful when the output dtype changes.
enum ConfigRewriter {
    static let torchNames: [DType: String] = [.F32: "float32", .F16: "float16", .BF16: "bfloat16", .F64: "float64"]

    /// `bytes` with `torch_dtype` (and the newer `dtype`) set to `dtype`'s torch name; unchanged
    /// when `dtype` is nil, the file is not a JSON object, or it has neither key.
    static func settingDType(_ dtype: DType?, in bytes: [UInt8]) -> [UInt8] {
        guard let dtype, let name = torchNames[dtype],
              let json = try? JSONParser.parse(bytes), case .object(var members) = json else { return bytes }
        var changed = false
        for i in members.indices where ["torch_dtype", "dtype"].contains(members[i].key) {
            if case .string(let old) = members[i].value, old != name {
                members[i].value = .string(name)
                changed = true
            }
        }
        return changed ? Array((JSONValue.object(members).serialized(indent: 2) + "\n").utf8) : bytes
    }
}
