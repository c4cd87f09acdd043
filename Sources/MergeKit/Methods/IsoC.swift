/// Iso-C, isotropic merging in the common subspace (Marczak et al., "No Task Left Behind:
/// Isotropic Model Merging with Common and Task-Specific Subspaces", ICML 2025;
/// danielm1405/iso-merging), per tensor:
///
///     matrix:   M = Σₜ τₜ = U Σ Vᵀ (thin SVD, r = min(m, n)),  σ̄ = (1/r) Σᵢ σᵢ
///               τ = σ̄ · U Vᵀ           (every singular value replaced by their mean)
///     other tensors (biases, norms, …):  τ = (1/T) Σₜ τₜ
///     θ = θ₀ + α τ
///
/// Flattening the spectrum of the summed task vector keeps its singular directions but gives
/// them equal weight, so directions shared by few tasks are not drowned by dominant ones. The
/// authors' code computes `sum(tvs) / len(tvs)` and multiplies it back by T for matrices only,
/// which is what this computes. Their mean is over all r singular values; MergeKit's default
/// takes it over the numerically non-zero ones (the same for a full-rank sum, see below).
///
/// - Matrices are all 2-D float tensors (see `SVDMerge.isMatrix`).
/// - α (`scale`) defaults to 1 (the plain flattened sum); the paper selects α on held-out
///   validation data, so pass `--scale` or sweep it (`sweep --method iso-c --grid lambda=…`).
/// - The method sets no per-task coefficients: `--weight` is rejected.
/// - Singular values that are numerically zero (a rank-deficient sum: frozen tensors, LoRA
///   updates) are left out by default (`nullSpace = .drop`): σ̄ is the mean of the ρ singular
///   values above σ₁·max(m, n)·ε and τ = σ̄·U_ρV_ρᵀ. The authors' code (`.keep`) would give each
///   of the min(m, n) − ρ arbitrary null-space directions LAPACK returns the weight σ̄ too. The
///   two agree when the sum has full rank. See `SVDNullSpace`.
/// - A zero sum gives τ = 0 (θ₀) without an SVD. Repeated singular values leave U and V not
///   unique, but σ̄·UVᵀ is (it is σ̄ times the polar factor of M when M has full rank). NaN or ±∞
///   in a matrix's input is an error naming the file and element; in other tensors it propagates.
/// - Range: M is decomposed as M·2⁻ᵉ (its largest entry in [1, 2), `PowerOfTwoScaling`) and the
///   result multiplied by 2ᵉ, so entries near the largest or the smallest normal Float give
///   exactly 2ᵏ times the result of the scaled-down copy. A sum that overflows although every τₜ
///   is finite is formed again from τₜ·2^−⌈log₂ T⌉. A result beyond the compute type's range is
///   an error naming the tensor.
/// - Cost per matrix: one exact SVD (`gesdd`, `gesvd` if it does not converge). Memory
///   (`matrixBytes`, checked before the merge starts): the output buffer (holding the sum), then
///   the larger of one more input and the SVD (its copy, U, Vᵀ and `gesdd`'s 3·min(m, n)²
///   workspace): about 7× the matrix for a square one (peak RSS 7.3–7.6× on 2000²–3000² F32,
///   the worker's staging buffers included).
public struct IsoC: SVDMatrixMethod {
    public static let info = MethodInfo(
        name: "iso-c",
        summary: "per matrix flatten the spectrum of Σ τₜ (every singular value → their mean), θ₀ + α·τ",
        reference: "Marczak et al., No Task Left Behind: Isotropic Model Merging with Common and Task-Specific Subspaces (ICML 2025)")

    /// α, the scale of the merged task vector.
    public let scale: Double
    /// Numerically zero singular values: left out (default) or kept (authors' code).
    public let nullSpace: SVDNullSpace

    public init(scale: Double = 1, nullSpace: SVDNullSpace = .drop) throws(MergeKitError) {
        try MethodParameter.scale.check(scale)
        self.scale = scale
        self.nullSpace = nullSpace
    }

    /// τ of one matrix tensor, before α, into `out` (which first accumulates Σₜ τₜ).
    static func matrix<U: MergeScalar & LAPACKScalar>(_ deltas: TensorDeltas<U>, nullSpace: SVDNullSpace = .drop,
                                                       into out: UnsafeMutableBufferPointer<U>) throws(MergeKitError) {
        let (m, n) = SVDMerge.dimensions(deltas.shape)
        guard deltas.count > 0, m > 0, n > 0 else {
            out.update(repeating: 0)
            return
        }
        // The task vectors are finite, but their sum can overflow; then it is formed again from
        // τₜ·2^−⌈log₂ T⌉ (exact), which cannot.
        var prescale = 0
        try sum(deltas, into: out, exponent: prescale)
        var largest = PowerOfTwoScaling.largestMagnitude(UnsafeBufferPointer(out))
        if largest.isInfinite && deltas.count > 1 {
            prescale = -(Int.bitWidth - (deltas.count - 1).leadingZeroBitCount)
            try sum(deltas, into: out, exponent: prescale)
            largest = PowerOfTwoScaling.largestMagnitude(UnsafeBufferPointer(out))
        }
        // A zero sum (frozen tensors, opposite task vectors) has τ = 0: no SVD.
        guard largest != 0 else {
            out.update(repeating: 0)
            return
        }
        // Decompose M·2⁻ᵉ, its largest entry in [1, 2); the SVD itself reports a NaN or ±∞.
        let e = PowerOfTwoScaling.exponent(of: largest) ?? 0
        PowerOfTwoScaling.scale(out, byPowerOfTwo: -e)
        let d = try LAPACK.svd(UnsafeBufferPointer(out), rows: m, columns: n, tensor: deltas.tensor)
        let rho = nullSpace == .drop ? d.numericalRank() : d.rank
        guard rho > 0 else {
            out.update(repeating: 0)
            return
        }
        let mean = d.s[0..<rho].reduce(0.0) { $0 + Double($1) } / Double(rho)
        // U_ρ (the first ρ columns, row stride rank) times the first ρ rows of Vᵀ.
        d.u.withUnsafeBufferPointer { up in
            d.vt.withUnsafeBufferPointer { vp in
                LAPACK.gemm(transposeA: false, transposeB: false, m: m, n: n, k: rho, up.baseAddress!, lda: d.rank,
                            vp.baseAddress!, ldb: n, out.baseAddress!, ldc: n)
            }
        }
        U.scal(U(mean), out)
        try SVDMerge.unscale(out, byPowerOfTwo: e - prescale, tensor: deltas.tensor, method: info.name)
    }

    /// out ← Σₜ τₜ·2ᵖ, adding one task vector at a time from a second tensor-sized buffer.
    private static func sum<U: MergeScalar>(_ deltas: TensorDeltas<U>, into out: UnsafeMutableBufferPointer<U>,
                                            exponent p: Int) throws(MergeKitError) {
        try deltas.load(0, into: out)
        PowerOfTwoScaling.scale(out, byPowerOfTwo: p)
        guard deltas.count > 1 else { return }
        let next = try ScratchMemory.allocate(U.self, count: out.count, tensor: deltas.tensor, purpose: "the next task vector of the sum")
        defer { ScratchMemory.release(next) }
        let factor = U(sign: .plus, exponent: U.Exponent(p), significand: 1)
        for t in 1..<deltas.count {
            try deltas.load(t, into: next)
            U.axpy(factor, UnsafeBufferPointer(next), out)
        }
    }

    /// The second buffer of the sum, then the SVD (`LAPACK.svdBytes`): about 6× the matrix for a
    /// square one (the SVD's copy, U, Vᵀ and `?gesdd`'s 3·min(m, n)² workspace), besides `out`.
    func matrixBytes(rows: Int, columns: Int, tasks: Int, elementSize: Int) -> Int {
        max(tasks > 1 ? elementSize * rows * columns : 0, LAPACK.svdBytes(rows: rows, columns: columns, elementSize: elementSize))
    }
}

extension IsoC: DescribedMethod {
    public static let methodDescription = svdDescription(
        recipeNames: ["iso_c", "iso-c"],
        help: .init(
            abstract: "Iso-C: per matrix replace every singular value of Σ τₜ by their mean (isotropic spectrum).",
            discussion: """
                Every 2-D tensor is decomposed (exact SVD, LAPACK); other tensors get the mean task vector. \
                θ = θ₀ + α·τ with α = --scale (the paper tunes it on validation data; `sweep --method iso-c \
                --grid lambda=…` tries several in one pass over the inputs). Each matrix needs about 7× its \
                size in Float while it is decomposed; see tsv-m --help for how memory is planned.
                """),
        build: IsoC.init)
}
