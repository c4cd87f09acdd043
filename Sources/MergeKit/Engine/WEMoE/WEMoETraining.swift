import Foundation

/// One task of test-time adaptation: unlabeled inputs (labels, if any, are ignored) and the
/// task's head.
public struct WEMoETask: Sendable {
    public let data: UnlabeledImages
    public let head: TaskHead

    public init(data: UnlabeledImages, head: TaskHead) {
        self.data = data
        self.head = head
    }
}

/// Settings of WEMoE test-time adaptation; the defaults are the paper's and FusionBench's.
public struct WEMoETrainingOptions: Sendable {
    /// Optimiser steps (1000).
    public var steps = 1000
    /// Adam's learning rate (1e-4).
    public var learningRate: Float = 1e-4
    /// Images per task per step (16).
    public var batchSize = 16
    /// Seed of the per-task shuffles.
    public var seed: UInt64 = 0
    /// Adam's β₁, β₂, ε (PyTorch's defaults).
    public var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8

    public init(steps: Int = 1000, learningRate: Float = 1e-4, batchSize: Int = 16, seed: UInt64 = 0) {
        self.steps = steps
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.seed = seed
    }

    /// Checks every value with `FineTuning.Options`' rules and wording (the CLI's `validate()` calls
    /// this too): at least one step, at least one image per batch (a larger batch than a task has
    /// images takes them all), a positive finite learning rate.
    public func validate() throws(MergeKitError) {
        func bad(_ what: MergeKitError.Text) -> MergeKitError { MergeKitError(.invalidArgument, what) }
        if steps < 1 { throw bad("\(term: .steps) must be at least 1, not \(steps)") }
        if batchSize < 1 { throw bad("\(term: .batchSize) must be at least 1, not \(batchSize)") }
        if !(learningRate > 0) || !learningRate.isFinite { throw bad("\(term: .learningRate) must be a positive number, not \(learningRate)") }
        if !(0..<1).contains(beta1) || !(0..<1).contains(beta2) { throw bad("the Adam betas must lie in [0, 1)") }
        if !(epsilon > 0) { throw bad("\(term: .adamEpsilon) must be positive, not \(epsilon)") }
    }
}

/// Test-time adaptation of a WEMoE model's routers (Tang et al. 2024, FusionBench's
/// `WeightEnsemblingMoEAlgorithm.test_time_adaptation`):
///
///     L = Σ_tasks mean_{x ∈ batch} H(softmax(head_task(f(x)))),   H(p) = −Σₖ pₖ log pₖ
///
/// minimised over the router parameters only, with Adam (PyTorch's update:
/// m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − lr·m̂/(√v̂ + ε), m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)).
/// Each step draws one batch per task from that task's shuffled inputs (reshuffled after every
/// pass, the last batch of a pass may be smaller, as a shuffling PyTorch `DataLoader`); routing
/// weights are averaged over each batch (FusionBench's `batch_reduce`). Deterministic for a seed,
/// and identical for any thread count (the engine splits each pass's products into fixed tiles).
///
/// A task's loss or the gradient being NaN or ±Inf, or an update overflowing a router parameter,
/// stops the run with an error (`TrainingGuard`: the step, the task's file and batch, any images
/// with non-finite pixels, or the tensor); the routers are then unusable and the caller writes nothing.
public enum WEMoETraining {
    /// Trains `model`'s routers in place; calls `progress(step, steps, loss)` after every step and
    /// returns the loss of every step.
    public static func run(_ model: WEMoEModel, tasks: [WEMoETask], options: WEMoETrainingOptions,
                           progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws(MergeKitError) -> [Double] {
        try options.validate()
        precondition(!tasks.isEmpty)
        for task in tasks {
            guard task.head.dimension == model.embeddingSize else {
                throw MergeKitError(.shapeMismatch, file: task.head.path, tensor: "weight",
                    "the head takes \(task.head.dimension)-dimensional embeddings but the model produces \(model.embeddingSize)",
                    fix: "Use the head made for this model's embedding space")
            }
            try task.data.check(against: model.config)
        }
        let routers = model.parameters.routers
        let n = routers.count
        var m = [Float](repeating: 0, count: n), v = [Float](repeating: 0, count: n)
        var samplers = tasks.enumerated().map { i, task in
            ShuffledBatches(count: task.data.count, seed: options.seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15)
        }
        var losses: [Double] = []
        losses.reserveCapacity(options.steps)
        let names = model.parameters.routerTensors
        func tensor(_ j: Int) -> String { names.first { $0.range.contains(j) }?.name ?? "" }
        for step in 1...options.steps {
            var gradient = [Float](repeating: 0, count: n)
            var loss = 0.0
            for (i, task) in tasks.enumerated() {
                let indices = samplers[i].next(options.batchSize)
                let pixels = task.data.pixels(indices)
                let result = model.lossGradients(pixels: pixels, batch: indices.count, head: task.head, loss: .entropy, batchReduce: true)
                func stop(_ what: String, _ value: Double, tensor: String? = nil) -> MergeKitError {
                    TrainingGuard.batchError(step: step, what: what, value: value, tensor: tensor, file: task.data.path, batch: indices,
                                             pixels: pixels, pixelsPerImage: model.config.pixelsPerImage)
                }
                guard result.loss.isFinite else { throw stop("the entropy", result.loss) }
                if let j = result.gradient.withUnsafeBufferPointer({ TrainingGuard.firstNonFinite($0.baseAddress!, count: n) }) {
                    throw stop("the gradient", Double(result.gradient[j]), tensor: tensor(j))
                }
                loss += result.loss
                for j in 0..<n { gradient[j] += result.gradient[j] }
            }
            // Adam.
            let b1 = options.beta1, b2 = options.beta2
            let c1 = 1 - Float(pow(Double(b1), Double(step))), c2 = 1 - Float(pow(Double(b2), Double(step)))
            let p = routers.pointer
            for j in 0..<n {
                let g = gradient[j]
                m[j] = b1 * m[j] + (1 - b1) * g
                v[j] = b2 * v[j] + (1 - b2) * g * g
                p[j] -= options.learningRate * (m[j] / c1) / ((v[j] / c2).squareRoot() + options.epsilon)
            }
            if let j = TrainingGuard.firstNonFinite(p, count: n) {
                throw TrainingGuard.parameterError(step: step, tensor: tensor(j), value: p[j], learningRate: Double(options.learningRate))
            }
            losses.append(loss)
            progress(step, options.steps, loss)
        }
        model.parameters.trainedSteps += options.steps
        return losses
    }
}

/// Batches of indices from a reshuffled permutation of 0..<count (Fisher–Yates on SplitMix64).
struct ShuffledBatches {
    private var rng: GaussianGenerator
    private var order: [Int] = []
    private var position = 0
    let count: Int

    init(count: Int, seed: UInt64) {
        self.count = count
        rng = GaussianGenerator(seed: seed)
    }

    /// The next batch: up to `size` indices, fewer at the end of a pass.
    mutating func next(_ size: Int) -> [Int] {
        if position >= order.count {
            order = Array(0..<count)
            for i in stride(from: count - 1, to: 0, by: -1) {
                let j = Int(rng.nextBits() % UInt64(i + 1))
                order.swapAt(i, j)
            }
            position = 0
        }
        let end = min(order.count, position + size)
        defer { position = end }
        return Array(order[position..<end])
    }
}
