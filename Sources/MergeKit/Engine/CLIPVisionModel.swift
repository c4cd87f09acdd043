import Foundation

/// How a pass spreads over the cores. Either way the results are the same, bit for bit, for any
/// thread count: the work is cut into pieces fixed by the batch size and the matrix shapes alone
/// (never by the thread count), every piece is computed with single-threaded BLAS, and pieces that
/// add up (the gradients of image shards) are added in a fixed order. The two modes cut the work
/// differently, so their results differ by float rounding.
public enum EngineParallelism: String, Sendable, CaseIterable {
    /// Split the batch into `CLIPVisionModel.shardCount(batch:)` contiguous shards (at most 8,
    /// whatever the thread count); the threads take shards in turn and run the whole network on
    /// each, so the element-wise kernels (LayerNorm, softmax, activations) run in parallel too. A
    /// batch of one image runs as one shard with its products split as in `blas`.
    case images
    /// One shard; every GEMM is cut into fixed tiles (`GEMMTiles`) that the threads compute;
    /// element-wise kernels run on one thread.
    case blas
}

/// A CLIP image encoder (Hugging Face `CLIPVisionModelWithProjection`) on BLAS: the forward pass,
/// the forward-mode JVP with respect to the parameters, and the backward pass.
///
///     x = PatchEmbedding(pixels)                 [B, T, D], T = 1 + (image/patch)²
///     h = pre_layrnorm(x)
///     h = EncoderLayer_L(… EncoderLayer_1(h))    pre-LN layers: attention, then MLP
///     e = visual_projection(post_layernorm(h[:, 0]))   the image embedding, [B, E]
///
/// Images are [B, C, H, W] Float32, already preprocessed (resized, centre-cropped, normalised), in
/// one flat array. Passes are batched; see `parallelism` for how they use the cores.
public final class CLIPVisionModel: @unchecked Sendable {
    public let config: CLIPVisionConfig
    public let parameters: CLIPVisionParameters
    /// Threads a pass may use (default: every active core).
    public var threads: Int
    /// How a pass uses the threads (default `.images`: splitting the batch keeps each GEMM whole
    /// and single-threaded, which was the faster choice on ViT-B/32; see the README's engine section).
    public var parallelism: EngineParallelism = .images
    let views: CLIPVisionParameterViews
    /// The buffers of the last gradient pass, kept for the next one of the same shard sizes: a
    /// trainer's every step would otherwise allocate (and the kernel zero) every activation again.
    let gradientPasses = PassCache<ShardPass>()

    public init(parameters: CLIPVisionParameters, threads: Int? = nil) {
        self.config = parameters.config
        self.parameters = parameters
        self.threads = ThreadCount.resolved(threads)
        views = parameters.views
    }

    /// Loads a model from a Hugging Face directory (config.json and safetensors weights) or from a
    /// `.safetensors` file with config.json next to it. Tensors the model does not use are an
    /// error unless `allowUnused` (`CLIPVisionParameters.load`).
    public convenience init(path: String, threads: Int? = nil, allowUnused: Bool = false) throws(MergeKitError) {
        let checkpoint = try Checkpoint(path: path)
        let config = try CLIPVisionConfig.load(path: try CLIPVisionModel.configPath(for: checkpoint))
        self.init(parameters: try CLIPVisionParameters.load(from: checkpoint, config: config, allowUnused: allowUnused), threads: threads)
    }

    /// The config.json that describes a checkpoint: in its directory, or next to a single file.
    public static func configPath(for checkpoint: Checkpoint) throws(MergeKitError) -> String {
        let directory = checkpoint.directory ?? FileSystem.parentDirectory(of: checkpoint.path)
        let path = FileSystem.join(directory, "config.json")
        guard FileSystem.kind(of: path) != .missing else {
            throw MergeKitError(.fileNotFound, file: path, "does not exist; the engine reads the model's shape from config.json",
                fix: "Put the model's config.json (a CLIPVisionConfig or CLIPConfig) next to its weights")
        }
        try FileSystem.requireRegularFile(path)
        return path
    }

    /// E, the width of an image embedding: `projection_dim`, or `hidden_size` without a projection.
    public var embeddingSize: Int { parameters.projectionName == nil ? config.hiddenSize : config.projectionDim }

    // MARK: Forward

    /// Image embeddings [B, E] of `batch` images [B, C, H, W].
    public func forward(pixels: [Float], batch: Int) -> [Float] {
        checkPixels(pixels, batch: batch)
        var out = [Float](repeating: 0, count: batch * embeddingSize)
        pixels.withUnsafeBufferPointer { px in
            out.withUnsafeMutableBufferPointer { o in forward(pixels: px.baseAddress!, batch: batch, into: o.baseAddress!) }
        }
        return out
    }

    /// Pointer form of `forward(pixels:batch:)`.
    func forward(pixels: UnsafePointer<Float>, batch: Int, into out: UnsafeMutablePointer<Float>) {
        let px = Shared(pixels), o = Shared(out)
        let ranges = shardRanges(batch: batch)
        runShards(ranges) { range in
            let pass = ShardPass(self.config, batch: range.count, keepActivations: false)
            self.forward(pass, pixels: px.value + range.lowerBound * self.config.pixelsPerImage,
                         embeddings: o.value + range.lowerBound * self.embeddingSize)
        }
    }

    // MARK: JVP

    /// f(x; θ) and J_θ f(x; θ)·Δθ in one pass, for a direction Δθ with this model's layout (a task
    /// vector, a difference of checkpoints, or a partial direction with zeros elsewhere).
    public func jvp(pixels: [Float], batch: Int, direction: CLIPVisionParameters) -> (embeddings: [Float], tangent: [Float]) {
        checkPixels(pixels, batch: batch)
        var out = [Float](repeating: 0, count: batch * embeddingSize)
        var tangent = out
        pixels.withUnsafeBufferPointer { px in
            out.withUnsafeMutableBufferPointer { o in
                tangent.withUnsafeMutableBufferPointer { t in
                    jvp(pixels: px.baseAddress!, batch: batch, direction: direction, into: o.baseAddress!, tangent: t.baseAddress!)
                }
            }
        }
        return (out, tangent)
    }

    /// Pointer form of `jvp(pixels:batch:direction:)`.
    func jvp(pixels: UnsafePointer<Float>, batch: Int, direction: CLIPVisionParameters,
             into out: UnsafeMutablePointer<Float>, tangent: UnsafeMutablePointer<Float>) {
        precondition(direction.tensors.map(\.shape) == parameters.tensors.map(\.shape),
                     "the direction's layout differs from the model's")
        let t = direction.directionViews
        let px = Shared(pixels), o = Shared(out), td = Shared(tangent)
        let ranges = shardRanges(batch: batch)
        runShards(ranges) { range in
            let primal = ShardPass(self.config, batch: range.count, keepActivations: false)
            let tangents = ShardPass(self.config, batch: range.count, keepActivations: false, tangent: true)
            let e = self.embeddingSize
            self.jvp(primal, tangents, direction: t, pixels: px.value + range.lowerBound * self.config.pixelsPerImage,
                     embeddings: o.value + range.lowerBound * e, tangent: td.value + range.lowerBound * e)
        }
    }

    // MARK: Backward

    /// The gradient of a scalar loss L(e) of the embeddings with respect to every parameter and,
    /// when `inputGradient`, to the pixels.
    ///
    /// Runs the forward pass keeping every activation, calls `outputGradient` once with the
    /// embeddings [B, E] to get ∂L/∂e [B, E], then runs the backward pass. Gradients of the shards
    /// are summed in shard order (`ShardGradientSum`), whatever thread computed them.
    public func gradients(pixels: [Float], batch: Int, inputGradient: Bool = true,
                          outputGradient: ([Float]) -> [Float]) -> (embeddings: [Float], parameters: CLIPVisionParameters, input: [Float]?) {
        let sum = ShardGradientSum(zerosLike: parameters)
        let result = accumulateGradients(pixels: pixels, batch: batch, inputGradient: inputGradient, into: sum, outputGradient: outputGradient)
        return (result.embeddings, sum.total, result.input)
    }

    /// `gradients(pixels:batch:inputGradient:outputGradient:)` adding ∂L/∂θ onto `sum.total`
    /// (which may hold earlier batches' gradients: a trainer that sums the gradients of several
    /// batches keeps one total and the same scratch buffers for all of them).
    func accumulateGradients(pixels: [Float], batch: Int, inputGradient: Bool, into sum: ShardGradientSum,
                             outputGradient: ([Float]) -> [Float]) -> (embeddings: [Float], input: [Float]?) {
        checkPixels(pixels, batch: batch)
        let e = embeddingSize, ppi = config.pixelsPerImage
        let ranges = gradientShardRanges(batch: batch)
        let sizes = ranges.map(\.count)
        let passes = gradientPasses.take(sizes) { sizes.map { ShardPass(self.config, batch: $0, keepActivations: true) } }
        defer { gradientPasses.keep(sizes, passes) }
        var embeddings = [Float](repeating: 0, count: batch * e)
        pixels.withUnsafeBufferPointer { px in
            embeddings.withUnsafeMutableBufferPointer { o in
                let pxs = Shared(px.baseAddress!), os = Shared(o.baseAddress!)
                runShards(ranges) { range, shard in
                    self.forward(passes[shard], pixels: pxs.value + range.lowerBound * ppi, embeddings: os.value + range.lowerBound * e)
                }
            }
        }
        let dEmbeddings = outputGradient(embeddings)
        precondition(dEmbeddings.count == batch * e, "outputGradient must return [batch, embedding] values")
        sum.restart()
        var input: [Float]? = inputGradient ? [Float](repeating: 0, count: batch * ppi) : nil
        dEmbeddings.withUnsafeBufferPointer { de in
            let des = Shared(de.baseAddress!)
            func run(_ dPixels: UnsafeMutablePointer<Float>?) {
                let dp = Shared(dPixels)
                runShards(ranges) { range, shard in
                    sum.add(shard: shard) { gradient in
                        self.backward(passes[shard], gradient: gradient.views, dEmbeddings: des.value + range.lowerBound * e,
                                      dPixels: dp.value.map { $0 + range.lowerBound * ppi })
                    }
                }
            }
            if input != nil {
                input!.withUnsafeMutableBufferPointer { run($0.baseAddress!) }
            } else {
                run(nil)
            }
        }
        return (embeddings, input)
    }

    /// Gradients of a classification loss through a task head (logits = head · e/‖e‖), averaged
    /// over the batch.
    public func lossGradients(pixels: [Float], batch: Int, head: TaskHead, loss: ClassificationLoss,
                              inputGradient: Bool = true) -> CLIPVisionGradients {
        precondition(head.dimension == embeddingSize, "the head's width \(head.dimension) is not the embedding's \(embeddingSize)")
        var value = 0.0
        var logits: [Float] = []
        let result = gradients(pixels: pixels, batch: batch, inputGradient: inputGradient) { embeddings in
            let step = head.lossGradient(embeddings: embeddings, batch: batch, loss: loss)
            (value, logits) = (step.loss, step.logits)
            return step.dEmbeddings
        }
        return CLIPVisionGradients(loss: value, logits: logits, embeddings: result.embeddings,
                                   parameters: result.parameters, input: result.input)
    }

    // MARK: Threads

    private func checkPixels(_ pixels: [Float], batch: Int) {
        precondition(batch >= 0 && pixels.count == batch * config.pixelsPerImage,
                     "expected \(batch) images of \(config.numChannels)×\(config.imageSize)×\(config.imageSize) floats, got \(pixels.count) floats")
    }

    /// The most shards `images` cuts a batch into. A fixed number, so that the shards (and with
    /// them the bits of every result) do not depend on the thread count; 8 keeps 1, 2, 4 and 8
    /// threads evenly loaded, and shards of a large batch big enough for efficient GEMMs.
    static let maximumShards = 8

    /// How many shards `images` cuts a batch of `batch` images into: min(batch, 8), at least 1.
    public static func shardCount(batch: Int) -> Int { max(1, min(batch, maximumShards)) }

    /// Contiguous, near-equal slices of the batch: `shardCount(batch:)` with `images`, one with `blas`.
    func shardRanges(batch: Int) -> [Range<Int>] {
        Self.slices(batch: batch, parallelism == .images ? Self.shardCount(batch: batch) : 1)
    }

    /// The fewest rows (images × tokens) a shard of a gradient pass is cut to: a shard's GEMMs
    /// pack the weights once per call, and every shard but the first adds a whole gradient set to
    /// the sum (`ShardGradientSum`), so shards of a gradient pass are kept large. On ViT-B/32 (50
    /// tokens) a batch of 16 makes 2 shards of 400 rows, whose GEMMs run about 15 % faster than
    /// 8 shards of 100 rows (and add 1 gradient set instead of 7).
    static let minimumGradientShardRows = 256

    /// How many shards `images` cuts a gradient pass of `batch` images of `tokens` tokens into:
    /// the largest power of two (so that 1, 2, 4 and 8 threads stay evenly loaded) of at most
    /// `maximumShards` shards, at most `batch`, with at least `minimumGradientShardRows` rows each;
    /// at least 1. Fixed by the batch and the model's shape, never by the thread count.
    public static func gradientShardCount(batch: Int, tokens: Int) -> Int {
        var count = 1
        while count * 2 <= min(batch, maximumShards) && count * 2 * minimumGradientShardRows <= batch * max(1, tokens) { count *= 2 }
        return count
    }

    /// The shards of a gradient pass: `gradientShardCount(batch:tokens:)` with `images`, one with `blas`.
    func gradientShardRanges(batch: Int) -> [Range<Int>] {
        Self.slices(batch: batch, parallelism == .images ? Self.gradientShardCount(batch: batch, tokens: config.numTokens) : 1)
    }

    /// `count` contiguous, near-equal slices of 0..<batch.
    static func slices(batch: Int, _ count: Int) -> [Range<Int>] {
        (0..<count).map { i in (batch * i / count)..<(batch * (i + 1) / count) }
    }

    /// Runs `body` once per shard with single-threaded OpenBLAS: several shards are taken in turn
    /// by up to `threads` threads; a single shard runs on this thread with its GEMMs split into
    /// fixed tiles over `threads` threads (`BLAS.productWorkers`).
    func runShards(_ ranges: [Range<Int>], _ body: (Range<Int>, Int) -> Void) {
        BLAS.useOneThread()
        if ranges.count == 1 {
            BLAS.$productWorkers.withValue(threads) { body(ranges[0], 0) }
        } else {
            WorkQueue.run(ranges.count, workers: threads) { body(ranges[$0], $0) }
        }
    }

    func runShards(_ ranges: [Range<Int>], _ body: (Range<Int>) -> Void) {
        runShards(ranges) { range, _ in body(range) }
    }
}

/// What `CLIPVisionModel.lossGradients` returns.
public struct CLIPVisionGradients: @unchecked Sendable {
    /// The loss, averaged over the batch.
    public let loss: Double
    /// [B, classes].
    public let logits: [Float]
    /// [B, E].
    public let embeddings: [Float]
    /// ∂L/∂θ for every parameter, in the model's layout and names.
    public let parameters: CLIPVisionParameters
    /// ∂L/∂pixels [B, C, H, W], when asked for.
    public let input: [Float]?
}
