import Foundation

/// Combining one round's statistics files of every partition (`PartitionStatistics`): the checks,
/// then the counts summed into the next state. Nothing here reads a tensor, and nothing depends
/// on the order the files are given in.
extension PartitionStatistics {
    /// One round of every partition, combined.
    public struct Combined: Sendable {
        public let fingerprint: String
        /// The division the files came from.
        public let partitions: Int
        /// The round combined, and how many the statistics take.
        public let round: Int
        public let rounds: Int
        public var isComplete: Bool { round == rounds }
        let state: State

        /// The combined numbers, for people and scripts: per group of plans, the thresholds (as
        /// magnitudes once found), the norms and the votes.
        public var json: JSONValue {
            var groups: [JSONValue] = []
            for group in state.groups {
                var members = [JSONMember("plans", .array(group.plans.map { .int($0) }))]
                if group.thresholds {
                    let done = group.selections?.allSatisfy(\.isDone) ?? true
                    let keys = group.selections?.map(\.prefix) ?? Array(repeating: 0, count: group.inputs)
                    members.append(JSONMember("thresholds", done ? .array(keys.map { key in
                        .double(group.wide ? Double(bitPattern: key) : Double(Float(bitPattern: UInt32(truncatingIfNeeded: key))))
                    }) : .null))
                }
                if group.wantsNorms { members.append(JSONMember("squared_norms", group.norms.map { .array($0.map { .double($0) }) } ?? .null)) }
                groups.append(.object(members))
            }
            return .object([
                JSONMember("fingerprint", .string(fingerprint)),
                JSONMember("partitions", .int(partitions)),
                JSONMember("round", .int(round)),
                JSONMember("rounds", .int(rounds)),
                JSONMember("complete", .bool(isComplete)),
                JSONMember("elements", .int(state.elements)),
                JSONMember("groups", .array(groups)),
                JSONMember("votes", state.votes.map { votes in
                    .array(votes.keys.sorted().map { .object([JSONMember("plan", .int($0)), JSONMember("votes", .int(votes[$0]!))]) })
                } ?? .null),
            ])
        }
    }

    /// Reads and combines `files`: one round's file of every partition of one division, of one
    /// merge (of `fingerprint`, when given; else of the first file's), each partition once, all
    /// started from the same state. Every problem is reported together, naming its file.
    public static func combine(files: [String], fingerprint expected: String? = nil) throws(MergeKitError) -> Combined {
        precondition(!files.isEmpty)
        var problems = ProblemList()
        var parts: [(path: String, part: StatisticsPart)] = []
        let short = { (fingerprint: String) in String(fingerprint.prefix(12)) }
        let rerun = "Give the files the statistics rounds of this merge wrote (or rerun the round that wrote it)"
        for path in files.prefix(Partition.maximumCount + 1) {
            do throws(MergeKitError) {
                guard let part = try StatisticsPart.read(path) else {
                    problems.add(MergeKitError(.statisticsCorrupt, file: path,
                        "is not a statistics file MergeKit wrote (malformed, damaged or of another version)", fix: rerun))
                    continue
                }
                parts.append((path, part))
            } catch {
                problems.add(error)
            }
        }
        if files.count > Partition.maximumCount {
            problems.add(MergeKitError(.statisticsMismatch, "\(files.count) statistics files are more than a merge of at most \(Partition.maximumCount) partitions writes in a round",
                                       fix: "Give one round's files, one per partition"))
        }
        try problems.throwIfAny()
        let first = parts[0]
        let wanted = expected ?? first.part.fingerprint
        var current: [Int: (path: String, part: StatisticsPart)] = [:]
        for (path, part) in parts {
            if part.fingerprint != wanted {
                problems.add(MergeKitError(.statisticsMismatch, file: path,
                    "holds statistics of another merge (plan \(short(part.fingerprint)), not \(short(wanted))): another command, recipe or inputs, or a file left from an earlier run",
                    fix: "Run the statistics rounds with the same command as the merge, from round 1, and give their files"))
            } else if part.partition.count != first.part.partition.count {
                problems.add(MergeKitError(.statisticsMismatch, file: path,
                    "is of partition \(part.partition) while \(first.path) is of a division into \(first.part.partition.count)",
                    fix: "Give the files of one division (every partition INDEX/COUNT of one COUNT)"))
            } else if part.round != first.part.round {
                problems.add(MergeKitError(.statisticsMismatch, file: path,
                    "is of round \(part.round) while \(first.path) is of round \(first.part.round)",
                    fix: "Give the files of one round, the last one run"))
            } else if let other = current[part.partition.index] {
                problems.add(MergeKitError(.statisticsMismatch, file: path,
                    "holds the statistics of partition \(part.partition) of round \(part.round), as \(other.path) does: each partition's file must be given once",
                    fix: "Give each partition's file of the round once"))
            } else if part.state != first.part.state {
                problems.add(MergeKitError(.statisticsMismatch, file: path,
                    "was computed from other statistics of the round before than \(first.path) was (a file left from an earlier attempt)",
                    fix: "Rerun round \(part.round) of partition \(part.partition), given the same files of round \(part.round - 1) as the others"))
            } else {
                current[part.partition.index] = (path, part)
            }
        }
        try problems.throwIfAny()
        let count = first.part.partition.count, round = first.part.round
        for index in 0..<count where current[index] == nil {
            problems.add(MergeKitError(.statisticsMissing, file: FileSystem.parentDirectory(of: first.path),
                "has no statistics of partition \(index)/\(count) for round \(round) among the files given",
                fix: "Run round \(round) of partition \(index)/\(count) and give its file with the others"))
        }
        try problems.throwIfAny()
        let ordered = (0..<count).map { current[$0]! }
        let state = try next(first.part.state, ordered)
        return Combined(fingerprint: wanted, partitions: count, round: round, rounds: first.part.rounds, state: state)
    }

    /// The state after a round: `parts` (every partition's, in partition order) summed.
    private static func next(_ state: State, _ parts: [(path: String, part: StatisticsPart)]) throws(MergeKitError) -> State {
        var next = state
        next.round += 1
        let corrupt = { (path: String, what: String) in
            MergeKitError(.statisticsCorrupt, file: path, "does not hold \(what) its round needs (damaged, or not written by this merge)",
                          fix: "Rerun the round that wrote it")
        }
        for (g, group) in state.groups.enumerated() {
            // Radix counts: summed per input, then each selection narrows to the next digit.
            if let selections = group.selections, !selections.allSatisfy(\.isDone) {
                var narrowed: [Selection] = []
                for (i, selection) in selections.enumerated() {
                    var radix = selection.radix
                    var total = 0
                    for (path, part) in parts {
                        guard let histograms = part.counts.histograms[g] else { throw corrupt(path, "the counts") }
                        radix.add(counts: histograms[i])
                        total += histograms[i].reduce(0, +)
                    }
                    guard total > selection.rank - selection.below else { throw corrupt(parts[0].path, "counts that reach the rank sought") }
                    radix.finishPass()
                    narrowed.append(Selection(rank: radix.rank, keyBits: radix.keyBits, prefix: radix.prefix,
                                              prefixBits: radix.prefixBits, below: radix.below))
                }
                next.groups[g].selections = narrowed
            }
            // Norms: every work item once, summed in item order (as one machine sums them).
            if group.wantsNorms && group.norms == nil {
                var byItem: [[Double]?] = []
                for (path, part) in parts {
                    guard let norms = part.counts.itemNorms[g] else { throw corrupt(path, "the norms") }
                    if byItem.isEmpty { byItem = Array(repeating: nil, count: norms.total) }
                    guard norms.total == byItem.count else { throw corrupt(path, "the norms of every work item") }
                    for (item, values) in zip(norms.items, norms.values) {
                        guard byItem[item] == nil else { throw corrupt(path, "the norms of its own work items only") }
                        byItem[item] = values
                    }
                }
                guard byItem.allSatisfy({ $0 != nil }) else { throw corrupt(parts[0].path, "the norms of every work item") }
                var totals = [Double](repeating: 0, count: group.inputs)
                for values in byItem { for i in 0..<group.inputs { totals[i] += values![i] } }
                next.groups[g].norms = totals
            }
        }
        if parts.contains(where: { $0.part.counts.votes != nil }) {
            var votes: [Int: Int] = [:]
            let voters = Set(parts.compactMap(\.part.counts.votes).first!.keys)
            for (path, part) in parts {
                guard let counted = part.counts.votes, Set(counted.keys) == voters else {
                    throw corrupt(path, "the votes")
                }
                for (plan, count) in counted { votes[plan, default: 0] += count }
            }
            next.votes = votes
        }
        return next
    }
}

// MARK: State as JSON

extension PartitionStatistics.State {
    var json: JSONValue {
        .object([
            JSONMember("round", .int(round)),
            JSONMember("elements", .int(elements)),
            JSONMember("groups", .array(groups.map { group in
                .object([
                    JSONMember("plans", .array(group.plans.map { .int($0) })),
                    JSONMember("inputs", .int(group.inputs)),
                    JSONMember("thresholds", .bool(group.thresholds)),
                    JSONMember("wide", .bool(group.wide)),
                    JSONMember("selections", group.selections.map { selections in
                        .array(selections.map { s in
                            .array([.int(s.rank), .int(s.keyBits), .int(Int(s.prefix)), .int(s.prefixBits), .int(s.below)])
                        })
                    } ?? .null),
                    JSONMember("wants_norms", .bool(group.wantsNorms)),
                    JSONMember("norms", group.norms.map { .string(StatisticsPart.encode(doubles: $0)) } ?? .null),
                ])
            })),
            JSONMember("votes", votes.map { votes in .array(votes.keys.sorted().map { .array([.int($0), .int(votes[$0]!)]) }) } ?? .null),
        ])
    }

    init?(_ json: JSONValue) {
        guard let round = json["round"]?.nonNegativeInt, let elements = json["elements"]?.nonNegativeInt,
              let groupValues = json["groups"]?.arrayValue, groupValues.count <= 100_000 else { return nil }
        var groups: [PartitionStatistics.GroupState] = []
        for value in groupValues {
            guard let plans = value["plans"]?.arrayValue?.compactMap(\.nonNegativeInt), !plans.isEmpty,
                  let inputs = value["inputs"]?.nonNegativeInt, inputs >= 1, inputs <= 1_000_000,
                  case .bool(let thresholds)? = value["thresholds"], case .bool(let wide)? = value["wide"],
                  case .bool(let wantsNorms)? = value["wants_norms"], let selectionsValue = value["selections"],
                  let normsValue = value["norms"] else { return nil }
            var selections: [PartitionStatistics.Selection]?
            if selectionsValue != .null {
                guard let entries = selectionsValue.arrayValue, entries.count == inputs else { return nil }
                selections = []
                for entry in entries {
                    guard let fields = entry.arrayValue?.compactMap(\.nonNegativeInt), fields.count == 5,
                          fields[1] == 32 || fields[1] == 64, fields[3] <= fields[1], fields[3] % RadixSelection.digitBits == 0,
                          fields[4] <= fields[0], fields[0] < max(1, elements) else { return nil }
                    selections!.append(.init(rank: fields[0], keyBits: fields[1], prefix: UInt64(fields[2]), prefixBits: fields[3], below: fields[4]))
                }
            }
            var norms: [Double]?
            if normsValue != .null {
                guard let text = normsValue.stringValue, let decoded = StatisticsPart.decode(doubles: text), decoded.count == inputs else { return nil }
                norms = decoded
            }
            groups.append(.init(plans: plans, inputs: inputs, thresholds: thresholds, wide: wide, selections: selections,
                                wantsNorms: wantsNorms, norms: norms))
        }
        var votes: [Int: Int]?
        if let value = json["votes"], value != .null {
            guard let pairs = value.arrayValue else { return nil }
            votes = [:]
            for pair in pairs {
                guard let fields = pair.arrayValue, fields.count == 2, let plan = fields[0].nonNegativeInt,
                      case .number(let text) = fields[1], let count = Int(text) else { return nil }
                votes![plan] = count
            }
        }
        self.init(round: round, elements: elements, groups: groups, votes: votes)
    }
}
