/// What RegMean does when the sum of the tasks' Gram matrices of a layer's inputs is singular (a
/// feature that is zero on every sample, or fewer samples than features with α = 1).
public enum SingularGramPolicy: String, Sendable, CaseIterable {
    /// Use the minimum-norm least-squares solution, W = C·A⁺ (LAPACK `dgelsd`; singular values
    /// below n·ε·σ_max count as zero, numpy's and PyTorch's `pinv` default).
    case pseudoInverse = "pseudo-inverse"
    /// Stop with an error naming the layer.
    case error
}

/// RegMean's closed form for the linear layers that read one input (q, k and v share LN1's), in
/// PyTorch's [out, in] layout:
///
///     W = (Σₜ Wₜ·Gₜ′)·(Σₜ Gₜ′)⁻¹  =  C·A⁻¹,
///
/// the transpose of the paper's (Σₜ Gₜ′)⁻¹ Σₜ Gₜ′ Wₜᵀ (A and every Gₜ′ are symmetric). A row-major
/// [out, in] matrix is the column-major in×out matrix Cᵀ = A·Wᵀ, so LAPACK solves A·X = Cᵀ for all
/// the layers' right-hand sides at once and X, read back row-major, is W — no transposes. The
/// solve runs in double precision: A = LLᵀ by Cholesky (`dpotrf`/`dpotrs`); when A is not
/// positive definite to working precision, the `SingularGramPolicy` decides. (FusionBench inverts
/// A in the model's precision with `torch.inverse`, an LU factorisation with no fallback, which
/// fails only on an exactly singular A and returns an inaccurate inverse of a nearly singular one.)
enum GramSolver {
    /// Overwrites every right-hand side C ([rows, n] row-major) with C·A⁻¹ for the symmetric n×n
    /// `gram` A. Returns nil after a Cholesky solve, or the numerical rank of A when the
    /// pseudo-inverse was used. `tensors` name the layers in messages.
    static func solve(gram: UnsafePointer<Float>, n: Int, rightHandSides: [(values: UnsafeMutablePointer<Float>, rows: Int)],
                      tensors: [String], policy: SingularGramPolicy) throws(MergeKitError) -> Int? {
        let names = tensors.joined(separator: ", ")
        if let bad = (0..<(n * n)).first(where: { !gram[$0].isFinite }) {
            throw MergeKitError(.nonFiniteValue, tensor: tensors.first,
                                "the Gram matrix of the inputs of \(names) holds \(gram[bad]) at [\(bad / n), \(bad % n)]",
                                fix: "A model or an image holds NaN or Inf values; check the inputs")
        }
        let total = rightHandSides.reduce(0) { $0 + $1.rows }
        var a = (0..<(n * n)).map { Double(gram[$0]) }
        var b = [Double](repeating: 0, count: total * n)
        var offset = 0
        for (values, rows) in rightHandSides {
            for k in 0..<(rows * n) { b[offset + k] = Double(values[k]) }
            offset += rows * n
        }
        var rank: Int? = nil
        let info = LAPACK.choleskyFactor(&a, n: n)
        if info == 0 {
            let solved = LAPACK.choleskySolve(a, n: n, &b, columns: total)
            precondition(solved == 0, "dpotrs rejected its arguments (info \(solved))")
        } else {
            guard policy == .pseudoInverse else {
                let detail = "the sum of the tasks' Gram matrices of the inputs of \(names) (\(n)×\(n)) is singular: its leading minor of "
                    + "order \(info) is not positive definite, so some input directions carry no information in the samples"
                throw MergeKitError(.invalidArgument, tensor: tensors.first, "\(detail)",
                    fix: "\(term: .usePseudoInverse.atStart), \(term: .moreSamples) or \(term: .smallerAlpha)")
            }
            a = (0..<(n * n)).map { Double(gram[$0]) }
            let result = LAPACK.leastSquares(&a, n: n, &b, columns: total, rcond: Double(n) * Double.ulpOfOne)
            guard result.info == 0 else {
                throw MergeKitError(.invalidArgument, tensor: tensors.first,
                                    "the SVD of the Gram matrix of the inputs of \(names) did not converge (LAPACK dgelsd info \(result.info))",
                                    fix: "Use \(term: .moreSamples) or \(term: .smallerAlpha)")
            }
            rank = result.rank
        }
        if let bad = b.firstIndex(where: { !$0.isFinite || Float($0).isInfinite }) {
            throw MergeKitError(.nonFiniteValue, tensor: tensors.first,
                                "the solve for \(names) gave \(b[bad]) (the Gram matrix is too ill-conditioned)",
                                fix: "Use \(term: .moreSamples) or \(term: .smallerAlpha)")
        }
        offset = 0
        for (values, rows) in rightHandSides {
            for k in 0..<(rows * n) { values[k] = Float(b[offset + k]) }
            offset += rows * n
        }
        return rank
    }
}
