/// The statistics phase of a merge: the whole-model passes (`ModelStatisticsPass`) each target's
/// method asks for, before the merge pass. Targets that ask for the same numbers (same trim,
/// norms, vote and weights: the points of a λ sweep) share one computation.
extension MergeExecutor {
    static func computeModelStatistics(_ targets: [Target], threads: Int) throws(MergeKitError) {
        var computed: [String: ModelStatistics] = [:]
        for target in targets {
            let request = target.plan.method.statistics
            guard request.needsModelPasses else { continue }
            let key = "\(String(describing: request.globalKeepFraction))|\(request.globalSquaredNorms)|\(request.majoritySign)|\(target.plan.inputs.map(\.weight))"
            if let known = computed[key] {
                target.model = known
            } else {
                target.model = try ModelStatisticsPass(plan: target.plan, request: request, threads: threads).run()
                computed[key] = target.model
            }
        }
        // Mass votes without a sample prediction start from +.
        for target in targets where target.plan.method.statistics.majoritySign && target.model.majority == nil {
            target.model.majority = 1
        }
    }
}
