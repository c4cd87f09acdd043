/// Where a chunk of numbers handed to a method sits.
public struct ChunkContext: Sendable {
    /// The tensor's name.
    public let tensor: String
    /// The tensor's shape.
    public let shape: [Int]
    /// Index of the chunk's first element within the tensor (row-major).
    public let elementOffset: Int
    /// Element count of the whole tensor.
    public let tensorElementCount: Int
}

/// A merge method: turns the task-vector chunks τᵢ of one tensor into the merged task vector τ.
///
/// The executor computes θ = θ₀ + τ (or writes τ itself when task vectors are emitted), so every
/// method is expressed on task vectors; a linear average Σwᵢθᵢ/Σwᵢ, for instance, is θ₀ + Σwᵢτᵢ/Σwᵢ.
/// `combine` may overwrite the delta buffers (they are scratch). It must be deterministic: the
/// same inputs give the same bits whatever the chunking or thread count.
public protocol MergeMethod: Sendable {
    /// The method's registry entry (name, summary, reference).
    var info: MethodInfo { get }
    /// The method's parameters, as recorded in output metadata and summaries.
    var parameters: [JSONMember] { get }
    /// Merged τ for one chunk: `out.count == deltas[i].count`, `weights.count == deltas.count`.
    func combine<T: ComputeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], weights: [T],
                                   into out: UnsafeMutableBufferPointer<T>, context: ChunkContext)
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
