import Foundation

/// How a pass spreads over the cores.
public enum EngineParallelism: String, Sendable, CaseIterable {
    /// Split the batch into one shard per thread; each shard runs the whole network with
    /// single-threaded BLAS, so the element-wise kernels (LayerNorm, softmax, activations) run in
    /// parallel too. Falls back to BLAS threads when the batch has fewer images than threads.
    case images
    /// One shard; OpenBLAS splits every GEMM over the threads, element-wise kernels run on one.
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
    /// How a pass uses the threads (default `.images`, which measured faster on ViT-B/32; see the
    /// README's performance section).
    public var parallelism: EngineParallelism = .images
    let views: CLIPVisionParameterViews

    public init(parameters: CLIPVisionParameters, threads: Int? = nil) {
        self.config = parameters.config
        self.parameters = parameters
        self.threads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        views = parameters.views
    }

    /// Loads a model from a Hugging Face directory (config.json and safetensors weights) or from a
    /// `.safetensors` file with config.json next to it.
    public convenience init(path: String, threads: Int? = nil) throws(MergeKitError) {
        let checkpoint = try Checkpoint(path: path)
        let config = try CLIPVisionConfig.load(path: try CLIPVisionModel.configPath(for: checkpoint))
        self.init(parameters: try CLIPVisionParameters.load(from: checkpoint, config: config), threads: threads)
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
    /// are summed in a fixed order.
    public func gradients(pixels: [Float], batch: Int, inputGradient: Bool = true,
                          outputGradient: ([Float]) -> [Float]) -> (embeddings: [Float], parameters: CLIPVisionParameters, input: [Float]?) {
        checkPixels(pixels, batch: batch)
        let e = embeddingSize, ppi = config.pixelsPerImage
        let ranges = shardRanges(batch: batch)
        let passes = ranges.map { ShardPass(config, batch: $0.count, keepActivations: true) }
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
        let gradients = ranges.indices.map { _ in CLIPVisionParameters(zerosLike: parameters) }
        var input: [Float]? = inputGradient ? [Float](repeating: 0, count: batch * ppi) : nil
        dEmbeddings.withUnsafeBufferPointer { de in
            let des = Shared(de.baseAddress!)
            func run(_ dPixels: UnsafeMutablePointer<Float>?) {
                let dp = Shared(dPixels)
                runShards(ranges) { range, shard in
                    self.backward(passes[shard], gradient: gradients[shard].views, dEmbeddings: des.value + range.lowerBound * e,
                                  dPixels: dp.value.map { $0 + range.lowerBound * ppi })
                }
            }
            if input != nil {
                input!.withUnsafeMutableBufferPointer { run($0.baseAddress!) }
            } else {
                run(nil)
            }
        }
        for shard in gradients.dropFirst() { gradients[0].add(shard) }
        return (embeddings, gradients[0], input)
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

    /// Contiguous, near-equal slices of the batch, one per worker.
    func shardRanges(batch: Int) -> [Range<Int>] {
        let workers = parallelism == .images ? max(1, min(threads, batch)) : 1
        return (0..<workers).map { i in (batch * i / workers)..<(batch * (i + 1) / workers) }
    }

    /// Runs `body` once per shard, in parallel, with OpenBLAS's threads set for the split (and
    /// restored afterwards).
    func runShards(_ ranges: [Range<Int>], _ body: (Range<Int>, Int) -> Void) {
        let previous = BLAS.threads
        BLAS.setThreads(max(1, threads / ranges.count))
        defer { BLAS.setThreads(previous) }
        if ranges.count == 1 {
            body(ranges[0], 0)
        } else {
            withoutActuallyEscaping(body) { body in
                let shared = Shared(body)
                DispatchQueue.concurrentPerform(iterations: ranges.count) { shared.value(ranges[$0], $0) }
            }
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

/// A value handed to worker threads that the caller keeps valid and does not share mutably
/// (pointers into buffers whose disjoint slices the workers write).
struct Shared<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
