import Foundation

/// One partition of a partitioned merge (`Partition`, `OutputParts`): the plans are the whole
/// merge's, as every partition makes them; this runs the partition's share of them into its part
/// and writes the part's manifest.
///
/// The executor is given the same plans with two changes (`OutputSpec.part`): each plan's output
/// is its place in the part's directory, and only the partition's shards are produced — so only
/// the inputs' tensors those shards hold are read (every input's header is read when planning,
/// as the plan needs every tensor's shape). Partition 0 also writes the small files; a sweep's
/// points this partition has no file of are not run at all.
extension MergeRun {
    /// What a partition wrote.
    public struct PartOutcome: Sendable {
        public let partition: Partition
        /// The output the parts make, as given.
        public let output: String
        public let partsDirectory: String
        /// The part's manifest.
        public let manifest: String
        public let fingerprint: String
        /// The part's files, by their paths inside the output.
        public let files: [OutputParts.File]
        /// Each plan run's result (paths inside the part's directory).
        public let results: [MergeResult]
        public let notes: [OutputNote]
    }

    /// Runs partition `partition` of `plans` (one plan, or a sweep's with `points` and
    /// `sweepDirectory`). `checksums`: a sweep's manifest gets every file's SHA-256 at assembly
    /// (as `run(…, checksums:)` writes it; also with `summarize` there). `checkFinite`: the
    /// inputs of this partition's tensors are checked for NaN and ±Inf before any merging
    /// (`MergeExecutor.checkInputsFinite`). `statistics`: the files of the last statistics round
    /// of every partition, for plans that need whole-model statistics (`PartitionStatistics`).
    public static func runPartition(_ plans: [MergePlan], partition: Partition, threads: Int?, points: [Point] = [],
                                    sweepDirectory: String? = nil, overwrite: Bool = false, checksums: Bool = false,
                                    checkFinite: Bool = false, statistics files: [String] = [],
                                    progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> PartOutcome {
        try Partition.checkSupported(plans)
        let fingerprint = PlanFingerprint.compute(plans, points: points)
        let statistics = try PartitionStatistics.resolve(plans, fingerprint: fingerprint, files: files)
        let output = FileSystem.trimmingTrailingSlashes(sweepDirectory ?? plans[0].output.path)
        var problems = ProblemList()
        let read = MergePlan.readPaths(base: plans[0].base, inputs: plans[0].inputs, output: plans[0].output)
        if sweepDirectory != nil {
            // The sweep's directory is one output, checked before any work (as `run` does).
            OutputGuard.check(output: output, isDirectory: true, overwrite: overwrite, inputs: read, into: &problems)
        }
        OutputGuard.checkApart(output: OutputParts.directory(for: output), from: read, into: &problems)
        try problems.throwIfAny()

        // The output's files, and which are this partition's.
        let prefixes = plans.map { sweepDirectory == nil ? "" : FileSystem.lastComponent(of: $0.output.path) + "/" }
        var units: [(plan: Int, shard: Int)] = []
        for (p, plan) in plans.enumerated() { units += plan.shards.indices.map { (p, $0) } }
        let owners = Partition.owners(ofUnits: units.map { plans[$0.plan].shards[$0.shard].layout.fileSize }, count: partition.count)
        var mine = plans.map { _ in Set<Int>() }
        for (unit, owner) in zip(units, owners) where owner == partition.index { mine[unit.plan].insert(unit.shard) }
        let writesSmallFiles = partition.index == 0
        var outputFiles: [String] = []
        var partFiles: [String] = []
        for (p, plan) in plans.enumerated() {
            let small = (plan.shards.count > 1 ? [Checkpoint.indexFileName] : []) + plan.companions.filter { plan.generatedFiles[$0] == nil }
                + plan.generatedFiles.keys.sorted()
            for (s, shard) in plan.shards.enumerated() {
                outputFiles.append(prefixes[p] + shard.fileName)
                if mine[p].contains(s) { partFiles.append(prefixes[p] + shard.fileName) }
            }
            outputFiles += small.map { prefixes[p] + $0 }
            if writesSmallFiles { partFiles += small.map { prefixes[p] + $0 } }
        }

        let parts = try OutputParts.prepare(output: output)
        try OutputParts.removeManifest(partition, in: parts)
        let partDirectory = FileSystem.join(parts, OutputParts.partName(partition))
        // The plans with this partition's share, written into the part's directory.
        var running: [MergePlan] = []
        var runningStatistics: [ModelStatistics] = []
        for (p, plan) in plans.enumerated() where !mine[p].isEmpty || writesSmallFiles {
            if let statistics { runningStatistics.append(statistics[p]) }
            var relocated = plan
            relocated.output.path = sweepDirectory == nil ? partDirectory : FileSystem.join(partDirectory, prefixes[p].dropLast().description)
            relocated.output.overwrite = true
            relocated.output.part = OutputPart(shards: mine[p], writesSmallFiles: writesSmallFiles)
            if !writesSmallFiles {
                relocated.companions = []
                relocated.generatedFiles = [:]
            }
            running.append(relocated)
        }
        if checkFinite, var scope = running.first {
            // Every point reads the same tensors: those of the shards any of them writes here.
            scope.output.part = OutputPart(shards: running.reduce(into: Set<Int>()) { $0.formUnion($1.output.part!.shards) },
                                           writesSmallFiles: false)
            try MergeExecutor.checkInputsFinite(scope, threads: threads)
        }
        var results: [MergeResult] = []
        var notes: [OutputNote] = []
        if !running.isEmpty {
            if sweepDirectory != nil {
                let sweep = try SweepOutput(path: partDirectory, overwrite: true)
                do throws(MergeKitError) {
                    results = try MergeExecutor.run(running, threads: threads, sweep: sweep, statistics: statistics.map { _ in runningStatistics },
                                                    progress: progress)
                    try sweep.commit()
                } catch {
                    sweep.abort()
                    throw error
                }
                notes = sweep.notes
            } else {
                results = try MergeExecutor.run(running, threads: threads, statistics: statistics.map { _ in runningStatistics }, progress: progress)
            }
        } else if FileSystem.kind(of: partDirectory, followingLinks: false) == .directory {
            // An earlier attempt's part of this partition: it has no file now.
            let left = OutputEntries.removeRecognised(in: partDirectory)
            if !left.isEmpty || rmdir(partDirectory) != 0 {
                notes.append(.leftEntries(partDirectory, left, context: "an earlier part of partition \(partition)"))
            }
        }
        notes += results.flatMap(\.notes)

        var manifest = OutputParts.Manifest(partition: partition, fingerprint: fingerprint, output: output, outputFiles: outputFiles,
                                            files: try OutputParts.describe(partFiles, in: partDirectory))
        if sweepDirectory != nil && writesSmallFiles {
            // The sweep's manifest.json, as `run` writes it, but for the SHA-256 (added at assembly).
            var summaries: [JSONValue] = []
            for (i, (plan, result)) in zip(plans, results).enumerated() {
                let whole = MergeResult(outputPath: plan.output.path, files: plan.shards.map { shard in
                    MergeResult.File(path: FileSystem.join(plan.output.path, shard.fileName), bytes: shard.layout.fileSize)
                }, tensorsMerged: result.tensorsMerged, tensorsCopied: result.tensorsCopied, inputBytes: result.inputBytes,
                   outputBytes: result.outputBytes, seconds: result.seconds, modelStatistics: nil, notes: [], warnings: result.warnings)
                let inside = Dictionary(uniqueKeysWithValues: plan.shards.map { (FileSystem.join(plan.output.path, $0.fileName), prefixes[i] + $0.fileName) })
                summaries.append(taggingFiles(summary(plan, whole, point: points.indices.contains(i) ? points[i] : [], digests: [:]), inside))
            }
            manifest.sweepManifest = .object([
                JSONMember("method", .string(plans[0].method.info.name)),
                JSONMember("base", .string(plans[0].base.path)),
                JSONMember("points", .array(summaries)),
            ])
            manifest.checksums = checksums
        }
        try OutputParts.write(manifest, in: parts)
        return PartOutcome(partition: partition, output: output, partsDirectory: parts,
                           manifest: FileSystem.join(parts, OutputParts.partName(partition) + ".json"), fingerprint: fingerprint,
                           files: manifest.files, results: results, notes: notes)
    }

    /// A summary whose file entries carry the file's path inside the output
    /// (`OutputParts.sweepFilePath`), for the SHA-256 assembly adds.
    private static func taggingFiles(_ summary: JSONValue, _ inside: [String: String]) -> JSONValue {
        guard case .object(var members) = summary, let f = members.firstIndex(where: { $0.key == "files" }),
              case .array(let files) = members[f].value else { return summary }
        members[f].value = .array(files.map { file in
            guard case .object(let entry) = file, let path = file["path"]?.stringValue, let at = inside[path] else { return file }
            return .object(entry + [JSONMember(OutputParts.sweepFilePath, .string(at))])
        })
        return .object(members)
    }
}
