/// The mass vote of a partition's share, for its statistics round (`PartitionStatistics`).
extension MergeExecutor {
    /// Σ sign(vote) of each plan over `tensors` (`plans[0].tensors` indices), counted by merging
    /// them as the merge pass does — with `statistics` (the final thresholds), the same chunks and
    /// per-tensor statistics — and writing nothing. An element's vote does not depend on how ties
    /// are resolved, so these counts, summed over every partition, are one machine's.
    static func countVotes(_ plans: [MergePlan], statistics: [ModelStatistics], tensors: Set<Int>,
                           threads: Int) throws(MergeKitError) -> [Int] {
        guard !plans.isEmpty else { return [] }
        let memory = try memoryPlan(plans, threads: threads, budget: MemoryBudget.configuredBytes)
        let gate = WholeTensorGate(plans: plans, slots: memory.wholeTensorSlots)
        BLAS.useOneThread()
        let targets = zip(plans, statistics).map { Target(plan: $0, merging: tensors, model: $1) }
        let items = workItems(plans[0]).filter { tensors.contains($0.tensor) && plans[0].tensors[$0.tensor].action == .merge }
        let workers = try runWorkers(targets, items: items, threads: memory.workers, gate: gate)
        return targets.indices.map { t in workers.reduce(0) { $0 + $1.signVotes[t] } }
    }
}
