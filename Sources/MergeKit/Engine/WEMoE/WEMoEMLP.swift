/// What one WEMoE MLP keeps for its backward pass (one layer, one shard of B images × S tokens).
struct WEMoEMLPActivations {
    /// a = ReLU(fc1 x) of a depth-2 router, [rows, D] (ReLU′ = [a > 0] needs nothing else).
    var routerHidden: UnsafeMutablePointer<Float>
    /// The routing weights used, r [B, T] (after the batch average when `batchReduce`).
    var routing: UnsafeMutablePointer<Float>
    /// u = fc1(x) and f(u) of the mixed MLP, [rows, hidden].
    var mlp: MLPActivations
    /// The layer's mixed fc1 then fc2 (weights and biases) when every image of the pass shares
    /// one routing (batch-averaged training), kept from the forward pass so that the backward pass
    /// does not mix them again; nil otherwise.
    var mixed: UnsafeMutablePointer<Float>?

    /// `mlp` is the encoder layer's own MLP activations (a WEMoE layer has no other MLP);
    /// `keepMixed` reserves `mixed`.
    init(_ workspace: Workspace, _ shape: EncoderShape, experts: Int, routerDepth: Int, mlp: MLPActivations, keepMixed: Bool = false) {
        routerHidden = workspace.take(routerDepth == 2 ? shape.rows * shape.width : 0)
        routing = workspace.take(shape.batch * experts)
        self.mlp = mlp
        let d = shape.width, f = shape.intermediate
        mixed = keepMixed ? workspace.take(2 * f * d + f + d) : nil
    }
}

/// Scratch of the WEMoE MLP for one shard, shared by all layers.
struct WEMoEMLPScratch {
    /// Router logits per token, [rows, T], then ∂L/∂logits.
    var logits: UnsafeMutablePointer<Float>
    /// ∂L/∂a of a depth-2 router, [rows, D].
    var dRouterHidden: UnsafeMutablePointer<Float>
    /// Mixture coefficients [chunk, T + 1] (1, r₁ … r_T), then their gradients.
    var coefficients: UnsafeMutablePointer<Float>
    /// Mixed fc1 / fc2 parameters (weight then bias) of up to `chunk` samples, and their gradients.
    var fc1, fc2, dFc1, dFc2: UnsafeMutablePointer<Float>
    /// ∂L/∂u, [rows, hidden].
    var dHidden: UnsafeMutablePointer<Float>
    /// ∂L/∂r [B, T].
    var dRouting: UnsafeMutablePointer<Float>
    let chunk: Int

    init(_ workspace: Workspace, _ shape: EncoderShape, experts: Int, chunk: Int, backward: Bool) {
        let d = shape.width, f = shape.intermediate
        self.chunk = max(1, min(shape.batch, chunk))
        logits = workspace.take(shape.rows * experts)
        dRouterHidden = workspace.take(backward ? shape.rows * d : 0)
        // Room for the chunks actually used: a batch smaller than `chunk` mixes fewer images at once.
        let chunk = self.chunk
        coefficients = workspace.take(chunk * (experts + 1))
        fc1 = workspace.take(chunk * (f * d + f))
        fc2 = workspace.take(chunk * (d * f + d))
        dFc1 = workspace.take(backward ? chunk * (f * d + f) : 0)
        dFc2 = workspace.take(backward ? chunk * (d * f + d) : 0)
        dHidden = workspace.take(backward ? shape.rows * f : 0)
        dRouting = workspace.take(backward ? shape.batch * experts : 0)
    }
}

/// A weight-ensembling MoE MLP (FusionBench's `WeightEnsemblingMoE` around `CLIPMLP`), on the
/// tokens x [B·S, D] of B images:
///
///     zₙ = router(xₙ)                      per token, [T]   (depth 2: fc2(ReLU(fc1 xₙ)); 1: fc xₙ)
///     r_b = (1/S) Σ_{n ∈ b} zₙ             per image, raw (no softmax); depth 0: r_b = w
///     (batch-reduced, as FusionBench trains: r_b = (1/B) Σ_b′ r_b′ for every b)
///     W_b = W₀ + Σₜ r_{b,t} τₜ             for fc1 and fc2, weights and biases
///     y_b = fc2_{W_b}(f(fc1_{W_b}(x_b)))   the ordinary MLP with image b's parameters
///
/// Mixing: the T + 1 parameter sets of a layer are stacked as rows [W₀; τ₁; …; τ_T], so the
/// mixed parameters of a chunk of images are one GEMM [chunk, T + 1] × [T + 1, |W|] with
/// coefficients (1, r_b). This costs |W|·(T + 1) multiply-adds per chunk and reads the stack once
/// per chunk; the alternative W₀x + Σₜ rₜ(τₜx) costs S·|W|·(T + 1) per image (S = 50 tokens for
/// ViT-B/32), and keeping T expert outputs per token for the backward pass would cost T times the
/// MLP's activations. Larger chunks amortise reading the stack over more images at the cost of
/// scratch memory (2·chunk·|W| floats per shard, 150 MB on ViT-B/32 at 8); on ViT-B/32 with eight
/// experts evaluation got faster up to a chunk of 8 (README, WEMoE), hence
/// `WEMoEModel.mixingChunk` = 8.
///
/// Backward, per image b (dy = ∂L/∂y_b): the ordinary MLP backward with W_b gives ∂L/∂x_b and
/// ∂L/∂W_b (weights and biases, accumulated in a per-image buffer); then
///
///     ∂L/∂r_{b,t} = ⟨∂L/∂W_b, τₜ⟩          (one GEMM [chunk, |W|] × [|W|, T + 1])
///     ∂L/∂zₙ = ∂L/∂r_b / S                 through the token average (and /B when batch-reduced)
///
/// and the router's backward adds its input gradient to ∂L/∂x (the router reads the same x).
enum WEMoEMLP {
    /// Routing weights r [B, T] of the images of `x` [B·S, D] (see the type's formula); fills
    /// `act.routerHidden` for the backward pass.
    static func route(_ act: WEMoEMLPActivations, _ x: UnsafePointer<Float>, _ p: RouterParameters, _ shape: EncoderShape,
                      batchReduce: Bool, scratch: WEMoEMLPScratch) {
        let rows = shape.rows, t = p.experts, s = shape.tokens, b = shape.batch
        let r = act.routing
        if p.depth == 0 {
            for i in 0..<b { (r + i * t).update(from: p.vector!, count: t) }
            return
        }
        if p.depth == 2 {
            LinearLayer.forward(act.routerHidden, x, p.hidden!, rows: rows)
            for i in 0..<rows * p.width where !(act.routerHidden[i] > 0) { act.routerHidden[i] = 0 }
            LinearLayer.forward(scratch.logits, act.routerHidden, p.output!, rows: rows)
        } else {
            LinearLayer.forward(scratch.logits, x, p.output!, rows: rows)
        }
        let inverse = 1 / Float(s)
        for i in 0..<b {
            let ri = r + i * t
            ri.update(repeating: 0, count: t)
            VectorMath.accumulateColumnSums(of: scratch.logits + i * s * t, rows: s, columns: t, into: ri)
            for k in 0..<t { ri[k] *= inverse }
        }
        if batchReduce { averageRows(r, rows: b, columns: t) }
    }

    /// Replaces every row of `m` [rows, columns] by the mean row.
    static func averageRows(_ m: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        guard rows > 1 else { return }
        for k in 0..<columns {
            var sum: Float = 0
            for i in 0..<rows { sum += m[i * columns + k] }
            let mean = sum / Float(rows)
            for i in 0..<rows { m[i * columns + k] = mean }
        }
    }

    /// Groups of rows that share mixed parameters: one per image, or one for the whole shard when
    /// every image has the same routing (batch-reduced or depth 0).
    static func segments(_ shape: EncoderShape, shared: Bool) -> [(rows: Range<Int>, image: Int)] {
        shared ? [(0..<shape.rows, 0)] : (0..<shape.batch).map { ($0 * shape.tokens..<($0 + 1) * shape.tokens, $0) }
    }

    /// Mixes the parameters of `segments` (at most `scratch.chunk`) into `fc1`/`fc2` (by default
    /// `scratch.fc1`/`fc2`).
    static func mix(_ segments: ArraySlice<(rows: Range<Int>, image: Int)>, routing: UnsafePointer<Float>, experts t: Int,
                    fc1Stack: UnsafePointer<Float>, fc2Stack: UnsafePointer<Float>, shape: EncoderShape, scratch: WEMoEMLPScratch,
                    into destination: (fc1: UnsafeMutablePointer<Float>, fc2: UnsafeMutablePointer<Float>)? = nil) {
        let (fc1, fc2) = destination ?? (scratch.fc1, scratch.fc2)
        let d = shape.width, f = shape.intermediate, n1 = f * d + f, n2 = d * f + d, g = segments.count
        for (j, segment) in segments.enumerated() {
            let c = scratch.coefficients + j * (t + 1)
            c[0] = 1
            (c + 1).update(from: routing + segment.image * t, count: t)
        }
        if g == 1 {
            combine(scratch.coefficients, rows: t + 1, stack: fc1Stack, count: n1, into: fc1)
            combine(scratch.coefficients, rows: t + 1, stack: fc2Stack, count: n2, into: fc2)
            return
        }
        BLAS.gemm(m: g, n: n1, k: t + 1, a: scratch.coefficients, lda: t + 1, b: fc1Stack, ldb: n1, c: fc1, ldc: n1)
        BLAS.gemm(m: g, n: n2, k: t + 1, a: scratch.coefficients, lda: t + 1, b: fc2Stack, ldb: n2, c: fc2, ldc: n2)
    }

    /// out[j] = Σₖ c[k]·stack[k, j] (k in order) for one set of coefficients: the mix of a
    /// batch-averaged (or fixed) routing. As a GEMM of one row this would copy (pack) the whole
    /// stack, T + 1 times the layer's MLP, before reading it; streamed here in fixed blocks of
    /// `innerBlock` columns, which the pass's product workers share (the same bits for any count).
    static func combine(_ c: UnsafePointer<Float>, rows: Int, stack: UnsafePointer<Float>, count n: Int,
                        into out: UnsafeMutablePointer<Float>) {
        let blocks = (n + innerBlock - 1) / innerBlock
        let shared = Shared((c, stack, out))
        WorkQueue.run(blocks, workers: BLAS.productWorkers ?? 1) { b in
            let (c, stack, out) = shared.value
            let start = b * innerBlock, end = min(n, start + innerBlock)
            let c0 = c[0]
            for j in start..<end { out[j] = c0 * stack[j] }
            for k in 1..<max(1, rows) {
                let ck = c[k], row = stack + k * n
                for j in start..<end { out[j] += ck * row[j] }
            }
        }
    }

    /// Where the mixed parameters of a pass's chunks live: the layer's kept copy when every image
    /// shares one routing and the pass keeps it (`WEMoEMLPActivations.mixed`), else the scratch.
    static func mixedBuffers(_ act: WEMoEMLPActivations, segments: Int, shape: EncoderShape,
                             scratch: WEMoEMLPScratch) -> (fc1: UnsafeMutablePointer<Float>, fc2: UnsafeMutablePointer<Float>, kept: Bool) {
        guard segments == 1, let mixed = act.mixed else { return (scratch.fc1, scratch.fc2, false) }
        return (mixed, mixed + shape.intermediate * shape.width + shape.intermediate, true)
    }

    /// c ← ∂L/∂W_mixed · stackᵀ (+ c with `accumulate`) for `rows` mixed parameter sets of
    /// `count` values each against the T + 1 rows of `stack`: c is [rows, T + 1]. In a pass that
    /// splits its products over threads the inner dimension (millions of values, while c has a
    /// few entries) is cut into fixed blocks of `innerBlock` values whose partial products the
    /// threads compute and that are then added in block order, so the bits do not depend on the
    /// thread count; otherwise one GEMM. One set (`rows` 1) always goes by blocks, as dot products.
    static func stackProducts(_ dW: UnsafePointer<Float>, rows: Int, count: Int, stack: UnsafePointer<Float>, columns: Int,
                              accumulate: Bool, into c: UnsafeMutablePointer<Float>) {
        guard rows == 1 || BLAS.productWorkers != nil, count > innerBlock else {
            BLAS.gemm(transposeB: true, m: rows, n: columns, k: count, a: dW, lda: count, b: stack, ldb: count,
                      beta: accumulate ? 1 : 0, c: c, ldc: columns)
            return
        }
        let blocks = (count + innerBlock - 1) / innerBlock, size = rows * columns
        let partial = FloatBuffer(count: blocks * size, zeroed: false)
        let shared = Shared((dW, stack, partial.pointer))
        WorkQueue.run(blocks, workers: BLAS.productWorkers ?? 1) { b in
            let (dW, stack, partial) = shared.value
            let start = b * innerBlock, k = min(count, start + innerBlock) - start
            if rows == 1 {
                // One mixed set (batch-averaged routing): T + 1 dot products of the block, read
                // from the cache, instead of a GEMM of one row that would pack the stack's block.
                for j in 0..<columns { partial[b * size + j] = VectorMath.dot(dW + start, stack + j * count + start, count: k) }
                return
            }
            BLAS.$productWorkers.withValue(nil) {
                BLAS.gemm(transposeB: true, m: rows, n: columns, k: k, a: dW + start, lda: count, b: stack + start, ldb: count,
                          c: partial + b * size, ldc: columns)
            }
        }
        if !accumulate { c.update(repeating: 0, count: size) }
        for b in 0..<blocks {
            for i in 0..<size { c[i] += partial.pointer[b * size + i] }
        }
    }

    /// The inner block of `stackProducts` (a multiple of 16 values).
    static let innerBlock = 1 << 16

    /// Views of the j-th mixed fc1 / fc2 inside `fc1`/`fc2` buffers.
    static func linear(_ buffer: UnsafeMutablePointer<Float>, _ j: Int, inputs: Int, outputs: Int) -> LinearParameters {
        let base = buffer + j * (inputs * outputs + outputs)
        return LinearParameters(weight: base, bias: base + inputs * outputs, inputs: inputs, outputs: outputs)
    }

    /// y += WEMoE-MLP(x) (the residual connection), routing first; fills `act`.
    static func forward(_ y: UnsafeMutablePointer<Float>, _ act: WEMoEMLPActivations, _ x: UnsafePointer<Float>,
                        router: RouterParameters, fc1Stack: UnsafePointer<Float>, fc2Stack: UnsafePointer<Float>,
                        _ activation: CLIPActivation, _ shape: EncoderShape, batchReduce: Bool, scratch: WEMoEMLPScratch) {
        route(act, x, router, shape, batchReduce: batchReduce, scratch: scratch)
        let d = shape.width, f = shape.intermediate, t = router.experts
        let all = segments(shape, shared: batchReduce || router.depth == 0)
        let (fc1, fc2, _) = mixedBuffers(act, segments: all.count, shape: shape, scratch: scratch)
        var start = 0
        while start < all.count {
            let chunk = all[start..<min(all.count, start + scratch.chunk)]
            mix(chunk, routing: act.routing, experts: t, fc1Stack: fc1Stack, fc2Stack: fc2Stack, shape: shape, scratch: scratch,
                into: (fc1, fc2))
            for (j, segment) in chunk.enumerated() {
                let r0 = segment.rows.lowerBound, rows = segment.rows.count
                let hidden = act.mlp.hidden + r0 * f, activated = act.mlp.activated + r0 * f
                LinearLayer.forward(hidden, x + r0 * d, linear(fc1, j, inputs: d, outputs: f), rows: rows)
                Activation.forward(activation, activated, hidden, count: rows * f)
                LinearLayer.forward(y + r0 * d, activated, linear(fc2, j, inputs: f, outputs: d), rows: rows, accumulate: true)
            }
            start = chunk.endIndex
        }
    }

    /// Writes ∂L/∂x into `dx` from ∂L/∂y, after `forward` filled `act`; accumulates the router's
    /// gradients into `g` (same layout as `router`).
    static func backward(_ dx: UnsafeMutablePointer<Float>, _ g: RouterParameters, _ dy: UnsafePointer<Float>,
                         _ act: WEMoEMLPActivations, _ x: UnsafePointer<Float>, router: RouterParameters,
                         fc1Stack: UnsafePointer<Float>, fc2Stack: UnsafePointer<Float>, _ activation: CLIPActivation,
                         _ shape: EncoderShape, batchReduce: Bool, scratch: WEMoEMLPScratch) {
        let d = shape.width, f = shape.intermediate, t = router.experts, rows = shape.rows, b = shape.batch
        let n1 = f * d + f, n2 = d * f + d
        let shared = batchReduce || router.depth == 0
        let all = segments(shape, shared: shared)
        let (fc1, fc2, kept) = mixedBuffers(act, segments: all.count, shape: shape, scratch: scratch)
        scratch.dRouting.update(repeating: 0, count: b * t)
        var start = 0
        while start < all.count {
            let chunk = all[start..<min(all.count, start + scratch.chunk)]
            if !kept {
                mix(chunk, routing: act.routing, experts: t, fc1Stack: fc1Stack, fc2Stack: fc2Stack, shape: shape, scratch: scratch)
            }
            scratch.dFc1.update(repeating: 0, count: chunk.count * n1)
            scratch.dFc2.update(repeating: 0, count: chunk.count * n2)
            for (j, segment) in chunk.enumerated() {
                let r0 = segment.rows.lowerBound, count = segment.rows.count
                let dHidden = scratch.dHidden + r0 * f
                LinearLayer.backward(dHidden, linear(scratch.dFc2, j, inputs: f, outputs: d), dy + r0 * d,
                                     act.mlp.activated + r0 * f, linear(fc2, j, inputs: f, outputs: d), rows: count)
                Activation.backward(activation, dHidden, act.mlp.hidden + r0 * f, dHidden, count: count * f)
                LinearLayer.backward(dx + r0 * d, linear(scratch.dFc1, j, inputs: d, outputs: f), dHidden, x + r0 * d,
                                     linear(fc1, j, inputs: d, outputs: f), rows: count)
            }
            // ∂L/∂(1, r) = ∂L/∂W_mixed · stackᵀ, for fc1 and fc2 together.
            let c = scratch.coefficients
            stackProducts(scratch.dFc1, rows: chunk.count, count: n1, stack: fc1Stack, columns: t + 1, accumulate: false, into: c)
            stackProducts(scratch.dFc2, rows: chunk.count, count: n2, stack: fc2Stack, columns: t + 1, accumulate: true, into: c)
            for (j, segment) in chunk.enumerated() {
                for k in 0..<t { scratch.dRouting[segment.image * t + k] += c[j * (t + 1) + 1 + k] }
            }
            start = chunk.endIndex
        }
        if router.depth == 0 {
            for k in 0..<t { g.vector![k] += scratch.dRouting[k] }
            return
        }
        // Through the batch average (shared routing: every image's r_b contributes 1/B), then the
        // token average: ∂L/∂zₙ = ∂L/∂r_b / S.
        if shared {
            let share = 1 / Float(b)
            for i in 1..<max(1, b) { (scratch.dRouting + i * t).update(from: scratch.dRouting, count: t) }
            for i in 0..<b * t { scratch.dRouting[i] *= share }
        }
        let inverse = 1 / Float(shape.tokens)
        for n in 0..<rows {
            let image = n / shape.tokens
            for k in 0..<t { scratch.logits[n * t + k] = scratch.dRouting[image * t + k] * inverse }
        }
        if router.depth == 2 {
            LinearLayer.backward(scratch.dRouterHidden, g.output!, scratch.logits, act.routerHidden, router.output!, rows: rows)
            for i in 0..<rows * d where !(act.routerHidden[i] > 0) { scratch.dRouterHidden[i] = 0 }
            LinearLayer.backward(dx, accumulateInput: true, g.hidden!, scratch.dRouterHidden, x, router.hidden!, rows: rows)
        } else {
            LinearLayer.backward(dx, accumulateInput: true, g.output!, scratch.logits, x, router.output!, rows: rows)
        }
    }
}
