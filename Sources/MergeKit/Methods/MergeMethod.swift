/// A merge method: turns the task-vector chunks τᵢ of one tensor into the merged task vector τ.
///
/// The executor computes θ = θ₀ + τ (or writes τ itself when task vectors are emitted), so every
/// method is expressed on task vectors; a weighted average Σwᵢθᵢ/Σwᵢ, for instance, is
/// θ₀ + Σwᵢτᵢ/Σwᵢ. Methods that need numbers over the whole model or a whole tensor declare them
/// in `statistics`; the executor computes them in passes before `combine` runs (docs/ARCHITECTURE.md,
/// "The path of one merge"). `combine` may overwrite the delta buffers (they are scratch) and
/// must be deterministic: the same inputs give the same bits whatever the chunking or thread count.
public protocol MergeMethod: Sendable {
    /// The method's registry entry (name, summary, reference).
    var info: MethodInfo { get }
    /// The method's parameters, as recorded in output metadata and summaries.
    var parameters: [JSONMember] { get }
    /// What the executor must compute before `combine`.
    var statistics: StatisticsRequest { get }
    /// Checks the per-input weights at plan time (e.g. a normalised average with Σw = 0).
    func validate(weights: [Double]) throws(MergeKitError)
    /// Merged τ for one chunk, before λ: `out.count == deltas[i].count == base.count`, one weight
    /// per delta. Chunks of a tensor arrive in index order when the method has per-tensor statistics.
    func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                 weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext)
    /// λ, the factor the merged τ is multiplied by, or nil for a method without one. Methods never
    /// apply it themselves: the executor multiplies the result of `combine` (or `combineTensor`) by
    /// λ as the last product before θ₀ is added (`MergeWorker.finish`, the one place λ is applied).
    /// So sweep points that differ only in λ share one `combine` per chunk and keep the bytes of
    /// single runs.
    var lambda: Double? { get }
    /// The length of the runs of consecutive elements `combine` needs whole in every chunk (rows
    /// ranked or normalised together, as DELLA's and Arcee Fusion's), for a tensor of `shape`; 1
    /// when any chunking will do. The executor then cuts the tensor's chunks (and work items) at
    /// multiples of it: chunks of the largest multiple that fits `MergeExecutor.chunkElements`,
    /// or of one run when a run is longer.
    func chunkAlignment(shape: [Int]) -> Int
    /// Whether, under a 16-bit compute dtype (`ComputeDType`), the task vectors τᵢ = θᵢ − θ₀ are
    /// rounded to it as they are formed: true for the methods mergekit computes on task vectors
    /// formed in its `dtype` (task arithmetic, TIES, DARE, Breadcrumbs, DELLA, SCE, Model Stock),
    /// false (the default) for those it computes on the weights θᵢ (linear, slerp, passthrough, …),
    /// whose τᵢ here only carry θᵢ exactly.
    var roundsTaskVectors: Bool { get }
}

extension MergeMethod {
    public var statistics: StatisticsRequest { StatisticsRequest() }
    public func validate(weights: [Double]) throws(MergeKitError) {}
    public var lambda: Double? { nil }
    public func chunkAlignment(shape: [Int]) -> Int { 1 }
    public var roundsTaskVectors: Bool { false }

    /// Targets whose methods give equal keys compute the same result before λ.
    var unscaledKey: String? {
        guard lambda != nil else { return nil }
        let members = parameters.filter { $0.key != "scale" }
        return info.name + " " + JSONValue.object(members).serialized()
    }
}

/// A method's registry entry.
public struct MethodInfo: Sendable, Equatable {
    /// The name used on the command line and in metadata.
    public let name: String
    /// One line for `merge-cli methods`.
    public let summary: String
    /// The paper (or code) the semantics follow.
    public let reference: String
}
