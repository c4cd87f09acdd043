/// Sizes of one batch going through an encoder: `batch` images of `tokens` tokens each, a residual
/// stream of width `heads × headDim`, and the MLP's hidden width.
struct EncoderShape {
    let batch: Int
    let tokens: Int
    let heads: Int
    let headDim: Int
    let intermediate: Int

    init(config: CLIPVisionConfig, batch: Int) {
        self.batch = batch
        tokens = config.numTokens
        heads = config.numAttentionHeads
        headDim = config.headDim
        intermediate = config.intermediateSize
    }

    /// Rows of the activation matrices: every token of every image.
    var rows: Int { batch * tokens }
    /// D, the residual stream's width.
    var width: Int { heads * headDim }
    /// 1/√d, the attention logits' scale.
    var scale: Float { 1 / Float(headDim).squareRoot() }
    /// Floats of the attention probabilities [batch, heads, tokens, tokens].
    var probabilityCount: Int { batch * heads * tokens * tokens }
}

/// Where one `CLIPAttention`'s projections live inside a flat buffer.
struct SelfAttentionParameters {
    var q: LinearParameters
    var k: LinearParameters
    var v: LinearParameters
    var out: LinearParameters
}

/// What a self-attention block keeps for the JVP and backward passes (or, for tangents, Q̇, K̇, V̇
/// and the tangent of the context; `probabilities` then is unused).
struct SelfAttentionActivations {
    /// Q, K, V: [rows, D]; head h of image b is the [tokens, headDim] block at row b·tokens,
    /// column h·headDim, with row stride D.
    var q, k, v: UnsafeMutablePointer<Float>
    /// A = softmax(Q Kᵀ/√d) per image and head: [batch, heads, tokens, tokens].
    var probabilities: UnsafeMutablePointer<Float>
    /// The heads' outputs A·V side by side, [rows, D], before `out_proj`.
    var context: UnsafeMutablePointer<Float>

    init(_ workspace: Workspace, _ shape: EncoderShape, tangent: Bool = false) {
        let n = shape.rows * shape.width
        q = workspace.take(n)
        k = workspace.take(n)
        v = workspace.take(n)
        context = workspace.take(n)
        probabilities = tangent ? context : workspace.take(shape.probabilityCount)
    }
}

/// Scratch of the self-attention backward pass for one shard.
struct SelfAttentionScratch {
    var dq, dk, dv, dContext: UnsafeMutablePointer<Float>
    /// One [tokens, tokens] matrix: Ṡ/Ȧ in the JVP, ∂L/∂A then ∂L/∂S in the backward pass.
    var scores: UnsafeMutablePointer<Float>

    init(_ workspace: Workspace, _ shape: EncoderShape, backward: Bool) {
        let n = backward ? shape.rows * shape.width : 0
        dq = workspace.take(n)
        dk = workspace.take(n)
        dv = workspace.take(n)
        dContext = workspace.take(n)
        scores = workspace.take(shape.tokens * shape.tokens)
    }
}

/// Multi-head scaled dot-product attention without masks (CLIP's image encoder attends to every
/// token), per image b and head h, with Q, K, V the head's [T, d] blocks:
///
///     S = Q·Kᵀ/√d,  A = softmax_rows(S),  O = A·V.
///
/// Every product is a GEMM on the head's strided block (row stride D), batched over heads.
///
/// - JVP: Ṡ = (Q̇·Kᵀ + Q·K̇ᵀ)/√d, Ȧ = A ⊙ (Ṡ − rowsum(A ⊙ Ṡ)), Ȯ = Ȧ·V + A·V̇.
/// - Backward: ∂V = Aᵀ·∂O, ∂A = ∂O·Vᵀ, ∂S = A ⊙ (∂A − rowsum(A ⊙ ∂A)), ∂Q = ∂S·K/√d,
///   ∂K = ∂Sᵀ·Q/√d.
enum Attention {
    static func forward(_ act: SelfAttentionActivations, _ shape: EncoderShape) {
        let t = shape.tokens, d = shape.headDim, width = shape.width, heads = shape.heads
        for b in 0..<shape.batch {
            let rows = b * t * width
            let scores = act.probabilities + b * heads * t * t
            BLAS.gemmStridedBatched(transposeB: true, m: t, n: t, k: d, alpha: shape.scale,
                                    a: act.q + rows, lda: width, strideA: d, b: act.k + rows, ldb: width, strideB: d,
                                    c: scores, ldc: t, strideC: t * t, count: heads)
            for row in 0..<(heads * t) { softmax(scores + row * t, count: t) }
            BLAS.gemmStridedBatched(m: t, n: d, k: t, a: scores, lda: t, strideA: t * t,
                                    b: act.v + rows, ldb: width, strideB: d,
                                    c: act.context + rows, ldc: width, strideC: d, count: heads)
        }
    }

    /// Writes Ȯ into `tan.context` from the tangents Q̇, K̇, V̇ in `tan`.
    static func jvp(_ tan: SelfAttentionActivations, _ act: SelfAttentionActivations, scratch: UnsafeMutablePointer<Float>,
                    _ shape: EncoderShape) {
        let t = shape.tokens, d = shape.headDim, width = shape.width
        for b in 0..<shape.batch {
            for h in 0..<shape.heads {
                let block = b * t * width + h * d
                let a = act.probabilities + (b * shape.heads + h) * t * t
                BLAS.gemm(transposeB: true, m: t, n: t, k: d, alpha: shape.scale, a: tan.q + block, lda: width,
                          b: act.k + block, ldb: width, c: scratch, ldc: t)
                BLAS.gemm(transposeB: true, m: t, n: t, k: d, alpha: shape.scale, a: act.q + block, lda: width,
                          b: tan.k + block, ldb: width, beta: 1, c: scratch, ldc: t)
                for row in 0..<t { softmaxProduct(probabilities: a + row * t, scratch + row * t, count: t) }
                BLAS.gemm(m: t, n: d, k: t, a: scratch, lda: t, b: act.v + block, ldb: width,
                          c: tan.context + block, ldc: width)
                BLAS.gemm(m: t, n: d, k: t, a: a, lda: t, b: tan.v + block, ldb: width, beta: 1,
                          c: tan.context + block, ldc: width)
            }
        }
    }

    /// Writes ∂L/∂Q, ∂L/∂K, ∂L/∂V into `scratch.dq/dk/dv` from ∂L/∂O in `scratch.dContext`.
    static func backward(_ scratch: SelfAttentionScratch, _ act: SelfAttentionActivations, _ shape: EncoderShape) {
        let t = shape.tokens, d = shape.headDim, width = shape.width
        let dScores = scratch.scores
        for b in 0..<shape.batch {
            for h in 0..<shape.heads {
                let block = b * t * width + h * d
                let a = act.probabilities + (b * shape.heads + h) * t * t
                BLAS.gemm(transposeA: true, m: t, n: d, k: t, a: a, lda: t, b: scratch.dContext + block, ldb: width,
                          c: scratch.dv + block, ldc: width)
                BLAS.gemm(transposeB: true, m: t, n: t, k: d, a: scratch.dContext + block, lda: width,
                          b: act.v + block, ldb: width, c: dScores, ldc: t)
                for row in 0..<t { softmaxProduct(probabilities: a + row * t, dScores + row * t, count: t) }
                BLAS.gemm(m: t, n: d, k: t, alpha: shape.scale, a: dScores, lda: t, b: act.k + block, ldb: width,
                          c: scratch.dq + block, ldc: width)
                BLAS.gemm(transposeA: true, m: t, n: d, k: t, alpha: shape.scale, a: dScores, lda: t,
                          b: act.q + block, ldb: width, c: scratch.dk + block, ldc: width)
            }
        }
    }

    /// x ← softmax(x) = e^(x − max x) / Σ e^(x − max x), in place.
    @inline(__always)
    static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        let m = VectorMath.maximum(x, count: n)
        for i in 0..<n { x[i] = VectorMath.exp(x[i] - m) }
        let inverse = 1 / VectorMath.sum(x, count: n)
        for i in 0..<n { x[i] *= inverse }
    }

    /// v ← a ⊙ (v − Σ aᵢvᵢ): softmax's Jacobian (symmetric) applied to v, for a = softmax(s). It is
    /// the JVP's Ȧ from Ṡ and the backward pass's ∂L/∂S from ∂L/∂A.
    @inline(__always)
    static func softmaxProduct(probabilities a: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>, count n: Int) {
        let c = VectorMath.dot(a, v, count: n)
        for i in 0..<n { v[i] = a[i] * (v[i] - c) }
    }
}

/// A CLIP self-attention block: projections q, k, v of the input, multi-head attention, and the
/// output projection, y = out_proj(Attention(q_proj x, k_proj x, v_proj x)).
enum SelfAttention {
    /// y = block(x), or y += block(x) with `accumulate` (the residual connection).
    static func forward(_ y: UnsafeMutablePointer<Float>, accumulate: Bool, _ act: SelfAttentionActivations,
                        _ x: UnsafePointer<Float>, _ p: SelfAttentionParameters, _ shape: EncoderShape) {
        let rows = shape.rows
        LinearLayer.forward(act.q, x, p.q, rows: rows)
        LinearLayer.forward(act.k, x, p.k, rows: rows)
        LinearLayer.forward(act.v, x, p.v, rows: rows)
        Attention.forward(act, shape)
        LinearLayer.forward(y, act.context, p.out, rows: rows, accumulate: accumulate)
    }

    /// ẏ (or ẏ +=) after `forward` filled `act`: tangents of the projections, of attention, and of
    /// the output projection.
    static func jvp(_ yDot: UnsafeMutablePointer<Float>, accumulate: Bool, _ tan: SelfAttentionActivations,
                    _ act: SelfAttentionActivations, _ x: UnsafePointer<Float>, _ xDot: UnsafePointer<Float>,
                    _ p: SelfAttentionParameters, _ t: SelfAttentionParameters, scratch: SelfAttentionScratch,
                    _ shape: EncoderShape) {
        let rows = shape.rows
        LinearLayer.jvp(tan.q, x, xDot, p.q, t.q, rows: rows)
        LinearLayer.jvp(tan.k, x, xDot, p.k, t.k, rows: rows)
        LinearLayer.jvp(tan.v, x, xDot, p.v, t.v, rows: rows)
        Attention.jvp(tan, act, scratch: scratch.scores, shape)
        LinearLayer.jvp(yDot, act.context, tan.context, p.out, t.out, rows: rows, accumulate: accumulate)
    }

    /// Writes ∂L/∂x into `dx` from ∂L/∂y, accumulating the parameter gradients into `g`.
    static func backward(_ dx: UnsafeMutablePointer<Float>, _ g: SelfAttentionParameters, _ dy: UnsafePointer<Float>,
                         _ act: SelfAttentionActivations, _ x: UnsafePointer<Float>, _ p: SelfAttentionParameters,
                         scratch: SelfAttentionScratch, _ shape: EncoderShape) {
        let rows = shape.rows
        LinearLayer.backward(scratch.dContext, g.out, dy, act.context, p.out, rows: rows)
        Attention.backward(scratch, act, shape)
        LinearLayer.backward(dx, g.q, scratch.dq, x, p.q, rows: rows)
        LinearLayer.backward(dx, accumulateInput: true, g.k, scratch.dk, x, p.k, rows: rows)
        LinearLayer.backward(dx, accumulateInput: true, g.v, scratch.dv, x, p.v, rows: rows)
    }
}
