import Foundation

/// The objective a data-driven merge minimises on one task's batch, through the task's head, as
/// the mean over the batch of logits z [B, classes] (p = softmax(z), in Double):
///
/// - `entropy(epsilon:)`: H = −Σₖ pₖ log(pₖ + ε), FusionBench's `entropy_loss` (ε = 1e-8), which
///   AdaMerging minimises. With fₖ = log(pₖ + ε) + pₖ/(pₖ + ε):
///   ∂H/∂zⱼ = −pⱼ (fⱼ − Σₖ pₖ fₖ) (at ε = 0 this is ClassificationLoss's −pⱼ(log pⱼ + H)).
/// - `softmaxEntropy`: H = −Σₖ pₖ log pₖ exactly (aTLAS's `softmax_entropy`, unsupervised).
/// - `crossEntropy`: −log p_y with the task's labels (aTLAS few-shot).
public enum CoefficientLoss: Sendable, Equatable {
    case entropy(epsilon: Double)
    case softmaxEntropy
    case crossEntropy

    /// FusionBench's ε.
    public static let fusionBenchEpsilon = 1e-8

    public var needsLabels: Bool { self == .crossEntropy }

    /// The mean loss over the batch and ∂L/∂z [B, classes].
    func evaluate(logits: [Float], batch: Int, classes: Int, labels: [Int]?) -> (value: Double, gradient: [Float]) {
        switch self {
        case .softmaxEntropy:
            return ClassificationLoss.entropy.evaluate(logits: logits, batch: batch, classes: classes)
        case .crossEntropy:
            return ClassificationLoss.crossEntropy(labels: labels!).evaluate(logits: logits, batch: batch, classes: classes)
        case .entropy(let eps):
            var gradient = [Float](repeating: 0, count: batch * classes)
            var total = 0.0
            var p = [Double](repeating: 0, count: classes), f = p
            for b in 0..<batch {
                let row = Array(logits[b * classes..<(b + 1) * classes])
                let lse = ClassificationLoss.logSumExp(row)
                var h = 0.0, mean = 0.0
                for k in 0..<classes {
                    p[k] = Foundation.exp(Double(row[k]) - lse)
                    let log = Foundation.log(p[k] + eps)
                    h -= p[k] * log
                    f[k] = log + p[k] / (p[k] + eps)
                    mean += p[k] * f[k]
                }
                total += h
                for k in 0..<classes { gradient[b * classes + k] = Float(-p[k] * (f[k] - mean) / Double(batch)) }
            }
            return (total / Double(batch), gradient)
        }
    }
}
