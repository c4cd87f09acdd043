/// Where one `CLIPEncoderLayer`'s tensors live inside a flat buffer.
struct EncoderLayerParameters {
    var layerNorm1: LayerNormParameters
    var attention: SelfAttentionParameters
    var layerNorm2: LayerNormParameters
    var mlp: MLPParameters

    /// Whether every tensor of the layer is known to be zero (in a JVP direction's views).
    var isZero: Bool {
        layerNorm1.isZero && layerNorm2.isZero && attention.q.isZero && attention.k.isZero && attention.v.isZero
            && attention.out.isZero && mlp.fc1.isZero && mlp.fc2.isZero
    }
}

/// Everything one encoder layer keeps for its JVP and backward passes (for tangents: the same
/// quantities' tangents; the LayerNorm statistics are then unused).
struct EncoderLayerActivations {
    /// x, the residual stream entering the layer, [rows, D].
    var input: UnsafeMutablePointer<Float>
    var mean1, rstd1: UnsafeMutablePointer<Float>
    /// LN1(x).
    var normalized1: UnsafeMutablePointer<Float>
    var attention: SelfAttentionActivations
    /// x₂ = x + SelfAttention(LN1(x)).
    var residual: UnsafeMutablePointer<Float>
    var mean2, rstd2: UnsafeMutablePointer<Float>
    /// LN2(x₂).
    var normalized2: UnsafeMutablePointer<Float>
    var mlp: MLPActivations

    init(_ workspace: Workspace, _ shape: EncoderShape, tangent: Bool = false) {
        let n = shape.rows * shape.width, stats = tangent ? 0 : shape.rows
        input = workspace.take(n)
        mean1 = workspace.take(stats)
        rstd1 = workspace.take(stats)
        normalized1 = workspace.take(n)
        attention = SelfAttentionActivations(workspace, shape, tangent: tangent)
        residual = workspace.take(n)
        mean2 = workspace.take(stats)
        rstd2 = workspace.take(stats)
        normalized2 = workspace.take(n)
        mlp = MLPActivations(workspace, shape, tangent: tangent)
    }
}

/// Scratch of the encoder layers' backward pass for one shard.
struct EncoderScratch {
    /// ∂L/∂LN(·) output, [rows, D].
    var dNormalized: UnsafeMutablePointer<Float>
    /// ∂L/∂u and ∂L/∂g of the MLP, [rows, hidden].
    var dHidden: UnsafeMutablePointer<Float>
    var attention: SelfAttentionScratch

    init(_ workspace: Workspace, _ shape: EncoderShape, backward: Bool) {
        dNormalized = workspace.take(backward ? shape.rows * shape.width : 0)
        dHidden = workspace.take(backward ? shape.rows * shape.intermediate : 0)
        attention = SelfAttentionScratch(workspace, shape, backward: backward)
    }
}

/// A pre-LayerNorm transformer layer (`CLIPEncoderLayer`):
///
///     x₂ = x + SelfAttention(LN1(x)),   y = x₂ + MLP(LN2(x₂)).
///
/// - JVP: the same composition of the sub-blocks' JVPs; residual connections add tangents.
/// - Backward: ∂L/∂x₂ = ∂L/∂y + LN2ᵀ(MLPᵀ(∂L/∂y)), ∂L/∂x = ∂L/∂x₂ + LN1ᵀ(SelfAttentionᵀ(∂L/∂x₂)).
enum EncoderLayer {
    /// Computes y from `act.input`, filling `act`. `y` may be `act.input` (an in-place update when
    /// no activations are kept).
    static func forward(_ y: UnsafeMutablePointer<Float>, _ act: EncoderLayerActivations, _ p: EncoderLayerParameters,
                        _ shape: EncoderShape, activation: CLIPActivation, eps: Float) {
        let rows = shape.rows, n = rows * shape.width
        LayerNorm.forward(act.normalized1, mean: act.mean1, rstd: act.rstd1, act.input, p.layerNorm1, rows: rows, eps: eps)
        act.residual.update(from: act.input, count: n)
        SelfAttention.forward(act.residual, accumulate: true, act.attention, act.normalized1, p.attention, shape)
        LayerNorm.forward(act.normalized2, mean: act.mean2, rstd: act.rstd2, act.residual, p.layerNorm2, rows: rows, eps: eps)
        if y != act.residual { y.update(from: act.residual, count: n) }
        MLP.forward(y, accumulate: true, act.mlp, act.normalized2, p.mlp, activation, rows: rows)
    }

    /// Computes y and ẏ from `act.input` and `tan.input` (tangents of the parameters in `t`).
    /// `y`/`yDot` may be `act.input`/`tan.input`.
    static func jvp(_ y: UnsafeMutablePointer<Float>, _ yDot: UnsafeMutablePointer<Float>, _ act: EncoderLayerActivations,
                    _ tan: EncoderLayerActivations, _ p: EncoderLayerParameters, _ t: EncoderLayerParameters,
                    _ shape: EncoderShape, activation: CLIPActivation, eps: Float, scratch: EncoderScratch) {
        let rows = shape.rows, n = rows * shape.width
        LayerNorm.forward(act.normalized1, mean: act.mean1, rstd: act.rstd1, act.input, p.layerNorm1, rows: rows, eps: eps)
        LayerNorm.jvp(tan.normalized1, act.input, tan.input, mean: act.mean1, rstd: act.rstd1, p.layerNorm1, t.layerNorm1, rows: rows)
        act.residual.update(from: act.input, count: n)
        tan.residual.update(from: tan.input, count: n)
        SelfAttention.forward(act.residual, accumulate: true, act.attention, act.normalized1, p.attention, shape)
        SelfAttention.jvp(tan.residual, accumulate: true, tan.attention, act.attention, act.normalized1, tan.normalized1,
                          p.attention, t.attention, scratch: scratch.attention, shape)
        LayerNorm.forward(act.normalized2, mean: act.mean2, rstd: act.rstd2, act.residual, p.layerNorm2, rows: rows, eps: eps)
        LayerNorm.jvp(tan.normalized2, act.residual, tan.residual, mean: act.mean2, rstd: act.rstd2, p.layerNorm2, t.layerNorm2, rows: rows)
        if y != act.residual { y.update(from: act.residual, count: n) }
        if yDot != tan.residual { yDot.update(from: tan.residual, count: n) }
        MLP.forward(y, accumulate: true, act.mlp, act.normalized2, p.mlp, activation, rows: rows)
        MLP.jvp(yDot, accumulate: true, tan.mlp, act.mlp, act.normalized2, tan.normalized2, p.mlp, t.mlp, activation, rows: rows)
    }

    /// On entry `d` holds ∂L/∂y, on return ∂L/∂x; parameter gradients are accumulated into `g`.
    static func backward(_ d: UnsafeMutablePointer<Float>, _ g: EncoderLayerParameters, _ act: EncoderLayerActivations,
                         _ p: EncoderLayerParameters, _ shape: EncoderShape, activation: CLIPActivation,
                         scratch: EncoderScratch) {
        let rows = shape.rows
        MLP.backward(scratch.dNormalized, g.mlp, d, act.mlp, act.normalized2, p.mlp, activation, rows: rows,
                     dHidden: scratch.dHidden)
        LayerNorm.backward(d, g.layerNorm2, scratch.dNormalized, act.residual, mean: act.mean2, rstd: act.rstd2,
                           p.layerNorm2, rows: rows)
        SelfAttention.backward(scratch.dNormalized, g.attention, d, act.attention, act.normalized1, p.attention,
                               scratch: scratch.attention, shape)
        LayerNorm.backward(d, g.layerNorm1, scratch.dNormalized, act.input, mean: act.mean1, rstd: act.rstd1,
                           p.layerNorm1, rows: rows)
    }
}
