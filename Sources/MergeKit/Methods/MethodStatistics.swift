/// Numbers a method needs before its per-chunk pass, declared by the method and computed by the
/// executor: whole-model statistics in passes over every merged tensor (before any output is
/// written), per-tensor statistics in passes over one tensor (by the worker that merges it).
public struct StatisticsRequest: Sendable {
    /// Paper TIES trim: per input, the magnitude threshold that keeps |τ| ≥ the k-th smallest
    /// |τ| over the whole model, k = d − int(d·K) with K this keep fraction (ties all kept).
    public var globalKeepFraction: Double?
    /// MetaGPT: per input, Σ τ² over the whole model.
    public var globalSquaredNorms = false
    /// Per tensor and input: the window of ascending magnitude ranks to keep, from the tensor's
    /// element count (ties broken by position, so the window's size is exact).
    public var tensorRankWindow: (@Sendable (_ count: Int, _ input: Int) -> Range<Int>)?
    /// Among equal magnitudes in a rank window, earlier elements rank higher (a stable
    /// descending sort: "keep the k largest, earliest first") instead of lower.
    public var tensorRankTiesEarlierHigher = false
    /// Per tensor: the Gram matrix τᵢ·τⱼ of the inputs.
    public var tensorGram = false
    /// Per tensor: the inner products of θ₀ and the τᵢ (or of the τᵢ alone) over each vector
    /// along an axis (`TensorProducts`).
    public var tensorProducts: TensorProducts.Request?
    /// Per tensor and input: Σ|τ| and Σ|τ| over the elements a random mask keeps (DARE's, DELLA's).
    public var tensorDropL1: (any RandomMask)?
    /// Mass-vote sign ties are resolved by the sign of the vote Σ sign(S) summed over the whole
    /// model (`ModelStatistics.majority`).
    public var majoritySign = false
    /// The tie sign the method uses for a given majority (ties needing no majority: nil).
    public var tieSign: (@Sendable (Int) -> Int)?
    /// Per tensor: numbers the method gathers itself (SCE's variance selection and weights), made
    /// for a tensor of `shape` with `inputs` task vectors and kept in `TensorStatistics.accumulator`.
    public var tensorAccumulator: (@Sendable (_ shape: [Int], _ inputs: Int) -> any TensorAccumulator)?

    public init() {}

    var needsTensorPasses: Bool {
        tensorRankWindow != nil || tensorGram || tensorProducts != nil || tensorDropL1 != nil || tensorAccumulator != nil
    }
    var needsModelPasses: Bool { globalKeepFraction != nil || globalSquaredNorms }
}

/// Per-tensor numbers a method gathers itself, in passes over the tensor's chunks before the
/// merge pass (`StatisticsRequest.tensorAccumulator`). The worker merging the tensor runs pass 0
/// over every chunk in index order, calls `finishPass(0)`, and runs further passes while it
/// returns true; the merge pass's `combine` then finds the object in
/// `context.tensorStatistics.accumulator` (and may keep state in it across the tensor's chunks,
/// which arrive in index order).
public protocol TensorAccumulator: AnyObject {
    /// Observes one chunk (`chunk`: its element range in the tensor) of pass `pass`: the task
    /// vectors and θ₀, which must not be changed; `context.scratch` is free to use.
    func observe<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeMutableBufferPointer<T>, chunk: Range<Int>,
                                 pass: Int, context: ChunkContext)
    /// Ends pass `pass`; true when another pass is needed.
    func finishPass(_ pass: Int) -> Bool
}

/// A seeded random mask over the task vectors of a tensor, applied chunk by chunk (chunks hold
/// the whole runs the method's `chunkAlignment` asks for): the same (seed, tensor, input,
/// element) always gives the same decision, whatever the chunking or thread count.
public protocol RandomMask: Sendable {
    /// Zeroes the dropped entries of input `input`'s chunk `values`, which starts at element
    /// `offset` of `context.tensor` (no rescaling).
    func drop<T: MergeScalar>(_ values: UnsafeMutableBufferPointer<T>, input: Int, offset: Int, context: ChunkContext)
    /// Whether deciding costs enough (DELLA ranks every row) that the statistics pass keeps its
    /// decisions, one bit per element (`TensorStatistics.kept`), for the merge pass to reuse.
    var keepsDecisions: Bool { get }
}

extension RandomMask {
    public var keepsDecisions: Bool { false }
}

/// DARE's random mask: element j of input i of a tensor is dropped when the counter-based
/// random number for (seed, tensor, i, j) falls below the drop probability.
public struct DropMask: Sendable, Equatable {
    public let probability: Double
    public let seed: UInt64

    public init(probability: Double, seed: UInt64) {
        self.probability = probability
        self.seed = seed
    }

    var threshold: UInt32 { CounterRandom.threshold(dropProbability: probability) }

    /// Zeroes the dropped elements of `values` (element `offset + k` of the tensor for index k),
    /// using `bits` (room for `values.count` UInt32) as scratch.
    func apply<T: MergeScalar>(_ values: UnsafeMutableBufferPointer<T>, tensor: String, input: Int, offset: Int,
                               bits: UnsafeMutablePointer<UInt32>) {
        CounterRandom(seed: seed, tensor: tensor, input: input).fill(bits, count: values.count, start: offset)
        T.drop(values, bits: bits, limit: threshold)
    }
}

/// DARE's masks for all inputs: one seed, a drop probability per input (or one for all).
public struct DropMasks: Sendable, Equatable {
    public let probabilities: TaskVectorMerge.PerInput
    public let seed: UInt64

    public init(probabilities: TaskVectorMerge.PerInput, seed: UInt64) {
        self.probabilities = probabilities
        self.seed = seed
    }

    public func mask(for input: Int) -> DropMask { DropMask(probability: probabilities[input], seed: seed) }
}

extension DropMasks: RandomMask {
    public func drop<T: MergeScalar>(_ values: UnsafeMutableBufferPointer<T>, input: Int, offset: Int, context: ChunkContext) {
        mask(for: input).apply(values, tensor: context.tensor, input: input, offset: offset, bits: context.bitsScratch)
    }
}

/// Whole-model statistics, computed before the merge pass.
public struct ModelStatistics: Sendable {
    /// Per input: keep elements whose magnitude key is ≥ this (paper TIES trim).
    public var thresholdKeys: [UInt64]?
    /// Whether `thresholdKeys` are 64-bit (Double) keys; Float values then use their wide key.
    public var thresholdKeysAreWide = false
    /// Per input: Σ τ² over the merged tensors.
    public var squaredNorms: [Double]?
    /// Elements over all merged tensors (d).
    public var elementCount = 0
    /// The sign (+1, −1 or 0) of the mass vote Σ sign(Σᵢ wᵢτ̃ᵢ) over every merged element: a
    /// prediction (from the statistics sample) during the merge pass, checked against the count
    /// the merge pass makes.
    public var majority: Int?
    /// Whether `majority` was counted over every merged element before the merge pass (a
    /// partition's, from every partition's votes: `PartitionStatistics`), not predicted.
    var majorityIsCounted = false

    public init() {}
}

/// Per-tensor statistics and state, owned by the worker merging the tensor.
public final class TensorStatistics {
    /// Per input: the rank window to keep (its ordinals advance as chunks are visited in order).
    var windows: [RankWindow] = []
    /// τᵢ·τⱼ, accumulated in Double chunk by chunk.
    public internal(set) var gram: [[Double]] = []
    /// Per input: (Σ|τ|, Σ|τ| over kept elements).
    public internal(set) var dropL1: [(before: Double, after: Double)] = []
    /// Per input, when the mask keeps its decisions (`RandomMask.keepsDecisions`) and the tensor
    /// has at most `TensorStatisticsPass.keptBitsLimit` elements: bit j is set when element j is
    /// not zeroed by the mask (a kept zero may read as dropped: zeroing it changes nothing).
    public internal(set) var kept: [[UInt64]] = []
    /// The inner products of θ₀ and the τᵢ, vector by vector.
    public internal(set) var products: TensorProducts?
    /// What a method derives from the statistics once per tensor (the SLERP family's
    /// coefficients, `SphericalMergeMethod`), set when it merges the tensor's first chunk.
    var coefficients: [Double] = []
    /// Whether some vector's coefficient of θ₀ in `coefficients` is not 0 (else θ₀ is not read
    /// by the combination, and its finiteness does not matter).
    var coefficientsUseBase = true
    /// The method's own per-tensor numbers (`StatisticsRequest.tensorAccumulator`), after its passes.
    public internal(set) var accumulator: (any TensorAccumulator)?

    init() {}
}

/// What a method sees of the tensor it is merging, besides the numbers.
public final class ChunkContext {
    /// The tensor's name and shape.
    public let tensor: String
    public let shape: [Int]
    /// Element count of the whole tensor.
    public let tensorElementCount: Int
    /// Index of the current chunk's first element within the tensor (row-major).
    public internal(set) var elementOffset = 0
    public let model: ModelStatistics
    public let tensorStatistics: TensorStatistics
    /// The 16-bit dtype the merge rounds its intermediate results to, as mergekit computes in its
    /// recipe's `dtype` (`ComputeDType`), or nil for full precision. Methods that emulate
    /// mergekit's operations round where mergekit does; the others compute in full precision (the
    /// executor rounds their inputs and their result).
    public internal(set) var rounding: DType?

    /// Σ sign(vote) over the chunks merged with this context (mass-vote methods add to it).
    public var signVotes = 0
    /// Elements whose result depended on the tie sign (mass-vote methods add to it).
    public var resolvedTies = 0

    /// Worker-owned scratch memory for methods: `scratchSlots` buffers of `capacity` values,
    /// then `capacity` random bits.
    private let scratchMemory: UnsafeMutableRawBufferPointer
    /// Elements of the longest chunk the scratch serves (the worker's chunk capacity).
    let capacity: Int
    static let scratchSlots = 4
    static var scratchBytes: Int { scratchBytes(capacity: MergeExecutor.chunkElements) }
    /// The scratch for chunks of up to `capacity` elements.
    static func scratchBytes(capacity: Int) -> Int { (scratchSlots * 8 + 4) * capacity }

    /// Room for `capacity` random bits (DARE's masks), separate from the value slots.
    var bitsScratch: UnsafeMutablePointer<UInt32> {
        (scratchMemory.baseAddress! + ChunkContext.scratchSlots * capacity * 8)
            .bindMemory(to: UInt32.self, capacity: capacity)
    }

    /// Scratch buffer `slot` (< `scratchSlots`) of `count` values, valid for the current chunk.
    public func scratch<T: MergeScalar>(_ slot: Int, count: Int) -> UnsafeMutableBufferPointer<T> {
        let stride = capacity * 8
        precondition(slot < ChunkContext.scratchSlots && count * MemoryLayout<T>.stride <= stride)
        let start = scratchMemory.baseAddress! + slot * stride
        return UnsafeMutableBufferPointer(start: start.bindMemory(to: T.self, capacity: count), count: count)
    }

    init(tensor: String, shape: [Int], model: ModelStatistics, statistics: TensorStatistics,
         scratch: UnsafeMutableRawBufferPointer) {
        precondition(scratch.count >= ChunkContext.scratchBytes && scratch.count % (ChunkContext.scratchSlots * 8 + 4) == 0)
        self.scratchMemory = scratch
        capacity = scratch.count / (ChunkContext.scratchSlots * 8 + 4)
        self.tensor = tensor
        self.shape = shape
        self.tensorElementCount = shape.reduce(1, *)
        self.model = model
        self.tensorStatistics = statistics
    }
}
