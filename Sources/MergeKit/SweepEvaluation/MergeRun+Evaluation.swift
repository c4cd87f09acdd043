import Foundation

/// A sweep whose points are scored before any is kept (`SweepEvaluation`):
///
/// 1. the evaluation is opened and checked with the plans (`SweepScorer`), before any work;
/// 2. one merge pass reads every input once and builds every point: the first points in memory
///    (`MemoryOutput`, as many as fit half the memory budget with an evaluation), the others
///    written into the sweep's temporary directory;
/// 3. each point is evaluated on every task, from memory or from its written files; points that
///    can no longer be kept are freed as soon as they are beaten;
/// 4. the `select` rule chooses a point; the points `keep` keeps are written (from memory) or left
///    (written), each with its scores in its model card, the others removed; the plots of score
///    against every swept parameter and the manifest (every point's parameters and scores, what
///    was chosen) are written, and the sweep is moved into place whole.
extension MergeRun {
    /// What an evaluated sweep found.
    public struct EvaluationOutcome: Sendable {
        /// Every point's scores, in grid order.
        public let scores: [PointScores]
        /// The point the rule chose.
        public let selected: Int
        /// Whether each point was written.
        public let kept: [Bool]
        /// How many points were built in memory (the rest were written and read back).
        public let inMemory: Int
        /// The plots written, inside the sweep's directory.
        public let plots: [String]
        /// The manifest's `evaluation` member.
        public let json: JSONValue
    }

    /// Runs an evaluated sweep (see the extension's description) into `sweepDirectory`;
    /// `evaluated(done, total)` hears about each point scored. The outcome's results are those
    /// of the points written; its summaries are every point's, each with its scores.
    public static func run(_ plans: [MergePlan], evaluation: SweepEvaluation, threads: Int?, points: [Point], sweepDirectory: String,
                           overwrite: Bool = false, budget: MemoryBudget? = (try? MemoryBudget.configured()) ?? nil,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil,
                           evaluated: (Int, Int) -> Void = { _, _ in }) throws(MergeKitError) -> (Outcome, EvaluationOutcome) {
        var problems = ProblemList()
        OutputGuard.check(output: sweepDirectory, isDirectory: true, overwrite: overwrite,
                          inputs: [plans[0].base.path] + plans[0].inputs.flatMap { [$0.path, $0.checkpoint.path] }
                              + evaluation.tasks.flatMap { [$0.head, $0.data] }, into: &problems)
        if evaluation.png && PlotFile.renderer() == nil {
            problems.add(PlotFile.rendererMissing(for: FileSystem.join(sweepDirectory, SweepPlots.fileName("NAME", extension: "png"))))
        }
        try problems.throwIfAny()
        let scorer = try SweepScorer(evaluation, plans: plans, threads: threads, budget: budget)
        let inMemory = scorer.inMemory(plans, budget: budget)
        let sweep = try SweepOutput(path: sweepDirectory, overwrite: overwrite)
        let start = Date()
        do throws(MergeKitError) {
            var (memory, written) = try build(plans, inMemory: inMemory, threads: threads, sweep: sweep, progress: progress)
            // Score every point, freeing those that can no longer be kept.
            let evaluationStart = Date()
            var scores: [PointScores] = []
            for i in plans.indices {
                let checkpoint = if let built = memory[i] { try built.checkpoint() } else {
                    try Checkpoint(path: sweep.stagedPath(of: plans[i].output.path))
                }
                scores.append(try scorer.score(checkpoint, threads: threads))
                evaluated(i + 1, plans.count)
                let leader = evaluation.selected(scores)
                for j in 0...i where !evaluation.keeps(j, selected: leader) { memory[j] = nil }
            }
            let evaluationSeconds = Date().timeIntervalSince(evaluationStart)
            let selected = evaluation.selected(scores)
            let kept = plans.indices.map { evaluation.keeps($0, selected: selected) }
            // Keep or remove each point; a kept point's card gets its scores.
            var results: [MergeResult?] = Array(repeating: nil, count: plans.count)
            for i in plans.indices {
                var plan = plans[i]
                let card = plan.generatedFiles["README.md"].map {
                    $0 + Array(ModelCard.evaluationSection(evaluation, scores: scores[i], selected: i == selected).utf8)
                }
                plan.generatedFiles["README.md"] = card
                switch (kept[i], memory[i], written[i]) {
                case (true, let built?, _):
                    results[i] = try write(built, as: plan, in: sweep, start: start)
                case (true, nil, let result?):
                    if let card { try sweep.write(card, named: relative(FileSystem.join(plan.output.path, "README.md"), in: sweepDirectory)) }
                    results[i] = result
                case (false, nil, _?):
                    try sweep.discard(plan.output.path)
                default:
                    break
                }
                memory[i] = nil
            }
            written = []
            let plots = try SweepPlots.write(evaluation, scores: scores, points: points, selected: selected,
                                             method: plans[0].method.info.name, into: sweep)
            let about = evaluationJSON(scorer, scores: scores, selected: selected, kept: kept, inMemory: inMemory,
                                       plots: plots, points: points, plans: plans, seconds: evaluationSeconds)
            let digests = try digests(of: results.compactMap { $0 }, in: sweep)
            var summaries: [JSONValue] = []
            for (i, plan) in plans.enumerated() {
                let point = points.indices.contains(i) ? points[i] : []
                let described = results[i].map { summary(plan, $0, point: point, digests: digests) } ?? unwrittenSummary(plan, point: point)
                summaries.append(described.adding("written", .bool(kept[i])).adding("selected", .bool(i == selected))
                    .adding("scores", scoresJSON(scores[i], tasks: evaluation.tasks)))
            }
            let manifest = JSONValue.object([
                JSONMember("method", .string(plans[0].method.info.name)),
                JSONMember("base", .string(plans[0].base.path)),
                JSONMember("evaluation", about),
                JSONMember("points", .array(summaries)),
            ])
            try sweep.write(Array((manifest.serialized(indent: 2) + "\n").utf8), named: "manifest.json")
            try sweep.commit()
            let outcome = Outcome(results: results.compactMap { $0 }, summaries: summaries,
                                  notes: sweep.notes + results.compactMap { $0 }.flatMap(\.notes))
            return (outcome, EvaluationOutcome(scores: scores, selected: selected, kept: kept, inMemory: inMemory,
                                               plots: plots.map { FileSystem.join(sweepDirectory, $0) }, json: about))
        } catch {
            sweep.abort()
            throw error
        }
    }

    /// The merge pass: the first `inMemory` points built in memory, the others written.
    private static func build(_ plans: [MergePlan], inMemory: Int, threads: Int?, sweep: SweepOutput,
                              progress: (@Sendable (MergeProgress) -> Void)?) throws(MergeKitError) -> ([MemoryOutput?], [MergeResult?]) {
        let outputs = try MergeExecutor.run(plans, inMemory: Set(0..<inMemory), threads: threads, sweep: sweep, progress: progress)
        return (outputs.map(\.memory), outputs.map(\.written))
    }

    /// Writes a point built in memory into the sweep as `plan` says (its card with its scores).
    private static func write(_ memory: MemoryOutput, as plan: MergePlan, in sweep: SweepOutput, start: Date) throws(MergeKitError) -> MergeResult {
        let writer = try CheckpointWriter(output: plan.output, shards: plan.shards, in: sweep.staged)
        let block = 64 << 20
        for (i, shard) in plan.shards.enumerated() {
            let file = memory.file(i)
            var offset = 0
            while offset < shard.layout.dataSize {
                let end = min(shard.layout.dataSize, offset + block)
                try writer.write(UnsafeRawBufferPointer(rebasing: file[(shard.layout.dataStart + offset)..<(shard.layout.dataStart + end)]),
                                 dataOffset: offset, shard: i)
                offset = end
            }
        }
        return try MergeExecutor.finish([MergeExecutor.Target(plan: plan, sink: writer)], start: start)[0]
    }

    /// `path` relative to `directory` (which it is inside).
    private static func relative(_ path: String, in directory: String) -> String {
        String(path.dropFirst(FileSystem.trimmingTrailingSlashes(directory).count + 1))
    }

    /// A point that was not written: what it would have been.
    static func unwrittenSummary(_ plan: MergePlan, point: Point) -> JSONValue {
        var members = [
            JSONMember("output", .string(plan.output.path)),
            JSONMember("method", .string(plan.method.info.name)),
            JSONMember("parameters", .object(plan.method.parameters)),
            JSONMember("base", .string(plan.base.path)),
            JSONMember("files", .array([])),
        ]
        if !point.isEmpty { members.insert(JSONMember("sweep", pointJSON(point)), at: 1) }
        return .object(members)
    }

    /// One point's scores: per task and the averages.
    public static func scoresJSON(_ scores: PointScores, tasks: [SweepEvaluation.Task]) -> JSONValue {
        .object([
            JSONMember("tasks", .array(zip(tasks, scores.results).map { task, result in
                .object([
                    JSONMember("name", .string(task.name)),
                    JSONMember("accuracy", .double(result.accuracy)),
                    JSONMember("correct", .int(result.correct)),
                    JSONMember("images", .int(result.images)),
                    JSONMember("mean_loss", .double(result.meanLoss)),
                ])
            })),
            JSONMember("average_accuracy", .double(scores.averageAccuracy)),
            JSONMember("worst_accuracy", .double(scores.worstAccuracy)),
            JSONMember("average_loss", .double(scores.averageLoss)),
        ])
    }

    /// The manifest's `evaluation` member: the settings, what was chosen and kept.
    static func evaluationJSON(_ scorer: SweepScorer, scores: [PointScores], selected: Int, kept: [Bool],
                               inMemory: Int, plots: [String], points: [Point], plans: [MergePlan], seconds: Double) -> JSONValue {
        .object(scorer.settingsJSON + [
            JSONMember("selected", .object([
                JSONMember("index", .int(selected)),
                JSONMember("output", .string(plans[selected].output.path)),
                JSONMember("sweep", pointJSON(points.indices.contains(selected) ? points[selected] : [])),
                JSONMember("scores", scoresJSON(scores[selected], tasks: scorer.evaluation.tasks)),
            ])),
            JSONMember("written", .array(kept.indices.filter { kept[$0] }.map { .string(plans[$0].output.path) })),
            JSONMember("points_in_memory", .int(inMemory)),
            JSONMember("plots", .array(plots.map { .string($0) })),
            JSONMember("seconds", .double(seconds)),
        ])
    }
}
