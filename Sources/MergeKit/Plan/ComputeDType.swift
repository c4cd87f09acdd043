/// The precision a merge computes in (`OutputSpec.compute`).
///
/// mergekit casts every tensor it loads to its recipe's `dtype` and runs each PyTorch operation in
/// that dtype: with `float16` or `bfloat16`, every elementwise result (θᵢ − θ₀, wᵢ·τᵢ, a sum over
/// the models, a quotient, λ·τ, θ₀ + τ) is rounded to the 16-bit type, while sums over the models
/// accumulate in float32 and round once. MergeKit's float32 compute keeps every intermediate in
/// float32 instead, so on a float16 recipe the two agree except where a task vector cancels or
/// vanishes at float16 resolution, which flips a sign vote or a top-k membership.
///
/// - `float32`: full precision (Float, or Double where an input or the output is F64): the
///   closest result to exact arithmetic.
/// - `float16`, `bfloat16`: mergekit's arithmetic, emulated in Float with round-to-nearest-even to
///   the 16-bit type after each operation mergekit rounds (`ChunkContext.rounding`): the inputs
///   as they are loaded; the task vectors as they are formed, for the methods mergekit computes on
///   task vectors (`MergeMethod.roundsTaskVectors`); the task-arithmetic family's weights,
///   products, sums and quotients (`TaskVectorMerge`); λ·τ and the result θ (`MergeWorker.finish`).
///   A method's other internals (norms, angles, variances) stay in float32.
///
/// A recipe computes in its `dtype` when that is float16 or bfloat16 (`init(recipeDType:)`),
/// unless the caller asks otherwise; the merge subcommands compute in float32 unless asked.
public enum ComputeDType: String, Sendable, CaseIterable {
    case float32, float16, bfloat16

    /// The 16-bit dtype results are rounded to, or nil for full precision.
    public var rounding: DType? {
        switch self {
        case .float32: return nil
        case .float16: return .F16
        case .bfloat16: return .BF16
        }
    }

    /// What a recipe's `dtype` computes in: float16 and bfloat16 as mergekit does, anything else
    /// (float32, float64, none) in full precision.
    public init(recipeDType: DType?) {
        switch recipeDType {
        case .F16: self = .float16
        case .BF16: self = .bfloat16
        default: self = .float32
        }
    }
}
