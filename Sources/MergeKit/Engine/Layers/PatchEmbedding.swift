/// Where `CLIPVisionEmbeddings`' tensors live inside a flat buffer.
struct EmbeddingParameters {
    /// The class token's embedding, [D].
    var classEmbedding: UnsafeMutablePointer<Float>
    /// The patch convolution's kernel [D, C, P, P], read as a [D, C·P·P] matrix (CLIP's has no bias).
    var patchWeight: UnsafeMutablePointer<Float>
    /// One embedding per token position, [T, D].
    var positionEmbedding: UnsafeMutablePointer<Float>
    /// Set in the views of a JVP direction whose patch kernel is all zeros (its GEMM is skipped).
    var patchWeightIsZero = false
    /// Set in the views of a JVP direction that is zero on all three tensors.
    var isZero = false
}

/// CLIP's input embedding: for image b with patches p = 0 ..< G² (row-major over the G×G grid),
///
///     x[b, 0]     = class_embedding + position[0]
///     x[b, 1 + p] = W · patch(b, p) + position[1 + p],
///
/// where patch(b, p) is the C·P·P pixels under patch p in (channel, row, column) order, the order
/// of the convolution kernel's entries. A convolution with stride = kernel = P is exactly this
/// product, so it runs as one GEMM over the unfolded patches ([B·G², C·P·P] × [C·P·P, D]).
///
/// - JVP (pixels are inputs, not parameters): ẋ[b, 0] = ċls + ṗos[0], ẋ[b, 1+p] = Ẇ·patch + ṗos[1+p].
/// - Backward: ∂W += Σ ∂x[b,1+p]·patchᵀ, ∂cls += Σ_b ∂x[b,0], ∂pos[t] += Σ_b ∂x[b,t], and the
///   pixels' gradient ∂patch = Wᵀ·∂x[b,1+p], folded back onto the image (zero outside whole patches).
enum PatchEmbedding {
    /// patches[b·G² + i·G + j, (c·P + u)·P + v] = pixels[b, c, i·P + u, j·P + v].
    static func unfold(_ patches: UnsafeMutablePointer<Float>, _ pixels: UnsafePointer<Float>, batch: Int,
                       config: CLIPVisionConfig) {
        let s = config.imageSize, p = config.patchSize, g = config.gridSize, c = config.numChannels
        let inputs = config.patchInputs
        for b in 0..<batch {
            for i in 0..<g {
                for j in 0..<g {
                    let patch = patches + (b * g * g + i * g + j) * inputs
                    for channel in 0..<c {
                        for u in 0..<p {
                            let source = pixels + ((b * c + channel) * s + i * p + u) * s + j * p
                            (patch + (channel * p + u) * p).update(from: source, count: p)
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of `unfold`: writes every pixel's gradient (0 for pixels outside whole patches).
    static func fold(_ pixels: UnsafeMutablePointer<Float>, _ patches: UnsafePointer<Float>, batch: Int,
                     config: CLIPVisionConfig) {
        let s = config.imageSize, p = config.patchSize, g = config.gridSize, c = config.numChannels
        let inputs = config.patchInputs
        if g * p != s { pixels.update(repeating: 0, count: batch * config.pixelsPerImage) }
        for b in 0..<batch {
            for i in 0..<g {
                for j in 0..<g {
                    let patch = patches + (b * g * g + i * g + j) * inputs
                    for channel in 0..<c {
                        for u in 0..<p {
                            let target = pixels + ((b * c + channel) * s + i * p + u) * s + j * p
                            target.update(from: patch + (channel * p + u) * p, count: p)
                        }
                    }
                }
            }
        }
    }

    /// x [B·T, D] from the unfolded patches; `patchOut` is [B·G², D] scratch.
    static func forward(_ x: UnsafeMutablePointer<Float>, patchOut: UnsafeMutablePointer<Float>, _ patches: UnsafePointer<Float>,
                        _ p: EmbeddingParameters, batch: Int, config: CLIPVisionConfig) {
        let d = config.hiddenSize
        BLAS.gemm(transposeB: true, m: batch * config.numPatches, n: d, k: config.patchInputs, a: patches,
                  lda: config.patchInputs, b: p.patchWeight, ldb: config.patchInputs, c: patchOut, ldc: d)
        assemble(x, patchOut: patchOut, classEmbedding: p.classEmbedding, positions: p.positionEmbedding, batch: batch, config: config)
    }

    /// ẋ from the parameter tangents `t`; `patchOut` is [B·G², D] scratch.
    static func jvp(_ xDot: UnsafeMutablePointer<Float>, patchOut: UnsafeMutablePointer<Float>, _ patches: UnsafePointer<Float>,
                    _ t: EmbeddingParameters, batch: Int, config: CLIPVisionConfig) {
        if t.patchWeightIsZero {
            patchOut.update(repeating: 0, count: batch * config.numPatches * config.hiddenSize)
            assemble(xDot, patchOut: patchOut, classEmbedding: t.classEmbedding, positions: t.positionEmbedding, batch: batch, config: config)
        } else {
            forward(xDot, patchOut: patchOut, patches, t, batch: batch, config: config)
        }
    }

    /// Accumulates the parameter gradients into `g` from ∂L/∂x and writes ∂L/∂patches into
    /// `dPatches` when given; `patchOut` is [B·G², D] scratch.
    static func backward(_ dPatches: UnsafeMutablePointer<Float>?, _ g: EmbeddingParameters, _ dx: UnsafePointer<Float>,
                         _ patches: UnsafePointer<Float>, _ p: EmbeddingParameters, patchOut: UnsafeMutablePointer<Float>,
                         batch: Int, config: CLIPVisionConfig) {
        let d = config.hiddenSize, t = config.numTokens, np = config.numPatches
        for b in 0..<batch {
            let image = dx + b * t * d
            VectorMath.accumulate(g.classEmbedding, image, count: d)
            VectorMath.accumulate(g.positionEmbedding, image, count: t * d)
            (patchOut + b * np * d).update(from: image + d, count: np * d)
        }
        BLAS.gemm(transposeA: true, m: d, n: config.patchInputs, k: batch * np, a: patchOut, lda: d, b: patches,
                  ldb: config.patchInputs, beta: 1, c: g.patchWeight, ldc: config.patchInputs)
        if let dPatches {
            BLAS.gemm(m: batch * np, n: config.patchInputs, k: d, a: patchOut, lda: d, b: p.patchWeight,
                      ldb: config.patchInputs, c: dPatches, ldc: config.patchInputs)
        }
    }

    /// x[b, 0] = cls + pos[0], x[b, 1+p] = patchOut[b, p] + pos[1+p].
    private static func assemble(_ x: UnsafeMutablePointer<Float>, patchOut: UnsafePointer<Float>,
                                 classEmbedding: UnsafePointer<Float>, positions: UnsafePointer<Float>,
                                 batch: Int, config: CLIPVisionConfig) {
        let d = config.hiddenSize, t = config.numTokens, np = config.numPatches
        for b in 0..<batch {
            let image = x + b * t * d
            VectorMath.add(image, classEmbedding, positions, count: d)
            VectorMath.add(image + d, patchOut + b * np * d, positions + d, count: np * d)
        }
    }
}
