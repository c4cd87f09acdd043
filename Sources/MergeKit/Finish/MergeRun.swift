/// Runs planned merges to their outputs and describes what was written: one plan (a command-line
/// merge or a recipe), or a sweep's plans in one pass, written as one directory (`SweepOutput`)
/// holding every point's output and `manifest.json`:
///
///     {"method": "ties", "base": "…", "points": [<summary of each point>, …]}
///
/// A summary (`summary`) names the output, the method and its parameters, the base, the inputs
/// with their kinds and weights, the files with their sizes (and SHA-256 when hashed), the
/// companions, the skipped files, the tensor counts, the bytes and the time, and the warnings; a
/// sweep point's also its parameters (`"sweep": {"lambda": 0.5}`). The sweep directory is
/// created only once the plans are made, moved into place complete, and removed on any failure.
public enum MergeRun {
    /// A sweep point's parameters, by name, as text (numbers are written as numbers).
    public typealias Point = [(name: String, value: String)]

    /// What a run wrote.
    public struct Outcome: Sendable {
        /// Each plan's result, in order.
        public let results: [MergeResult]
        /// Each plan's summary (when asked for, and always for a sweep), in order.
        public let summaries: [JSONValue]
        /// What happened around the outputs (the sweep directory's first), in order.
        public let notes: [OutputNote]
    }

    /// `plans` with a model card (README.md, `ModelCard`) for each directory output that has no
    /// README of its own yet; `command` is the command line that made them.
    public static func withModelCards(_ plans: [MergePlan], command: String) -> [MergePlan] {
        var plans = plans
        for i in plans.indices where plans[i].output.isDirectory && plans[i].generatedFiles["README.md"] == nil {
            plans[i].generatedFiles["README.md"] = Array(ModelCard.text(plan: plans[i], command: command).utf8)
        }
        return plans
    }

    /// Runs `plans` (several only for a sweep, whose points they are, with `points` their
    /// parameters) and, with `sweepDirectory`, writes them as one sweep directory with its
    /// manifest. Summaries are made when `summarize` (and for a sweep's manifest); output files are
    /// hashed into them when `summarize` or `checksums`.
    public static func run(_ plans: [MergePlan], threads: Int?, points: [Point] = [], sweepDirectory: String? = nil,
                           overwrite: Bool = false, summarize: Bool = false, checksums: Bool = false,
                           progress: (@Sendable (MergeProgress) -> Void)? = nil) throws(MergeKitError) -> Outcome {
        if let sweepDirectory {
            // The sweep's directory is one output, checked before any work (as `Recipe.plan` does).
            var problems = ProblemList()
            OutputGuard.check(output: sweepDirectory, isDirectory: true, overwrite: overwrite,
                              inputs: [plans[0].base.path] + plans[0].inputs.flatMap { [$0.path, $0.checkpoint.path] }, into: &problems)
            try problems.throwIfAny()
        }
        let sweep = try sweepDirectory.map { (path) throws(MergeKitError) in try SweepOutput(path: path, overwrite: overwrite) }
        let results: [MergeResult]
        var summaries: [JSONValue] = []
        do throws(MergeKitError) {
            results = try MergeExecutor.run(plans, threads: threads, sweep: sweep, progress: progress)
            if summarize || sweep != nil {
                // A sweep's files are still in its temporary directory.
                let digests = summarize || checksums ? try digests(of: results, in: sweep) : [:]
                for (i, (plan, result)) in zip(plans, results).enumerated() {
                    summaries.append(summary(plan, result, point: points.indices.contains(i) ? points[i] : [], digests: digests))
                }
            }
            if let sweep {
                let manifest = JSONValue.object([
                    JSONMember("method", .string(plans[0].method.info.name)),
                    JSONMember("base", .string(plans[0].base.path)),
                    JSONMember("points", .array(summaries)),
                ])
                try sweep.write(Array((manifest.serialized(indent: 2) + "\n").utf8), named: "manifest.json")
                try sweep.commit()
            }
        } catch {
            sweep?.abort()
            throw error
        }
        return Outcome(results: results, summaries: summaries, notes: (sweep?.notes ?? []) + results.flatMap(\.notes))
    }

    /// The SHA-256 of every file of `results`, by the path it has once in place (a sweep's files
    /// are read where they are until the sweep is committed).
    static func digests(of results: [MergeResult], in sweep: SweepOutput?) throws(MergeKitError) -> [String: String] {
        let files = results.flatMap { $0.files.map(\.path) }
        let located = files.map { sweep?.stagedPath(of: $0) ?? $0 }
        let hashed = try FileDigest.sha256(of: located)
        return Dictionary(zip(files, located).compactMap { file, at in hashed[at].map { (file, $0) } }) { a, _ in a }
    }

    /// One output's summary (see the type's description); `digests` are SHA-256 by file path.
    public static func summary(_ plan: MergePlan, _ result: MergeResult, point: Point, digests: [String: String]) -> JSONValue {
        var files: [JSONValue] = []
        for file in result.files {
            var members = [JSONMember("path", .string(file.path)), JSONMember("bytes", .int(file.bytes))]
            if let digest = digests[file.path] { members.append(JSONMember("sha256", .string(digest))) }
            files.append(.object(members))
        }
        var members = [
            JSONMember("output", .string(result.outputPath)),
            JSONMember("method", .string(plan.method.info.name)),
            JSONMember("parameters", .object(plan.method.parameters)),
            JSONMember("base", .string(plan.base.path)),
            JSONMember("inputs", .array(plan.inputs.map { input in
                .object([JSONMember("path", .string(input.path)), JSONMember("kind", .string(input.kind.rawValue)),
                         JSONMember("weight", .double(input.weight))])
            })),
            JSONMember("emit", .string(plan.output.emit.rawValue)),
            JSONMember("files", .array(files)),
            JSONMember("companions", .array(plan.companions.map { .string($0) })),
            JSONMember("skipped_files", .array(plan.skippedFiles.map { file in
                .object([JSONMember("name", .string(file.name)), JSONMember("reason", .string(file.reason))])
            })),
            JSONMember("tensors_merged", .int(result.tensorsMerged)),
            JSONMember("tensors_copied", .int(result.tensorsCopied)),
            JSONMember("input_bytes", .int(result.inputBytes)),
            JSONMember("output_bytes", .int(result.outputBytes)),
            JSONMember("seconds", .double(result.seconds)),
        ]
        if !point.isEmpty {
            members.insert(JSONMember("sweep", pointJSON(point)), at: 1)
        }
        members.append(JSONMember("warnings", .array(result.warnings.map { .string($0) })))
        return .object(members)
    }

    /// A sweep point's parameters (numbers as numbers).
    public static func pointJSON(_ point: Point) -> JSONValue {
        .object(point.map { JSONMember($0.name, Double($0.value).map { .double($0) } ?? .string($0.value)) })
    }
}
