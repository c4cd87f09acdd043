import Foundation
import Synchronization

/// How the diagonal Fisher information of a model is estimated from its task's images.
public enum FisherEstimator: String, Sendable, CaseIterable {
    /// Matena & Raffel's: per image, a label y drawn from the model's own prediction p(·|x), and
    /// F = mean over images of (∇θ log p(y|x))². An unbiased estimate of the Fisher
    /// E_x E_{y∼p(·|x)} (∇θ log p(y|x))² (their code takes the expectation over y exactly, which
    /// costs one backward pass per class).
    case sampled
    /// FusionBench's (and MergeLM's): per batch B, the square of one gradient,
    /// F = Σ_B (∇θ Σ_{b∈B} Σ_k √p_bk · log p_bk)² / N, with √p held constant. Cross terms between
    /// the images of a batch and between classes stay in, so it depends on the batch size; kept
    /// for comparison with FusionBench.
    case fusionbench
}

/// Settings of Fisher merging; the defaults are FusionBench's (`clip_fisher_merging.yaml`).
public struct FisherOptions: Sendable {
    /// Images per task (`num_fisher_examples`, 256); a task with fewer uses all of its images.
    public var samples = 256
    /// Images per pass (FusionBench's data-loader batch, 32). With `.fusionbench` it is part of
    /// the estimator; with `.sampled` it changes only the memory.
    public var batchSize = 32
    public var estimator: FisherEstimator = .sampled
    /// Divide each model's Fisher by its L2 norm over every parameter before merging
    /// (`normalize_fisher_weight`, on).
    public var normalize = true
    /// ε added to every Fisher value (`minimal_fisher_weight`, 1e-6), so that a parameter no
    /// image moves still gets a weight.
    public var epsilon: Float = 1e-6
    /// Seed of the sampled labels and of the choice of images when a task has more than `samples`.
    public var seed: UInt64 = 0
    /// Tests: per-sample gradients of log p(y|x) with the given label of each image (by index in
    /// its data file) instead of a sampled one (the empirical Fisher).
    var givenLabels: [[Int]]? = nil

    public init(samples: Int = 256, batchSize: Int = 32, estimator: FisherEstimator = .sampled, normalize: Bool = true,
                epsilon: Float = 1e-6, seed: UInt64 = 0) {
        (self.samples, self.batchSize, self.estimator, self.normalize, self.epsilon, self.seed) =
            (samples, batchSize, estimator, normalize, epsilon, seed)
    }

    /// The settings, as the output's metadata and `--json` record them.
    public var parameters: [JSONMember] {
        [JSONMember("samples", .int(samples)), JSONMember("batch_size", .int(batchSize)), JSONMember("estimator", .string(estimator.rawValue)),
         JSONMember("normalize", .bool(normalize)), JSONMember("epsilon", .double(Double("\(epsilon)") ?? Double(epsilon))), JSONMember("seed", .string(String(seed)))]
    }

    /// Checks every value (the CLI's `validate()` calls this too).
    public func validate() throws(MergeKitError) {
        func bad(_ what: MergeKitError.Text) -> MergeKitError { MergeKitError(.invalidArgument, what) }
        if samples < 1 { throw bad("\(term: .samples.atStart) must be at least 1, not \(samples)") }
        if batchSize < 1 { throw bad("\(term: .batchSize.atStart) must be at least 1, not \(batchSize)") }
        if !(epsilon > 0) || !epsilon.isFinite { throw bad("\(term: .fisherEpsilon) must be a positive number, not \(epsilon)") }
    }
}

/// What a Fisher merge did.
public struct FisherResult: Sendable {
    /// The merged encoder, in the first model's layout.
    public let merged: CLIPVisionParameters
    /// Images each task's Fisher was estimated from.
    public let samples: [Int]
    /// ‖Fₜ‖₂ of each model over every parameter (before ε).
    public let fisherNorms: [Double]
    /// Tensors every model shares byte for byte (copied).
    public let identical: [String]
}

/// Fisher merging (Matena & Raffel, "Merging Models with Fisher-Weighted Averaging", NeurIPS
/// 2022) of CLIP image encoders, each with its task's head (logits = head · e/‖e‖):
///
///     θ = Σₜ wₜ (Fₜ + ε) ⊙ θₜ / Σₜ wₜ (Fₜ + ε),   wₜ = 1/(‖Fₜ‖₂ + ε) (normalised) or 1,
///
/// element by element over every parameter, Fₜ the diagonal Fisher of model t on its task's images
/// (`FisherEstimator`). FusionBench scales by wₜ/Σₛ wₛ and 1/T too; constant factors cancel in the
/// ratio. A tensor every model shares byte for byte is copied.
///
/// One model is in memory at a time; the merge keeps Σₜ wₜ(Fₜ + ε)θₜ, Σₜ wₜ(Fₜ + ε) and the model's
/// Fₜ, whatever the number of tasks. The sampled estimator runs one image per backward pass (the
/// squared gradient is per image), the images of a batch in parallel, each thread with its own
/// gradient buffer, and adds the squares in image order; its labels are counter-based random
/// draws of (seed, task, image). Deterministic for a seed and identical for any thread count.
public enum FisherMerging {
    /// Runs the merge; calls `progress(images done, images total)` as images are processed.
    public static func run(_ inputs: DataMergeInputs, options: FisherOptions, threads: Int? = nil,
                           progress: (Int, Int) -> Void = { _, _ in }) throws(MergeKitError) -> FisherResult {
        try options.validate()
        precondition(inputs.heads.count == inputs.tasks, "Fisher merging needs one head per model")
        let threads = ThreadCount.resolved(threads)
        let merged = CLIPVisionParameters(config: inputs.config, prefix: inputs.prefix, projectionName: inputs.projectionName)
        let count = merged.count
        let denominator = FloatBuffer(count: count)
        let fisher = CLIPVisionParameters(zerosLike: merged)
        let indices = (0..<inputs.tasks).map { inputs.sampleIndices(task: $0, samples: options.samples, seed: options.seed) }
        let total = indices.reduce(0) { $0 + $1.count }
        var done = 0
        var norms: [Double] = []
        for t in 0..<inputs.tasks {
            let theta = CLIPVisionParameters(zerosLike: merged)
            for (i, tensor) in inputs.layout.enumerated() { inputs.load(i, model: t, into: theta.pointer(tensor.name)) }
            let model = CLIPVisionModel(parameters: theta, threads: threads)
            fisher.storage.zero()
            let estimate = FisherEstimate(inputs: inputs, task: t, model: model, fisher: fisher, options: options, threads: threads)
            try estimate.run(indices[t]) { images in
                done += images
                progress(done, total)
            }
            // F ← F / N, w = 1/(‖F‖ + ε), then the running sums.
            let f = fisher.storage.pointer, n = Float(indices[t].count)
            var squares = 0.0
            for j in 0..<count {
                f[j] /= n
                squares += Double(f[j]) * Double(f[j])
            }
            let norm = squares.squareRoot()
            norms.append(norm)
            let w = options.normalize ? Float(1 / (norm + Double(options.epsilon))) : 1
            let numerator = merged.storage.pointer, den = denominator.pointer, x = theta.storage.pointer, eps = options.epsilon
            for j in 0..<count {
                let weight = w * (f[j] + eps)
                numerator[j] += weight * x[j]
                den[j] += weight
            }
        }
        var identical: [String] = []
        for (i, tensor) in inputs.layout.enumerated() {
            let p = merged.pointer(tensor.name), d = denominator.pointer + tensor.offset
            if inputs.isIdenticalAcrossModels(i) {
                inputs.load(i, model: 0, into: p)
                identical.append(tensor.name)
            } else {
                for j in 0..<tensor.count { p[j] /= d[j] }
            }
        }
        if let tensor = merged.tensors.first(where: { t in (0..<t.count).contains { !merged.pointer(t.name)[$0].isFinite } }) {
            throw MergeKitError(.nonFiniteValue, tensor: tensor.name, "the Fisher-weighted average is not finite (the weights overflowed)",
                                fix: "Merge without normalising the Fisher, or check the models for very large values")
        }
        return FisherResult(merged: merged, samples: indices.map(\.count), fisherNorms: norms, identical: identical)
    }

    /// The memory a merge holds at its peak (Float32 buffers): the merged sums, one model and its
    /// Fisher, and per thread a gradient and one image's activations (sampled), or the engine's
    /// gradient pass over a batch (`.fusionbench`).
    public static func memory(_ inputs: DataMergeInputs, options: FisherOptions, threads: Int) -> MemoryEstimate {
        let c = inputs.config
        let p = CLIPVisionParameters.parameterCount(c, projection: inputs.hasProjection) ?? .max
        var estimate = MemoryEstimate()
        estimate.add("merged sums", floats: EngineMemory.product(2, p))
        estimate.add("model and Fisher", floats: EngineMemory.product(2, p))
        switch options.estimator {
        case .sampled:
            let workers = max(1, min(threads, options.batchSize))
            estimate.add("gradients", floats: EngineMemory.product(workers, p))
            estimate.add("activations", floats: EngineMemory.product(workers, EngineMemory.gradientFloats(c, 1, inputGradient: false)))
        case .fusionbench:
            let batch = min(options.batchSize, inputs.data.map(\.count).max() ?? 1)
            estimate.add("gradients", floats: EngineMemory.product(min(threads, EngineMemory.gradientShards(c, batch: batch)), p))
            estimate.add("activations", floats: EngineMemory.overShards(c, batch: batch) { EngineMemory.gradientFloats(c, $0, inputGradient: false) })
        }
        return estimate
    }
}

/// The Fisher of one model on its task's images, accumulated into `fisher` (not yet divided by N).
private struct FisherEstimate {
    let inputs: DataMergeInputs
    let task: Int
    let model: CLIPVisionModel
    let fisher: CLIPVisionParameters
    let options: FisherOptions
    let threads: Int

    var head: TaskHead { inputs.heads[task] }

    func run(_ indices: [Int], progress: (Int) -> Void) throws(MergeKitError) {
        var first = 0
        while first < indices.count {
            let chunk = Array(indices[first..<min(indices.count, first + options.batchSize)])
            let pixels = try inputs.pixels(task: task, chunk)
            switch (options.estimator, options.givenLabels) {
            case (.fusionbench, nil): try batchGradient(pixels, chunk)
            default: try perSample(pixels, chunk)
            }
            first += chunk.count
            progress(chunk.count)
        }
    }

    /// p = softmax(z) of one image's logits, in double precision.
    static func probabilities(_ logits: ArraySlice<Float>) -> [Double] {
        let m = Double(logits.max() ?? 0)
        let e = logits.map { Foundation.exp(Double($0) - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }


    /// FusionBench's estimator: one gradient of Σ_b Σ_k √p_bk log p_bk over the batch, squared.
    private func batchGradient(_ pixels: [Float], _ chunk: [Int]) throws(MergeKitError) {
        let classes = head.classes, b = chunk.count
        let result = model.gradients(pixels: pixels, batch: b, inputGradient: false) { embeddings in
            let logits = head.logits(embeddings: embeddings, batch: b)
            var dz = [Float](repeating: 0, count: b * classes)
            for r in 0..<b {
                let p = FisherEstimate.probabilities(logits[(r * classes)..<((r + 1) * classes)])
                let s = p.reduce(0) { $0 + $1.squareRoot() }
                for k in 0..<classes { dz[r * classes + k] = Float(p[k].squareRoot() - p[k] * s) }
            }
            return head.backward(embeddings: embeddings, logitGradient: dz, batch: b)
        }
        try check(result.parameters, images: chunk)
        FisherEstimate.addSquares(of: result.parameters, to: fisher)
    }

    /// Matena & Raffel's estimator: per image, (∇ log p(y|x))² with y sampled (or given).
    private func perSample(_ pixels: [Float], _ chunk: [Int]) throws(MergeKitError) {
        let c = model.config, e = model.embeddingSize, classes = head.classes
        let order = OrderedTurns()
        let spares = Mutex<[CLIPVisionParameters]>([])
        let failure = Mutex<MergeKitError?>(nil)
        let labels = options.givenLabels?[task]
        pixels.withUnsafeBufferPointer { px in
            let source = Shared(px.baseAddress!)
            BLAS.useOneThread()
            WorkQueue.run(chunk.count, workers: threads) { k in
                let image = chunk[k]
                let pass = ShardPass(c, batch: 1, keepActivations: true)
                var embedding = [Float](repeating: 0, count: e)
                embedding.withUnsafeMutableBufferPointer {
                    model.forward(pass, pixels: source.value + k * c.pixelsPerImage, embeddings: $0.baseAddress!)
                }
                let logits = head.logits(embeddings: embedding, batch: 1)
                let p = FisherEstimate.probabilities(logits[...])
                let y = labels.map { $0[image] } ?? FisherLabelSampler.label(p, seed: options.seed, task: task, image: image)
                let dz = (0..<classes).map { Float(($0 == y ? 1 : 0) - p[$0]) }
                let dEmbedding = head.backward(embeddings: embedding, logitGradient: dz, batch: 1)
                let gradient = spares.withLock { $0.popLast() } ?? CLIPVisionParameters(zerosLike: fisher)
                gradient.storage.zero()
                dEmbedding.withUnsafeBufferPointer {
                    model.backward(pass, gradient: gradient.views, dEmbeddings: $0.baseAddress!, dPixels: nil)
                }
                order.inTurn(k) {
                    do throws(MergeKitError) {
                        try check(gradient, images: [image])
                        FisherEstimate.addSquares(of: gradient, to: fisher)
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                    }
                }
                spares.withLock { $0.append(gradient) }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }

    /// Throws when a gradient holds NaN or ±Inf, naming the tensor and the images.
    private func check(_ gradient: CLIPVisionParameters, images: [Int]) throws(MergeKitError) {
        guard let j = TrainingGuard.firstNonFinite(gradient.storage.pointer, count: gradient.count) else { return }
        let tensor = gradient.tensors.last { $0.offset <= j }!
        let detail = "the gradient of the log-likelihood is \(gradient.storage.pointer[j]) on image\(images.count == 1 ? "" : "s") "
            + "\(TrainingGuard.list(images)) of \(inputs.data[task].path) (the pixels are finite)"
        throw MergeKitError(.nonFiniteValue, file: inputs.models[task].checkpoint.path, tensor: tensor.name, "\(detail)",
                            fix: "Check the model's weights and its head with \(term: .finitenessScan); nothing was written")
    }

    /// F += g² element by element.
    static func addSquares(of gradient: CLIPVisionParameters, to fisher: CLIPVisionParameters) {
        let g = gradient.storage.pointer, f = fisher.storage.pointer
        for j in 0..<fisher.count { f[j] += g[j] * g[j] }
    }
}

/// The labels of the sampled Fisher estimator.
enum FisherLabelSampler {
    /// The label drawn for image `image` (its index in the task's file) from p: the first class
    /// whose cumulative probability exceeds u = bits / 2³², bits the counter-based draw of (seed,
    /// task, image) — so a label depends on neither the thread count nor the batch.
    static func label(_ p: [Double], seed: UInt64, task: Int, image: Int) -> Int {
        let u = Double(CounterRandom(seed: seed, tensor: "fisher-label", input: task).bits(image)) / 4_294_967_296
        var cumulative = 0.0
        for (k, pk) in p.enumerated() {
            cumulative += pk
            if u < cumulative { return k }
        }
        return p.lastIndex { $0 > 0 } ?? 0
    }
}

/// Runs blocks in a fixed order whatever thread reaches them first: `inTurn(k)` waits until the
/// blocks of 0 … k−1 have run. Work items are claimed in index order (`WorkQueue`), so a wait is
/// short and never circular.
final class OrderedTurns: @unchecked Sendable {
    private let condition = NSCondition()
    private var next = 0

    func inTurn(_ k: Int, _ body: () -> Void) {
        condition.lock()
        while next != k { condition.wait() }
        condition.unlock()
        body()
        condition.lock()
        next = k + 1
        condition.broadcast()
        condition.unlock()
    }
}
