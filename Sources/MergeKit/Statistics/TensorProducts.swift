/// The inner products of one tensor's base and task vectors, vector by vector: the Gram matrix of
/// x₀ = θ₀, x₁ = τ₁, …, xₙ = τₙ over each vector of the tensor — the whole tensor flattened, or
/// each run along its last or first axis (`Axis`) — accumulated in Double chunk by chunk (each
/// chunk's products in the compute type, as Model Stock's Gram matrix is).
///
/// The model weights θᵢ = x₀ + xᵢ and the base x₀ are combinations of these vectors, so every
/// norm and angle between them follows from these numbers (`Gram`). The SLERP family
/// (`SphericalMergeMethod`) computes its coefficients from them and then combines θ₀ and the τᵢ
/// linearly in one streaming pass. Memory: (n + 1)(n + 2)/2 numbers per vector.
public struct TensorProducts: Sendable {
    /// Which runs of a tensor's elements are the vectors.
    public enum Axis: Sendable, Equatable {
        /// The whole tensor, flattened: one vector.
        case flattened
        /// Each run along the last axis (a matrix's rows, mergekit's `dim=-1`).
        case lastAxis
        /// Each run along the first axis (a matrix's columns, mergekit's `dim=0`): element f of
        /// a tensor of shape [d₀, …] is in vector f mod (count / d₀).
        case firstAxis
    }

    /// What a method asks for: the vectors, and whether it needs the products with θ₀ (a method
    /// working on task vectors only does not; θ₀'s row of the Gram matrix is then 0).
    public struct Request: Sendable, Equatable {
        public let axis: Axis
        public let base: Bool

        public init(axis: Axis, base: Bool) {
            self.axis = axis
            self.base = base
        }
    }

    /// How the elements (row-major index f) fall into `count` vectors.
    enum Layout: Equatable {
        /// Consecutive runs of `length` elements: f is in vector f / length.
        case runs(length: Int)
        /// Interleaved: f is in vector f mod `count`.
        case strided(count: Int)

        init(axis: Axis, shape: [Int]) {
            let elements = shape.reduce(1, *)
            switch axis {
            case .flattened:
                self = .runs(length: Swift.max(1, elements))
            case .lastAxis:
                self = .runs(length: Swift.max(1, shape.last ?? 1))
            case .firstAxis:
                let first = shape.first ?? 1
                self = shape.count <= 1 ? .runs(length: Swift.max(1, elements)) : .strided(count: first == 0 ? 1 : Swift.max(1, elements / first))
            }
        }

        /// The number of vectors in a tensor of `elements` elements.
        func count(elements: Int) -> Int {
            switch self {
            case .runs(let length): return Swift.max(1, (elements + length - 1) / length)
            case .strided(let count): return count
            }
        }
    }

    let layout: Layout
    /// n + 1: the base and the task vectors.
    let size: Int
    /// Whether the products with θ₀ are computed (else they are 0).
    let includesBase: Bool
    /// Vectors of the tensor.
    let count: Int
    /// Per vector, the upper triangle of the Gram matrix, row by row.
    private var values: [Double]

    init(_ request: Request, shape: [Int], inputs: Int) {
        layout = Layout(axis: request.axis, shape: shape)
        includesBase = request.base
        size = inputs + 1
        count = layout.count(elements: shape.reduce(1, *))
        values = [Double](repeating: 0, count: count * Self.pairs(size))
    }

    static func pairs(_ size: Int) -> Int { size * (size + 1) / 2 }

    /// Index of (i, j), i ≤ j, in a vector's upper triangle.
    private func pair(_ i: Int, _ j: Int) -> Int { i * size - i * (i - 1) / 2 + (j - i) }

    /// xᵢ·xⱼ over vector `v`.
    func product(_ v: Int, _ i: Int, _ j: Int) -> Double {
        values[v * Self.pairs(size) + (i <= j ? pair(i, j) : pair(j, i))]
    }

    /// Adds the products of one chunk, whose first element is element `start` of the tensor.
    /// A non-finite base element (one every input shares, where τ = 0: `FiniteCheck`) counts as
    /// 0: the vectors are the rest of the tensor, and the output keeps the base's value there.
    mutating func accumulate<T: MergeScalar>(base: UnsafeBufferPointer<T>, deltas: [UnsafeMutableBufferPointer<T>], start: Int) {
        // Without the products of θ₀ (`includesBase` false), θ₀ is not read.
        let finiteBase = includesBase && T.reaches(base, key: T.infinityKey) ? base.map { $0.isFinite ? $0 : 0 } : nil
        if let finiteBase {
            finiteBase.withUnsafeBufferPointer { accumulate(base: $0, deltas: deltas, start: start) }
            return
        }
        let vectors = [base] + deltas.map { UnsafeBufferPointer($0) }
        let n = base.count
        let stride = Self.pairs(size)
        let first = includesBase ? 0 : 1
        switch layout {
        case .runs(let length):
            var k = 0
            while k < n {
                let v = (start + k) / length
                let end = Swift.min(n, (v + 1) * length - start)
                for i in first..<size {
                    let a = UnsafeBufferPointer(rebasing: vectors[i][k..<end])
                    for j in i..<size {
                        values[v * stride + pair(i, j)] += Double(T.dot(a, UnsafeBufferPointer(rebasing: vectors[j][k..<end])))
                    }
                }
                k = end
            }
        case .strided(let count):
            let size = size, offsets = (0..<size).map { i in (0..<size).map { j in i <= j ? pair(i, j) : 0 } }
            values.withUnsafeMutableBufferPointer { sums in
                for i in first..<size {
                    for j in i..<size {
                        let a = vectors[i], b = vectors[j], offset = offsets[i][j]
                        var v = start % count
                        for k in 0..<n {
                            sums[v * stride + offset] += Double(a[k]) * Double(b[k])
                            v += 1
                            if v == count { v = 0 }
                        }
                    }
                }
            }
        }
    }

    /// The Gram matrix of vector `v`.
    func gram(_ v: Int) -> Gram {
        var entries = [Double](repeating: 0, count: size * size)
        for i in 0..<size {
            for j in i..<size {
                let p = product(v, i, j)
                entries[i * size + j] = p
                entries[j * size + i] = p
            }
        }
        return Gram(size: size, entries: entries)
    }

    /// The inner products of x₀ = θ₀, xᵢ = τᵢ over one vector, and through them of any
    /// combinations Σ aᵢxᵢ (given by their coefficients a).
    struct Gram {
        let size: Int
        /// Row-major, symmetric.
        let entries: [Double]

        /// aᵀ G b: the inner product of Σ aᵢxᵢ and Σ bᵢxᵢ.
        func dot(_ a: [Double], _ b: [Double]) -> Double {
            var total = 0.0
            for i in 0..<size where a[i] != 0 {
                var row = 0.0
                for j in 0..<size where b[j] != 0 { row += entries[i * size + j] * b[j] }
                total += a[i] * row
            }
            return total
        }

        /// ‖Σ aᵢxᵢ‖ (rounding can make the square slightly negative for a zero vector: 0 then).
        func norm(_ a: [Double]) -> Double { Swift.max(0, dot(a, a)).squareRoot() }

        /// The coefficients of x₀ = θ₀.
        var base: [Double] { unit(0) }

        /// The coefficients of θᵢ = θ₀ + τᵢ, the model weights of input i (0-based).
        func model(_ i: Int) -> [Double] {
            var a = unit(0)
            a[i + 1] = 1
            return a
        }

        /// The coefficients of τᵢ (input i, 0-based).
        func taskVector(_ i: Int) -> [Double] { unit(i + 1) }

        private func unit(_ k: Int) -> [Double] {
            var a = [Double](repeating: 0, count: size)
            a[k] = 1
            return a
        }
    }
}
