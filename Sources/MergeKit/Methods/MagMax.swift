/// MagMax (Marczak et al., "MagMax: Leveraging Model Merging for Seamless Continual
/// Learning", ECCV 2024):
///
///     per element, τ* = the τᵢ with the largest |τᵢ|;   θ = θ₀ + λ τ*
///
/// Ties go to the earliest input (so the result does not depend on chunking or threads). λ
/// defaults to 1 (the paper tunes it on validation data). The method picks one task per entry,
/// so `--weight` is rejected. A NaN never wins the `>` comparison, so it is skipped (an entry
/// where every τᵢ is NaN or 0 yields θ₀).
public struct MagMax: MergeMethod {
    public static let info = MethodInfo(
        name: "magmax",
        summary: "per entry keep the task vector with the largest magnitude: θ₀ + λ·τ_argmax|τ|",
        reference: "Marczak et al., MagMax (ECCV 2024)")

    public let scale: Double

    public init(scale: Double = 1) throws(MergeKitError) {
        try MethodParameter.scale.check(scale)
        self.scale = scale
    }

    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [JSONMember("scale", .double(scale))] }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.unitWeights(weights, method: "magmax")
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        T.largestMagnitude(deltas, into: out)
    }

    public var lambda: Double? { scale }
}

extension MagMax: DescribedMethod {
    public static let methodDescription = MethodDescription(
        info: info, kind: [.perChunk, .scaled],
        parameters: [.lambda("λ.")],
        presets: [.init("default", defaults: ["lambda": .number(1)])],
        recipeNames: [("magmax", "default")],
        help: .init(abstract: "MagMax: per entry keep the task vector with the largest magnitude, θ₀ + λ·τ*.")
    ) { a throws(MergeKitError) in
        try MagMax(scale: a.number("lambda"))
    }
}
