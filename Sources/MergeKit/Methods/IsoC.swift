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
/// - A zero sum gives τ = 0 (θ₀). Repeated singular values leave U and V not unique, but σ̄·UVᵀ
///   is (it is σ̄ times the polar factor of M when M has full rank). NaN or ±∞ in a matrix's input
///   is an error naming the file and element; in other tensors it propagates.
/// - Cost per matrix: one exact SVD (`gesdd`, `gesvd` if it does not converge). Memory: the
///   output buffer (holding the sum), one input at a time, the SVD's copy, U, Vᵀ and workspace:
///   one worker peaked at 261 MB RSS on a Llama layer whose largest matrix is 5632×2048.
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
        try deltas.load(0, into: out)
        if deltas.count > 1 {
            let next = UnsafeMutableBufferPointer<U>.allocate(capacity: out.count)
            defer { next.deallocate() }
            for t in 1..<deltas.count {
                try deltas.load(t, into: next)
                U.axpy(1, UnsafeBufferPointer(next), out)
            }
        }
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
    }
}
