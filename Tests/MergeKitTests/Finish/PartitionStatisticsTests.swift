import Foundation
import Testing
@testable import MergeKit

/// Partitioned merges of methods with whole-model statistics (`PartitionStatistics`): every
/// partition's statistics rounds, then its merge with the last round's files, assembled, against
/// the same merge on one machine, byte for byte; the statistics files' checks.
@Suite("Partitioned statistics")
struct PartitionStatisticsTests {
    /// Paper TIES (global trim, mass vote), global trim with the weighted vote, DARE-TIES's mass
    /// vote, MetaGPT, and a sweep of global TIES over density and λ.
    static let cases: [MethodCase] = [
        MethodCase.all.first { $0.label == "ties (global trim)" }!,
        MethodCase(method: "ties", label: "ties (global trim, weighted vote)",
                   form: .command(["density": .number(0.3), "vote": .string("weighted"), "merge": .string("sum")])),
        MethodCase(method: "dare", label: "dare-ties (mass vote)",
                   form: .command(["combine": .string("ties"), "vote": .string("mass"), "merge": .string("mean"), "rescale": .string("l1"),
                                   "drop_rate": .number(0.3)])),
        MethodCase.all.first { $0.label == "metagpt" }!,
        MethodCase(method: "ties", label: "sweep (global ties, density and λ grids)",
                   form: .sweep(method: "ties", grids: [Grid(name: "density", values: [0.3, 0.6]), Grid(name: "lambda", values: [0.5, 1])])),
    ]
    typealias Grid = MethodCase.Grid

    /// A case's plans (a sweep: global trim and the mass vote as fixed parameters).
    static func plans(_ line: MethodCase, output: String, dtype: DType? = nil) throws(MergeKitError) -> (plans: [MergePlan], points: [MergeRun.Point], sweep: String?) {
        if case .sweep(let name, let grids) = line.form {
            let recipe = LibraryMerge.sweep(name, PartitionTests.inputs, grids: grids.map { ($0.name, $0.values) },
                                            fixed: ["trim_scope": .string("global"), "vote": .string("mass")])
            let run = try recipe.plan(output: output, maxShardSize: PartitionTests.shardSize, dtype: dtype)
            let points = run.points.map { $0.map { (name: $0.name, value: $0.value.description) } }
            return (MergeRun.withModelCards(run.plans, command: PartitionTests.command), points, output)
        }
        var (plans, points, sweep) = try PartitionTests.plans(line, output: output)
        if let dtype {
            var spec = plans[0].output
            spec.dtype = dtype
            plans = MergeRun.withModelCards([try LibraryMerge.plan(plans[0].method, PartitionTests.inputs, output: spec)], command: PartitionTests.command)
        }
        return (plans, points, sweep)
    }

    /// Every statistics round of every partition of `count` (files under `stats`), each round
    /// given the files of the round before; returns each round's files.
    @discardableResult
    static func rounds(_ line: MethodCase, output: String, count: Int, stats: String, dtype: DType? = nil) throws(MergeKitError) -> [[String]] {
        let (plans, points, _) = try plans(line, output: output, dtype: dtype)
        var files: [[String]] = []
        for round in 1...PartitionStatistics.rounds(plans) {
            var written: [String] = []
            for index in 0..<count {
                let path = "\(stats)/round-\(round)-part-\(index).json"
                let outcome = try PartitionStatistics.runRound(plans, points: points, partition: try Partition(index: index, count: count),
                                                               previous: files.last ?? [], output: path, threads: 2)
                #expect(outcome.round == round && outcome.isComplete == (round == PartitionStatistics.rounds(plans)))
                written.append(path)
            }
            files.append(written)
        }
        return files
    }

    /// The statistics rounds, then every partition's merge with the last round's files, assembled.
    static func partitioned(_ line: MethodCase, output: String, count: Int, stats: String, dtype: DType? = nil) throws(MergeKitError) {
        let files = try rounds(line, output: output, count: count, stats: stats, dtype: dtype)
        for index in 0..<count {
            let (plans, points, sweep) = try plans(line, output: output, dtype: dtype)
            try MergeRun.runPartition(plans, partition: try Partition(index: index, count: count), threads: 2, points: points,
                                      sweepDirectory: sweep, statistics: files.last!)
        }
        try OutputParts.assemble(output: output, overwrite: false)
    }

    static func whole(_ line: MethodCase, output: String, dtype: DType? = nil) throws(MergeKitError) {
        let (plans, points, sweep) = try plans(line, output: output, dtype: dtype)
        try MergeRun.run(plans, threads: 2, points: points, sweepDirectory: sweep)
    }

    @Test("Statistics rounds, merged and assembled in 1, 2, 3 and 7 partitions: one machine's bytes",
          arguments: cases, [1, 2, 3, 7])
    func identical(_ line: MethodCase, count: Int) throws {
        let dir = TestSupport.temporaryDirectory("partition-stats")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/stats", withIntermediateDirectories: true)
        // (The same output path: a sweep's manifest names it.)
        try Self.whole(line, output: dir + "/merged")
        try FileManager.default.moveItem(atPath: dir + "/merged", toPath: dir + "/reference")
        try Self.partitioned(line, output: dir + "/merged", count: count, stats: dir + "/stats")
        let reference = try PartitionTests.contents(dir + "/reference")
        #expect(reference.keys.filter { $0.hasSuffix(".safetensors") }.count >= 3)
        #expect(try PartitionTests.contents(dir + "/merged") == reference)
    }

    @Test("The rounds each method needs: thresholds 2 (4 with Double keys), the vote 1 more, norms 1")
    func roundCounts() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rounds = try Self.cases.map { PartitionStatistics.rounds(try Self.plans($0, output: dir + "/o").plans) }
        #expect(rounds == [3, 2, 1, 1, 3])
        #expect(PartitionStatistics.rounds(try Self.plans(Self.cases[0], output: dir + "/o", dtype: .F64).plans) == 5)
        #expect(PartitionStatistics.rounds(try PartitionTests.plans(PartitionTests.taskArithmetic, output: dir + "/o").plans) == 0)
    }

    @Test("Double keys (an F64 output): 4 selection rounds and the vote, one machine's bytes")
    func doubleKeys() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/stats", withIntermediateDirectories: true)
        try Self.whole(Self.cases[0], output: dir + "/reference", dtype: .F64)
        try Self.partitioned(Self.cases[0], output: dir + "/merged", count: 3, stats: dir + "/stats", dtype: .F64)
        #expect(try PartitionTests.contents(dir + "/merged") == PartitionTests.contents(dir + "/reference"))
    }

    @Test("The combined thresholds and norms are the one-machine pass's, exactly")
    func combinedEqualsOneMachine() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for line in [Self.cases[0], Self.cases[3]] {
            let files = try Self.rounds(line, output: dir + "/o", count: 3, stats: dir)
            let plan = try Self.plans(line, output: dir + "/o").plans[0]
            let combined = try PartitionStatistics.combine(files: files.last!)
            let mine = PartitionStatistics.modelStatistics(combined.state, plans: 1)[0]
            let one = try ModelStatisticsPass(plan: plan, request: plan.method.statistics, threads: 2).run()
            #expect(mine.thresholdKeys == one.thresholdKeys && mine.thresholdKeysAreWide == one.thresholdKeysAreWide)
            #expect(mine.squaredNorms?.map(\.bitPattern) == one.squaredNorms?.map(\.bitPattern))
            #expect(mine.elementCount == one.elementCount)
            for file in files.joined() { try FileManager.default.removeItem(atPath: file) }
        }
    }

    /// Two models whose task vectors cancel exactly at element 0 of every tensor (0.5 − 0.5), in
    /// three tensors written to separate shards: the first votes + everywhere else, the others −,
    /// so the model-wide majority is − while the first tensor's partition alone would count +.
    static func cancellingModels(_ dir: String) -> LibraryMerge.Inputs {
        let n = 40
        let spec = { (name: String) in TensorSpec(name: name, dtype: .F32, shape: [n]) }
        let names = ["a.weight", "b.weight", "c.weight"]
        TestSupport.writeCheckpoint(dir + "/base.safetensors", names.map { (spec($0), [Double](repeating: 0, count: n)) })
        for (model, sign) in [("x", 1.0), ("y", -1.0)] {
            TestSupport.writeCheckpoint(dir + "/\(model).safetensors", names.map { name in
                (spec(name), (0..<n).map { $0 == 0 ? 0.5 * sign : (name == names[0] ? 1 : -1) * (0.1 + Double($0) / 1000) })
            })
        }
        return LibraryMerge.Inputs(base: dir + "/base.safetensors", models: [dir + "/x.safetensors", dir + "/y.safetensors"])
    }

    @Test("The mass vote's majority decides exact ties: every partition merges with the model-wide count")
    func majorityDecidesTies() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inputs = Self.cancellingModels(dir)
        let makePlans = { (output: String) throws(MergeKitError) -> [MergePlan] in
            [try LibraryMerge.plan(try TIES(density: 0.9, merge: .mean), inputs, output: OutputSpec(path: output, maxShardSize: 200))]
        }
        try MergeRun.run(try makePlans(dir + "/reference"), threads: 2)
        let count = 3
        var previous: [String] = []
        for round in 1...PartitionStatistics.rounds(try makePlans(dir + "/merged")) {
            previous = try (0..<count).map { index throws(MergeKitError) in
                let path = "\(dir)/r\(round)-\(index).json"
                try PartitionStatistics.runRound(try makePlans(dir + "/merged"), partition: try Partition(index: index, count: count),
                                                 previous: previous, output: path, threads: 1)
                return path
            }
        }
        let combined = try PartitionStatistics.combine(files: previous)
        #expect(combined.state.votes?[0] ?? 0 < 0)
        for index in 0..<count {
            try MergeRun.runPartition(try makePlans(dir + "/merged"), partition: try Partition(index: index, count: count), threads: 1,
                                      statistics: previous)
        }
        try OutputParts.assemble(output: dir + "/merged", overwrite: false)
        let reference = try PartitionTests.contents(dir + "/reference")
        #expect(reference.keys.filter { $0.hasSuffix(".safetensors") }.count == 3)
        #expect(try PartitionTests.contents(dir + "/merged") == reference)
        // The ties took the negative majority: element 0 is −0.5 (the mean of the agreeing −0.5).
        let merged = TestSupport.values(try Checkpoint(path: dir + "/merged"))
        #expect(merged.values.allSatisfy { $0.values[0] == -0.5 })
    }

    // MARK: Statistics files that are foreign, stale, missing, duplicated or incomplete

    /// Paper TIES (3 rounds) in 3 partitions: the rounds' files under `dir`.
    static func paperRounds(_ dir: String) throws -> (plans: [MergePlan], files: [[String]]) {
        let files = try rounds(cases[0], output: dir + "/merged", count: 3, stats: dir)
        return (try plans(cases[0], output: dir + "/merged").plans, files)
    }

    static func mergeError(_ plans: [MergePlan], _ files: [String], index: Int = 0) throws -> MergeKitError {
        try #require(throws: MergeKitError.self) {
            try MergeRun.runPartition(plans, partition: try Partition(index: index, count: 3), threads: 1, statistics: files)
        }
    }

    @Test("Missing, duplicated, mixed-round, incomplete and corrupt files are errors naming the file and the fix; nothing is written")
    func badFiles() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (plans, files) = try Self.paperRounds(dir)
        let last = files[2]

        let missing = try Self.mergeError(plans, [last[0], last[2]])
        #expect(missing.code == .statisticsMissing && missing.file == dir, "\(missing)")
        #expect(missing.description.contains("partition 1/3") && missing.description.contains("round 3"), "\(missing)")

        let duplicate = try Self.mergeError(plans, last + [last[1]])
        #expect(duplicate.code == .statisticsMismatch && duplicate.file == last[1], "\(duplicate)")
        #expect(duplicate.description.contains("once"), "\(duplicate)")

        let mixed = try Self.mergeError(plans, [last[0], files[1][1], last[2]])
        #expect(mixed.code == .statisticsMismatch && mixed.file == files[1][1] && mixed.description.contains("round 2"), "\(mixed)")

        let incomplete = try Self.mergeError(plans, files[1])
        #expect(incomplete.code == .statisticsIncomplete && incomplete.file == files[1][0], "\(incomplete)")
        #expect(incomplete.description.contains("round 2 of 3") && incomplete.fix?.contains("Run round 3") == true, "\(incomplete)")

        // A round after the last one.
        let beyond = try #require(throws: MergeKitError.self) {
            try PartitionStatistics.runRound(plans, partition: try Partition(index: 0, count: 3), previous: last, output: dir + "/r4.json", threads: 1)
        }
        #expect(beyond.code == .statisticsMismatch && beyond.description.contains("complete"), "\(beyond)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/r4.json"))

        // A truncated file, and one changed by hand.
        let truncated = dir + "/truncated.json"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: last[1]))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        let corrupt = try Self.mergeError(plans, [last[0], truncated, last[2]])
        #expect(corrupt.code == .statisticsCorrupt && corrupt.file == truncated, "\(corrupt)")

        // No part was written.
        #expect(!FileManager.default.fileExists(atPath: dir + "/merged") && !FileManager.default.fileExists(atPath: OutputParts.directory(for: dir + "/merged")))
    }

    @Test("Statistics of another merge, or from a stale earlier round, are named; rerunning the rounds recovers")
    func foreignAndStale() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (plans, files) = try Self.paperRounds(dir)
        // Another density: another plan.
        let other = MethodCase(method: "ties", label: "other", form: .command(["density": .number(0.4)]))
        try FileManager.default.createDirectory(atPath: dir + "/other", withIntermediateDirectories: true)
        let foreign = try Self.rounds(other, output: dir + "/merged", count: 3, stats: dir + "/other")
        let error = try Self.mergeError(plans, [files[2][0], foreign[2][1], files[2][2]])
        #expect(error.code == .statisticsMismatch && error.file == foreign[2][1] && error.description.contains("another merge"), "\(error)")
        #expect(error.fix?.contains("same command") == true)

        // A round-3 file started from other round-2 statistics than the others' (its state edited).
        let stale = dir + "/stale.json"
        var text = try String(contentsOfFile: files[2][1], encoding: .utf8)
        let json = try JSONParser.parse(Array(text.utf8))
        let part = try #require(StatisticsPart(json))
        var changed = part
        changed.state.groups[0].selections![0].below += 1
        text = changed.json.serialized(indent: 1)
        try Data(text.utf8).write(to: URL(fileURLWithPath: stale))
        let staleError = try Self.mergeError(plans, [files[2][0], stale, files[2][2]])
        #expect(staleError.code == .statisticsMismatch && staleError.file == stale && staleError.description.contains("earlier attempt"), "\(staleError)")
        #expect(staleError.fix?.contains("Rerun round 3 of partition 1/3") == true, "\(staleError)")

        // The right files merge.
        for index in 0..<3 {
            try MergeRun.runPartition(plans, partition: try Partition(index: index, count: 3), threads: 1, statistics: files[2])
        }
        try OutputParts.assemble(output: dir + "/merged", overwrite: false)
    }

    @Test("Statistics from one division merge another; a method without statistics takes no files; a file not ours is never replaced")
    func divisionsAndArguments() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let line = Self.cases[3]
        let files = try Self.rounds(line, output: dir + "/merged", count: 2, stats: dir)
        try Self.whole(line, output: dir + "/reference")
        for index in 0..<3 {
            let (plans, _, _) = try Self.plans(line, output: dir + "/merged")
            try MergeRun.runPartition(plans, partition: try Partition(index: index, count: 3), threads: 1, statistics: files.last!)
        }
        try OutputParts.assemble(output: dir + "/merged", overwrite: false)
        #expect(try PartitionTests.contents(dir + "/merged") == PartitionTests.contents(dir + "/reference"))

        let (plain, _, _) = try PartitionTests.plans(PartitionTests.taskArithmetic, output: dir + "/ta")
        let round = try #require(throws: MergeKitError.self) {
            try PartitionStatistics.runRound(plain, partition: try Partition(index: 0, count: 2), previous: [], output: dir + "/ta.json", threads: 1)
        }
        #expect(round.code == .invalidArgument && round.description.contains("needs no whole-model statistics"), "\(round)")
        let merge = try #require(throws: MergeKitError.self) {
            try MergeRun.runPartition(plain, partition: try Partition(index: 0, count: 2), threads: 1, statistics: files.last!)
        }
        #expect(merge.code == .invalidArgument && merge.file == files.last![0], "\(merge)")

        let mine = dir + "/notes.txt"
        try Data("mine".utf8).write(to: URL(fileURLWithPath: mine))
        let (plans, _, _) = try Self.plans(line, output: dir + "/merged2")
        let refused = try #require(throws: MergeKitError.self) {
            try PartitionStatistics.runRound(plans, partition: try Partition(index: 0, count: 2), previous: [], output: mine, threads: 1)
        }
        #expect(refused.code == .outputExists && refused.file == mine, "\(refused)")
        #expect(try String(contentsOfFile: mine, encoding: .utf8) == "mine")
    }
}
