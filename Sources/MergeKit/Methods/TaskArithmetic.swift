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

extension TaskArithmetic: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .scaled],
        parameters: [.weight, .lambda("λ, the scale of the summed task vectors (the paper sweeps 0–1)."), .normalize],
        presets: [.init("default", defaults: ["lambda": .number(1), "normalize": .bool(false)])],
        recipeNames: [("task_arithmetic", "default"), ("task-arithmetic", "default")],
        help: .init(
            abstract: "θ = θ₀ + λ·Σ wᵢτᵢ: add task vectors, subtract them (negative weights) or form analogies.",
            discussion: """
                Examples:
                  add:      merge-cli task-arithmetic --base B --model A --model C --scale 0.5 -o out
                  analogy:  merge-cli task-arithmetic --base B --model C --model Bm --model A \\
                              --weight 1 --weight 1 --weight -1 -o out     (τ_C + τ_B − τ_A)
                """)
    ) { a throws(MergeKitError) in
        try TaskArithmetic(scale: a.number("lambda"), normalize: a.bool("normalize"))
    }
}
