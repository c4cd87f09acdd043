import Foundation

/// Fine-tuning a CLIP image encoder under a fixed task head, ordinarily or in its tangent space
/// (linear fine-tuning, Ortiz-Jimenez et al.; docs/METHODS.md §6).
///
/// Loss: mean cross-entropy of logits = W·e/‖e‖ (the head is frozen) over a batch, where e is
///
///     ordinary:   e = f(x; θ)
///     linearized: e = f_lin(x; θ) = f(x; θ₀) + J_θ f(x; θ₀)·(θ − θ₀)     (one JVP)
///
/// In linearized mode only θ moves and ∂L/∂θ = J_θ f(x; θ₀)ᵀ·∂L/∂e: the ordinary backward pass
/// of the model *at θ₀*, fed the upstream gradient ∂L/∂e computed from the linearized embeddings.
///
/// One step (PyTorch's order in the reference code's finetune.py):
///
///     lr_t = lr·(t + 1)/warmup                               t < warmup
///          = lr·½(1 + cos(π (t − warmup)/(steps − warmup)))  otherwise      (cosine_lr)
///     g   ← g · min(1, c/(‖g‖₂ + 1e-6))                      global-norm clipping, c = 1
///     θ   ← θ − lr_t·λ·θ                                      AdamW's decoupled weight decay
///     m   ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²
///     θ   ← θ − lr_t·(m/(1 − β₁ᵗ⁺¹))/(√(v/(1 − β₂ᵗ⁺¹)) + ε)
///
/// Defaults are the paper's recipe for ViT-B/32 (its code: lr 1e-5, weight decay 0.1, batch 128,
/// 500 warm-up steps, clipping at 1, AdamW β = (0.9, 0.999), ε = 1e-8; about 2000 steps per
/// task). As there, weight decay pulls θ towards 0 (not towards θ₀) in both modes.
///
/// Batches: the dataset is shuffled once per epoch with a seeded generator (SplitMix64), and
/// consecutive batches of `batchSize` images (at most the dataset's size, as `eval`, `wemoe-train`
/// and `disentanglement` clamp theirs) are taken, wrapping into the next epoch's order, so `seed`
/// fixes the whole run. Results are identical, bit for bit, for any thread count: the engine cuts
/// each batch into shards by its size alone and sums their gradients in shard order.
///
/// A step whose loss or gradient is NaN or ±Inf, or whose update overflows a parameter, throws
/// (`TrainingGuard`: the step, the batch, any images with non-finite pixels, or the tensor); the
/// run cannot go on after that, and the caller writes nothing.
public struct FineTuning {
    public struct Options: Sendable, Equatable {
        public var steps = 2000
        public var batchSize = 128
        public var learningRate = 1e-5
        public var weightDecay = 0.1
        public var warmupSteps = 500
        /// Largest global ‖g‖₂; nil disables clipping.
        public var clipNorm: Double? = 1
        public var beta1 = 0.9
        public var beta2 = 0.999
        public var epsilon = 1e-8
        public var seed: UInt64 = 0
        public var linearized = false

        public init() {}

        /// Checks every value (the CLI's `validate()` calls this too).
        public func validate() throws(MergeKitError) {
            try TrainingChecks.check(steps: steps, batchSize: batchSize, learningRate: learningRate, weightDecay: weightDecay,
                                     clipNorm: clipNorm, beta1: beta1, beta2: beta2, epsilon: epsilon)
            if warmupSteps < 0 { throw MergeKitError(.invalidArgument, "\(term: .warmupSteps) must be ≥ 0, not \(warmupSteps)") }
        }

        /// lr_t of step t (0-based): linear warm-up to `learningRate`, then cosine decay to 0.
        public func learningRate(at step: Int) -> Double {
            if step < warmupSteps { return learningRate * Double(step + 1) / Double(warmupSteps) }
            let decay = steps - warmupSteps
            guard decay > 0 else { return learningRate }
            return 0.5 * (1 + cos(Double.pi * Double(step - warmupSteps) / Double(decay))) * learningRate
        }
    }

    /// What one step measured.
    public struct Step: Sendable {
        public let index: Int
        /// Mean cross-entropy of the batch, before the update.
        public let loss: Double
        /// ‖g‖₂ before clipping.
        public let gradientNorm: Double
        public let learningRate: Double
    }

    public let options: Options
    /// The model at θ₀ (linearized mode: fixed, the point of linearization; ordinary mode: its
    /// parameters are θ and move).
    public let base: CLIPVisionModel
    /// θ, the parameters that move (ordinary mode: `base.parameters` itself).
    public let theta: CLIPVisionParameters
    public let head: TaskHead
    public let data: ImageDataset
    /// Images per step: `options.batchSize`, at most the dataset's size.
    public let batchSize: Int
    private let m, v: CLIPVisionParameters
    private var order: [Int] = []
    private var cursor = 0
    private var epoch: UInt64 = 0
    public private(set) var step = 0

    /// - Parameters:
    ///   - base: the model to start from (θ₀; θ starts at θ₀ unless `theta` is given).
    ///   - theta: linearized mode only: a starting θ other than θ₀ (e.g. to resume).
    public init(base: CLIPVisionModel, theta: CLIPVisionParameters? = nil, head: TaskHead, data: ImageDataset,
                options: Options) throws(MergeKitError) {
        try options.validate()
        guard head.dimension == base.embeddingSize else {
            throw MergeKitError(.shapeMismatch, file: head.path, tensor: "weight",
                "the head takes \(head.dimension)-dimensional embeddings but the model produces \(base.embeddingSize)",
                fix: "Use the head made for this model's embedding space")
        }
        try data.check(against: base.config, classes: head.classes)
        guard data.count >= 1 else {
            throw MergeKitError(.invalidArgument, file: data.path, "holds no images to fine-tune on")
        }
        if let theta { precondition(options.linearized && theta.hasSameLayout(as: base.parameters), "θ must have the base's layout") }
        self.options = options
        self.base = base
        self.theta = options.linearized ? (theta ?? base.parameters.copy()) : base.parameters
        self.head = head
        self.data = data
        batchSize = min(options.batchSize, data.count)
        m = CLIPVisionParameters(zerosLike: base.parameters)
        v = CLIPVisionParameters(zerosLike: base.parameters)
    }

    /// The next batch's image indices.
    private mutating func nextBatch() -> [Int] {
        var batch: [Int] = []
        while batch.count < batchSize {
            if cursor == order.count {
                order = FineTuning.permutation(data.count, seed: options.seed, epoch: epoch)
                epoch += 1
                cursor = 0
            }
            let take = min(batchSize - batch.count, order.count - cursor)
            batch += order[cursor..<cursor + take]
            cursor += take
        }
        return batch
    }

    /// A Fisher–Yates shuffle of 0..<n driven by SplitMix64 seeded with (seed, epoch).
    static func permutation(_ n: Int, seed: UInt64, epoch: UInt64) -> [Int] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ epoch &+ 1
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var order = Array(0..<n)
        if n > 1 {
            for i in stride(from: n - 1, to: 0, by: -1) {
                let j = Int(next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
        }
        return order
    }

    /// The mean cross-entropy of a batch and its gradient ∂L/∂θ at the current θ (for the
    /// linearized model, through f_lin; `gradient` has θ's layout).
    public func lossAndGradient(pixels: [Float], labels: [Int]) -> (loss: Double, gradient: CLIPVisionParameters) {
        let batch = labels.count
        let loss = ClassificationLoss.crossEntropy(labels: labels)
        guard options.linearized else {
            let g = base.lossGradients(pixels: pixels, batch: batch, head: head, loss: loss, inputGradient: false)
            return (g.loss, g.parameters)
        }
        // e_lin = f(x; θ₀) + J·(θ − θ₀): the tangent from one JVP, the primal from the backward's
        // own forward pass at θ₀ (identical to the JVP's primal).
        let direction = theta.copy()
        direction.add(base.parameters, scale: -1)
        let tangent = base.jvp(pixels: pixels, batch: batch, direction: direction).tangent
        var value = 0.0
        let result = base.gradients(pixels: pixels, batch: batch, inputGradient: false) { primal in
            var linear = primal
            for i in linear.indices { linear[i] += tangent[i] }
            let step = head.lossGradient(embeddings: linear, batch: batch, loss: loss)
            value = step.loss
            return step.dEmbeddings
        }
        return (value, result.parameters)
    }

    /// One optimisation step on the next batch. Throws when the loss or the gradient is not finite
    /// (θ and the optimiser's state are then untouched) or the update overflows a parameter.
    @discardableResult
    public mutating func train() throws(MergeKitError) -> Step {
        let indices = nextBatch()
        var pixels: [Float] = []
        pixels.reserveCapacity(indices.count * base.config.pixelsPerImage)
        for i in indices { pixels += data.pixels(i..<i + 1) }
        let (loss, g) = lossAndGradient(pixels: pixels, labels: indices.map { data.labels[$0] })
        func stop(_ what: String, _ value: Double, tensor: String? = nil) -> MergeKitError {
            TrainingGuard.batchError(step: step + 1, what: what, value: value, tensor: tensor, file: data.path, batch: indices,
                                     pixels: pixels, pixelsPerImage: base.config.pixelsPerImage)
        }
        guard loss.isFinite else { throw stop("the loss", loss) }
        if let i = TrainingGuard.firstNonFinite(g.storage.pointer, count: g.count) {
            throw stop("the gradient", Double(g.storage.pointer[i]), tensor: Self.tensor(of: i, in: g))
        }
        let rate = options.learningRate(at: step)
        let norm = try update(g, learningRate: rate)
        defer { step += 1 }
        return Step(index: step, loss: loss, gradientNorm: norm, learningRate: rate)
    }

    /// The name of the tensor holding flat element `index` of `parameters`.
    static func tensor(of index: Int, in parameters: CLIPVisionParameters) -> String {
        parameters.tensors.last { $0.offset <= index }?.name ?? ""
    }

    /// Clips `g`, then applies AdamW to θ; returns ‖g‖₂ before clipping. Throws when a new
    /// parameter is NaN or ±Inf (θ is then partly updated: the run cannot go on).
    private func update(_ g: CLIPVisionParameters, learningRate rate: Double) throws(MergeKitError) -> Double {
        let n = theta.count
        let gp = g.storage.pointer, p = theta.storage.pointer, mp = m.storage.pointer, vp = v.storage.pointer
        var squares = 0.0
        for i in 0..<n { squares += Double(gp[i]) * Double(gp[i]) }
        let norm = squares.squareRoot()
        let clip = options.clipNorm.map { min(1, $0 / (norm + 1e-6)) } ?? 1
        let t = Double(step + 1)
        let b1 = options.beta1, b2 = options.beta2
        let correction1 = 1 - pow(b1, t), correction2 = 1 - pow(b2, t)
        let decay = Float(1 - rate * options.weightDecay)
        let stepSize = Float(rate / correction1), rootCorrection2 = Float(correction2.squareRoot())
        let eps = Float(options.epsilon), c = Float(clip), fb1 = Float(b1), fb2 = Float(b2)
        // Non-finite results are flagged by their all-ones exponent (an integer OR keeps the loop vectorisable).
        var exponents: UInt32 = 0
        for i in 0..<n {
            let gi = gp[i] * c
            mp[i] = fb1 * mp[i] + (1 - fb1) * gi
            vp[i] = fb2 * vp[i] + (1 - fb2) * gi * gi
            p[i] = p[i] * decay - stepSize * mp[i] / (vp[i].squareRoot() / rootCorrection2 + eps)
            exponents |= (p[i].bitPattern & 0x7F80_0000) == 0x7F80_0000 ? 1 : 0
        }
        if exponents != 0, let i = TrainingGuard.firstNonFinite(p, count: n) {
            throw TrainingGuard.parameterError(step: step + 1, tensor: Self.tensor(of: i, in: theta), value: p[i], learningRate: rate)
        }
        return norm
    }
}
