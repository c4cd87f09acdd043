import Foundation

/// How task vectors relate before merging them — which tasks interfere: per-pair cosine
/// similarity, norms, the fraction of entries whose signs conflict, and what TIES would trim.
///
/// Two streaming passes over every merged tensor plus the threshold selection of global TIES
/// (`ModelStatisticsPass`), all with flat memory; sums are reduced in a fixed order.
///
/// **NaN and ±∞.** A merge refuses them (`FiniteCheck`); `analyze` still reports on such inputs:
/// every non-finite task-vector element (elements every input shares with the base excepted) is
/// left out — counted as τ = 0 in every number — and listed in `nonFinite` by input and tensor,
/// which the report prints as warnings. A number that is undefined (the cosine of an all-zero
/// task vector, the kept share of no energy) is NaN here, `null` in JSON and `n/a` in text; never
/// a 0 that reads as a measurement.
public struct TaskVectorAnalysis: Sendable {
    /// Non-finite elements left out of one input's task vector in one tensor.
    public struct NonFinite: Sendable, Equatable {
        /// Index into `inputs`.
        public let input: Int
        public let tensor: String
        public let nan: Int
        public let positiveInfinity: Int
        public let negativeInfinity: Int
    }

    public let inputs: [String]
    /// Elements per task vector (all merged tensors).
    public let elementCount: Int
    /// ‖τᵢ‖₂.
    public let norms: [Double]
    /// cos(τᵢ, τⱼ) (NaN when either is all zero).
    public let cosines: [[Double]]
    /// Among entries non-zero in both τᵢ and τⱼ, the fraction with opposite signs (NaN when there are none).
    public let signConflicts: [[Double]]
    /// The TIES keep fraction K analysed.
    public let density: Double
    /// Per task: the fraction of ‖τ‖² kept by TIES's trim at K (the largest K·d magnitudes).
    public let keptEnergy: [Double]
    /// Per task: the fraction of its kept entries that the sign election then drops.
    public let droppedByVote: [Double]
    /// Non-finite task-vector elements left out of the numbers, by input and tensor (in tensor order).
    public let nonFinite: [NonFinite]

    /// Analyses the task vectors of `inputs` against `base` (fine-tuned models or task-vector files).
    public static func run(base: Checkpoint, inputs: [MergeInput], density: Double = 0.2,
                           threads: Int? = nil) throws(MergeKitError) -> TaskVectorAnalysis {
        try MethodParameter.density.check(density)
        let threads = ThreadCount.resolved(threads)
        BLAS.useOneThread()
        // A plan validates the inputs (names, shapes, dtypes, bases); nothing is written.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mergekit-analysis-\(UUID().uuidString).safetensors").path
        let plan = try MergePlan(base: base, inputs: inputs.map { $0.weighted(1) },
                                 method: try TIES(density: .init(density)), output: OutputSpec(path: scratch, emit: .taskVector))
        let n = inputs.count
        let pass = TaskVectorPass(plan: plan, threads: threads, handling: .exclude)
        let ranges = TaskVectorPass.mergedRanges(plan)

        let first = try pass.run(ranges) { PairVisitor(inputs: n) }
        var gram = Array(repeating: Array(repeating: 0.0, count: n), count: n)
        var both = Array(repeating: Array(repeating: 0, count: n), count: n)
        var conflicts = both
        var sums = Array(repeating: ExactSum(), count: n * n)
        var excluded: [(tensor: Int, counts: [FiniteCheck.Counts])] = []
        for var visitor in first {
            visitor.finishItem()
            for k in sums.indices { sums[k].add(visitor.sums[k]) }
            excluded += visitor.excluded
            for i in 0..<n { for j in 0..<n { both[i][j] += visitor.both[i][j]; conflicts[i][j] += visitor.conflicts[i][j] } }
        }
        for i in 0..<n { for j in i..<n { gram[i][j] = sums[i * n + j].value } }
        for i in 0..<n { for j in 0..<i { gram[i][j] = gram[j][i] } }
        let norms = (0..<n).map { gram[$0][$0].squareRoot() }
        let cosines = (0..<n).map { i in (0..<n).map { j in norms[i] > 0 && norms[j] > 0 ? gram[i][j] / (norms[i] * norms[j]) : .nan } }
        let signConflicts = (0..<n).map { i in (0..<n).map { j in
            if i == j { return norms[i] > 0 ? 0 : .nan }
            let (a, b) = (min(i, j), max(i, j))
            return both[a][b] > 0 ? Double(conflicts[a][b]) / Double(both[a][b]) : .nan
        } }

        var request = StatisticsRequest()
        request.globalKeepFraction = density
        let statistics = try ModelStatisticsPass(plan: plan, request: request, threads: threads, handling: .exclude).run()
        let thresholds = statistics.thresholdKeys ?? Array(repeating: 0, count: n)
        let second = try pass.run(ranges) { TrimVisitor(thresholds: thresholds, wide: statistics.thresholdKeysAreWide) }
        var keptSquares = Array(repeating: 0.0, count: n), kept = Array(repeating: 0, count: n), dropped = kept
        var itemKept: [(Int, [Double])] = []
        for visitor in second {
            itemKept += visitor.itemSquares
            for i in 0..<n { kept[i] += visitor.kept[i]; dropped[i] += visitor.dropped[i] }
        }
        for (_, squares) in itemKept.sorted(by: { $0.0 < $1.0 }) { for i in 0..<n { keptSquares[i] += squares[i] } }
        return TaskVectorAnalysis(
            inputs: inputs.map(\.path), elementCount: statistics.elementCount, norms: norms, cosines: cosines,
            signConflicts: signConflicts, density: density,
            keptEnergy: (0..<n).map { gram[$0][$0] > 0 ? keptSquares[$0] / gram[$0][$0] : .nan },
            droppedByVote: (0..<n).map { kept[$0] > 0 ? Double(dropped[$0]) / Double(kept[$0]) : .nan },
            nonFinite: nonFiniteList(excluded, plan: plan))
    }

    /// Per-item counts summed per (tensor, input), in tensor order.
    private static func nonFiniteList(_ excluded: [(tensor: Int, counts: [FiniteCheck.Counts])], plan: MergePlan) -> [NonFinite] {
        var totals: [Int: [FiniteCheck.Counts]] = [:]
        for (tensor, counts) in excluded {
            var sum = totals[tensor] ?? Array(repeating: FiniteCheck.Counts(), count: counts.count)
            for i in counts.indices { sum[i] += counts[i] }
            totals[tensor] = sum
        }
        return totals.keys.sorted().flatMap { tensor in
            totals[tensor]!.enumerated().filter { $0.element.total > 0 }.map { input, c in
                NonFinite(input: input, tensor: plan.tensors[tensor].name, nan: c.nan,
                          positiveInfinity: c.positiveInfinity, negativeInfinity: c.negativeInfinity)
            }
        }
    }

    /// Warnings for the report: non-finite elements left out, and task vectors that are all zero.
    public var warnings: [String] {
        var lines = nonFinite.map { item in
            "input [\(item.input)] \(inputs[item.input]): tensor '\(item.tensor)' has \(item.nan) NaN, \(item.positiveInfinity) +Inf and \(item.negativeInfinity) -Inf in its task vector; they are left out (counted as 0) of every number below, and a merge would refuse this input"
        }
        for (i, norm) in norms.enumerated() where norm == 0 {
            lines.append("input [\(i)] \(inputs[i]): the task vector is all zero (the same as the base), so its cosines and TIES shares are undefined (n/a)")
        }
        return lines
    }

    public var json: JSONValue {
        func matrix(_ m: [[Double]]) -> JSONValue { .array(m.map { .array($0.map { .double($0) }) }) }
        return .object([
            JSONMember("inputs", .array(inputs.map { .string($0) })),
            JSONMember("elements", .int(elementCount)),
            JSONMember("norms", .array(norms.map { .double($0) })),
            JSONMember("cosine_similarity", matrix(cosines)),
            JSONMember("sign_conflict_fraction", matrix(signConflicts)),
            JSONMember("ties_density", .double(density)),
            JSONMember("ties_kept_energy_fraction", .array(keptEnergy.map { .double($0) })),
            JSONMember("ties_dropped_by_vote_fraction", .array(droppedByVote.map { .double($0) })),
            JSONMember("non_finite", .array(nonFinite.map { item in
                .object([JSONMember("input", .int(item.input)), JSONMember("tensor", .string(item.tensor)),
                         JSONMember("nan", .int(item.nan)), JSONMember("pos_inf", .int(item.positiveInfinity)),
                         JSONMember("neg_inf", .int(item.negativeInfinity))])
            })),
            JSONMember("warnings", .array(warnings.map { .string($0) })),
        ])
    }

    public var text: String {
        let names = inputs.enumerated().map { "[\($0.offset)] \($0.element)" }
        func table(_ title: String, _ m: [[Double]], _ format: String) -> [String] {
            func pad(_ s: String, _ width: Int, left: Bool) -> String {
                let fill = String(repeating: " ", count: max(0, width - s.count))
                return left ? fill + s : s + fill
            }
            var lines = [title, "      " + inputs.indices.map { pad("[\($0)]", 9, left: true) }.joined()]
            for (i, row) in m.enumerated() {
                lines.append(pad("[\(i)]", 6, left: false) + row.map { $0.isNaN ? pad("n/a", 9, left: true) : String(format: format, $0) }.joined())
            }
            return lines
        }
        var lines = warnings.map { "warning: " + $0 }
        if !lines.isEmpty { lines.append("") }
        lines += ["task vectors (\(elementCount) elements each):"] + names.map { "  " + $0 }
        lines.append("")
        lines.append("norm ‖τ‖₂: " + norms.enumerated().map { "[\($0.offset)] " + String(format: "%.6g", $0.element) }.joined(separator: "  "))
        lines.append("")
        lines += table("cosine similarity:", cosines, "%9.4f")
        lines.append("")
        lines += table("sign conflicts (fraction of entries non-zero in both with opposite signs):", signConflicts, "%9.4f")
        lines.append("")
        lines.append(String(format: "TIES at density %.2f (global trim, mass vote):", density))
        func percent(_ x: Double) -> String { x.isNaN ? "n/a" : String(format: "%.1f%%", 100 * x) }
        for i in inputs.indices {
            lines.append("  [\(i)] keeps \(percent(keptEnergy[i])) of ‖τ‖²; the vote then drops \(percent(droppedByVote[i])) of its kept entries")
        }
        return TerminalText.lines(lines)
    }
}

/// First pass: the Gram matrix and pairwise sign conflicts. Each item's dot products are summed
/// in Double in chunk order, then added exactly into `sums` (`ExactSum`), so the Gram matrix is the
/// same for any thread count while a visitor holds only one item's numbers: memory does not grow
/// with the number of work items.
struct PairVisitor: ChunkVisitor {
    let inputs: Int
    /// The current item's dot products (upper triangle, row-major N × N).
    private var item: [Double]
    private var itemOpen = false
    /// The exact sums of the finished items' dot products.
    private(set) var sums: [ExactSum]
    /// Non-finite elements left out, per visited item: (tensor index, counts per input).
    var excluded: [(tensor: Int, counts: [FiniteCheck.Counts])] = []
    var both: [[Int]]
    var conflicts: [[Int]]

    init(inputs: Int) {
        self.inputs = inputs
        item = Array(repeating: 0, count: inputs * inputs)
        sums = Array(repeating: ExactSum(), count: inputs * inputs)
        both = Array(repeating: Array(repeating: 0, count: inputs), count: inputs)
        conflicts = both
    }

    mutating func begin(item _: Int) {
        finishItem()
        itemOpen = true
    }

    /// Adds the current item's dot products into `sums` (call once more after the last item).
    mutating func finishItem() {
        guard itemOpen else { return }
        for i in 0..<inputs {
            for j in i..<inputs {
                sums[i * inputs + j].add(item[i * inputs + j])
                item[i * inputs + j] = 0
            }
        }
        itemOpen = false
    }

    mutating func excluded(tensor: Int, counts: [FiniteCheck.Counts]) { excluded.append((tensor, counts)) }

    mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {
        for i in 0..<inputs {
            for j in i..<inputs {
                item[i * inputs + j] += Double(T.dot(UnsafeBufferPointer(deltas[i]), UnsafeBufferPointer(deltas[j])))
                if j > i {
                    let counts = T.signConflicts(UnsafeBufferPointer(deltas[i]), UnsafeBufferPointer(deltas[j]))
                    both[i][j] += counts.both
                    conflicts[i][j] += counts.conflicts
                }
            }
        }
    }
}

/// Second pass: with TIES's thresholds, the energy each task keeps and the kept entries the
/// sign election drops.
struct TrimVisitor: ChunkVisitor {
    let thresholds: [UInt64]
    let wide: Bool
    var itemSquares: [(Int, [Double])] = []
    var kept: [Int]
    var dropped: [Int]

    init(thresholds: [UInt64], wide: Bool) {
        self.thresholds = thresholds
        self.wide = wide
        kept = Array(repeating: 0, count: thresholds.count)
        dropped = kept
    }

    mutating func begin(item: Int) { itemSquares.append((item, Array(repeating: 0, count: thresholds.count))) }

    mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {
        let n = deltas.first?.count ?? 0
        guard n > 0 else { return }
        let total = UnsafeMutableBufferPointer<T>.allocate(capacity: n)
        let sign = UnsafeMutableBufferPointer<T>.allocate(capacity: n)
        defer { total.deallocate(); sign.deallocate() }
        total.initialize(repeating: 0)
        for (i, delta) in deltas.enumerated() {
            T.zeroBelow(delta, key: thresholds[i], wide: wide)
            let d = UnsafeBufferPointer(delta)
            itemSquares[itemSquares.count - 1].1[i] += Double(T.dot(d, d))
            kept[i] += n - T.countBoundary(d, lowerKey: 0, hasLower: true, upperKey: 0, hasUpper: false).lower
            T.axpy(1, d, total)
        }
        _ = T.electSigns(UnsafeBufferPointer(total), into: sign, tie: 0)
        for (i, delta) in deltas.enumerated() {
            dropped[i] += T.countDisagreeing(UnsafeBufferPointer(delta), sign: UnsafeBufferPointer(sign))
        }
    }
}
