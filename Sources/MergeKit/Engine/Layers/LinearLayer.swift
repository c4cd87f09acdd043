/// Where one `nn.Linear`'s tensors live inside a flat buffer of parameters, tangents or gradients.
struct LinearParameters {
    /// W, [outputs, inputs] row-major (PyTorch's layout).
    var weight: UnsafeMutablePointer<Float>
    /// b, [outputs]; nil for layers without a bias (`visual_projection`).
    var bias: UnsafeMutablePointer<Float>?
    let inputs: Int
    let outputs: Int
    /// Set in the views of a JVP direction whose W (or b) is all zeros: the JVP skips its term.
    var weightIsZero = false
    var biasIsZero = false

    /// Whether W and b are both known to be zero.
    var isZero: Bool { weightIsZero && (bias == nil || biasIsZero) }
}

/// A fully connected layer on a batch of rows: y = x·Wᵀ + b, x [rows, inputs], y [rows, outputs].
///
/// - Forward: one GEMM (NoTrans × Trans) after the bias is broadcast into y.
/// - JVP: ẏ = ẋ·Wᵀ + x·Ẇᵀ + ḃ (two GEMMs; the first is skipped when x does not depend on θ, the
///   second when the direction has Ẇ = 0, as a partial direction has for the tensors it lacks).
/// - Backward: ∂L/∂x = ∂L/∂y·W, ∂L/∂W += (∂L/∂y)ᵀ·x, ∂L/∂b += Σ_rows ∂L/∂y (two GEMMs).
enum LinearLayer {
    /// y = x·Wᵀ + b, or y += x·Wᵀ + b with `accumulate` (a residual connection).
    static func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ p: LinearParameters,
                        rows: Int, accumulate: Bool = false) {
        var beta: Float = accumulate ? 1 : 0
        if let bias = p.bias {
            if accumulate {
                VectorMath.addRow(bias, to: y, rows: rows, columns: p.outputs)
            } else {
                VectorMath.broadcastRow(bias, into: y, rows: rows, columns: p.outputs)
            }
            beta = 1
        }
        BLAS.gemm(transposeB: true, m: rows, n: p.outputs, k: p.inputs, a: x, lda: p.inputs,
                  b: p.weight, ldb: p.inputs, beta: beta, c: y, ldc: p.outputs)
    }

    /// ẏ = ẋ·Wᵀ + x·Ẇᵀ + ḃ (or ẏ += … with `accumulate`), where `t` holds the parameter tangents
    /// Ẇ, ḃ and `xDot` is nil when the input does not depend on the parameters.
    static func jvp(_ yDot: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ xDot: UnsafePointer<Float>?,
                    _ p: LinearParameters, _ t: LinearParameters, rows: Int, accumulate: Bool = false) {
        var beta: Float = accumulate ? 1 : 0
        if let bias = t.bias, !t.biasIsZero {
            if accumulate {
                VectorMath.addRow(bias, to: yDot, rows: rows, columns: p.outputs)
            } else {
                VectorMath.broadcastRow(bias, into: yDot, rows: rows, columns: p.outputs)
            }
            beta = 1
        }
        if let xDot {
            BLAS.gemm(transposeB: true, m: rows, n: p.outputs, k: p.inputs, a: xDot, lda: p.inputs,
                      b: p.weight, ldb: p.inputs, beta: beta, c: yDot, ldc: p.outputs)
            beta = 1
        }
        if !t.weightIsZero {
            BLAS.gemm(transposeB: true, m: rows, n: p.outputs, k: p.inputs, a: x, lda: p.inputs,
                      b: t.weight, ldb: p.inputs, beta: beta, c: yDot, ldc: p.outputs)
        } else if beta == 0 {
            yDot.update(repeating: 0, count: rows * p.outputs)
        }
    }

    /// Accumulates ∂L/∂W and ∂L/∂b into `g` and writes ∂L/∂x into `dx` (adds to it with
    /// `accumulateInput`; skipped when `dx` is nil).
    static func backward(_ dx: UnsafeMutablePointer<Float>?, accumulateInput: Bool = false, _ g: LinearParameters,
                         _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ p: LinearParameters, rows: Int) {
        if let dx {
            BLAS.gemm(m: rows, n: p.inputs, k: p.outputs, a: dy, lda: p.outputs, b: p.weight, ldb: p.inputs,
                      beta: accumulateInput ? 1 : 0, c: dx, ldc: p.inputs)
        }
        BLAS.gemm(transposeA: true, m: p.outputs, n: p.inputs, k: rows, a: dy, lda: p.outputs, b: x, ldb: p.inputs,
                  beta: 1, c: g.weight, ldc: p.inputs)
        if let bias = g.bias {
            VectorMath.accumulateColumnSums(of: dy, rows: rows, columns: p.outputs, into: bias)
        }
    }
}
