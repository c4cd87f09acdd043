import Foundation

/// Losses on a batch of logits z [B, classes], averaged over the batch, with their gradients.
///
/// With p = softmax(z) (computed as exp(z − logsumexp z), in Double):
///
/// - Cross-entropy: ℓ = logsumexp(z) − z_y, ∂ℓ/∂z = p − onehot(y).
/// - Softmax entropy (WEMoE's test-time adaptation loss, needs no labels):
///   H = −Σ pₖ log pₖ = logsumexp(z) − Σ pₖ zₖ, ∂H/∂zₖ = −pₖ (log pₖ + H).
public enum ClassificationLoss: Sendable, Equatable {
    case crossEntropy(labels: [Int])
    case entropy

    /// The mean loss over the batch and its gradient with respect to the logits [B, classes].
    public func evaluate(logits: [Float], batch: Int, classes: Int) -> (value: Double, gradient: [Float]) {
        precondition(batch >= 1 && logits.count == batch * classes)
        var gradient = [Float](repeating: 0, count: batch * classes)
        var total = 0.0
        var p = [Double](repeating: 0, count: classes)
        for b in 0..<batch {
            let row = Array(logits[b * classes..<(b + 1) * classes])
            let lse = ClassificationLoss.logSumExp(row)
            for k in 0..<classes { p[k] = Foundation.exp(Double(row[k]) - lse) }
            switch self {
            case .crossEntropy(let labels):
                precondition(labels.count == batch && (0..<classes).contains(labels[b]), "label out of range")
                let y = labels[b]
                total += lse - Double(row[y])
                for k in 0..<classes { gradient[b * classes + k] = Float((p[k] - (k == y ? 1 : 0)) / Double(batch)) }
            case .entropy:
                var h = lse
                for k in 0..<classes { h -= p[k] * Double(row[k]) }
                total += h
                for k in 0..<classes {
                    let logP = Double(row[k]) - lse
                    gradient[b * classes + k] = Float(-p[k] * (logP + h) / Double(batch))
                }
            }
        }
        return (total / Double(batch), gradient)
    }

    /// log Σ exp(zₖ), shifted by the maximum.
    static func logSumExp(_ z: [Float]) -> Double {
        let m = Double(z.max() ?? 0)
        var s = 0.0
        for v in z { s += Foundation.exp(Double(v) - m) }
        return m + Foundation.log(s)
    }
}
