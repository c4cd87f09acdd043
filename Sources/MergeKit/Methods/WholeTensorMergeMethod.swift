/// A merge method that needs some tensors whole rather than chunk by chunk: the SVD-based merges
/// (TSV-M, Iso-C) decompose each 2-D task vector, which no chunked pass can do.
///
/// For a tensor whose shape `mergesWhole(shape:)` accepts, the executor schedules the tensor as
/// one work item and calls `combineTensor` once, with a `TensorDeltas` that loads the task vectors
/// **one input at a time** (read and converted from the mapped inputs on each call) and a
/// tensor-sized output buffer, which the method may also use as scratch before writing τ. The
/// executor then forms θ₀ + τ (or writes τ) chunk by chunk. So memory per worker is the output
/// buffer plus whatever the method itself holds (for an SVD: 6–8 tensor-sized arrays,
/// `wholeTensorBytes`), never all inputs of the tensor at once. Every other tensor goes through `combine` as usual.
///
/// Before any output is created, the executor asks each such method for its peak working set on
/// every tensor it merges whole (`wholeTensorBytes`) and whether it can merge it at all
/// (`wholeTensorProblem`): a tensor that cannot be merged, or whose working set does not fit the
/// available memory (`MemoryBudget`), is refused naming it; tensors that fit one at a time but
/// not together are merged by fewer workers at once.
///
/// The executor hands `combineTensor` finite values only: a NaN or ±∞ in an input of a tensor
/// merged whole is reported naming the input file and the element (an SVD cannot use it).
///
/// `combineTensor` writes τ₁ before λ; the executor multiplies it by `lambda`, as for `combine`.
/// So the plans of a sweep whose methods differ only in that scale (α, the parameter the Iso-C
/// paper tunes) decompose each tensor once: plans with the same method name, `wholeTensorKey`
/// and weights share τ₁, and each gets exactly the bytes a run of its own would write.
public protocol WholeTensorMergeMethod: MergeMethod {
    /// Whether a tensor of this shape is merged whole by `combineTensor`.
    func mergesWhole(shape: [Int]) -> Bool
    /// The parameters τ₁ depends on: equal keys (and weights) must give equal τ₁.
    var wholeTensorKey: String { get }
    /// Writes the merged τ₁ of a whole tensor into `out` (`out.count` = the tensor's element
    /// count, row-major), before the scale. `weights` are the inputs' weights, as for `combine`.
    func combineTensor<T: MergeScalar>(_ deltas: TensorDeltas<T>, weights: [T], into out: UnsafeMutableBufferPointer<T>,
                                       context: ChunkContext) throws(MergeKitError)
    /// The most bytes `combineTensor` holds at once for a tensor of `shape` with `inputs` task
    /// vectors of `elementSize`-byte elements, besides `out` and what `load` reads into.
    func wholeTensorBytes(shape: [Int], inputs: Int, elementSize: Int) -> Int
    /// Why a tensor of `shape` cannot be merged whole at all (a limit of the method's kernels), or nil.
    func wholeTensorProblem(shape: [Int]) -> String?
}

extension WholeTensorMergeMethod {
    /// One tensor-sized scratch buffer (a sum of the task vectors, say).
    public func wholeTensorBytes(shape: [Int], inputs: Int, elementSize: Int) -> Int {
        elementSize * shape.reduce(1, *)
    }

    public func wholeTensorProblem(shape: [Int]) -> String? { nil }
}

/// The task vectors τᵢ of one tensor, loaded on demand, one input at a time.
public struct TensorDeltas<T: MergeScalar> {
    /// The tensor's name and shape.
    public let tensor: String
    public let shape: [Int]
    /// The number of inputs (task vectors).
    public let count: Int
    private let loader: (Int, UnsafeMutableBufferPointer<T>) throws(MergeKitError) -> Void

    /// - Parameter load: writes τ of input `i` (row-major, `elementCount` values) into the buffer.
    public init(tensor: String, shape: [Int], count: Int,
                load: @escaping (Int, UnsafeMutableBufferPointer<T>) throws(MergeKitError) -> Void) {
        self.tensor = tensor
        self.shape = shape
        self.count = count
        self.loader = load
    }

    /// Task vectors held in memory (tests, library callers).
    public init(tensor: String, shape: [Int], values: [[T]]) {
        let n = shape.reduce(1, *)
        precondition(values.allSatisfy { $0.count == n }, "every task vector must have \(n) elements")
        self.init(tensor: tensor, shape: shape, count: values.count) { i, destination in
            precondition(destination.count == n)
            _ = destination.update(fromContentsOf: values[i])
        }
    }

    /// Elements of the tensor.
    public var elementCount: Int { shape.reduce(1, *) }

    /// Writes τ of input `i` into `destination` (`elementCount` values).
    public func load(_ i: Int, into destination: UnsafeMutableBufferPointer<T>) throws(MergeKitError) {
        precondition(i >= 0 && i < count && destination.count == elementCount)
        try loader(i, destination)
    }
}
