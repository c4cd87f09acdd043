/// The MLP activations of CLIP encoders (transformers' `hidden_act`).
public enum CLIPActivation: String, Sendable, CaseIterable {
    /// QuickGELU, OpenAI CLIP's: y = x·σ(1.702x).
    case quickGELU = "quick_gelu"
    /// Exact GELU: y = x·Φ(x) = ½x(1 + erf(x/√2)) (PyTorch's `gelu`, approximate="none").
    case gelu
}

/// Element-wise activation: forward, JVP and backward.
///
/// The Jacobian is diagonal, so the JVP and the backward pass are the same product with f′(x):
/// ẏ = f′(x)·ẋ and ∂L/∂x = f′(x)·∂L/∂y.
///
/// - QuickGELU, s = σ(1.702x): f = x·s, f′ = s + 1.702·x·s·(1 − s).
/// - GELU: f = x·Φ(x), f′ = Φ(x) + x·φ(x) with φ the standard normal density.
enum Activation {
    /// y = f(x) for `count` elements (y may be x).
    static func forward(_ kind: CLIPActivation, _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
        switch kind {
        case .quickGELU:
            for i in 0..<count {
                let v = x[i]
                y[i] = v * VectorMath.sigmoid(1.702 * v)
            }
        case .gelu:
            for i in 0..<count {
                let v = x[i]
                y[i] = v * VectorMath.normalCDFAndDensity(v).cdf
            }
        }
    }

    /// out = f′(x)·v for `count` elements (out may be v): the JVP (v = ẋ) and the backward pass
    /// (v = ∂L/∂y).
    static func derivativeTimes(_ kind: CLIPActivation, _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                _ v: UnsafePointer<Float>, count: Int) {
        switch kind {
        case .quickGELU:
            for i in 0..<count {
                let u = x[i]
                let s = VectorMath.sigmoid(1.702 * u)
                out[i] = (s + 1.702 * u * s * (1 - s)) * v[i]
            }
        case .gelu:
            for i in 0..<count {
                let u = x[i]
                let (cdf, density) = VectorMath.normalCDFAndDensity(u)
                out[i] = (cdf + u * density) * v[i]
            }
        }
    }

    /// ẏ = f′(x)·ẋ.
    @inline(__always)
    static func jvp(_ kind: CLIPActivation, _ yDot: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                    _ xDot: UnsafePointer<Float>, count: Int) {
        derivativeTimes(kind, yDot, x, xDot, count: count)
    }

    /// ∂L/∂x = f′(x)·∂L/∂y (dx may be dy).
    @inline(__always)
    static func backward(_ kind: CLIPActivation, _ dx: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                         _ dy: UnsafePointer<Float>, count: Int) {
        derivativeTimes(kind, dx, x, dy, count: count)
    }
}
