/// What the SVD-based merges (TSV-M, Iso-C) share: which tensors count as matrices, the mean of
/// the task vectors for every other tensor, and the dispatch of the generic whole-tensor hook to
/// the element types LAPACK has (Float, Double).
enum SVDMerge {
    /// A "matrix" is every 2-D float tensor, embeddings and `lm_head` included: the authors' code
    /// (TSV-M and Iso-C alike) decomposes every tensor with `len(shape) == 2` except CLIP's
    /// `text_projection`, a name no language model uses. Other shapes (biases, norms, 3-D/4-D
    /// convolution kernels) are averaged.
    static func isMatrix(_ shape: [Int]) -> Bool { shape.count == 2 }

    /// out = (λ/T)·Σₜ τₜ: the authors' `sum(tvs) / len(tvs)` (TSV-M's running mean is the same
    /// number), then θ₀ + λ·τ. Inputs summed in order with BLAS; NaN and ±∞ propagate.
    static func mean<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], into out: UnsafeMutableBufferPointer<T>) {
        out.update(repeating: 0)
        guard !deltas.isEmpty else { return }
        let coefficient = T(1 / Double(deltas.count))
        for delta in deltas { T.axpy(coefficient, UnsafeBufferPointer(delta), out) }
    }

    /// Calls `float` or `double` with the deltas and output typed as the element type they are.
    static func dispatch<T: MergeScalar>(
        _ deltas: TensorDeltas<T>, into out: UnsafeMutableBufferPointer<T>,
        float: (TensorDeltas<Float>, UnsafeMutableBufferPointer<Float>) throws(MergeKitError) -> Void,
        double: (TensorDeltas<Double>, UnsafeMutableBufferPointer<Double>) throws(MergeKitError) -> Void
    ) throws(MergeKitError) {
        let raw = UnsafeMutableRawPointer(out.baseAddress)
        if let d = deltas as? TensorDeltas<Float> {
            try float(d, UnsafeMutableBufferPointer(start: raw?.assumingMemoryBound(to: Float.self), count: out.count))
        } else if let d = deltas as? TensorDeltas<Double> {
            try double(d, UnsafeMutableBufferPointer(start: raw?.assumingMemoryBound(to: Double.self), count: out.count))
        } else {
            preconditionFailure("SVD-based merges run on Float or Double, not \(T.self)")
        }
    }

    /// out ← out·2ᵉ (undoing the scaling before the SVD, `PowerOfTwoScaling`); an error naming
    /// the tensor when the result no longer fits the element type.
    static func unscale<U: MergeScalar>(_ out: UnsafeMutableBufferPointer<U>, byPowerOfTwo e: Int, tensor: String,
                                        method: String) throws(MergeKitError) {
        PowerOfTwoScaling.scale(out, byPowerOfTwo: e)
        guard PowerOfTwoScaling.largestMagnitude(UnsafeBufferPointer(out)).isFinite else {
            throw MergeKitError(.nonFiniteValue, tensor: tensor,
                                "\(method)'s merged task vector of this matrix exceeds the largest \(U.self) (its entries reach about 2^\(e + 1)): the inputs' task vectors are too close to it",
                                fix: "Check the inputs (task vectors this large are not a fine-tune's); to merge them anyway, store them as F64, which merges in Double")
        }
    }

    /// The rows × columns of a matrix tensor.
    static func dimensions(_ shape: [Int]) -> (rows: Int, columns: Int) {
        precondition(isMatrix(shape))
        return (shape[0], shape[1])
    }
}

/// What the SVD-based merges do with singular triplets whose singular value is numerically zero
/// (σ ≤ σ₁·max(m, n)·ε, numpy's `matrix_rank` threshold): the task vector of a frozen tensor, a
/// LoRA update of rank r < min(m, n), a sum of such.
///
/// Their singular vectors are not determined by the matrix: LAPACK returns some orthonormal
/// completion. `keep` (the authors' code) uses them anyway: in TSV-M the polar factor of the
/// concatenated U then rotates the other tasks' genuine vectors towards these arbitrary ones, and
/// in Iso-C every one of them gets weight σ̄ (for a sum of LoRA updates, thousands of arbitrary
/// directions). `drop` (the default) leaves them out: TSV-M concatenates only the triplets with
/// σ above the threshold (at most k per task), Iso-C averages and reconstructs over the ρ
/// singular values above it (σ̄ = Σσ/ρ, so the nuclear norm is kept, as in the full-rank case).
/// For full-rank task vectors, the usual result of full fine-tuning, the two are identical.
public enum SVDNullSpace: String, Sendable, CaseIterable {
    case drop
    case keep
}

/// What TSV-M and Iso-C share: α and the null-space rule as parameters, no per-task weights, matrices
/// merged whole by the method's `matrix`, other tensors by the mean task vector; α is the method's λ.
protocol SVDMatrixMethod: WholeTensorMergeMethod {
    static var info: MethodInfo { get }
    /// α, the scale of the merged task vector.
    var scale: Double { get }
    /// Numerically zero singular values: left out (default) or kept (authors' code).
    var nullSpace: SVDNullSpace { get }
    /// τ of one matrix tensor, before α, into `out`.
    static func matrix<U: MergeScalar & LAPACKScalar>(_ deltas: TensorDeltas<U>, nullSpace: SVDNullSpace,
                                                      into out: UnsafeMutableBufferPointer<U>) throws(MergeKitError)
    /// The most bytes `matrix` holds at once for a rows×columns matrix and `tasks` task vectors
    /// of `elementSize`-byte elements, `out` not counted.
    func matrixBytes(rows: Int, columns: Int, tasks: Int, elementSize: Int) -> Int
}

extension SVDMatrixMethod {
    public var info: MethodInfo { Self.info }
    public var parameters: [JSONMember] { [JSONMember("scale", .double(scale)), JSONMember("null_space", .string(nullSpace.rawValue))] }

    public func validate(weights: [Double]) throws(MergeKitError) {
        try ParameterCheck.unitWeights(weights, method: Self.info.name)
    }

    public func mergesWhole(shape: [Int]) -> Bool { SVDMerge.isMatrix(shape) }

    public func wholeTensorBytes(shape: [Int], inputs: Int, elementSize: Int) -> Int {
        guard SVDMerge.isMatrix(shape) else { return 0 }
        return matrixBytes(rows: shape[0], columns: shape[1], tasks: inputs, elementSize: elementSize)
    }

    public func wholeTensorProblem(shape: [Int]) -> String? {
        guard SVDMerge.isMatrix(shape) else { return nil }
        return LAPACK.exactSVDProblem(rows: shape[0], columns: shape[1])
    }
    public var lambda: Double? { scale }
    public var wholeTensorKey: String { "null_space=\(nullSpace.rawValue)" }

    /// Non-matrix tensors: the mean of the task vectors (then α, by the executor).
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        SVDMerge.mean(deltas, into: out)
    }

    public func combineTensor<T: MergeScalar>(_ deltas: TensorDeltas<T>, weights: [T], into out: UnsafeMutableBufferPointer<T>,
                                              context: ChunkContext) throws(MergeKitError) {
        let nullSpace = self.nullSpace
        try SVDMerge.dispatch(deltas, into: out,
                              float: { d, o throws(MergeKitError) in try Self.matrix(d, nullSpace: nullSpace, into: o) },
                              double: { d, o throws(MergeKitError) in try Self.matrix(d, nullSpace: nullSpace, into: o) })
    }
}

extension SVDNullSpace: MethodChoice {}

extension SVDMatrixMethod {
    /// The description TSV-M and Iso-C share: α and the null-space rule, one preset, no weights;
    /// `build` makes the method from them.
    static func svdDescription(recipeNames: [String], help: MethodDescription.Help,
                               build: @escaping @Sendable (Double, SVDNullSpace) throws(MergeKitError) -> Self) -> MethodDescription {
        MethodDescription(
            info: info, kind: [.wholeTensor, .svd, .scaled], inputs: .unweighted,
            parameters: [
                .lambda("α, the scale of the merged task vector.", valueName: "α"),
                .init("null_space", flag: "null-space", .choice(SVDNullSpace.self),
                      doc: "drop: leave out singular triplets with numerically zero σ (their vectors are arbitrary); keep: the authors' code. Equal for full-rank task vectors."),
            ],
            presets: [.init("default", defaults: ["lambda": .number(1), "null_space": .string("drop")])],
            recipeNames: recipeNames.map { ($0, "default") }, help: help
        ) { a throws(MergeKitError) in
            try build(a.number("lambda"), try a.choice("null_space"))
        }
    }
}
