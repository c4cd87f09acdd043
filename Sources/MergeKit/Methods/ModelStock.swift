/// Model Stock (Jang et al., "Model Stock: All we need is just a few fine-tuned models",
/// ECCV 2024), per tensor as mergekit's `model_stock` computes it:
///
///     cos θ = mean over pairs i < j of  τᵢ·τⱼ / max(‖τᵢ‖‖τⱼ‖, 1e-6), each clamped to [−1, 1]
///     t     = N cos θ / (1 + (N − 1) cos θ)          (t = 0 where |1 + (N − 1) cos θ| < 1e-6)
///     θ     = t · mean(θᵢ) + (1 − t) · θ₀  =  θ₀ + t · mean(τᵢ)
///
/// over the whole flattened tensor (mergekit's default). The dot products come from a per-tensor
/// statistics pass, accumulated in Double. `filter_wise` (mergekit's option) takes cos θ and t
/// per filter instead: per run of the last dimension (a row of a matrix; a vector is one filter),
/// from that row's dot products (the project's fixed-order Float kernels), with no statistics
/// pass — the executor cuts chunks at row boundaries. Needs at least two fine-tuned models; the
/// method sets its own coefficient, so `--weight` is rejected. NaN in a tensor (or a row) makes its
/// t NaN.
public struct ModelStock: MergeMethod {
    public static let info = MethodInfo(
        name: "model-stock",
        summary: "per tensor θ₀ + t·mean(τᵢ), t from the mean pairwise cosine of the task vectors",
        reference: "Jang et al., Model Stock (ECCV 2024)")

    /// t per filter (row of the last dimension) rather than per tensor.
    public let filterWise: Bool

    public init(filterWise: Bool = false) {
        self.filterWise = filterWise
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { filterWise ? [JSONMember("filter_wise", .bool(true))] : [] }

    /// Filter-wise, chunks hold whole filters: runs of the last dimension (a vector is one).
    public func chunkAlignment(shape: [Int]) -> Int { filterWise ? Swift.max(1, shape.last ?? 1) : 1 }

    /// mergekit forms τᵢ in its `dtype` (`ComputeDType`).
    public var roundsTaskVectors: Bool { true }

    public var statistics: StatisticsRequest {
        var request = StatisticsRequest()
        request.tensorGram = !filterWise
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
        interpolation(count: gram.count) { gram[$0][$1] }
    }

    /// t from the Gram entries `gram(i, j)` of `n` task vectors: the mean of the pairwise cosines
    /// (in pair order), each clamped, then N cos / (1 + (N − 1) cos), 0 at the singularity.
    static func interpolation(count n: Int, gram: (Int, Int) -> Double) -> Double {
        var sum = 0.0, pairs = 0
        for i in 0..<n {
            for j in (i + 1)..<n {
                let norms = (gram(i, i).squareRoot() * gram(j, j).squareRoot())
                let c = gram(i, j) / Swift.max(norms, 1e-6)
                sum += c.isNaN ? c : Swift.min(1, Swift.max(-1, c))
                pairs += 1
            }
        }
        let cosine = sum / Double(pairs)
        let denominator = 1 + Double(n - 1) * cosine
        return abs(denominator) < 1e-6 ? 0 : Double(n) * cosine / denominator
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        out.initialize(repeating: 0)
        guard filterWise else {
            let t = ModelStock.interpolation(gram: context.tensorStatistics.gram)
            let coefficient = T(t / Double(deltas.count))
            for delta in deltas { T.axpy(coefficient, UnsafeBufferPointer(delta), out) }
            return
        }
        // Chunks start at a filter and hold whole filters (`chunkAlignment`); a vector is one.
        let row = context.shape.count >= 2 ? Swift.max(1, context.shape.last!) : Swift.max(1, out.count)
        let n = deltas.count
        var gram = [Double](repeating: 0, count: n * n)
        for start in stride(from: 0, to: out.count, by: row) {
            let rows = start..<Swift.min(out.count, start + row)
            let slices = deltas.map { UnsafeBufferPointer(rebasing: $0[rows]) }
            for i in 0..<n {
                for j in i..<n { gram[i * n + j] = Double(T.dot(slices[i], slices[j])) }
            }
            let t = ModelStock.interpolation(count: n) { gram[Swift.min($0, $1) * n + Swift.max($0, $1)] }
            let target = UnsafeMutableBufferPointer(rebasing: out[rows])
            let coefficient = T(t / Double(n))
            for slice in slices { T.axpy(coefficient, slice, target) }
        }
    }
}

extension ModelStock: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk],
        parameters: [.init("filter_wise", flag: "filter-wise", .flag, doc: "t per filter (row of the last dimension) instead of per tensor, as mergekit's filter_wise.")],
        presets: [.init("default", defaults: ["filter_wise": .bool(false)])],
        recipeNames: [("model_stock", "default"), ("model-stock", "default")],
        help: .init(abstract: "Model Stock: per tensor θ₀ + t·mean(τᵢ), t from the task vectors' mean pairwise cosine.")
    ) { a throws(MergeKitError) in
        ModelStock(filterWise: a.bool("filter_wise"))
    }
}
