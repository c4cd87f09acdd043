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
    /// Merged τ for one chunk: `out.count == deltas[i].count == base.count`, one weight per delta.
    /// Chunks of a tensor arrive in index order when the method has per-tensor statistics.
    func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                 weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext)
    /// λ, when `combine` computes exactly `combineUnscaled` followed by one multiplication by λ
    /// (skipped when λ = 1); nil for methods without such a final scale. Sweep points that differ
    /// only in λ then share one `combineUnscaled` per chunk and stay byte-identical to single runs.
    var finalScale: Double? { get }
    /// `combine` without the final multiplication by `finalScale` (only called when it is non-nil).
    func combineUnscaled<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                         weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext)
}

extension MergeMethod {
    public var statistics: StatisticsRequest { StatisticsRequest() }
    public func validate(weights: [Double]) throws(MergeKitError) {}
    public var finalScale: Double? { nil }
    public func combineUnscaled<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                                weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        preconditionFailure("\(info.name) has no final scale")
    }

    /// Targets whose methods give equal keys compute the same unscaled result.
    var unscaledKey: String? {
        guard finalScale != nil else { return nil }
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
