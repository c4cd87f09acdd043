import Foundation

/// The whole-model statistics of a partitioned merge (`Partition`), gathered as map-reduce rounds
/// so that they are exactly the numbers one machine computes (`ModelStatisticsPass`), and the
/// assembled output its bytes.
///
/// Every partition plans the whole merge, streams only the tensors of its shards (the division
/// of the merge's first plan: the same shards, so the same input bytes, as its merge reads) and
/// writes its exact counts for the round to a file (`StatisticsPart`); the next round (or the
/// merge) reads every partition's file of the round and combines them, in partition-independent
/// order, in microseconds to milliseconds:
///
/// - **trim thresholds** (paper TIES's global trim): per input, the exact k-th smallest |τ| by a
///   radix selection over the magnitude keys, one 16-bit digit a round: 2 rounds for Float keys,
///   4 when some merged tensor computes in Double. Round 1 counts the high 16 bits of every key
///   (65,536 bins), round 2 the low 16 bits of the keys in the bin holding rank k, and so on;
/// - **norms** (MetaGPT): Σ τ² per input and work item in round 1 (as the one-machine pass keeps
///   it), combined in the global order of the work items, so the sums are the same bit for bit;
/// - **the mass vote's majority** (TIES's `mass` vote, DARE-TIES's): Σ sign(vote) over every
///   merged element, counted by merging the partition's tensors without writing them, with the
///   final thresholds: one round after the thresholds' (the vote of an element does not depend
///   on how ties are resolved, so the sum is the one-machine merge pass's count, and each
///   partition merges with the majority one machine ends up with).
///
/// Each round's file carries the state the round started from (the earlier rounds combined), so a
/// round needs only the previous round's files; combining checks that they are of this merge
/// (`PlanFingerprint`), of one round and one division, each partition once, all started from the
/// same state. DARE's L1 rescaling is per tensor (`StatisticsRequest.tensorDropL1`), so it needs
/// no round.
public enum PartitionStatistics {
    /// 4 selection rounds (Double keys) and the vote.
    static let maximumRounds = 5

    // MARK: What the plans need

    /// The statistics `plans` need: groups of plans sharing one computation (as
    /// `MergeExecutor.computeModelStatistics` shares it), the plans with a mass vote, the rounds.
    struct Schedule {
        struct Group {
            var plans: [Int]
            var keep: Double?
            /// The rank sought (k − 1), nil when the trim keeps everything (or there is no trim).
            var rank: Int?
            var keyBits: Int
            var norms: Bool
            var inputs: Int
        }
        var groups: [Group] = []
        var votePlans: [Int] = []
        var elements = 0
        var selectionRounds = 0
        var rounds = 0
        /// The round counting the votes (after the thresholds'), if any plan votes.
        var voteRound: Int? { votePlans.isEmpty ? nil : selectionRounds + 1 }
    }

    static func schedule(_ plans: [MergePlan]) -> Schedule {
        var schedule = Schedule()
        schedule.elements = TaskVectorPass.mergedRanges(plans[0]).reduce(0) { $0 + $1.range.count }
        var byKey: [String: Int] = [:]
        for (p, plan) in plans.enumerated() {
            let request = plan.method.statistics
            if request.majoritySign { schedule.votePlans.append(p) }
            guard request.needsModelPasses else { continue }
            let key = "\(String(describing: request.globalKeepFraction))|\(request.globalSquaredNorms)|\(request.majoritySign)|\(plan.inputs.map(\.weight))"
            if let g = byKey[key] {
                schedule.groups[g].plans.append(p)
                continue
            }
            var rank: Int?
            if let keep = request.globalKeepFraction, schedule.elements > 0 {
                // k-th smallest, 1-indexed, k = d − int(d·K); k ≤ 0 keeps everything (as `ModelStatisticsPass`).
                let k = schedule.elements - Int(Double(schedule.elements) * keep)
                if k >= 1 { rank = k - 1 }
            }
            let wide = plan.tensors.contains { $0.action == .merge && $0.computeInDouble }
            byKey[key] = schedule.groups.count
            schedule.groups.append(Schedule.Group(plans: [p], keep: request.globalKeepFraction, rank: rank, keyBits: wide ? 64 : 32,
                                                  norms: request.globalSquaredNorms, inputs: plan.inputs.count))
        }
        schedule.selectionRounds = schedule.groups.filter { $0.rank != nil }.map { $0.keyBits / RadixSelection.digitBits }.max() ?? 0
        let norms = schedule.groups.contains { $0.norms } ? 1 : 0
        schedule.rounds = max(schedule.selectionRounds + (schedule.votePlans.isEmpty ? 0 : 1), norms)
        return schedule
    }

    /// How many statistics rounds a partitioned merge of `plans` needs before it merges (0: none).
    public static func rounds(_ plans: [MergePlan]) -> Int { schedule(plans).rounds }

    /// Whether a merge with `method` needs statistics rounds (known before planning: only a
    /// model without merged elements needs none where this says it does).
    public static func needsRounds(_ method: any MergeMethod) -> Bool {
        let request = method.statistics
        return (request.globalKeepFraction.map { $0 < 1 } ?? false) || request.globalSquaredNorms || request.majoritySign
    }

    // MARK: State

    /// The statistics combined so far (after `round` rounds), the same in every partition.
    public struct State: Equatable, Sendable {
        var round: Int
        var elements: Int
        var groups: [GroupState]
        /// Per voting plan: Σ sign(vote) over the whole model (after the vote round).
        var votes: [Int: Int]?
    }

    struct GroupState: Equatable, Sendable {
        var plans: [Int]
        var inputs: Int
        /// Whether the group's plans trim by thresholds (all 0 when `selections` is nil).
        var thresholds: Bool
        var wide: Bool
        /// Per input, the radix selection of its threshold so far.
        var selections: [Selection]?
        var wantsNorms: Bool
        /// Per input, Σ τ² over the whole model (after round 1).
        var norms: [Double]?
    }

    /// A radix selection's state between rounds (`RadixSelection`, without counts).
    struct Selection: Equatable, Sendable {
        var rank: Int
        var keyBits: Int
        var prefix: UInt64
        var prefixBits: Int
        var below: Int
        var isDone: Bool { prefixBits == keyBits }
        var radix: RadixSelection { RadixSelection(rank: rank, keyBits: keyBits, prefix: prefix, prefixBits: prefixBits, below: below) }
    }

    static func initialState(_ schedule: Schedule) -> State {
        State(round: 0, elements: schedule.elements, groups: schedule.groups.map { group in
            GroupState(plans: group.plans, inputs: group.inputs, thresholds: group.keep != nil, wide: group.keyBits == 64,
                       selections: group.rank.map { rank in
                           Array(repeating: Selection(rank: rank, keyBits: group.keyBits, prefix: 0, prefixBits: 0, below: 0), count: group.inputs)
                       }, wantsNorms: group.norms, norms: nil)
        }, votes: nil)
    }

    /// Each plan's `ModelStatistics` from `state` (thresholds final; the majority once counted).
    static func modelStatistics(_ state: State, plans: Int) -> [ModelStatistics] {
        var statistics = Array(repeating: ModelStatistics(), count: plans)
        for group in state.groups {
            var model = ModelStatistics()
            model.elementCount = state.elements
            if group.thresholds {
                model.thresholdKeys = group.selections?.map(\.prefix) ?? Array(repeating: 0, count: group.inputs)
                model.thresholdKeysAreWide = group.wide
            }
            model.squaredNorms = group.norms
            for p in group.plans { statistics[p] = model }
        }
        for (p, votes) in state.votes ?? [:] where p < plans {
            statistics[p].majority = votes.signum()
            statistics[p].majorityIsCounted = true
        }
        return statistics
    }

    // MARK: A round

    /// What a statistics round wrote.
    public struct RoundOutcome: Sendable {
        public let path: String
        public let partition: Partition
        public let round: Int
        public let rounds: Int
        /// Whether this round's files of every partition, combined, are the complete statistics.
        public var isComplete: Bool { round == rounds }
        public let fingerprint: String
        public let bytes: Int
    }

    /// Runs `partition`'s share of the next statistics round of `plans` (the first, or the one
    /// after the round whose files, of every partition, are `previous`) and writes it to `output`.
    public static func runRound(_ plans: [MergePlan], points: [MergeRun.Point] = [], partition: Partition, previous: [String],
                                output: String, threads: Int?) throws(MergeKitError) -> RoundOutcome {
        try Partition.checkSupported(plans)
        try checkArguments(plans, files: previous, writing: true)
        let schedule = schedule(plans)
        let fingerprint = PlanFingerprint.compute(plans, points: points)
        var state = initialState(schedule)
        if !previous.isEmpty {
            let combined = try combine(files: previous, fingerprint: fingerprint)
            if combined.isComplete {
                throw MergeKitError(.statisticsMismatch, file: previous[0],
                    "and the other files given are round \(combined.round) of \(combined.rounds): the statistics are complete, there is no further round",
                    fix: "Merge the partitions with these files")
            }
            state = combined.state
        }
        let round = state.round + 1
        let threads = ThreadCount.resolved(threads)
        BLAS.useOneThread()

        // The partition's tensors: those of its shards of the first plan.
        let tensors = share(plans[0], partition)
        let all = TaskVectorPass.mergedRanges(plans[0])
        let mine = all.indices.filter { tensors.contains(all[$0].tensor) }
        var counts = StatisticsPart.Counts(histograms: Array(repeating: nil, count: state.groups.count),
                                           itemNorms: Array(repeating: nil, count: state.groups.count), votes: nil)
        for (g, group) in state.groups.enumerated() {
            let selecting = group.selections.map { !$0.allSatisfy(\.isDone) } ?? false
            let norms = group.wantsNorms && round == 1
            guard selecting || norms else { continue }
            let plan = plans[group.plans[0]]
            let ranges = mine.map { all[$0] }
            let starts = selecting ? group.selections!.map(\.radix) : []
            let visitors = try TaskVectorPass(plan: plan, threads: threads).run(ranges) {
                PartialStatisticsVisitor(selections: starts, inputs: group.inputs, norms: norms)
            }
            if selecting {
                counts.histograms[g] = (0..<group.inputs).map { i in
                    var histogram = [Int](repeating: 0, count: RadixSelection.bins)
                    for visitor in visitors {
                        for (bin, count) in visitor.selections[i].histogram.enumerated() where count != 0 { histogram[bin] += count }
                    }
                    return histogram
                }
            }
            if norms {
                var byItem: [Int: [Double]] = [:]
                for visitor in visitors { for (item, values) in visitor.itemNorms { byItem[mine[item]] = values } }
                let items = byItem.keys.sorted()
                counts.itemNorms[g] = StatisticsPart.ItemNorms(total: all.count, items: items, values: items.map { byItem[$0]! })
            }
        }
        if round == schedule.voteRound {
            let models = modelStatistics(state, plans: plans.count)
            let voters = schedule.votePlans
            let counted = try MergeExecutor.countVotes(voters.map { plans[$0] }, statistics: voters.map { models[$0] },
                                                       tensors: tensors, threads: threads)
            counts.votes = Dictionary(uniqueKeysWithValues: zip(voters, counted))
        }
        let part = StatisticsPart(fingerprint: fingerprint, partition: partition, round: round, rounds: schedule.rounds,
                                  state: state, counts: counts)
        try part.write(to: output)
        let bytes = (try? FileSystem.readFile(output, limit: StatisticsPart.sizeLimit).count) ?? 0
        return RoundOutcome(path: output, partition: partition, round: round, rounds: schedule.rounds, fingerprint: fingerprint, bytes: bytes)
    }

    /// The `plan.tensors` indices in `partition`'s shards (`Partition.owners` over the plan's shard files).
    static func share(_ plan: MergePlan, _ partition: Partition) -> Set<Int> {
        let owners = Partition.owners(ofUnits: plan.shards.map(\.layout.fileSize), count: partition.count)
        return Set(plan.tensors.indices.filter { owners[plan.tensors[$0].shard] == partition.index })
    }

    /// Refuses statistics rounds or files for plans that need none, and a merge without the files
    /// of plans that need them (`writing`: a statistics round is being run).
    public static func checkArguments(_ plans: [MergePlan], files: [String], writing: Bool) throws(MergeKitError) {
        let schedule = schedule(plans)
        let method = plans[0].method.info.name
        if schedule.rounds == 0 && (writing || !files.isEmpty) {
            throw MergeKitError(.invalidArgument, file: files.first,
                "\(writing ? "is a statistics round, but " : "is a statistics file, but ")\(method) with these parameters needs no whole-model statistics",
                fix: "Merge the partitions without statistics rounds or files")
        }
        if schedule.rounds > 0 && files.isEmpty && !writing {
            throw MergeKitError(.invalidArgument,
                "\(method) with these parameters needs statistics over the whole model (\(needs(schedule))) before any tensor is merged: a partition cannot compute them alone",
                fix: "First run the \(schedule.rounds) statistics round\(schedule.rounds == 1 ? "" : "s") in every partition (round 1, then each round given the files of the round before), then merge each partition with the files of the last round")
        }
    }

    /// The statistics a merge of `plans` uses, from the files of their last round: checked to be
    /// of this merge and complete; nil when the plans need none (`checkArguments`).
    static func resolve(_ plans: [MergePlan], fingerprint: String, files: [String]) throws(MergeKitError) -> [ModelStatistics]? {
        try checkArguments(plans, files: files, writing: false)
        guard !files.isEmpty else { return nil }
        let combined = try combine(files: files, fingerprint: fingerprint)
        guard combined.isComplete else {
            throw MergeKitError(.statisticsIncomplete, file: files[0],
                "and the other files given are round \(combined.round) of \(combined.rounds): the statistics are not complete yet",
                fix: "Run round \(combined.round + 1) in every partition, given these files (and so on to round \(combined.rounds)); then merge with the files of round \(combined.rounds)")
        }
        return modelStatistics(combined.state, plans: plans.count)
    }

    /// What the schedule's statistics are, in words.
    static func needs(_ schedule: Schedule) -> String {
        var what: [String] = []
        if schedule.groups.contains(where: { $0.keep != nil }) { what.append("a trim threshold") }
        if schedule.groups.contains(where: \.norms) { what.append("norms") }
        if !schedule.votePlans.isEmpty { what.append("the sign of the vote") }
        return what.joined(separator: ", ")
    }
}

/// A partition's pass of one statistics round: this round's radix counts per input, and Σ τ² per
/// work item (as `FullPassVisitor` sums it, chunk by chunk).
struct PartialStatisticsVisitor: ChunkVisitor {
    var selections: [RadixSelection]
    let inputs: Int
    let norms: Bool
    var itemNorms: [(Int, [Double])] = []

    init(selections: [RadixSelection], inputs: Int, norms: Bool) {
        self.selections = selections
        self.inputs = inputs
        self.norms = norms
    }

    mutating func begin(item: Int) {
        if norms { itemNorms.append((item, Array(repeating: 0, count: inputs))) }
    }

    mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {
        for (i, delta) in deltas.enumerated() {
            if !selections.isEmpty { selections[i].observe(UnsafeBufferPointer(delta)) }
            if norms { itemNorms[itemNorms.count - 1].1[i] += Double(T.dot(UnsafeBufferPointer(delta), UnsafeBufferPointer(delta))) }
        }
    }
}
