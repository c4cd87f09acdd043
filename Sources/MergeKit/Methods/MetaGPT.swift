/// MetaGPT, data-free (Zhou et al., "MetaGPT: Merging Large Language Models Using Model
/// Exclusive Task Arithmetic", 2024):
///
///     λₜ = ‖τₜ‖² / Σₖ ‖τₖ‖²   (norms over the whole model),   θ = θ₀ + Σₜ λₜ τₜ
///
/// The coefficients come from a statistics pass over every merged tensor before the merge pass;
/// the norms are accumulated chunk by chunk in Double in a fixed order, so they do not depend on
/// the thread count. The method sets its own coefficients, so `--weight` is rejected. If every
/// task vector is zero the output is θ₀. A NaN anywhere makes every λ NaN.
public struct MetaGPT: MergeMethod {
    public static let info = MethodInfo(
        name: "metagpt",
        summary: "θ₀ + Σ λₜτₜ with data-free λₜ = ‖τₜ‖²/Σ‖τₖ‖² over the whole model",
        reference: "Zhou et al., MetaGPT: Merging LLMs Using Model Exclusive Task Arithmetic (2024)")

    public init() {}

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [] }

    public var statistics: StatisticsRequest {
        var request = StatisticsRequest()
        request.globalSquaredNorms = true
        return request
    }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.unitWeights(weights, method: "metagpt")
    }

    /// λₜ from the model's squared norms.
    static func coefficients(_ squaredNorms: [Double]) -> [Double] {
        let total = squaredNorms.reduce(0, +)
        return squaredNorms.map { total > 0 ? $0 / total : 0 }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        let lambdas = MetaGPT.coefficients(context.model.squaredNorms!)
        out.initialize(repeating: 0)
        for (delta, lambda) in zip(deltas, lambdas) { T.axpy(T(lambda), UnsafeBufferPointer(delta), out) }
    }
}

extension MetaGPT: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .modelStatistics],
        parameters: [],
        presets: [.init("default", defaults: [:])],
        recipeNames: [("metagpt", "default")],
        help: .init(abstract: "MetaGPT (data-free): θ₀ + Σ λₜτₜ with λₜ = ‖τₜ‖²/Σ‖τₖ‖² over the whole model.")
    ) { _ throws(MergeKitError) in
        MetaGPT()
    }
}
