import Foundation

/// How task vectors relate before merging them — which tasks interfere: per-pair cosine
/// similarity, norms, the fraction of entries whose signs conflict, and what TIES would trim.
///
/// Two streaming passes over every merged tensor plus the threshold selection of global TIES
/// (`ModelStatisticsPass`), all with flat memory; sums are reduced in a fixed order.
public struct TaskVectorAnalysis: Sendable {
    public let inputs: [String]
    /// Elements per task vector (all merged tensors).
    public let elementCount: Int
    /// ‖τᵢ‖₂.
    public let norms: [Double]
    /// cos(τᵢ, τⱼ).
    public let cosines: [[Double]]
    /// Among entries non-zero in both τᵢ and τⱼ, the fraction with opposite signs.
    public let signConflicts: [[Double]]
    /// The TIES keep fraction K analysed.
    public let density: Double
    /// Per task: the fraction of ‖τ‖² kept by TIES's trim at K (the largest K·d magnitudes).
    public let keptEnergy: [Double]
    /// Per task: the fraction of its kept entries that the sign election then drops.
    public let droppedByVote: [Double]

    /// Analyses the task vectors of `inputs` against `base` (fine-tuned models or task-vector files).
    public static func run(base: Checkpoint, inputs: [MergeInput], density: Double = 0.2,
                           threads: Int? = nil) throws(MergeKitError) -> TaskVectorAnalysis {
        try MethodParameter.density.check(density)
        let threads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        BLAS.setThreads(1)
        // A plan validates the inputs (names, shapes, dtypes, bases); nothing is written.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mergekit-analysis-\(UUID().uuidString).safetensors").path
        let plan = try MergePlan(base: base, inputs: inputs.map { $0.weighted(1) },
                                 method: try TIES(density: .init(density)), output: OutputSpec(path: scratch, emit: .taskVector))
        let n = inputs.count
        let pass = ModelStatisticsPass(plan: plan, request: StatisticsRequest(), threads: threads)
        let ranges = MergeExecutor.workItems(plan, chunked: true, mergedOnly: true)
            .sorted { ($0.tensor, $0.range.lowerBound) < ($1.tensor, $1.range.lowerBound) }
            .map { ($0.tensor, $0.range) }

        let first = try pass.runPass(ranges) { PairVisitor(inputs: n) }
        var gram = Array(repeating: Array(repeating: 0.0, count: n), count: n)
        var both = Array(repeating: Array(repeating: 0, count: n), count: n)
        var conflicts = both
        var itemGrams: [(Int, [Double])] = []
        for visitor in first {
            itemGrams += visitor.itemGrams
            for i in 0..<n { for j in 0..<n { both[i][j] += visitor.both[i][j]; conflicts[i][j] += visitor.conflicts[i][j] } }
        }
        for (_, g) in itemGrams.sorted(by: { $0.0 < $1.0 }) {
            for i in 0..<n { for j in i..<n { gram[i][j] += g[i * n + j] } }
        }
        for i in 0..<n { for j in 0..<i { gram[i][j] = gram[j][i] } }
        let norms = (0..<n).map { gram[$0][$0].squareRoot() }
        let cosines = (0..<n).map { i in (0..<n).map { j in norms[i] > 0 && norms[j] > 0 ? gram[i][j] / (norms[i] * norms[j]) : 0 } }
        let signConflicts = (0..<n).map { i in (0..<n).map { j in
            let (a, b) = (min(i, j), max(i, j))
            return both[a][b] > 0 ? Double(conflicts[a][b]) / Double(both[a][b]) : 0
        } }

        var request = StatisticsRequest()
        request.globalKeepFraction = density
        let statistics = try ModelStatisticsPass(plan: plan, request: request, threads: threads).run()
        let thresholds = statistics.thresholdKeys ?? Array(repeating: 0, count: n)
        let second = try pass.runPass(ranges) { TrimVisitor(thresholds: thresholds, wide: statistics.thresholdKeysAreWide) }
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
            keptEnergy: (0..<n).map { gram[$0][$0] > 0 ? keptSquares[$0] / gram[$0][$0] : 0 },
            droppedByVote: (0..<n).map { kept[$0] > 0 ? Double(dropped[$0]) / Double(kept[$0]) : 0 })
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
                lines.append(pad("[\(i)]", 6, left: false) + row.map { String(format: format, $0) }.joined())
            }
            return lines
        }
        var lines = ["task vectors (\(elementCount) elements each):"] + names.map { "  " + $0 }
        lines.append("")
        lines.append("norm ‖τ‖₂: " + norms.enumerated().map { "[\($0.offset)] " + String(format: "%.6g", $0.element) }.joined(separator: "  "))
        lines.append("")
        lines += table("cosine similarity:", cosines, "%9.4f")
        lines.append("")
        lines += table("sign conflicts (fraction of entries non-zero in both with opposite signs):", signConflicts, "%9.4f")
        lines.append("")
        lines.append(String(format: "TIES at density %.2f (global trim, mass vote):", density))
        for i in inputs.indices {
            lines.append(String(format: "  [%d] keeps %.1f%% of ‖τ‖²; the vote then drops %.1f%% of its kept entries",
                                i, 100 * keptEnergy[i], 100 * droppedByVote[i]))
        }
        return lines.joined(separator: "\n")
    }
}

/// First pass: the Gram matrix (per item, in Double) and pairwise sign conflicts.
struct PairVisitor: ChunkVisitor {
    let inputs: Int
    var itemGrams: [(Int, [Double])] = []
    var both: [[Int]]
    var conflicts: [[Int]]

    init(inputs: Int) {
        self.inputs = inputs
        both = Array(repeating: Array(repeating: 0, count: inputs), count: inputs)
        conflicts = both
    }

    mutating func begin(item: Int) { itemGrams.append((item, Array(repeating: 0, count: inputs * inputs))) }

    mutating func visit<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>]) {
        for i in 0..<inputs {
            for j in i..<inputs {
                itemGrams[itemGrams.count - 1].1[i * inputs + j] += Double(T.dot(UnsafeBufferPointer(deltas[i]), UnsafeBufferPointer(deltas[j])))
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
