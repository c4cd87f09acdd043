import Foundation

/// A WEMoE CLIP image encoder on BLAS (`WEMoEParameters`): the CLIP forward pass with every
/// encoder MLP replaced by `WEMoEMLP`, and the backward pass to the routers (the only trainable
/// parameters; the gradients of the frozen tensors are not formed as results, their GEMMs write
/// into a scratch sink).
///
/// Routing: per image at evaluation (FusionBench's `batch_reduce = False`); with `batchReduce`
/// (FusionBench's test-time adaptation) the routing weights are averaged over the batch, so every
/// image of one call uses the same mixed MLP.
public final class WEMoEModel: ImageEncoder, @unchecked Sendable {
    public let parameters: WEMoEParameters
    /// The merged (non-MLP) parameters as an ordinary model: views, sharding and thread settings.
    let base: CLIPVisionModel
    /// The last training pass (`routerGradients`), kept for the next one of the same batch.
    private let trainingPasses = PassCache<WEMoEShardPass>()

    public init(parameters: WEMoEParameters, threads: Int? = nil) {
        self.parameters = parameters
        base = CLIPVisionModel(parameters: parameters.merged, threads: threads)
    }

    /// Loads a WEMoE checkpoint (a `.safetensors` file or a directory) written by `merge-cli wemoe`.
    public convenience init(path: String, threads: Int? = nil, allowUnused: Bool = false) throws(MergeKitError) {
        self.init(parameters: try WEMoEParameters.load(path: path, allowUnused: allowUnused), threads: threads)
    }

    public var config: CLIPVisionConfig { parameters.config }
    public var embeddingSize: Int { base.embeddingSize }
    public var threads: Int {
        get { base.threads }
        set { base.threads = newValue }
    }
    /// Images whose MLP parameters are mixed in one GEMM with per-image routing (see `WEMoEMLP`,
    /// which explains the default). Batch-averaged routing mixes once per layer.
    public var mixingChunk = WEMoEModel.defaultMixingChunk
    /// `mixingChunk`'s default.
    static let defaultMixingChunk = 8
    public var parallelism: EngineParallelism {
        get { base.parallelism }
        set { base.parallelism = newValue }
    }

    // MARK: Forward

    /// Image embeddings [B, E] with per-image routing.
    public func forward(pixels: [Float], batch: Int) -> [Float] {
        forwardWithRouting(pixels: pixels, batch: batch).embeddings
    }

    /// Embeddings [B, E] and every layer's routing weights [L, B, T] (layer-major).
    public func forwardWithRouting(pixels: [Float], batch: Int, batchReduce: Bool = false) -> (embeddings: [Float], routing: [Float]) {
        precondition(batch >= 0 && pixels.count == batch * config.pixelsPerImage, "expected \(batch) preprocessed images")
        let e = embeddingSize, ppi = config.pixelsPerImage, t = parameters.experts, layers = config.numHiddenLayers
        var embeddings = [Float](repeating: 0, count: batch * e)
        var routingByShard: [[Float]] = []
        // The batch average couples the images: one shard then.
        let ranges = batchReduce ? [0..<batch] : base.shardRanges(batch: batch)
        routingByShard = ranges.map { [Float](repeating: 0, count: layers * $0.count * t) }
        let routingBuffers = routingByShard.map { FloatBuffer(count: $0.count) }
        pixels.withUnsafeBufferPointer { px in
            embeddings.withUnsafeMutableBufferPointer { o in
                let pxs = Shared(px.baseAddress!), os = Shared(o.baseAddress!)
                base.runShards(ranges) { range, shard in
                    guard !range.isEmpty else { return }
                    let pass = WEMoEShardPass(self.parameters, batch: range.count, keepActivations: false, backward: false,
                                              chunk: batchReduce ? 1 : self.mixingChunk)
                    self.forward(pass, pixels: pxs.value + range.lowerBound * ppi, embeddings: os.value + range.lowerBound * e,
                                 batchReduce: batchReduce, routing: routingBuffers[shard].pointer)
                }
            }
        }
        // [L, B, T] from the shards' [L, Bₛ, T].
        var routing = [Float](repeating: 0, count: layers * batch * t)
        for (range, buffer) in zip(ranges, routingBuffers) {
            for l in 0..<layers {
                for i in 0..<range.count * t {
                    routing[(l * batch + range.lowerBound) * t + i] = buffer.pointer[l * range.count * t + i]
                }
            }
        }
        return (embeddings, routing)
    }

    /// The forward pass over one shard; copies each layer's routing [B, T] to `routing` [L, B, T].
    func forward(_ wp: WEMoEShardPass, pixels: UnsafePointer<Float>, embeddings: UnsafeMutablePointer<Float>,
                 batchReduce: Bool, routing: UnsafeMutablePointer<Float>?) {
        let c = config, p = base.views, pass = wp.pass, shape = pass.shape, batch = shape.batch, rows = shape.rows
        let keep = pass.keepsActivations, n = rows * c.hiddenSize, t = parameters.experts
        pass.embed(pixels, p, config: c)
        for l in 0..<c.numHiddenLayers {
            let act = pass.layers[keep ? l : 0], moe = wp.moe[keep ? l : 0], pl = p.layers[l]
            let y = !keep ? act.input : (l + 1 < c.numHiddenLayers ? pass.layers[l + 1].input : pass.final)
            // EncoderLayer.forward with the WEMoE MLP: x₂ = x + SelfAttention(LN1(x)), y = x₂ + MoE(LN2(x₂)).
            LayerNorm.forward(act.normalized1, mean: act.mean1, rstd: act.rstd1, act.input, pl.layerNorm1, rows: rows, eps: c.layerNormEps)
            act.residual.update(from: act.input, count: n)
            SelfAttention.forward(act.residual, accumulate: true, act.attention, act.normalized1, pl.attention, shape)
            LayerNorm.forward(act.normalized2, mean: act.mean2, rstd: act.rstd2, act.residual, pl.layerNorm2, rows: rows, eps: c.layerNormEps)
            if y != act.residual { y.update(from: act.residual, count: n) }
            WEMoEMLP.forward(y, moe, act.normalized2, router: parameters.routerViews(l), fc1Stack: parameters.fc1Stacks[l].pointer,
                             fc2Stack: parameters.fc2Stacks[l].pointer, c.hiddenAct, shape, batchReduce: batchReduce, scratch: wp.scratch)
            routing?.advanced(by: l * batch * t).update(from: moe.routing, count: batch * t)
        }
        pass.pool(into: embeddings, p, config: c)
    }

    // MARK: Backward

    /// The gradient of a scalar loss L(e) of the embeddings with respect to every router parameter
    /// (flat, in `WEMoEParameters.routers` order). One shard (its GEMMs split into tiles); `outputGradient`
    /// maps the embeddings [B, E] to ∂L/∂e.
    public func routerGradients(pixels: [Float], batch: Int, batchReduce: Bool,
                                outputGradient: ([Float]) -> [Float]) -> (embeddings: [Float], gradient: [Float]) {
        precondition(batch >= 1 && pixels.count == batch * config.pixelsPerImage, "expected \(batch) preprocessed images")
        let e = embeddingSize, chunk = batchReduce ? 1 : mixingChunk
        let wp = trainingPasses.take([batch, chunk]) {
            [WEMoEShardPass(parameters, batch: batch, keepActivations: true, backward: true, chunk: chunk)]
        }[0]
        defer { trainingPasses.keep([batch, chunk], [wp]) }
        var embeddings = [Float](repeating: 0, count: batch * e)
        let gradient = FloatBuffer(count: parameters.routers.count)
        base.runShards([0..<batch]) { _, _ in
            pixels.withUnsafeBufferPointer { px in
                embeddings.withUnsafeMutableBufferPointer { o in
                    self.forward(wp, pixels: px.baseAddress!, embeddings: o.baseAddress!, batchReduce: batchReduce, routing: nil)
                }
            }
        }
        let dEmbeddings = outputGradient(embeddings)
        precondition(dEmbeddings.count == batch * e, "outputGradient must return [batch, embedding] values")
        base.runShards([0..<batch]) { _, _ in
            dEmbeddings.withUnsafeBufferPointer { de in
                self.backward(wp, gradient: gradient.pointer, dEmbeddings: de.baseAddress!, batchReduce: batchReduce)
            }
        }
        return (embeddings, gradient.array)
    }

    /// Router gradients of a classification loss through a task head, averaged over the batch.
    public func lossGradients(pixels: [Float], batch: Int, head: TaskHead, loss: ClassificationLoss,
                              batchReduce: Bool) -> (loss: Double, logits: [Float], gradient: [Float]) {
        precondition(head.dimension == embeddingSize, "the head's width \(head.dimension) is not the embedding's \(embeddingSize)")
        var value = 0.0
        var logits: [Float] = []
        let result = routerGradients(pixels: pixels, batch: batch, batchReduce: batchReduce) { embeddings in
            let step = head.lossGradient(embeddings: embeddings, batch: batch, loss: loss)
            (value, logits) = (step.loss, step.logits)
            return step.dEmbeddings
        }
        return (value, logits, result.gradient)
    }

    /// Accumulates ∂L/∂(routers) into `gradient` from ∂L/∂e, after a forward pass that kept every
    /// layer's activations.
    func backward(_ wp: WEMoEShardPass, gradient: UnsafeMutablePointer<Float>, dEmbeddings: UnsafePointer<Float>, batchReduce: Bool) {
        let c = config, p = base.views, pass = wp.pass, shape = pass.shape, batch = shape.batch, rows = shape.rows, d = c.hiddenSize
        precondition(pass.keepsActivations, "the backward pass needs a forward pass that kept every layer's activations")
        let sink = wp.sink
        let (dPooled, dClassTokens, dStream) = wp.backwardBuffers()
        if let projection = p.projection {
            sink.zero()
            LinearLayer.backward(dPooled, sink.linear(inputs: d, outputs: projection.outputs, bias: false), dEmbeddings,
                                 pass.pooled, projection, rows: batch)
        } else {
            dPooled.update(from: dEmbeddings, count: batch * d)
        }
        LayerNorm.backward(dClassTokens, sink.layerNorm(d), dPooled, pass.classTokens, mean: pass.postMean, rstd: pass.postRstd,
                           p.postLayerNorm, rows: batch)
        for b in 0..<batch {
            (dStream + b * shape.tokens * d).update(from: dClassTokens + b * d, count: d)
        }
        let scratch = wp.encoderScratch!
        for l in (0..<c.numHiddenLayers).reversed() {
            let act = pass.layers[l], pl = p.layers[l]
            let g = WEMoEParameters.routerViews(gradient + l * parameters.routerSize, depth: parameters.routerDepth, width: d,
                                                experts: parameters.experts)
            WEMoEMLP.backward(scratch.dNormalized, g, dStream, wp.moe[l], act.normalized2, router: parameters.routerViews(l),
                              fc1Stack: parameters.fc1Stacks[l].pointer, fc2Stack: parameters.fc2Stacks[l].pointer, c.hiddenAct,
                              shape, batchReduce: batchReduce, scratch: wp.scratch)
            if l == 0 { break }  // nothing below layer 0's MLP has a router
            sink.zero()
            LayerNorm.backward(dStream, sink.layerNorm(d), scratch.dNormalized, act.residual, mean: act.mean2, rstd: act.rstd2,
                               pl.layerNorm2, rows: rows)
            WEMoEModel.attentionInputGradient(scratch.dNormalized, dStream, act.attention, pl.attention,
                                              scratch: scratch.attention, shape)
            LayerNorm.backward(dStream, sink.layerNorm(d), scratch.dNormalized, act.input, mean: act.mean1, rstd: act.rstd1,
                               pl.layerNorm1, rows: rows)
        }
    }
}

extension WEMoEModel {
    /// ∂L/∂x of a self-attention block (as `SelfAttention.backward`) without the frozen projections'
    /// weight gradients, which the routers' training never reads: ∂L/∂context = ∂L/∂y·W_out, the
    /// attention's backward, then ∂L/∂x = ∂Q·W_q + ∂K·W_k + ∂V·W_v (four GEMMs instead of eight).
    static func attentionInputGradient(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>,
                                       _ act: SelfAttentionActivations, _ p: SelfAttentionParameters,
                                       scratch: SelfAttentionScratch, _ shape: EncoderShape) {
        let rows = shape.rows, d = shape.width
        BLAS.gemm(m: rows, n: d, k: d, a: dy, lda: d, b: p.out.weight, ldb: d, c: scratch.dContext, ldc: d)
        Attention.backward(scratch, act, shape)
        BLAS.gemm(m: rows, n: d, k: d, a: scratch.dq, lda: d, b: p.q.weight, ldb: d, c: dx, ldc: d)
        BLAS.gemm(m: rows, n: d, k: d, a: scratch.dk, lda: d, b: p.k.weight, ldb: d, beta: 1, c: dx, ldc: d)
        BLAS.gemm(m: rows, n: d, k: d, a: scratch.dv, lda: d, b: p.v.weight, ldb: d, beta: 1, c: dx, ldc: d)
    }
}

/// The buffers of one WEMoE pass over one shard: an ordinary `ShardPass` (whose per-layer MLP
/// activations the WEMoE MLPs use) plus the routers' activations and the mixing scratch.
final class WEMoEShardPass {
    let pass: ShardPass
    let moe: [WEMoEMLPActivations]
    let scratch: WEMoEMLPScratch
    let encoderScratch: EncoderScratch?
    /// Where the gradients of frozen tensors go (never read).
    let sink: GradientSink

    convenience init(_ parameters: WEMoEParameters, batch: Int, keepActivations: Bool, backward: Bool, chunk: Int) {
        self.init(parameters.config, experts: parameters.experts, routerDepth: parameters.routerDepth, batch: batch,
                  keepActivations: keepActivations, backward: backward, chunk: chunk)
    }

    /// On a measuring `workspace`, only counts the floats (see `Workspace`).
    init(_ c: CLIPVisionConfig, experts: Int, routerDepth: Int, batch: Int, keepActivations: Bool, backward: Bool, chunk: Int,
         workspace: Workspace = Workspace()) {
        pass = ShardPass(c, batch: batch, keepActivations: keepActivations, workspace: workspace)
        let shape = pass.shape
        // A training pass with one mixing set per chunk (batch-averaged routing) keeps each layer's.
        let keepMixed = keepActivations && backward && chunk == 1
        moe = pass.layers.map { [workspace = pass.workspace] in
            WEMoEMLPActivations(workspace, shape, experts: experts, routerDepth: routerDepth, mlp: $0.mlp, keepMixed: keepMixed)
        }
        scratch = WEMoEMLPScratch(pass.workspace, shape, experts: experts, chunk: chunk, backward: backward)
        encoderScratch = backward ? EncoderScratch(pass.workspace, shape, backward: true) : nil
        let d = c.hiddenSize
        sink = GradientSink(pass.workspace, count: backward ? max(d * d, c.projectionDim * d) + d : 0)
    }

    private var stream: (dPooled: UnsafeMutablePointer<Float>, dClassTokens: UnsafeMutablePointer<Float>, dStream: UnsafeMutablePointer<Float>)?

    /// ∂L/∂pooled and ∂L/∂class tokens [B, D] and ∂L/∂stream [rows, D] of the backward pass
    /// (`WEMoEModel.backward`), from the pass's workspace: made once, the last two zeroed for each pass.
    func backwardBuffers() -> (dPooled: UnsafeMutablePointer<Float>, dClassTokens: UnsafeMutablePointer<Float>, dStream: UnsafeMutablePointer<Float>) {
        let shape = pass.shape, d = shape.width
        let buffers = stream ?? (pass.workspace.take(shape.batch * d), pass.workspace.take(shape.batch * d), pass.workspace.take(shape.rows * d))
        stream = buffers
        buffers.dClassTokens.update(repeating: 0, count: shape.batch * d)
        buffers.dStream.update(repeating: 0, count: shape.rows * d)
        return buffers
    }
}

/// A scratch buffer posing as the gradient of frozen tensors: the layers' backward functions
/// accumulate their parameter gradients into it, and nobody reads them. Zeroed before reuse so
/// that the accumulated garbage stays finite.
final class GradientSink {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    /// `count` floats of `workspace`, zeroed.
    init(_ workspace: Workspace, count: Int) {
        pointer = workspace.take(count, zeroed: true)
        self.count = count
    }
    func zero() { pointer.update(repeating: 0, count: count) }

    func linear(inputs: Int, outputs: Int, bias: Bool = true) -> LinearParameters {
        LinearParameters(weight: pointer, bias: bias ? pointer + inputs * outputs : nil, inputs: inputs, outputs: outputs)
    }

    func layerNorm(_ d: Int) -> LayerNormParameters {
        LayerNormParameters(weight: pointer, bias: pointer + d, dim: d)
    }

    func attention(_ d: Int) -> SelfAttentionParameters {
        let l = linear(inputs: d, outputs: d)
        return SelfAttentionParameters(q: l, k: l, v: l, out: l)
    }
}
