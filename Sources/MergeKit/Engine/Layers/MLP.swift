/// Where one `CLIPMLP`'s tensors live inside a flat buffer.
struct MLPParameters {
    var fc1: LinearParameters
    var fc2: LinearParameters
}

/// What the MLP keeps for the JVP and backward passes: u = fc1(x) and g = f(u), [rows, hidden].
/// For tangents only u̇ is needed (ġ = f′(u)·u̇ is formed in place), so `activated` aliases it.
struct MLPActivations {
    var hidden: UnsafeMutablePointer<Float>
    var activated: UnsafeMutablePointer<Float>

    init(_ workspace: Workspace, _ shape: EncoderShape, tangent: Bool = false) {
        hidden = workspace.take(shape.rows * shape.intermediate)
        activated = tangent ? hidden : workspace.take(shape.rows * shape.intermediate)
    }
}

/// CLIP's MLP: y = fc2(f(fc1(x))) with f the configured activation.
///
/// - JVP: u̇ = fc1's JVP, ġ = f′(u)·u̇, ẏ = fc2's JVP on (g, ġ).
/// - Backward: ∂L/∂g from fc2, ∂L/∂u = f′(u)·∂L/∂g, then fc1's backward.
enum MLP {
    /// y = MLP(x), or y += MLP(x) with `accumulate` (the residual connection).
    static func forward(_ y: UnsafeMutablePointer<Float>, accumulate: Bool, _ act: MLPActivations, _ x: UnsafePointer<Float>,
                        _ p: MLPParameters, _ activation: CLIPActivation, rows: Int) {
        LinearLayer.forward(act.hidden, x, p.fc1, rows: rows)
        Activation.forward(activation, act.activated, act.hidden, count: rows * p.fc1.outputs)
        LinearLayer.forward(y, act.activated, p.fc2, rows: rows, accumulate: accumulate)
    }

    /// ẏ (or ẏ +=) after `forward` filled `act`.
    static func jvp(_ yDot: UnsafeMutablePointer<Float>, accumulate: Bool, _ tan: MLPActivations, _ act: MLPActivations,
                    _ x: UnsafePointer<Float>, _ xDot: UnsafePointer<Float>, _ p: MLPParameters, _ t: MLPParameters,
                    _ activation: CLIPActivation, rows: Int) {
        LinearLayer.jvp(tan.hidden, x, xDot, p.fc1, t.fc1, rows: rows)
        Activation.jvp(activation, tan.activated, act.hidden, tan.hidden, count: rows * p.fc1.outputs)
        LinearLayer.jvp(yDot, act.activated, tan.activated, p.fc2, t.fc2, rows: rows, accumulate: accumulate)
    }

    /// Writes ∂L/∂x into `dx`, accumulating parameter gradients into `g`; `dHidden` is
    /// [rows, hidden] scratch.
    static func backward(_ dx: UnsafeMutablePointer<Float>, _ g: MLPParameters, _ dy: UnsafePointer<Float>,
                         _ act: MLPActivations, _ x: UnsafePointer<Float>, _ p: MLPParameters, _ activation: CLIPActivation,
                         rows: Int, dHidden: UnsafeMutablePointer<Float>) {
        LinearLayer.backward(dHidden, g.fc2, dy, act.activated, p.fc2, rows: rows)
        Activation.backward(activation, dHidden, act.hidden, dHidden, count: rows * p.fc1.outputs)
        LinearLayer.backward(dx, g.fc1, dHidden, x, p.fc1, rows: rows)
    }
}
