import Foundation

/// Learns the coefficients of θ = θ₀ + Σₜ λₜₗ τₜₗ from data (AdaMerging, Yang et al., ICLR 2024;
/// aTLAS, Zhang et al., NeurIPS 2024), with the model held once and updated in place:
///
///     L(λ) = Σₜ mean_{x ∈ batchₜ} ℓ(headₜ(f(x; θ(λ))))      ℓ: entropy or cross-entropy
///     ∂L/∂λₜₗ = ⟨∂L/∂θₗ, τₜₗ⟩                              (θₗ is linear in λ)
///
/// One step: for every task, a forward and a backward pass of its batch through its own head,
/// adding ∂L/∂θ onto one gradient buffer (the engine's shard order, so the sum is the same for any
/// thread count); then one pass over the task vectors (`TaskVectorStream`) for the inner products;
/// the optimiser's update of λ; and one more pass that rebuilds θ = θ₀ + Σλτ from θ₀ (never by
/// adding increments, so rounding does not drift). Task-wise, ∂L/∂λₜ = Σₗ ⟨∂L/∂θₗ, τₜₗ⟩.
///
/// Linearized (aTLAS's `WeightedLinearizedModel`): the model stays at θ₀ and runs
/// f(x; θ₀) + J_θ f(x; θ₀)·Δθ with Δθ = Σλτ (one JVP); ∂L/∂Δθ is the ordinary backward pass at θ₀
/// fed ∂L/∂e of the linearized embeddings; Δθ is rebuilt after each step.
///
/// The optimiser is PyTorch's Adam, or AdamW (decoupled decay, `weightDecay` > 0) after clipping
/// the global norm of ∂L/∂λ (`clip_grad_norm_`: g ← g·min(1, c/(‖g‖ + 1e-6))), on λ in Float32 as
/// PyTorch keeps it. Batches: each task's images are shuffled with a seeded generator, reshuffled
/// after every pass (the last batch of a pass may be smaller), as a shuffling `DataLoader`.
///
/// A non-finite loss, gradient or coefficient stops the run with an error naming the step, the
/// task's file and batch or the tensor (`TrainingGuard`); nothing is written then.
public final class CoefficientTraining: @unchecked Sendable {
    public let options: CoefficientTrainingOptions
    public let tasks: [CoefficientTask]
    /// Ordinary: the model at θ = θ₀ + Σλτ (its parameters are rebuilt after every step);
    /// linearized: the model at θ₀.
    public let model: CLIPVisionModel
    /// Linearized only: Δθ = Σλτ.
    let direction: CLIPVisionParameters?
    let stream: TaskVectorStream
    private let gradient: ShardGradientSum
    /// λ, row-major [tasks, blocks].
    public private(set) var coefficients: [Float]
    private var m, v: [Float]
    private var samplers: [ShuffledBatches]
    /// Steps taken.
    public private(set) var step = 0
    /// ∂L/∂λ of the last step, before clipping (for tests and diagnostics).
    private(set) var lastGradient: [Double] = []

    /// - Parameter parameters: a zero-filled set in the base's layout, which becomes θ (or θ₀).
    init(parameters: CLIPVisionParameters, stream: TaskVectorStream, tasks: [CoefficientTask],
         options: CoefficientTrainingOptions, threads: Int?) throws(MergeKitError) {
        try options.validate()
        precondition(!tasks.isEmpty && stream.taskCount >= 1)
        for task in tasks {
            try task.head.check(embeddingSize: parameters.projectionName == nil ? parameters.config.hiddenSize : parameters.config.projectionDim)
            if options.loss.needsLabels && task.labels == nil {
                throw MergeKitError(.invalidArgument, file: task.path, "the supervised objective needs labels", fix: "Use a labeled dataset")
            }
        }
        self.options = options
        self.tasks = tasks
        self.stream = stream
        let blocks = options.granularity == .taskWise ? 1 : stream.tensors.count
        coefficients = [Float](repeating: options.initialValue, count: stream.taskCount * blocks)
        m = [Float](repeating: 0, count: coefficients.count)
        v = m
        samplers = tasks.enumerated().map { i, task in
            ShuffledBatches(count: task.indices.count, seed: options.seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
        }
        model = CLIPVisionModel(parameters: parameters, threads: threads)
        gradient = ShardGradientSum(onto: CLIPVisionParameters(zerosLike: parameters))
        if options.linearized {
            try stream.merge(into: parameters, tasks: false) { _, _ in 0 }
            direction = CLIPVisionParameters(zerosLike: parameters)
        } else {
            direction = nil
        }
        try rebuild()
    }

    /// Coefficients per task.
    public var blocks: Int { coefficients.count / stream.taskCount }

    /// λ as the model uses it (clamped to [0, 1] when `clamp`).
    func effective(_ t: Int, _ l: Int) -> Float {
        let lambda = coefficients[t * blocks + (blocks == 1 ? 0 : l)]
        return options.clamp ? min(max(lambda, 0), 1) : lambda
    }

    /// θ (or Δθ) from θ₀ and the current λ.
    private func rebuild() throws(MergeKitError) {
        if let direction {
            try stream.merge(into: direction, base: false, coefficient: effective)
        } else {
            try stream.merge(into: model.parameters, coefficient: effective)
        }
    }

    /// The merged parameters θ₀ + Σλτ (ordinary: the model's own parameters; linearized: a new set).
    public var merged: CLIPVisionParameters {
        guard let direction else { return model.parameters }
        let theta = model.parameters.copy()
        theta.add(direction)
        return theta
    }

    /// The loss of one task's batch and ∂L/∂θ added onto the gradient.
    private func accumulate(task: CoefficientTask, indices: [Int], pixels: [Float]) -> Double {
        let batch = indices.count
        let labels = task.labels.map { all in indices.map { all[$0] } }
        let tangent = direction.map { model.jvp(pixels: pixels, batch: batch, direction: $0).tangent }
        var value = 0.0
        _ = model.accumulateGradients(pixels: pixels, batch: batch, inputGradient: false, into: gradient) { embeddings in
            var e = embeddings
            if let tangent { for i in e.indices { e[i] += tangent[i] } }
            let logits = task.head.logits(embeddings: e, batch: batch)
            let (loss, dLogits) = options.loss.evaluate(logits: logits, batch: batch, classes: task.head.classes, labels: labels)
            value = loss
            return task.head.backward(embeddings: e, logitGradient: dLogits, batch: batch)
        }
        return value
    }

    /// ∂L/∂λ [tasks, blocks] from ∂L/∂θ (through the clamp: 0 where λ is clamped).
    private func coefficientGradient(_ g: CLIPVisionParameters) throws(MergeKitError) -> [Double] {
        let dots = try stream.innerProducts(with: g)
        let tensors = stream.tensors.count, b = blocks
        var result = [Double](repeating: 0, count: coefficients.count)
        for t in 0..<stream.taskCount {
            for l in 0..<tensors { result[t * b + (b == 1 ? 0 : l)] += dots[t * tensors + l] }
        }
        if options.clamp {
            for j in result.indices where coefficients[j] < 0 || coefficients[j] > 1 { result[j] = 0 }
        }
        return result
    }

    /// One optimisation step; returns the loss (the sum over tasks of the mean loss, before the update).
    @discardableResult
    public func train() throws(MergeKitError) -> Double {
        let number = step + 1
        gradient.total.storage.zero()
        var loss = 0.0
        for (i, task) in tasks.enumerated() {
            let indices = samplers[i].next(options.batchSize).map { task.indices[$0] }
            let pixels = task.pixels(indices)
            let value = accumulate(task: task, indices: indices, pixels: pixels)
            guard value.isFinite else {
                throw TrainingGuard.batchError(step: number, what: "the loss", value: value, file: task.path, batch: indices,
                                               pixels: pixels, pixelsPerImage: model.config.pixelsPerImage)
            }
            loss += value
        }
        let g = gradient.total
        if let j = TrainingGuard.firstNonFinite(g.storage.pointer, count: g.count) {
            throw MergeKitError(.nonFiniteValue, tensor: FineTuning.tensor(of: j, in: g),
                "training stopped at step \(number): the gradient is \(TrainingGuard.name(of: Double(g.storage.pointer[j]))) though every loss is finite; the merged model overflows",
                fix: "Lower \(term: .learningRate); nothing was written")
        }
        lastGradient = try coefficientGradient(g)
        try update(lastGradient)
        try rebuild()
        step = number
        return loss
    }

    /// Clipping, then Adam or AdamW on λ (PyTorch's update, in Float).
    private func update(_ g: [Double]) throws(MergeKitError) {
        let rate = options.learningRate(at: step)
        var scale = 1.0
        if let clip = options.clipNorm {
            let norm = g.reduce(0) { $0 + $1 * $1 }.squareRoot()
            scale = min(1, clip / (norm + 1e-6))
        }
        let t = Double(step + 1), b1 = options.beta1, b2 = options.beta2
        let stepSize = Float(rate / (1 - pow(Double(b1), t))), root2 = Float((1 - pow(Double(b2), t)).squareRoot())
        let decay = Float(1 - rate * options.weightDecay)
        for j in coefficients.indices {
            let gj = Float(g[j] * scale)
            m[j] = b1 * m[j] + (1 - b1) * gj
            v[j] = b2 * v[j] + (1 - b2) * gj * gj
            coefficients[j] = coefficients[j] * decay - stepSize * m[j] / (v[j].squareRoot() / root2 + options.epsilon)
        }
        if let j = coefficients.firstIndex(where: { !$0.isFinite }) {
            let tensor = blocks == 1 ? "task \(j)" : stream.tensors[j % blocks].name
            throw TrainingGuard.parameterError(step: step + 1, tensor: tensor, value: coefficients[j], learningRate: rate)
        }
    }

    /// Runs the remaining steps up to `options.steps`; `progress(step, steps, loss)` after each.
    /// - Returns: every step's loss.
    public func run(progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws(MergeKitError) -> [Double] {
        var losses: [Double] = []
        while step < options.steps {
            let loss = try train()
            losses.append(loss)
            progress(step, options.steps, loss)
        }
        return losses
    }
}
