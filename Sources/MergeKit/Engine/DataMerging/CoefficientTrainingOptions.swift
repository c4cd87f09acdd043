import Foundation

/// Settings of a data-driven merge's coefficient training (`CoefficientTraining`), with the
/// defaults of each method's reference code (`adaMerging`, `atlas`).
public struct CoefficientTrainingOptions: Sendable, Equatable {
    public var granularity: CoefficientGranularity
    /// λ's starting value (AdaMerging 0.3, FusionBench's `init_values`; aTLAS 0: the base).
    public var initialValue: Float
    public var loss: CoefficientLoss
    public var steps: Int
    /// Images per task per step (a task with fewer images gives all of them).
    public var batchSize: Int
    public var learningRate: Double
    /// AdamW's decoupled weight decay (0: Adam).
    public var weightDecay: Double
    /// Largest global ‖∂L/∂λ‖₂ (PyTorch's `clip_grad_norm_`); nil: no clipping.
    public var clipNorm: Double?
    /// Cosine decay of the learning rate to 0 over `steps`, without warm-up (aTLAS's `cosine_lr`);
    /// otherwise constant.
    public var cosineSchedule: Bool
    /// Adam's β₁, β₂, ε (PyTorch's defaults).
    public var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8
    /// Clamp λ to [0, 1] when merging (FusionBench's `clamp_weights`, off by default).
    public var clamp = false
    /// Train in the tangent space of linearized models (f(x; θ₀) + J·Σλτ; aTLAS's
    /// `WeightedLinearizedModel`).
    public var linearized = false
    /// Seed of the batch shuffles and of the few-shot draw.
    public var seed: UInt64 = 0

    public init(granularity: CoefficientGranularity, initialValue: Float, loss: CoefficientLoss, steps: Int, batchSize: Int,
                learningRate: Double, weightDecay: Double = 0, clipNorm: Double? = nil, cosineSchedule: Bool = false) {
        (self.granularity, self.initialValue, self.loss, self.steps, self.batchSize) = (granularity, initialValue, loss, steps, batchSize)
        (self.learningRate, self.weightDecay, self.clipNorm, self.cosineSchedule) = (learningRate, weightDecay, clipNorm, cosineSchedule)
    }

    /// AdaMerging as FusionBench's `clip_task_wise_adamerging` / `clip_layer_wise_adamerging`
    /// (config `method/adamerging/clip.yaml`): λ = 0.3, Adam at lr 1e-3, 1000 steps, 16 images per
    /// task per step, the sum over tasks of the mean entropy −Σ p log(p + 1e-8), no clamping.
    public static func adaMerging(_ granularity: CoefficientGranularity) -> Self {
        Self(granularity: granularity, initialValue: 0.3, loss: .entropy(epsilon: CoefficientLoss.fusionBenchEpsilon),
             steps: 1000, batchSize: 16, learningRate: 1e-3)
    }

    /// aTLAS as its reference code learns coefficients (`WeightedImageEncoder` with
    /// `--blockwise-coef`: one λ per task vector per parameter block, starting at 0): AdamW with
    /// weight decay 0.1, gradients clipped to norm 1, cosine schedule without warm-up; few-shot
    /// (`learn_few_shots.py`, cross-entropy) at lr 0.1, unsupervised (entropy, the
    /// test-time-adaptation script's lr) at lr 1e-3. Batches of 128 images split over the tasks as
    /// `learn_task_addition.py` splits them (`ATLAS.batchSize`); steps from `ATLAS.defaultSteps`.
    public static func atlas(supervised: Bool, tasks: Int, granularity: CoefficientGranularity = .layerWise) -> Self {
        Self(granularity: granularity, initialValue: 0, loss: supervised ? .crossEntropy : .softmaxEntropy,
             steps: 100, batchSize: ATLAS.batchSize(tasks: tasks), learningRate: supervised ? 0.1 : 1e-3,
             weightDecay: 0.1, clipNorm: 1, cosineSchedule: true)
    }

    /// The learning rate of step t (0-based).
    public func learningRate(at step: Int) -> Double {
        guard cosineSchedule, steps > 0 else { return learningRate }
        return 0.5 * (1 + cos(Double.pi * Double(step) / Double(steps))) * learningRate
    }

    /// Checks every value (the CLI's `validate()` calls this too).
    public func validate() throws(MergeKitError) {
        try TrainingChecks.check(steps: steps, batchSize: batchSize, learningRate: learningRate, weightDecay: weightDecay,
                                 clipNorm: clipNorm, beta1: Double(beta1), beta2: Double(beta2), epsilon: Double(epsilon))
        if !initialValue.isFinite {
            throw MergeKitError(.invalidArgument, "the initial coefficient must be a finite number, not \(initialValue)")
        }
    }
}

/// aTLAS's data conventions (Zhang et al., NeurIPS 2024, reference code `src/learn_*.py`).
public enum ATLAS {
    /// Images per step over all tasks (128 for ViT-B models in the reference scripts).
    public static let totalBatch = 128

    /// Images per task per step: 128 split evenly over the tasks (`int(batch_size / n_datasets)`),
    /// at least 1.
    public static func batchSize(tasks: Int) -> Int { max(1, totalBatch / max(1, tasks)) }

    /// 10 epochs of at least 10 batches each: the few-shot script trains 10 epochs and repeats a
    /// small shot set until an epoch has 10 batches. `images` is the largest task's set, `batch`
    /// the images per task per step.
    public static func defaultSteps(images: Int, batch: Int) -> Int {
        10 * max(10, (images + batch - 1) / max(1, batch))
    }

    /// The few-shot draw: up to `shots` images of every class, chosen at random (seeded) among the
    /// images with that label, classes in order (the reference's `get_n_shots`: the last `shots`
    /// of a random permutation of each class's images).
    public static func shots(labels: [Int], classes: Int, shots: Int, seed: UInt64) -> [Int] {
        var rng = GaussianGenerator(seed: seed ^ 0xA7_1A5)
        var chosen: [Int] = []
        for c in 0..<classes {
            var ids = labels.indices.filter { labels[$0] == c }
            for i in stride(from: ids.count - 1, to: 0, by: -1) {
                ids.swapAt(i, Int(rng.nextBits() % UInt64(i + 1)))
            }
            chosen += ids.suffix(shots)
        }
        return chosen
    }
}
