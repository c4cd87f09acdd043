/// Where one `nn.LayerNorm`'s tensors live inside a flat buffer.
struct LayerNormParameters {
    /// γ, [dim].
    var weight: UnsafeMutablePointer<Float>
    /// β, [dim].
    var bias: UnsafeMutablePointer<Float>
    let dim: Int
    /// Set in the views of a JVP direction whose γ̇ and β̇ are all zeros.
    var isZero = false
}

/// LayerNorm over the last dimension of a batch of rows, as PyTorch computes it:
///
///     μ = mean(x),  σ² = mean((x − μ)²)  (biased),  r = 1/√(σ² + ε),  x̂ = (x − μ)·r,
///     y = γ ⊙ x̂ + β.
///
/// The forward pass saves μ and r per row; later passes rebuild x̂ from x, μ and r.
///
/// - JVP: ẏ = γ ⊙ r·(ẋ − mean(ẋ) − x̂·mean(x̂ ⊙ ẋ)) + γ̇ ⊙ x̂ + β̇.
/// - Backward, with g = γ ⊙ ∂L/∂y: ∂L/∂x = r·(g − mean(g) − x̂·mean(g ⊙ x̂)),
///   ∂L/∂γ += Σ_rows ∂L/∂y ⊙ x̂, ∂L/∂β += Σ_rows ∂L/∂y.
enum LayerNorm {
    static func forward(_ y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                        _ x: UnsafePointer<Float>, _ p: LayerNormParameters, rows: Int, eps: Float) {
        let n = p.dim
        let scale = 1 / Float(n)
        for row in 0..<rows {
            let xr = x + row * n, yr = y + row * n
            let mu = VectorMath.sum(xr, count: n) * scale
            var squares: Float = 0
            for i in 0..<n {
                let d = xr[i] - mu
                squares += d * d
            }
            let r = 1 / (squares * scale + eps).squareRoot()
            mean[row] = mu
            rstd[row] = r
            for i in 0..<n { yr[i] = (xr[i] - mu) * r * p.weight[i] + p.bias[i] }
        }
    }

    /// ẏ from ẋ (nil: the input does not depend on θ) and the tangents γ̇, β̇ in `t`.
    static func jvp(_ yDot: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ xDot: UnsafePointer<Float>?,
                    mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, _ p: LayerNormParameters, _ t: LayerNormParameters,
                    rows: Int) {
        let n = p.dim
        let scale = 1 / Float(n)
        for row in 0..<rows {
            let xr = x + row * n, yr = yDot + row * n
            let mu = mean[row], r = rstd[row]
            if let xDot {
                let dr = xDot + row * n
                let meanDot = VectorMath.sum(dr, count: n) * scale
                var centredDot: Float = 0  // Σ (x − μ)·ẋ
                for i in 0..<n { centredDot += (xr[i] - mu) * dr[i] }
                let meanHatDot = centredDot * r * scale  // mean(x̂ ⊙ ẋ)
                for i in 0..<n {
                    let hat = (xr[i] - mu) * r
                    yr[i] = p.weight[i] * r * (dr[i] - meanDot - hat * meanHatDot) + t.weight[i] * hat + t.bias[i]
                }
            } else {
                for i in 0..<n { yr[i] = t.weight[i] * (xr[i] - mu) * r + t.bias[i] }
            }
        }
    }

    /// Adds ∂L/∂x to `dx` (when given) and accumulates ∂L/∂γ, ∂L/∂β into `g`.
    static func backward(_ dx: UnsafeMutablePointer<Float>?, _ g: LayerNormParameters, _ dy: UnsafePointer<Float>,
                         _ x: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                         _ p: LayerNormParameters, rows: Int) {
        let n = p.dim
        let scale = 1 / Float(n)
        for row in 0..<rows {
            let xr = x + row * n, dyr = dy + row * n
            let mu = mean[row], r = rstd[row]
            var sumG: Float = 0, sumGHat: Float = 0
            for i in 0..<n {
                let hat = (xr[i] - mu) * r
                let gi = dyr[i] * p.weight[i]
                sumG += gi
                sumGHat += gi * hat
                g.weight[i] += dyr[i] * hat
                g.bias[i] += dyr[i]
            }
            guard let dx else { continue }
            let meanG = sumG * scale, meanGHat = sumGHat * scale
            let dxr = dx + row * n
            for i in 0..<n {
                let hat = (xr[i] - mu) * r
                dxr[i] += r * (dyr[i] * p.weight[i] - meanG - hat * meanGHat)
            }
        }
    }
}
