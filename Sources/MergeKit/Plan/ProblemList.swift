/// Problems found while planning, reported together.
struct ProblemList {
    private(set) var items: [MergeKitError] = []
    private var overflow = 0

    mutating func add(_ problem: MergeKitError) {
        // The same problem found again (e.g. at several sweep points) is reported once.
        if items.contains(where: { $0.description == problem.description }) { return }
        if items.count < MergePlan.maximumReported { items.append(problem) } else { overflow += 1 }
    }

    /// Throws the one problem, or a summary holding them all ("3 problems found before `what`:").
    func throwIfAny(before what: String = "merging") throws(MergeKitError) {
        guard let first = items.first else { return }
        guard items.count > 1 else { throw first }
        var summary = MergeKitError(first.code, "\(items.count + overflow) problems found before \(what):")
        summary.problems = items
        if overflow > 0 { summary.problems.append(MergeKitError(first.code, "… and \(overflow) more")) }
        throw summary
    }
}
