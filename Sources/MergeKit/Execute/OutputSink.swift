#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a merge's output bytes go: a file being written (`CheckpointWriter`) or memory
/// (`MemoryOutput`, a sweep point evaluated before anything is decided about writing it). Workers
/// write each result at its tensor's precomputed offset, so both see the same bytes in any order.
protocol OutputSink: AnyObject, Sendable {
    /// Writes `bytes` at `offset` within the data buffer of shard `shard`.
    func write(_ bytes: UnsafeRawBufferPointer, dataOffset offset: Int, shard: Int) throws(MergeKitError)
    /// Whether this sink receives shard `shard`.
    func writes(shard: Int) -> Bool
    /// Gives up the output (removes a temporary file; memory is freed with the sink).
    func abort()
}

extension CheckpointWriter: OutputSink {}

/// A plan's output built in memory: each shard's whole file (header and data) in an anonymous
/// mapping, filled by the workers exactly as they fill the file, so what is read back from here
/// (`checkpoint()`) has the bytes the written file would have. The memory is returned when the
/// value goes away.
public final class MemoryOutput: OutputSink, @unchecked Sendable {
    public let plan: MergePlan
    private let shardMemory: [UnsafeMutableRawPointer?]

    /// Allocates every shard of `plan`'s output and puts its header in place.
    init(plan: MergePlan) throws(MergeKitError) {
        self.plan = plan
        var memory: [UnsafeMutableRawPointer?] = []
        for shard in plan.shards {
            let size = shard.layout.fileSize
            guard size > 0 else { memory.append(nil); continue }
            guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
                for (s, q) in zip(plan.shards, memory) where q != nil { munmap(q, s.layout.fileSize) }
                throw MergeKitError(.insufficientMemory, file: plan.output.path,
                    "cannot be built in memory: \(size) bytes could not be allocated (\(String(cString: strerror(errno))))",
                    fix: "Set \(MemoryBudget.variable) lower so that fewer points are built in memory")
            }
            shard.layout.prefix.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            memory.append(p)
        }
        shardMemory = memory
    }

    deinit {
        for (shard, p) in zip(plan.shards, shardMemory) where p != nil { munmap(p, shard.layout.fileSize) }
    }

    /// Bytes of memory one output of `plan` takes.
    static func bytes(_ plan: MergePlan) -> Int { plan.shards.reduce(0) { $0 + $1.layout.fileSize } }

    func write(_ bytes: UnsafeRawBufferPointer, dataOffset offset: Int, shard: Int) throws(MergeKitError) {
        let layout = plan.shards[shard].layout
        precondition(offset >= 0 && layout.dataStart + offset + bytes.count <= layout.fileSize)
        guard bytes.count > 0 else { return }
        (shardMemory[shard]! + layout.dataStart + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    func writes(shard: Int) -> Bool { true }

    func abort() {}

    /// Shard `shard`'s whole file, header and data.
    func file(_ shard: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: shardMemory[shard], count: plan.shards[shard].layout.fileSize)
    }

    /// The output as a checkpoint to read (named by the path it would be written to): its tensors'
    /// bytes are read from memory, its companions are those the plan would write (config.json
    /// rewritten as it would be).
    public func checkpoint() throws(MergeKitError) -> Checkpoint {
        try Checkpoint(planned: plan, path: plan.output.path, memory: self)
    }
}
