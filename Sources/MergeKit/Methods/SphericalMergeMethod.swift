/// The SLERP family (`Slerp`, `NuSlerp`, `MultiSlerp`, `Karcher`): methods whose result, for each
/// vector of a tensor, is a linear combination of θ₀ and the task vectors with coefficients that
/// depend only on their inner products.
///
/// mergekit computes these methods on model weights θᵢ (or, in the base-relative forms, on the
/// task vectors θᵢ − θ₀), each tensor flattened (or row by row). Every vector they touch is a
/// combination of x₀ = θ₀ and xᵢ = τᵢ — θᵢ = x₀ + xᵢ, the base is x₀ — and so is everything they
/// compute from them: normalising, interpolating along a great circle, the tangent-space steps
/// of the Karcher mean. So the norms and angles all follow from the Gram matrix of the xᵢ over the
/// vector (`TensorProducts`, from one per-tensor statistics pass), the method computes the
/// coefficients cᵢ of its result θ = Σ cᵢxᵢ from it in Double, once per vector (`coefficients`),
/// and `combine` streams τ = θ − θ₀ = (c₀ − 1)·θ₀ + Σ cᵢτᵢ chunk by chunk: two passes over each
/// tensor (the first from the worker's cache when the tensor fits it), memory flat in its size,
/// no tensor-sized buffer.
protocol SphericalMergeMethod: MergeMethod {
    /// Which runs of a tensor are the vectors the method works on.
    var axis: TensorProducts.Axis { get }
    /// Whether the coefficients depend on θ₀ (methods on model weights), or only on the task
    /// vectors (base-relative forms: the products with θ₀ are then not computed, and read as 0).
    var usesBase: Bool { get }
    /// The coefficients over x₀ = θ₀, x₁…xₙ = τ₁…τₙ of the merged θ for one vector, from the
    /// vector's inner products; `weights` are the inputs' weights.
    func coefficients(_ gram: TensorProducts.Gram, weights: [Double]) -> [Double]
}

extension SphericalMergeMethod {
    public var statistics: StatisticsRequest {
        var request = StatisticsRequest()
        request.tensorProducts = TensorProducts.Request(axis: axis, base: usesBase)
        return request
    }

    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        let statistics = context.tensorStatistics
        guard let products = statistics.products else { preconditionFailure("\(info.name) runs without its per-tensor products") }
        let size = products.size
        if statistics.coefficients.isEmpty {
            // Once per tensor (chunks of a tensor with statistics share one context, in order):
            // τ = (c₀ − 1)·θ₀ + Σ cᵢτᵢ for every vector.
            let doubleWeights = weights.map { Double($0) }
            var all: [Double] = []
            all.reserveCapacity(products.count * size)
            for v in 0..<products.count {
                var c = coefficients(products.gram(v), weights: doubleWeights)
                c[0] -= 1
                all += c
            }
            statistics.coefficients = all
            statistics.coefficientsUseBase = stride(from: 0, to: all.count, by: size).contains { all[$0] != 0 }
        }
        // A non-finite base element is one every input shares (τ = 0 there, `FiniteCheck`): it
        // counts as 0, as in the products, and the executor keeps the base's value. When no
        // vector's combination takes θ₀ (the base-relative forms), θ₀ is not read at all.
        var finiteBase = base
        if statistics.coefficientsUseBase && T.reaches(base, key: T.infinityKey) {
            let copy: UnsafeMutableBufferPointer<T> = context.scratch(0, count: base.count)
            for k in base.indices { copy[k] = base[k].isFinite ? base[k] : 0 }
            finiteBase = UnsafeBufferPointer(copy)
        }
        combineLinearly([finiteBase] + deltas.map { UnsafeBufferPointer($0) }, coefficients: statistics.coefficients,
                        layout: products.layout, start: context.elementOffset, into: out)
    }
}

/// out = Σᵢ cᵢ[v]·xᵢ elementwise, v the vector of each element (element `start + k` of the
/// tensor for out[k]); `coefficients` holds each vector's cᵢ in turn.
@_specialize(where T == Float)
@_specialize(where T == Double)
private func combineLinearly<T: MergeScalar>(_ vectors: [UnsafeBufferPointer<T>], coefficients: [Double], layout: TensorProducts.Layout,
                                             start: Int, into out: UnsafeMutableBufferPointer<T>) {
    let size = vectors.count
    out.initialize(repeating: 0)
    switch layout {
    case .runs(let length):
        var k = 0
        while k < out.count {
            let v = (start + k) / length
            let end = Swift.min(out.count, (v + 1) * length - start)
            let segment = UnsafeMutableBufferPointer(rebasing: out[k..<end])
            for i in 0..<size where coefficients[v * size + i] != 0 {
                T.axpy(T(coefficients[v * size + i]), UnsafeBufferPointer(rebasing: vectors[i][k..<end]), segment)
            }
            k = end
        }
    case .strided(let count):
        for i in 0..<size {
            let x = vectors[i]
            var v = start % count
            for k in 0..<out.count {
                // A zero coefficient adds nothing (as in the runs above), whatever x[k] holds.
                let c = coefficients[v * size + i]
                if c != 0 { out[k] += T(c) * x[k] }
                v += 1
                if v == count { v = 0 }
            }
        }
    }
}
