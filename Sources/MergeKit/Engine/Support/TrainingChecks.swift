/// The range checks every trainer's settings share (`FineTuning.Options`,
/// `CoefficientTrainingOptions`), with one wording: at least one step and one image per batch, a
/// positive finite learning rate, a finite non-negative weight decay, a positive clipping norm,
/// Adam's betas in [0, 1) and a positive ε.
enum TrainingChecks {
    static func check(steps: Int, batchSize: Int, learningRate: Double, weightDecay: Double, clipNorm: Double?,
                      beta1: Double, beta2: Double, epsilon: Double) throws(MergeKitError) {
        func bad(_ what: MergeKitError.Text) -> MergeKitError { MergeKitError(.invalidArgument, what) }
        if steps < 1 { throw bad("\(term: .steps) must be at least 1, not \(steps)") }
        if batchSize < 1 { throw bad("\(term: .batchSize) must be at least 1, not \(batchSize)") }
        if !(learningRate > 0) || !learningRate.isFinite { throw bad("\(term: .learningRate) must be a positive number, not \(learningRate)") }
        if !(weightDecay >= 0) || !weightDecay.isFinite { throw bad("\(term: .weightDecay) must be ≥ 0, not \(weightDecay)") }
        if let clipNorm, !(clipNorm > 0) || !clipNorm.isFinite { throw bad("\(term: .clipNorm) must be positive, not \(clipNorm)") }
        if !(0..<1).contains(beta1) || !(0..<1).contains(beta2) { throw bad("the Adam betas must lie in [0, 1)") }
        if !(epsilon > 0) { throw bad("\(term: .adamEpsilon) must be positive, not \(epsilon)") }
    }
}
