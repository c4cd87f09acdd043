import Foundation
import MergeKit

/// Runs planned merges and reports them: a progress bar and a summary line on stderr for people
/// (when stderr is a terminal and not --quiet), a JSON summary on stdout for scripts (--json).
enum MergeRunner {
    /// Runs one plan (a recipe or command-line merge) or several in one pass (a sweep, written as
    /// one directory `sweepDirectory` with a manifest: `SweepOutput`).
    /// With `partition` (--partition), writes only that partition's part (`runPartition`).
    static func run(_ plans: [MergePlan], options: OutputOptions, points: [MergeRun.Point] = [],
                    sweepDirectory: String? = nil, command: String? = nil, partition: PartitionOptions? = nil) throws(MergeKitError) {
        let plans = command.map { MergeRun.withModelCards(plans, command: $0) } ?? plans
        if let partition, partition.statsRounds {
            let rounds = PartitionStatistics.rounds(plans)
            print(options.json ? JSONValue.object([JSONMember("rounds", .int(rounds))]).serialized(indent: 2) : "\(rounds)")
            return
        }
        if options.dryRun {
            describe(plans, points: points, options: options)
            return
        }
        if let partition, let value = partition.value, let path = partition.writeStats {
            try runStatisticsRound(plans, value, path: path, previous: partition.stats, options: options, points: points)
            return
        }
        if let partition, let value = partition.value {
            try runPartition(plans, value, assemble: partition.assemble, statistics: partition.stats, options: options, points: points,
                             sweepDirectory: sweepDirectory)
            return
        }
        if options.checkFinite {
            // The merge's own NaN/Inf policy, applied in one read of the inputs before any merging.
            try MergeExecutor.checkInputsFinite(plans[0], threads: options.threads)
        }
        let bar = ProgressBar(enabled: !options.quiet && isatty(2) != 0)
        let start = Date()
        let outcome = try MergeRun.run(plans, threads: options.threads, points: points, sweepDirectory: sweepDirectory,
                                       overwrite: options.overwrite, summarize: options.json, checksums: options.checksums) { bar.update($0) }
        bar.finish()
        printResults(outcome.results, plans: plans, options: options)
        printNotes(outcome.notes, quiet: options.quiet)
        let seconds = Date().timeIntervalSince(start)
        if options.json {
            let summaries = outcome.summaries
            let top: JSONValue = summaries.count == 1 && sweepDirectory == nil
                ? summaries[0].adding("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)).adding("seconds", .double(seconds))
                : .object([JSONMember("outputs", .array(summaries)), JSONMember("seconds", .double(seconds)),
                           JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes))])
            print(top.adding("notes", .array(outcome.notes.map(\.json))).serialized(indent: 2))
        }
    }

    /// --dry-run: the plan, or the sweep's points with their plans (with --json one document;
    /// `evaluation` is added to it).
    private static func describe(_ plans: [MergePlan], points: [MergeRun.Point], options: OutputOptions, evaluation: JSONValue? = nil) {
        if options.json {
            let described = plans.enumerated().map { i, plan in
                let point = points.indices.contains(i) ? points[i] : []
                return point.isEmpty ? PlanDescription.json(plan) : PlanDescription.json(plan).adding("sweep", MergeRun.pointJSON(point))
            }
            var document: JSONValue = described.count == 1 && evaluation == nil ? described[0] : .object([JSONMember("points", .array(described))])
            if let evaluation { document = document.adding("evaluation", evaluation) }
            print(document.serialized(indent: 2))
            return
        }
        for (i, plan) in plans.enumerated() {
            if plans.count > 1 { print("# point \(i): " + (points.indices.contains(i) ? points[i].map { "\($0.name) = \($0.value)" }.joined(separator: ", ") : "")) }
            print(PlanDescription.text(plan))
        }
    }

    /// Runs a sweep whose points are scored (`MergeRun.run(_:evaluation:…)`): the merge's progress
    /// bar, then the points scored; for people one line per point with its scores and the choice
    /// on stderr, for scripts (--json) every point's summary with its scores and the evaluation
    /// (tasks, rule, the point chosen, what was written, the plots) on stdout.
    static func run(_ plans: [MergePlan], evaluation: SweepEvaluation, options: OutputOptions, points: [MergeRun.Point]) throws(MergeKitError) {
        if options.dryRun {
            // The evaluation is checked too (its heads and data against the points' encoder).
            let budget = (try? MemoryBudget.configured()) ?? nil
            let scorer = try SweepScorer(evaluation, plans: plans, threads: options.threads, budget: budget)
            let inMemory = scorer.inMemory(plans, budget: budget)
            let about = JSONValue.object(scorer.settingsJSON + [JSONMember("points_in_memory", .int(inMemory))])
            describe(plans, points: points, options: options, evaluation: about)
            if !options.json {
                print("# evaluation: \(evaluation.tasks.map(\.name).joined(separator: ", ")); select \(evaluation.select) "
                      + "(\(evaluation.select.meaning)), keep \(evaluation.keep.rawValue); \(inMemory) of \(plans.count) points built in memory, "
                      + "batches of \(scorer.batchSize) images")
            }
            return
        }
        if options.checkFinite { try MergeExecutor.checkInputsFinite(plans[0], threads: options.threads) }
        let bar = ProgressBar(enabled: !options.quiet && isatty(2) != 0)
        let line = ProgressLine(enabled: !options.quiet && isatty(2) != 0)
        let start = Date()
        let (outcome, scored) = try MergeRun.run(plans, evaluation: evaluation, threads: options.threads, points: points,
                                                 sweepDirectory: options.output, overwrite: options.overwrite,
                                                 progress: { bar.update($0) }, evaluated: { done, total in
            if done == 1 { bar.finish() }
            line.update(done: done, total: total) { _ in "scored \(done)/\(total) points " }
        })
        line.finish()
        printResults(outcome.results, plans: plans, options: options)
        if !options.quiet {
            for (i, scores) in scored.scores.enumerated() {
                let point = points.indices.contains(i) ? points[i].map { "\($0.name) = \($0.value)" }.joined(separator: ", ") : ""
                let tasks = zip(evaluation.tasks, scores.results).map { String(format: "%@ %.2f %%", $0.name, $1.accuracy * 100) }
                let mark = i == scored.selected ? " ← selected" : ""
                let text = String(format: "point %d (%@): average %.2f %%, loss %.4f (%@)%@", i, point, scores.averageAccuracy * 100,
                                  scores.averageLoss, tasks.joined(separator: ", "), mark)
                FileHandle.standardError.write(Data((TerminalText.escaped(text) + "\n").utf8))
            }
            let written = scored.kept.filter { $0 }.count
            let text = "selected \(plans[scored.selected].output.path) by \(evaluation.select.meaning); wrote \(written) of \(plans.count) points"
                + (scored.plots.isEmpty ? "" : "; plots: " + scored.plots.joined(separator: ", "))
            FileHandle.standardError.write(Data((TerminalText.escaped(text) + "\n").utf8))
        }
        printNotes(outcome.notes, quiet: options.quiet)
        if options.json {
            print(JSONValue.object([
                JSONMember("outputs", .array(outcome.summaries)),
                JSONMember("evaluation", scored.json),
                JSONMember("seconds", .double(Date().timeIntervalSince(start))),
                JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)),
                JSONMember("notes", .array(outcome.notes.map(\.json))),
            ]).serialized(indent: 2))
        }
    }

    /// Runs a recipe file of several stages (`StagedPlan`): its intermediates, then its output.
    /// People get a line per stage written and the output's; `--json` gets the output's summary
    /// with `"stages"`, each intermediate's summary with its `"stage"` (name, line, location,
    /// whether kept). `--dry-run` describes every stage (`PlanDescription.text(_:)`/`json(_:)`).
    static func run(_ staged: StagedPlan, options: OutputOptions) throws(MergeKitError) {
        if options.dryRun {
            print(options.json ? PlanDescription.json(staged).serialized(indent: 2) : PlanDescription.text(staged))
            return
        }
        let bar = ProgressBar(enabled: !options.quiet && isatty(2) != 0)
        let start = Date()
        let outcome = try MergeRun.run(staged, threads: options.threads, summarize: options.json, checksums: options.checksums,
                                       checkFinite: options.checkFinite) { bar.update($0) }
        bar.finish()
        for stage in outcome.stages {
            for warning in stage.result.warnings {
                FileHandle.standardError.write(Data("warning: \(TerminalText.escaped(warning))\n".utf8))
            }
            guard !options.quiet else { continue }
            let kept = stage.kept ? "kept" : "removed at the end"
            FileHandle.standardError.write(Data("made \(TerminalText.escaped(stage.stage.stage.label)) in \(TerminalText.escaped(stage.location)) (\(kept)): \(resultLine(stage.result))\n".utf8))
        }
        printResults(outcome.output.results, plans: [staged.target.plans[0]], options: options)
        printNotes(outcome.output.notes + outcome.notes, quiet: options.quiet)
        if options.json {
            let stages: [JSONValue] = outcome.stages.map { stage in
                let about = JSONValue.object([
                    JSONMember("name", stage.stage.stage.name.map { .string($0) } ?? .null),
                    JSONMember("line", .int(stage.stage.stage.line)),
                    JSONMember("location", .string(stage.location)),
                    JSONMember("kept", .bool(stage.kept)),
                ])
                return (stage.summary ?? .object([])).adding("stage", about)
            }
            let summaries = outcome.output.summaries
            let seconds = Date().timeIntervalSince(start)
            var top: JSONValue = summaries.count == 1 && staged.target.plans.count == 1
                ? summaries[0] : .object([JSONMember("outputs", .array(summaries))])
            top = top.adding("stages", .array(stages)).adding("seconds", .double(seconds))
                .adding("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes))
            print(top.adding("notes", .array((outcome.output.notes + outcome.notes).map(\.json))).serialized(indent: 2))
        }
    }

    /// Writes one partition's part (and, with `assemble`, the output from every part): a line
    /// for people on stderr, and with --json one document on stdout:
    ///
    ///     {"partition": "0/2", "output": "…", "parts": "…", "manifest": "…", "fingerprint": "…",
    ///      "files": [{"path", "bytes", "sha256"}, …], "assembled": <assembly or null>,
    ///      "seconds": …, "peak_memory_bytes": …, "notes": […]}
    private static func runPartition(_ plans: [MergePlan], _ partition: Partition, assemble: Bool, statistics: [String],
                                     options: OutputOptions, points: [MergeRun.Point], sweepDirectory: String?) throws(MergeKitError) {
        let bar = ProgressBar(enabled: !options.quiet && isatty(2) != 0)
        let start = Date()
        let part = try MergeRun.runPartition(plans, partition: partition, threads: options.threads, points: points, sweepDirectory: sweepDirectory,
                                             overwrite: options.overwrite, checksums: options.json || options.checksums,
                                             checkFinite: options.checkFinite, statistics: statistics) { bar.update($0) }
        bar.finish()
        for warning in part.results.flatMap(\.warnings) {
            FileHandle.standardError.write(Data("warning: \(TerminalText.escaped(warning))\n".utf8))
        }
        if !options.quiet {
            let bytes = part.files.reduce(0) { $0 + $1.bytes }
            let line = "wrote part \(partition) of \(part.output) in \(part.partsDirectory): \(part.files.count) files, \(String(format: "%.3f", Double(bytes) / 1e9)) GB in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
            FileHandle.standardError.write(Data((TerminalText.escaped(line) + "\n").utf8))
        }
        var notes = part.notes
        var assembly: OutputParts.Assembly?
        if assemble {
            assembly = try OutputParts.assemble(output: part.output, overwrite: options.overwrite,
                                                expecting: (part.fingerprint, partition.count))
            notes += assembly!.notes
            if !options.quiet { printAssembled(assembly!) }
        }
        printNotes(notes, quiet: options.quiet)
        if options.json {
            let document = JSONValue.object([
                JSONMember("partition", .string(partition.description)),
                JSONMember("output", .string(part.output)),
                JSONMember("parts", .string(part.partsDirectory)),
                JSONMember("manifest", .string(part.manifest)),
                JSONMember("fingerprint", .string(part.fingerprint)),
                JSONMember("files", filesJSON(part.files)),
                JSONMember("assembled", assembly.map(assemblyJSON) ?? .null),
                JSONMember("seconds", .double(Date().timeIntervalSince(start))),
                JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)),
                JSONMember("notes", .array(notes.map(\.json))),
            ])
            print(document.serialized(indent: 2))
        }
    }

    /// Runs one partition's statistics round (`PartitionStatistics.runRound`): a line for people
    /// on stderr, and with --json on stdout:
    ///
    ///     {"partition": "0/2", "statistics": "…", "round": 1, "rounds": 3, "complete": false,
    ///      "fingerprint": "…", "bytes": …, "seconds": …, "peak_memory_bytes": …}
    ///
    /// `complete`: whether this round's files of every partition are the complete statistics
    /// (the merge's --stats); else they are the next round's.
    private static func runStatisticsRound(_ plans: [MergePlan], _ partition: Partition, path: String, previous: [String],
                                           options: OutputOptions, points: [MergeRun.Point]) throws(MergeKitError) {
        let start = Date()
        let outcome = try PartitionStatistics.runRound(plans, points: points, partition: partition, previous: previous, output: path,
                                                       threads: options.threads)
        let seconds = Date().timeIntervalSince(start)
        if !options.quiet {
            let next = outcome.isComplete ? "complete: merge every partition with --stats and this round's files"
                : "next: round \(outcome.round + 1) with --stats and this round's files"
            let line = "wrote statistics round \(outcome.round) of \(outcome.rounds) of partition \(partition) to \(path) (\(outcome.bytes) bytes in \(String(format: "%.2f", seconds)) s); \(next)"
            FileHandle.standardError.write(Data((TerminalText.escaped(line) + "\n").utf8))
        }
        if options.json {
            print(JSONValue.object([
                JSONMember("partition", .string(partition.description)),
                JSONMember("statistics", .string(path)),
                JSONMember("round", .int(outcome.round)),
                JSONMember("rounds", .int(outcome.rounds)),
                JSONMember("complete", .bool(outcome.isComplete)),
                JSONMember("fingerprint", .string(outcome.fingerprint)),
                JSONMember("bytes", .int(outcome.bytes)),
                JSONMember("seconds", .double(seconds)),
                JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)),
            ]).serialized(indent: 2))
        }
    }

    /// "assembled OUT from N parts: M files, X GB" on stderr.
    static func printAssembled(_ assembly: OutputParts.Assembly) {
        let bytes = assembly.files.reduce(0) { $0 + $1.bytes }
        let line = "assembled \(assembly.output) from \(assembly.partitions) parts: \(assembly.files.count) files, \(String(format: "%.3f", Double(bytes) / 1e9)) GB"
        FileHandle.standardError.write(Data((TerminalText.escaped(line) + "\n").utf8))
    }

    /// Files as JSON: path (inside the output), bytes, sha256.
    static func filesJSON(_ files: [OutputParts.File]) -> JSONValue {
        .array(files.map { file in
            .object([JSONMember("path", .string(file.path)), JSONMember("bytes", .int(file.bytes)), JSONMember("sha256", .string(file.sha256))])
        })
    }

    /// An assembly as JSON: output, partitions, fingerprint, files.
    static func assemblyJSON(_ assembly: OutputParts.Assembly) -> JSONValue {
        .object([JSONMember("output", .string(assembly.output)), JSONMember("partitions", .int(assembly.partitions)),
                 JSONMember("fingerprint", .string(assembly.fingerprint)), JSONMember("files", filesJSON(assembly.files))])
    }

    /// "N tensors merged, M copied, X GB in Y s".
    private static func resultLine(_ result: MergeResult) -> String {
        let gb = Double(result.outputBytes) / 1e9
        return "\(result.tensorsMerged) tensors merged, \(result.tensorsCopied) copied, \(String(format: "%.3f", gb)) GB in \(String(format: "%.2f", result.seconds)) s"
    }

    /// Each output's warnings, and (unless --quiet) its summary line and what was not copied from
    /// the base (the plans share the base, so its skipped files are the same for every point).
    private static func printResults(_ results: [MergeResult], plans: [MergePlan], options: OutputOptions) {
        // One summary line per output unless --quiet, also when stderr is not a terminal (a
        // line in a CI log); warnings always.
        for result in results {
            for warning in result.warnings {
                FileHandle.standardError.write(Data("warning: \(TerminalText.escaped(warning))\n".utf8))
            }
            guard !options.quiet else { continue }
            FileHandle.standardError.write(Data("wrote \(TerminalText.escaped(result.outputPath)): \(resultLine(result))\n".utf8))
        }
        if !options.quiet, let skipped = plans.first?.skippedFiles, !skipped.isEmpty {
            let list = skipped.map { "\($0.name) (\($0.reason))" }.joined(separator: "; ")
            FileHandle.standardError.write(Data("note: not copied from \(TerminalText.escaped(plans[0].base.path)): \(TerminalText.escaped(list))\n".utf8))
        }
    }
}
