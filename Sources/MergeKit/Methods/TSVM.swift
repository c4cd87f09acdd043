/// TSV-M, Task Singular Vectors: Merging (Gargiulo et al., "Task Singular Vectors: Reducing Task
/// Interference in Model Merging", CVPR 2025; AntoAndGar/task_singular_vectors), per tensor:
///
///     matrix τₜ (m×n), T tasks:  τₜ = Uₜ Σₜ Vₜᵀ (thin SVD),  k = ⌊min(m, n)/T⌋
///     U = [U₁[:, :k] … U_T[:, :k]]  (m×Tk),  Σ = [σ₁[:k] … σ_T[:k]],  V = [V₁[:, :k] … V_T[:, :k]]  (n×Tk)
///     U⊥ = P_U Q_Uᵀ from U = P_U S_U Q_Uᵀ,  V⊥ = P_V Q_Vᵀ likewise  (polar factors: the
///          orthonormal matrices nearest to U and V, which decorrelates the tasks' subspaces)
///     τ = U⊥ diag(Σ) V⊥ᵀ
///     other tensors (biases, norms, …):  τ = (1/T) Σₜ τₜ
///     θ = θ₀ + α τ
///
/// - Matrices are all 2-D float tensors, embeddings and `lm_head` included (the authors skip only
///   CLIP's `text_projection`); see `SVDMerge.isMatrix`.
/// - α (`scale`) defaults to 1, the authors' default for TSV-M. k = ⌊min(m, n)/T⌋ is their
///   `sv_reduction = 1/T`, so the kept triplets of all tasks fill at most the full rank.
/// - The authors' code writes the kept triplets into zero-padded m×min(m, n) and min(m, n)×n
///   buffers and takes the polar factors of those. The padded columns meet zero singular values
///   in Σ, so that gives the same τ; MergeKit concatenates only the kept triplets (smaller SVDs).
///   The fixture script checks the two forms agree to 1e-15.
/// - When min(m, n) < T, k = 0 and the matrix's τ is 0 (θ₀ is kept), as in the authors' code.
/// - Triplets with a numerically zero singular value (a frozen tensor's τₜ = 0, a low-rank τₜ
///   such as a LoRA update) are left out of the concatenation by default (`nullSpace = .drop`):
///   their singular vectors are arbitrary and would distort the polar factors. `.keep` is the
///   authors' code exactly; the two agree for full-rank task vectors. See `SVDNullSpace`.
/// - The method sets no per-task coefficients: `--weight` is rejected.
/// - Ties: equal singular values at the cut σₖ = σₖ₊₁ make the kept subspace depend on LAPACK's
///   choice, as it does in every implementation. A zero task vector contributes no triplets (with
///   `.drop`) and is not decomposed; when every task vector of a matrix is zero, τ = 0 without
///   any SVD (with `.keep` too). NaN or ±∞ in a matrix's input is an error naming the file and
///   element (an SVD cannot use it); in other tensors it propagates.
/// - Range: each τₜ is decomposed as τₜ·2^−eₜ (its largest entry in [1, 2), `PowerOfTwoScaling`)
///   and its σ kept with eₜ, so entries near the largest or the smallest normal Float give
///   exactly 2ᵏ times the result of the scaled-down copy, instead of σ overflowing (which made
///   every triplet "numerically zero" and τ silently 0). A result beyond the compute type's
///   range is an error naming the tensor.
/// - Cost per matrix: T + 2 exact SVDs (LAPACK `gesdd`, `gesvd` if it does not converge), in the
///   compute type (Float; Double for F64 tensors). Memory (`matrixBytes`, checked before the merge
///   starts): the tensor-sized output buffer (used as scratch for each τₜ in turn) plus the
///   largest of one SVD (its copy, U, Vᵀ and `gesdd`'s 3·min(m, n)² workspace) with the kept
///   triplets of all tasks (≤ min(m, n)·(m + n) values), and each polar factor's SVD: about 9×
///   the matrix for a square one, whatever T is (peak RSS 9.3–9.6× on 2000²–3000² F32, the
///   worker's staging buffers included).
public struct TSVM: SVDMatrixMethod {
    public static let info = MethodInfo(
        name: "tsv-m",
        summary: "per matrix keep each task's top ⌊min(m,n)/T⌋ singular triplets, orthogonalise them across tasks, θ₀ + α·τ",
        reference: "Gargiulo et al., Task Singular Vectors: Reducing Task Interference in Model Merging (CVPR 2025)")

    /// α, the scale of the merged task vector.
    public let scale: Double
    /// Triplets with numerically zero singular values: left out (default) or kept (authors' code).
    public let nullSpace: SVDNullSpace

    public init(scale: Double = 1, nullSpace: SVDNullSpace = .drop) throws(MergeKitError) {
        try MethodParameter.scale.check(scale)
        self.scale = scale
        self.nullSpace = nullSpace
    }

    /// τ of one matrix tensor, before α, into `out` (which also holds each τₜ while it is decomposed).
    static func matrix<U: MergeScalar & LAPACKScalar>(_ deltas: TensorDeltas<U>, nullSpace: SVDNullSpace = .drop,
                                                       into out: UnsafeMutableBufferPointer<U>) throws(MergeKitError) {
        let (m, n) = SVDMerge.dimensions(deltas.shape)
        let tasks = deltas.count
        let k = tasks == 0 ? 0 : Swift.min(m, n) / tasks
        guard k > 0 else {
            out.update(repeating: 0)
            return
        }
        // Per task: its leading triplets, U columns as rows of uT (kₜ × m), σ, Vᵀ rows (kₜ × n).
        // Each τₜ is decomposed as τₜ·2^−eₜ (largest entry in [1, 2)), so its σ are kept with eₜ.
        var uT: [U] = [], sCat: [U] = [], vtCat: [U] = [], exponents: [Int] = []
        uT.reserveCapacity(tasks * k * m)
        vtCat.reserveCapacity(tasks * k * n)
        func append(_ d: LAPACK.Decomposition<U>, count: Int, exponent: Int) {
            for j in 0..<count {
                for i in 0..<m { uT.append(d.u[i * d.rank + j]) }
            }
            sCat += d.s[0..<count]
            vtCat += d.vt[0..<(count * n)]
            exponents += repeatElement(exponent, count: count)
        }
        // A zero τₜ (a frozen tensor) has no triplets with `.drop`. With `.keep` it contributes k
        // triplets with σ = 0 and LAPACK's (arbitrary, but fixed) basis, decomposed once; zero
        // tasks before the first non-zero one wait, so that when every task is zero, τ = 0 without an SVD.
        var zeroTriplets: LAPACK.Decomposition<U>?
        var waitingZeros = 0
        func zeroDecomposition() throws(MergeKitError) -> LAPACK.Decomposition<U> {
            if let zeroTriplets { return zeroTriplets }
            out.update(repeating: 0)
            let d = try LAPACK.svd(UnsafeBufferPointer(out), rows: m, columns: n, tensor: deltas.tensor).truncated(to: k)
            zeroTriplets = d
            return d
        }
        for t in 0..<tasks {
            try deltas.load(t, into: out)
            let largest = PowerOfTwoScaling.largestMagnitude(UnsafeBufferPointer(out))
            if largest == 0 {
                guard nullSpace == .keep else { continue }
                if sCat.isEmpty {
                    waitingZeros += 1
                } else {
                    append(try zeroDecomposition(), count: k, exponent: 0)
                }
                continue
            }
            if waitingZeros > 0 {
                let zero = try zeroDecomposition()
                for _ in 0..<waitingZeros { append(zero, count: k, exponent: 0) }
                waitingZeros = 0
                try deltas.load(t, into: out)
            }
            // The SVD itself reports a NaN or ±∞.
            let e = PowerOfTwoScaling.exponent(of: largest) ?? 0
            PowerOfTwoScaling.scale(out, byPowerOfTwo: -e)
            let d = try LAPACK.svd(UnsafeBufferPointer(out), rows: m, columns: n, tensor: deltas.tensor)
            append(d, count: nullSpace == .drop ? Swift.min(k, d.numericalRank()) : k, exponent: e)
        }
        zeroTriplets = nil
        let kept = sCat.count
        guard kept > 0 else {
            out.update(repeating: 0)
            return
        }
        // Every σ on the largest task's scale 2^E (exact, unless a σ is below the element type's
        // normal range at that scale, where it cannot matter next to the largest).
        let common = exponents.max()!
        for j in 0..<kept where exponents[j] != common {
            sCat[j] = U(PowerOfTwoScaling.scaled(Double(sCat[j]), byPowerOfTwo: exponents[j] - common))
        }
        var uCat = [U](repeating: 0, count: m * kept)   // m × Σkₜ, row-major
        for j in 0..<kept {
            for i in 0..<m { uCat[i * kept + j] = uT[j * m + i] }
        }
        uT = []
        // polar(Vᵀ) = polar(V)ᵀ, so V⊥ᵀ comes straight from the concatenated rows.
        var uPerp = try LAPACK.polar(uCat, rows: m, columns: kept, tensor: deltas.tensor)
        uCat = []
        let vtPerp = try LAPACK.polar(vtCat, rows: kept, columns: n, tensor: deltas.tensor)
        vtCat = []
        for i in 0..<m {
            for j in 0..<kept { uPerp[i * kept + j] *= sCat[j] }
        }
        uPerp.withUnsafeBufferPointer { up in
            vtPerp.withUnsafeBufferPointer { vp in
                LAPACK.gemm(transposeA: false, transposeB: false, m: m, n: n, k: kept, up.baseAddress!, lda: kept,
                            vp.baseAddress!, ldb: n, out.baseAddress!, ldc: n)
            }
        }
        try SVDMerge.unscale(out, byPowerOfTwo: common, tensor: deltas.tensor, method: info.name)
    }

    /// The largest of: the kept triplets of all tasks (K = T·⌊min(m, n)/T⌋ ≤ min(m, n) of them,
    /// K·(m + n) values) with one task's SVD (`LAPACK.svdBytes`); their concatenation; each polar
    /// factor's SVD with the other factor held. About 8× the matrix for a square one, besides `out`.
    func matrixBytes(rows m: Int, columns n: Int, tasks: Int, elementSize s: Int) -> Int {
        let r = Swift.min(m, n), k = tasks == 0 ? 0 : r / tasks, kk = tasks * k
        guard k > 0 else { return 0 }
        let triplets = s * kk * (m + n + 1) + 8 * kk
        let zero = nullSpace == .keep ? LAPACK.decompositionBytes(rows: m, columns: n, rank: k, elementSize: s) : 0
        let decomposing = Swift.max(LAPACK.svdBytes(rows: m, columns: n, elementSize: s),
                                    LAPACK.decompositionBytes(rows: m, columns: n, rank: r, elementSize: s)
                                        + LAPACK.decompositionBytes(rows: m, columns: n, rank: k, elementSize: s))
        let concatenating = triplets + s * m * kk
        let factors = s * (m * kk + kk * n + kk)
        return Swift.max(triplets + zero + decomposing, concatenating,
                         factors + LAPACK.polarBytes(rows: m, columns: kk, elementSize: s),
                         factors + LAPACK.polarBytes(rows: kk, columns: n, elementSize: s))
    }
}

extension TSVM: DescribedMethod {
    public static let methodDescription = svdDescription(
        recipeNames: ["tsv_m", "tsv-m"],
        help: .init(
            abstract: "TSV-M: per matrix keep each task's top ⌊min(m,n)/T⌋ singular triplets, orthogonalise them across tasks.",
            discussion: """
                Every 2-D tensor is decomposed (exact SVD, LAPACK); other tensors get the mean task vector. \
                θ = θ₀ + α·τ with α = --scale (1, the authors' default). Matrices are merged whole, one per \
                thread: each needs about 9× its size in Float (the SVD's copy, U, Vᵀ and LAPACK's workspace, \
                the kept triplets); fewer run at once when they do not fit the available memory, and a \
                matrix that does not fit alone is refused before anything is written (--dry-run shows the \
                estimate; MERGEKIT_MEMORY_BUDGET caps it).
                """),
        build: TSVM.init)
}
