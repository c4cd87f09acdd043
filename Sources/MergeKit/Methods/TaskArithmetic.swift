/// Task arithmetic (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023;
/// mlfoundations/task_vectors):
///
///     θ = θ₀ + λ · Σᵢ wᵢ τᵢ,   τᵢ = θᵢ − θ₀
///
/// - Addition: wᵢ = 1. Negation (forgetting a task): w = −1, i.e. θ = θ₀ − λ τ.
///   Analogy "A is to B as C is to D": weights (−1, +1, +1) on (τ_A, τ_B, τ_C).
/// - λ (`scale`) defaults to 1, mergekit's default for `task_arithmetic`; the paper picks λ on a
///   validation split from 0.00, 0.05, …, 1.00. Weights default to 1 and may be negative; they are
///   not normalised (as in mergekit).
/// - Zeros, ties and NaN need no special rule: the formula is applied elementwise, so a NaN or
///   ±∞ in any input with a non-zero weight propagates to that element of the output.
/// - Computed with BLAS: dᵢ = wᵢτᵢ (scal), Σ dᵢ in input order (axpy), × λ — deterministic.
public struct TaskArithmetic: TaskVectorMergeConfiguration {
    public static let info = MethodInfo(
        name: "task-arithmetic",
        summary: "θ₀ + λ·Σ wᵢτᵢ — add, negate (w < 0) or combine task vectors as analogies",
        reference: "Ilharco et al., Editing Models with Task Arithmetic (ICLR 2023)")

    /// λ, the scale applied to the weighted sum of task vectors.
    public let scale: Double
    let core: TaskVectorMerge

    /// - Parameter normalize: divide by Σwᵢ (mergekit's `normalize`, off by default as there).
    public init(scale: Double = 1.0, normalize: Bool = false) throws(MergeKitError) {
        try MethodParameter.scale.check(scale)
        self.scale = scale
        core = TaskVectorMerge(sparsification: .none, consensus: .none, aggregation: normalize ? .normalized : .sum, scale: scale)
    }

    public var info: MethodInfo { Self.info }
}
