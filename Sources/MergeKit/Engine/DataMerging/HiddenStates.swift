/// The hidden states of one task's sample images at one depth of a CLIP image encoder: the
/// residual stream [images·tokens, D], row-major, image after image. RegMean and RegMean++ keep one
/// per task and move it through the encoder a layer at a time (`EncoderLayerPass`), so that the
/// Gram matrices of layer l are formed from the states the previous layers produced.
final class HiddenStates {
    let images: Int
    let tokens: Int
    let width: Int
    let buffer: FloatBuffer

    init(images: Int, config: CLIPVisionConfig) {
        self.images = images
        tokens = config.numTokens
        width = config.hiddenSize
        buffer = FloatBuffer(count: images * tokens * width, zeroed: false)
    }

    var rows: Int { images * tokens }

    /// The first row of image `image`.
    func pointer(image: Int) -> UnsafeMutablePointer<Float> { buffer.pointer + image * tokens * width }
}

/// A sum of Gram matrices XᵀX of the rows of matrices X [rows, n] (the inputs of one linear layer
/// over a task's sample images), kept on its upper triangle until `finish`.
///
/// Each product is cut into fixed tiles of the upper triangle (`tileSize`, diagonal tiles by
/// `ssyrk`, the others by `sgemm`, each over all rows), so that every element is computed by the
/// same call whatever the thread count: the sums, and the merge, are bit-identical for any
/// `--threads`.
final class GramAccumulator {
    let n: Int
    let matrix: FloatBuffer
    /// Rows added since the last `reset`.
    private(set) var rows = 0

    static let tileSize = 256

    init(n: Int) {
        self.n = n
        matrix = FloatBuffer(count: n * n)
    }

    func reset() {
        matrix.zero()
        rows = 0
    }

    /// Adds XᵀX for each (accumulator, X) pair, every X with `rows` rows, on up to `threads`
    /// threads (one work list over all the tiles of all the pairs).
    static func add(_ pairs: [(GramAccumulator, UnsafePointer<Float>)], rows: Int, threads: Int) {
        guard rows > 0 else { return }
        var tiles: [(pair: Int, i: Int, j: Int)] = []
        for (p, (accumulator, _)) in pairs.enumerated() {
            let blocks = (accumulator.n + tileSize - 1) / tileSize
            for i in 0..<blocks { for j in i..<blocks { tiles.append((p, i, j)) } }
            accumulator.rows += rows
        }
        let shared = Shared(pairs)
        BLAS.useOneThread()
        WorkQueue.run(tiles.count, workers: threads) { t in
            let (p, i, j) = tiles[t]
            let (accumulator, x) = shared.value[p]
            let n = accumulator.n, size = tileSize
            let i0 = i * size, j0 = j * size
            let bi = min(size, n - i0), bj = min(size, n - j0)
            let c = accumulator.matrix.pointer + i0 * n + j0
            if i == j {
                BLAS.syrkUpper(n: bi, k: rows, a: x + i0, lda: n, beta: 1, c: c, ldc: n)
            } else {
                BLAS.gemm(transposeA: true, m: bi, n: bj, k: rows, a: x + i0, lda: n, b: x + j0, ldb: n, beta: 1, c: c, ldc: n)
            }
        }
    }

    /// Turns the sum into RegMean's regularised mean G′ = α·G + (1 − α)·diag(G), G = XᵀX / rows:
    /// the mean over every row added (FusionBench's `xtx / x.shape[0]`, a running mean there),
    /// mirrored to the lower triangle, off-diagonal elements scaled by α
    /// (`reduce_non_diagonal_ratio`). Returns false when an element is NaN or ±Inf.
    func finish(alpha: Float) -> Bool {
        let g = matrix.pointer
        let scale = rows > 0 ? 1 / Float(rows) : 0
        var finite = true
        for i in 0..<n {
            g[i * n + i] *= scale
            finite = finite && g[i * n + i].isFinite
            for j in (i + 1)..<n {
                let value = g[i * n + j] * scale * alpha
                finite = finite && value.isFinite
                g[i * n + j] = value
                g[j * n + i] = value
            }
        }
        return finite
    }
}

/// Runs a CLIP image encoder's stem, layers and head over `HiddenStates`, in chunks of at most
/// `batch` images, adding the Gram matrices of every linear layer's inputs when asked.
///
/// A chunk is cut into `CLIPVisionModel.shardCount(batch:)` image shards, run in parallel with
/// single-threaded BLAS into one set of chunk-wide activation buffers (shard k's rows after shard
/// k − 1's), so that each linear layer's input over the whole chunk is one matrix for
/// `GramAccumulator`. Shards and tiles depend on the chunk alone, never on the thread count.
final class EncoderLayerPass {
    let config: CLIPVisionConfig
    let batch: Int
    let threads: Int
    private let workspace = Workspace()
    /// One layer's activations for `batch` images (the input rows are the states themselves).
    private let activations: EncoderLayerActivations
    /// The stem's buffers for `batch` images: unfolded patches, the patch GEMM's output, the
    /// embeddings before `pre_layrnorm` and its statistics.
    private let patches, patchOut, embedded, mean, rstd: UnsafeMutablePointer<Float>

    init(config: CLIPVisionConfig, batch: Int, threads: Int) {
        precondition(batch >= 1)
        self.config = config
        self.batch = batch
        self.threads = threads
        let shape = EncoderShape(config: config, batch: batch)
        activations = EncoderLayerActivations(workspace, shape)
        let np = batch * config.numPatches
        patches = workspace.take(np * config.patchInputs)
        patchOut = workspace.take(np * config.hiddenSize)
        embedded = workspace.take(shape.rows * config.hiddenSize)
        mean = workspace.take(shape.rows)
        rstd = workspace.take(shape.rows)
    }

    /// Floats the buffers hold (for memory estimates).
    var floatCount: Int { workspace.floatCount }

    /// Contiguous near-equal image shards of a chunk of `count` images.
    private func shards(_ count: Int) -> [Range<Int>] {
        let n = CLIPVisionModel.shardCount(batch: count)
        return (0..<n).map { i in (count * i / n)..<(count * (i + 1) / n) }
    }

    /// Runs `body` on each shard of a chunk of `count` images, in parallel.
    private func forEachShard(_ count: Int, _ body: (Range<Int>) -> Void) {
        let ranges = shards(count)
        BLAS.useOneThread()
        WorkQueue.run(ranges.count, workers: threads) { body(ranges[$0]) }
    }

    /// The states of `count` ≤ `batch` images [count, C, H, W] after the stem of `p` (patch,
    /// class and position embeddings, then `pre_layrnorm`), written from `states`' image `first` on.
    func embed(pixels: [Float], count: Int, into states: HiddenStates, first: Int, stem p: CLIPVisionParameterViews) {
        precondition(count <= batch && pixels.count == count * config.pixelsPerImage)
        let c = config, t = c.numTokens, d = c.hiddenSize, np = c.numPatches
        pixels.withUnsafeBufferPointer { px in
            let source = Shared(px.baseAddress!), target = Shared(states.pointer(image: first))
            forEachShard(count) { range in
                let b = range.count, r0 = range.lowerBound * t
                let patches = self.patches + range.lowerBound * np * c.patchInputs
                let patchOut = self.patchOut + range.lowerBound * np * d
                let embedded = self.embedded + r0 * d
                PatchEmbedding.unfold(patches, source.value + range.lowerBound * c.pixelsPerImage, batch: b, config: c)
                PatchEmbedding.forward(embedded, patchOut: patchOut, patches, p.embeddings, batch: b, config: c)
                LayerNorm.forward(target.value + r0 * d, mean: self.mean + r0, rstd: self.rstd + r0, embedded, p.preLayerNorm,
                                  rows: b * t, eps: c.layerNormEps)
            }
        }
    }

    /// Runs encoder layer `p` over every image of `states`: the states are replaced by the layer's
    /// output when `advance`, else left as they are. With `grams`, adds the Gram matrices of the
    /// layer's four distinct linear inputs: LN1(x) (q, k and v), the attention context
    /// (out_proj), LN2(x₂) (fc1) and the activated hidden layer (fc2), in that order.
    func run(_ states: HiddenStates, layer p: EncoderLayerParameters, advance: Bool, grams: [GramAccumulator]?) {
        let c = config, t = c.numTokens
        var first = 0
        while first < states.images {
            let count = min(batch, states.images - first)
            let chunk = activations.startingAt(states.pointer(image: first))
            forEachShard(count) { range in
                let shape = EncoderShape(config: c, batch: range.count)
                let act = chunk.shard(images: range.lowerBound, config: c)
                EncoderLayer.forward(advance ? act.input : act.residual, act, p, shape, activation: c.hiddenAct, eps: c.layerNormEps)
            }
            if let grams {
                precondition(grams.count == 4)
                GramAccumulator.add([(grams[0], UnsafePointer(chunk.normalized1)), (grams[1], UnsafePointer(chunk.attention.context)),
                                     (grams[2], UnsafePointer(chunk.normalized2)), (grams[3], UnsafePointer(chunk.mlp.activated))],
                                    rows: count * t, threads: threads)
            }
            first += count
        }
    }

    /// post_layernorm(class token) of every image of `states` with `postLayerNorm`: the input of
    /// `visual_projection`, [images, D].
    func pooled(_ states: HiddenStates, postLayerNorm: LayerNormParameters) -> FloatBuffer {
        let d = config.hiddenSize, n = states.images
        let tokens = FloatBuffer(count: n * d, zeroed: false), out = FloatBuffer(count: n * d, zeroed: false)
        let mean = FloatBuffer(count: n, zeroed: false), rstd = FloatBuffer(count: n, zeroed: false)
        for b in 0..<n { (tokens.pointer + b * d).update(from: states.pointer(image: b), count: d) }
        LayerNorm.forward(out.pointer, mean: mean.pointer, rstd: rstd.pointer, tokens.pointer, postLayerNorm, rows: n,
                          eps: config.layerNormEps)
        return out
    }
}

extension EncoderLayerActivations {
    /// The same buffers with the layer's input rows at `input` (a chunk of hidden states).
    func startingAt(_ input: UnsafeMutablePointer<Float>) -> EncoderLayerActivations {
        var copy = self
        copy.input = input
        return copy
    }

    /// The rows of the images from `image` on: every buffer offset by that many images. Covers
    /// every buffer `EncoderLayer.forward` touches.
    func shard(images image: Int, config c: CLIPVisionConfig) -> EncoderLayerActivations {
        let rows = image * c.numTokens, d = c.hiddenSize, f = c.intermediateSize
        var s = self
        s.input += rows * d
        s.mean1 += rows
        s.rstd1 += rows
        s.normalized1 += rows * d
        s.attention.q += rows * d
        s.attention.k += rows * d
        s.attention.v += rows * d
        s.attention.context += rows * d
        s.attention.probabilities += image * c.numAttentionHeads * c.numTokens * c.numTokens
        s.residual += rows * d
        s.mean2 += rows
        s.rstd2 += rows
        s.normalized2 += rows * d
        s.mlp.hidden += rows * f
        s.mlp.activated += rows * f
        return s
    }
}
