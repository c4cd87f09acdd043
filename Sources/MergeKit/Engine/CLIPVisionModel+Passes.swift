import Foundation

/// The buffers of one pass over one shard of a batch.
///
/// A forward pass for inference keeps one layer's activations and updates the residual stream in
/// place; a pass for the backward pass keeps every layer's (`keepActivations`). A tangent pass
/// (the JVP's second half) holds the tangents of the same quantities.
final class ShardPass {
    let shape: EncoderShape
    /// Whether every layer's activations are kept (for the backward pass).
    let keepsActivations: Bool
    let workspace: Workspace
    /// The unfolded patches [B·G², C·P·P] and the patch GEMM's output [B·G², D].
    let patches, patchOut: UnsafeMutablePointer<Float>
    /// The embeddings entering `pre_layrnorm`, [B·T, D], and its statistics.
    let embedded, preMean, preRstd: UnsafeMutablePointer<Float>
    /// One entry per layer with `keepActivations`, else one shared by all layers.
    let layers: [EncoderLayerActivations]
    /// The last layer's output [B·T, D] (with one shared layer: that layer's input, updated in place).
    let final: UnsafeMutablePointer<Float>
    /// The class tokens of `final` [B, D], `post_layernorm`'s statistics and output [B, D].
    let classTokens, postMean, postRstd, pooled: UnsafeMutablePointer<Float>

    /// On a measuring `workspace`, only counts the floats (see `Workspace`).
    init(_ config: CLIPVisionConfig, batch: Int, keepActivations: Bool, tangent: Bool = false, workspace: Workspace = Workspace()) {
        self.workspace = workspace
        let shape = EncoderShape(config: config, batch: batch)
        self.shape = shape
        keepsActivations = keepActivations
        let rows = shape.rows, d = config.hiddenSize, np = batch * config.numPatches
        patches = workspace.take(tangent ? 0 : np * config.patchInputs)
        patchOut = workspace.take(tangent ? 0 : np * d)
        embedded = workspace.take(rows * d)
        preMean = workspace.take(tangent ? 0 : rows)
        preRstd = workspace.take(tangent ? 0 : rows)
        let count = keepActivations ? config.numHiddenLayers : 1
        layers = (0..<count).map { [workspace] _ in EncoderLayerActivations(workspace, shape, tangent: tangent) }
        final = keepActivations ? workspace.take(rows * d) : layers[0].input
        classTokens = workspace.take(batch * d)
        postMean = workspace.take(tangent ? 0 : batch)
        postRstd = workspace.take(tangent ? 0 : batch)
        pooled = workspace.take(batch * d)
    }

    /// The backward pass's buffers, made by its first backward pass and reused by later ones.
    private var backwardBuffers: BackwardBuffers?

    /// The buffers of the backward pass (`CLIPVisionModel.backward`), from this pass's workspace:
    /// made once, then reused; ∂class tokens, ∂stream and ∂embedded zeroed for the new pass.
    func backward(config c: CLIPVisionConfig, inputGradient: Bool) -> BackwardBuffers {
        let buffers = backwardBuffers ?? BackwardBuffers(workspace, shape)
        backwardBuffers = buffers
        let rows = shape.rows, d = shape.width
        buffers.dClassTokens.update(repeating: 0, count: shape.batch * d)
        buffers.dStream.update(repeating: 0, count: rows * d)
        buffers.dEmbedded.update(repeating: 0, count: rows * d)
        if inputGradient && buffers.dPatches == nil {
            buffers.dPatches = workspace.take(shape.batch * c.numPatches * c.patchInputs)
        }
        return buffers
    }

    /// Copies the class token (row 0) of every image of `final` into `classTokens`.
    func gatherClassTokens() {
        let d = shape.width
        for b in 0..<shape.batch {
            (classTokens + b * d).update(from: final + b * shape.tokens * d, count: d)
        }
    }

    /// The stem: patches of `pixels`, patch + class + position embeddings, pre-LayerNorm into the
    /// first layer's input.
    func embed(_ pixels: UnsafePointer<Float>, _ p: CLIPVisionParameterViews, config c: CLIPVisionConfig) {
        PatchEmbedding.unfold(patches, pixels, batch: shape.batch, config: c)
        PatchEmbedding.forward(embedded, patchOut: patchOut, patches, p.embeddings, batch: shape.batch, config: c)
        LayerNorm.forward(layers[0].input, mean: preMean, rstd: preRstd, embedded, p.preLayerNorm,
                          rows: shape.rows, eps: c.layerNormEps)
    }

    /// The head: post-LayerNorm of every image's class token in `final`, then the projection
    /// (when the model has one) into `embeddings` [B, E].
    func pool(into embeddings: UnsafeMutablePointer<Float>, _ p: CLIPVisionParameterViews, config c: CLIPVisionConfig) {
        gatherClassTokens()
        LayerNorm.forward(pooled, mean: postMean, rstd: postRstd, classTokens, p.postLayerNorm,
                          rows: shape.batch, eps: c.layerNormEps)
        if let projection = p.projection {
            LinearLayer.forward(embeddings, pooled, projection, rows: shape.batch)
        } else {
            embeddings.update(from: pooled, count: shape.batch * c.hiddenSize)
        }
    }
}

/// What the backward pass over one shard writes besides the gradients (see `ShardPass.backward`).
final class BackwardBuffers {
    /// ∂L/∂pooled and ∂L/∂class tokens [B, D], ∂L/∂stream [rows, D].
    let dPooled, dClassTokens, dStream: UnsafeMutablePointer<Float>
    let scratch: EncoderScratch
    /// ∂L/∂(pre-LayerNorm input) [rows, D].
    let dEmbedded: UnsafeMutablePointer<Float>
    /// ∂L/∂patches [B·G², C·P·P], made when an input gradient is first asked for.
    var dPatches: UnsafeMutablePointer<Float>?

    init(_ workspace: Workspace, _ shape: EncoderShape) {
        let batch = shape.batch, rows = shape.rows, d = shape.width
        dPooled = workspace.take(batch * d)
        dClassTokens = workspace.take(batch * d)
        dStream = workspace.take(rows * d)
        scratch = EncoderScratch(workspace, shape, backward: true)
        dEmbedded = workspace.take(rows * d)
    }
}

/// The buffers of a model's training passes kept between calls (`CLIPVisionModel.accumulateGradients`,
/// `WEMoEModel.routerGradients`), so that a trainer's steps do not allocate (and the kernel zero)
/// every activation again: a call takes them when they were made for the same `key` (the shard
/// sizes), else they are freed before new ones are made, and gives them back at its end.
final class PassCache<Pass>: @unchecked Sendable {
    private let lock = NSLock()
    private var kept: (key: [Int], passes: [Pass])?

    func take(_ key: [Int], make: () -> [Pass]) -> [Pass] {
        lock.lock()
        var old = kept
        kept = nil
        lock.unlock()
        if let old, old.key == key { return old.passes }
        old = nil  // released before the new ones are made: two sets are never held at once
        _ = old
        return make()
    }

    func keep(_ key: [Int], _ passes: [Pass]) {
        lock.lock()
        kept = (key, passes)
        lock.unlock()
    }
}

/// The three passes over one shard, in the order of the network (llm.c's `gpt2_forward` /
/// `gpt2_backward`): each calls the layers' forward, JVP or backward functions in turn.
extension CLIPVisionModel {
    /// Embeddings [B, E] of the shard's images; fills `pass`.
    func forward(_ pass: ShardPass, pixels: UnsafePointer<Float>, embeddings: UnsafeMutablePointer<Float>) {
        let c = config, p = views, shape = pass.shape
        let keep = pass.keepsActivations
        pass.embed(pixels, p, config: c)
        for l in 0..<c.numHiddenLayers {
            let act = pass.layers[keep ? l : 0]
            let output = !keep ? act.input : (l + 1 < c.numHiddenLayers ? pass.layers[l + 1].input : pass.final)
            EncoderLayer.forward(output, act, p.layers[l], shape, activation: c.hiddenAct, eps: c.layerNormEps)
        }
        pass.pool(into: embeddings, p, config: c)
    }

    /// Embeddings and their tangents along the direction `t` (primal and tangent buffers in
    /// `pass` and `tan`, one shared layer each).
    ///
    /// While the tangent of the residual stream is still zero (the direction is zero on every
    /// tensor so far), a layer whose direction is zero only runs its forward pass: its tangent
    /// stays zero. Inside a layer, GEMMs with a zero Ẇ are skipped (`directionViews`).
    func jvp(_ pass: ShardPass, _ tan: ShardPass, direction t: CLIPVisionParameterViews, pixels: UnsafePointer<Float>,
             embeddings: UnsafeMutablePointer<Float>, tangent: UnsafeMutablePointer<Float>) {
        let c = config, p = views, shape = pass.shape, batch = shape.batch, rows = shape.rows
        let act = pass.layers[0], actDot = tan.layers[0]
        pass.embed(pixels, p, config: c)
        PatchEmbedding.jvp(tan.embedded, patchOut: pass.patchOut, pass.patches, t.embeddings, batch: batch, config: c)
        LayerNorm.jvp(actDot.input, pass.embedded, tan.embedded, mean: pass.preMean, rstd: pass.preRstd,
                      p.preLayerNorm, t.preLayerNorm, rows: rows)
        let scratch = EncoderScratch(pass.workspace, shape, backward: false)
        var tangentIsZero = t.embeddings.isZero && t.preLayerNorm.isZero
        for l in 0..<c.numHiddenLayers {
            if tangentIsZero && t.layers[l].isZero {
                EncoderLayer.forward(act.input, act, p.layers[l], shape, activation: c.hiddenAct, eps: c.layerNormEps)
                continue
            }
            tangentIsZero = false
            EncoderLayer.jvp(act.input, actDot.input, act, actDot, p.layers[l], t.layers[l], shape,
                             activation: c.hiddenAct, eps: c.layerNormEps, scratch: scratch)
        }
        pass.gatherClassTokens()
        tan.gatherClassTokens()
        LayerNorm.forward(pass.pooled, mean: pass.postMean, rstd: pass.postRstd, pass.classTokens, p.postLayerNorm,
                          rows: batch, eps: c.layerNormEps)
        LayerNorm.jvp(tan.pooled, pass.classTokens, tan.classTokens, mean: pass.postMean, rstd: pass.postRstd,
                      p.postLayerNorm, t.postLayerNorm, rows: batch)
        if let projection = p.projection, let projectionDot = t.projection {
            LinearLayer.forward(embeddings, pass.pooled, projection, rows: batch)
            LinearLayer.jvp(tangent, pass.pooled, tan.pooled, projection, projectionDot, rows: batch)
        } else {
            embeddings.update(from: pass.pooled, count: batch * c.hiddenSize)
            tangent.update(from: tan.pooled, count: batch * c.hiddenSize)
        }
    }

    /// Accumulates ∂L/∂θ into `g` from ∂L/∂e [B, E], after `forward` filled `pass` keeping every
    /// layer's activations; writes ∂L/∂pixels when `dPixels` is given.
    func backward(_ pass: ShardPass, gradient g: CLIPVisionParameterViews, dEmbeddings: UnsafePointer<Float>,
                  dPixels: UnsafeMutablePointer<Float>?) {
        let c = config, p = views, shape = pass.shape, batch = shape.batch, rows = shape.rows, d = c.hiddenSize
        precondition(pass.keepsActivations, "the backward pass needs a forward pass that kept every layer's activations")
        let buffers = pass.backward(config: c, inputGradient: dPixels != nil)
        let dPooled = buffers.dPooled
        if let projection = p.projection, let gProjection = g.projection {
            LinearLayer.backward(dPooled, gProjection, dEmbeddings, pass.pooled, projection, rows: batch)
        } else {
            dPooled.update(from: dEmbeddings, count: batch * d)
        }
        let dClassTokens = buffers.dClassTokens
        LayerNorm.backward(dClassTokens, g.postLayerNorm, dPooled, pass.classTokens, mean: pass.postMean, rstd: pass.postRstd,
                           p.postLayerNorm, rows: batch)
        let dStream = buffers.dStream
        for b in 0..<batch {
            (dStream + b * shape.tokens * d).update(from: dClassTokens + b * d, count: d)
        }
        for l in (0..<c.numHiddenLayers).reversed() {
            EncoderLayer.backward(dStream, g.layers[l], pass.layers[l], p.layers[l], shape, activation: c.hiddenAct,
                                  scratch: buffers.scratch)
        }
        let dEmbedded = buffers.dEmbedded
        LayerNorm.backward(dEmbedded, g.preLayerNorm, dStream, pass.embedded, mean: pass.preMean, rstd: pass.preRstd,
                           p.preLayerNorm, rows: rows)
        let dPatches = dPixels == nil ? nil : buffers.dPatches
        PatchEmbedding.backward(dPatches, g.embeddings, dEmbedded, pass.patches, p.embeddings, patchOut: pass.patchOut,
                                batch: batch, config: c)
        if let dPixels, let dPatches {
            PatchEmbedding.fold(dPixels, dPatches, batch: batch, config: c)
        }
    }
}
