/// Model Stock (Jang et al., "Model Stock: All we need is just a few fine-tuned models",
/// ECCV 2024), per tensor as mergekit's `model_stock` computes it:
///
///     cos θ = mean over pairs i < j of  τᵢ·τⱼ / max(‖τᵢ‖‖τⱼ‖, 1e-6), each clamped to [−1, 1]
///     t     = N cos θ / (1 + (N − 1) cos θ)          (t = 0 where |1 + (N − 1) cos θ| < 1e-6)
///     θ     = t · mean(θᵢ) + (1 − t) · θ₀  =  θ₀ + t · mean(τᵢ)
///
/// over the whole flattened tensor (mergekit's default, not filter-wise). The dot products come
/// from a per-tensor statistics pass, accumulated in Double. Needs at least two fine-tuned models;
/// the method sets its own coefficient, so `--weight` is rejected. NaN in a tensor makes its t NaN.
public struct ModelStock: MergeMethod {
    public static let info = MethodInfo(
        name: "model-stock",
        summary: "per tensor θ₀ + t·mean(τᵢ), t from the mean pairwise cosine of the task vectors",
        reference: "Jang et al., Model Stock (ECCV 2024)")

    public init() {}

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [] }

    /// mergekit forms τᵢ in its `dtype` (`ComputeDType`).
    public var roundsTaskVectors: Bool { true }

    public var statistics: StatisticsRequest {
        var request = StatisticsRequest()
        request.tensorGram = true
        return request
    }

    public func validate(weights: [Double]) throws(MergeKitError) {
        guard weights.count >= 2 else {
            throw MergeKitError(.invalidArgument, "model-stock needs at least 2 fine-tuned models, got \(weights.count)",
                fix: "Give two or more fine-tuned models")
        }
        try ParameterCheck.unitWeights(weights, method: "model-stock")
    }

    /// t from a Gram matrix of N task vectors.
    static func interpolation(gram: [[Double]]) -> Double {
        let n = gram.count
        var cosines: [Double] = []
        for i in 0..<n {
            for j in (i + 1)..<n {
                let norms = (gram[i][i].squareRoot() * gram[j][j].squareRoot())
                let c = gram[i][j] / Swift.max(norms, 1e-6)
                cosines.append(c.isNaN ? c : Swift.min(1, Swift.max(-1, c)))
            }
        }
        let cosine = cosines.reduce(0, +) / Double(cosines.count)
        let denominator = 1 + Double(n - 1) * cosine
        return abs(denominator) < 1e-6 ? 0 : Double(n) * cosine / denominator
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        let t = ModelStock.interpolation(gram: context.tensorStatistics.gram)
        let coefficient = T(t / Double(deltas.count))
        out.initialize(repeating: 0)
        for delta in deltas { T.axpy(coefficient, UnsafeBufferPointer(delta), out) }
    }
}

extension ModelStock: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk],
        parameters: [.init("filter_wise", flag: nil, .flag, doc: "mergekit's per-row Model Stock; only false is supported.")],
        presets: [.init("default", defaults: ["filter_wise": .bool(false)])],
        recipeNames: [("model_stock", "default"), ("model-stock", "default")],
        help: .init(abstract: "Model Stock: per tensor θ₀ + t·mean(τᵢ), t from the task vectors' mean pairwise cosine.")
    ) { a throws(MergeKitError) in
        if a.bool("filter_wise") {
            throw MergeKitError(.invalidArgument, "filter_wise: true (per-row Model Stock) is not supported", fix: "Remove filter_wise")
        }
        return ModelStock()
    }
}
