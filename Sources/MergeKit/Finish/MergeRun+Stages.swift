#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension MergeRun {
    /// An intermediate a staged run made.
    public struct StageResult: Sendable {
        public let stage: StagedPlan.Stage
        /// Where it was written (in a work directory that is not kept, it is removed by now).
        public let location: String
        /// Whether it is still there (`WorkDirectory.Options.keep`).
        public let kept: Bool
        public let result: MergeResult
        /// Its summary (`summary`), when asked for.
        public let summary: JSONValue?
    }

    /// What a staged run wrote.
    public struct StagedOutcome: Sendable {
        /// The intermediates, in the order they were made.
        public let stages: [StageResult]
        /// The output's, as `run` returns it.
        public let output: Outcome
        /// What happened in the work directory (what could not be removed), after the output's.
        public let notes: [OutputNote]
    }

    /// Runs a planned recipe file (`RecipeFile.plan`): the stages the output needs, in order —
    /// each intermediate into the work directory, then the output as `run` writes it (a sweep's
    /// points included) — then removes what is not kept (`WorkDirectory`); on any failure too.
    ///
    /// Before any work: every stage's memory (the tensors merged whole) and the disk space of all
    /// the intermediates and the output together. Each stage is planned again on the intermediates
    /// as written (the checks that need their values run then) and must match the plan checked
    /// before. With `checkFinite`, each stage's inputs are scanned for NaN and ±∞ before it runs.
    public static func run(_ staged: StagedPlan, threads: Int?, summarize: Bool = false, checksums: Bool = false,
                           checkFinite: Bool = false, memoryBudget: Int? = MemoryBudget.configuredBytes,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> StagedOutcome {
        let settings = staged.settings
        let made = staged.stages.indices.filter { staged.stages[$0].role != .unused }
        for s in made {
            _ = try MergeExecutor.memoryPlan(staged.stages[s].plans, threads: ThreadCount.resolved(threads), budget: memoryBudget)
        }
        try checkSpace(staged)

        let work = staged.intermediates.isEmpty ? nil : try WorkDirectory(settings.work, output: settings.output, overwrite: settings.overwrite)
        var written: [Int: Checkpoint] = [:]
        var results: [StageResult] = []
        do throws(MergeKitError) {
            for s in made {
                let stage = staged.stages[s]
                let location = stage.role == .output ? settings.output
                    : WorkDirectory.location(settings.work, temporaryPath: work?.path, directoryName: stage.stage.directoryName,
                                             index: s, count: staged.stages.count)
                let run = try staged.file.planStage(s, graph: staged.graph, role: stage.role, location: location, settings: settings,
                                                    inputs: written, enclosed: false)
                try checkSamePlans(run.plans, as: stage.plans, stage: stage, file: staged.file.path)
                if checkFinite { try MergeExecutor.checkInputsFinite(run.plans[0], threads: threads) }
                if stage.role == .output {
                    let sweeps = !run.points.allSatisfy(\.isEmpty)
                    let points = sweeps ? run.points.map { $0.map { (name: $0.name, value: $0.value.description) } } : []
                    let outcome = try MergeRun.run(run.plans, threads: threads, points: points, sweepDirectory: sweeps ? settings.output : nil,
                                                   overwrite: settings.overwrite, summarize: summarize, checksums: checksums, progress: progress)
                    let notes = work?.close() ?? []
                    return StagedOutcome(stages: results, output: outcome, notes: notes)
                }
                let result = try MergeExecutor.run(run.plans, threads: threads, memoryBudget: memoryBudget, progress: progress)[0]
                work?.adopt(location)
                written[s] = try Checkpoint(path: location)
                var summary: JSONValue?
                if summarize {
                    let digests = try FileDigest.sha256(of: result.files.map(\.path))
                    summary = MergeRun.summary(run.plans[0], result, point: [], digests: digests)
                }
                results.append(StageResult(stage: stage, location: location, kept: settings.work.keep, result: result, summary: summary))
            }
        } catch {
            written = [:]
            _ = work?.close()
            throw error
        }
        preconditionFailure("a staged plan has an output stage")
    }

    /// Whether `plans`, made when a stage runs, are the plans checked before any work: the same
    /// files holding the same tensors (names, dtypes, shapes, offsets) and companions.
    private static func checkSamePlans(_ plans: [MergePlan], as checked: [MergePlan], stage: StagedPlan.Stage, file: String) throws(MergeKitError) {
        let same = plans.count == checked.count && zip(plans, checked).allSatisfy { now, before in
            now.shards.map(\.fileName) == before.shards.map(\.fileName) && now.companions == before.companions
                && zip(now.shards, before.shards).allSatisfy { $0.layout.tensors == $1.layout.tensors }
        }
        guard same else {
            throw MergeKitError(.fileUnreadable, file: file,
                "\(stage.stage.label): its inputs changed while the recipe ran, so it would not be the merge checked before any work",
                fix: "Do not modify the recipe's inputs while it runs")
        }
    }

    /// Fails before any work when the disks cannot hold every intermediate (kept until the end)
    /// and the output: per file system, what is written there.
    private static func checkSpace(_ staged: StagedPlan) throws(MergeKitError) {
        let output = FileSystem.parentDirectory(of: FileSystem.canonicalPath(forNew: FileSystem.trimmingTrailingSlashes(staged.output)))
        let work = staged.workDirectory.path.map { FileSystem.kind(of: $0) == .directory ? $0 : FileSystem.parentDirectory(of: FileSystem.canonicalPath(forNew: $0)) } ?? output
        func bytes(_ plans: [MergePlan]) -> Int { plans.reduce(0) { $0 + $1.shards.reduce(0) { $0 + $1.layout.fileSize } } }
        let intermediates = staged.intermediates.reduce(0) { $0 + bytes($1.plans) }
        let final = bytes(staged.target.plans)
        guard intermediates > 0 else { return }
        if FileSystem.identity(of: work)?.device == FileSystem.identity(of: output)?.device {
            try CheckpointWriter.checkFreeSpace(output, needed: intermediates + final, output: staged.output)
        } else {
            try CheckpointWriter.checkFreeSpace(work, needed: intermediates, output: staged.workDirectory.path ?? staged.output)
            try CheckpointWriter.checkFreeSpace(output, needed: final, output: staged.output)
        }
    }
}
