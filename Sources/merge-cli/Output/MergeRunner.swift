import Foundation
import MergeKit

/// Runs planned merges and reports them: a progress bar and a summary line on stderr for people
/// (when stderr is a terminal and not --quiet), a JSON summary on stdout for scripts (--json).
enum MergeRunner {
    /// Runs one plan (a recipe or command-line merge) or several in one pass (a sweep, written as
    /// one directory `sweepDirectory` with a manifest: `SweepOutput`).
    static func run(_ plans: [MergePlan], options: OutputOptions, points: [[(name: String, value: String)]] = [],
                    sweepDirectory: String? = nil, command: String? = nil) throws(MergeKitError) {
        var plans = plans
        if let command {
            for i in plans.indices where plans[i].output.isDirectory && plans[i].generatedFiles["README.md"] == nil {
                plans[i].generatedFiles["README.md"] = Array(ModelCard.text(plan: plans[i], command: command).utf8)
            }
        }
        if options.dryRun {
            if options.json {
                // One document: the plan, or the sweep's points with their plans.
                let described = plans.enumerated().map { i, plan in
                    let point = points.indices.contains(i) ? points[i] : []
                    return point.isEmpty ? PlanDescription.json(plan) : PlanDescription.json(plan).adding("sweep", sweepJSON(point))
                }
                print((described.count == 1 ? described[0] : .object([JSONMember("points", .array(described))])).serialized(indent: 2))
                return
            }
            for (i, plan) in plans.enumerated() {
                if plans.count > 1 { print("# point \(i): " + (points.indices.contains(i) ? points[i].map { "\($0.name) = \($0.value)" }.joined(separator: ", ") : "")) }
                print(PlanDescription.text(plan))
            }
            return
        }
        if options.checkFinite {
            // The merge's own NaN/Inf policy, applied in one read of the inputs before any merging.
            try MergeExecutor.checkInputsFinite(plans[0], threads: options.threads)
        }
        let bar = ProgressBar(enabled: !options.quiet && isatty(2) != 0)
        let start = Date()
        let sweep = try sweepDirectory.map { (path) throws(MergeKitError) in try SweepOutput(path: path, overwrite: options.overwrite) }
        let results: [MergeResult]
        var summaries: [JSONValue] = []
        do throws(MergeKitError) {
            results = try MergeExecutor.run(plans, threads: options.threads, sweep: sweep) { bar.update($0) }
            bar.finish()
            if options.json || sweep != nil {
                // A sweep's files are still in its temporary directory.
                let files = results.flatMap { $0.files.map(\.path) }
                let located = files.map { sweep?.stagedPath(of: $0) ?? $0 }
                let hashed = options.json || options.checksums ? try sha256(of: located) : [:]
                let digests = Dictionary(zip(files, located).compactMap { file, at in hashed[at].map { (file, $0) } }) { a, _ in a }
                for (i, (plan, result)) in zip(plans, results).enumerated() {
                    summaries.append(summaryJSON(plan, result, point: points.indices.contains(i) ? points[i] : [], digests: digests))
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
        let notes = (sweep?.notes ?? []) + results.flatMap(\.notes)
        // One summary line per output unless --quiet, also when stderr is not a terminal (a
        // line in a CI log); warnings always.
        for result in results {
            for warning in result.warnings {
                FileHandle.standardError.write(Data("warning: \(TerminalText.escaped(warning))\n".utf8))
            }
            guard !options.quiet else { continue }
            let merged = result.tensorsMerged, copied = result.tensorsCopied
            let gb = Double(result.outputBytes) / 1e9
            FileHandle.standardError.write(Data("wrote \(TerminalText.escaped(result.outputPath)): \(merged) tensors merged, \(copied) copied, \(String(format: "%.3f", gb)) GB in \(String(format: "%.2f", result.seconds)) s\n".utf8))
        }
        // The plans share the base, so its skipped files are the same for every point.
        if !options.quiet, let skipped = plans.first?.skippedFiles, !skipped.isEmpty {
            let list = skipped.map { "\($0.name) (\($0.reason))" }.joined(separator: "; ")
            FileHandle.standardError.write(Data("note: not copied from \(TerminalText.escaped(plans[0].base.path)): \(TerminalText.escaped(list))\n".utf8))
        }
        printNotes(notes, quiet: options.quiet)
        let seconds = Date().timeIntervalSince(start)
        if options.json {
            let top: JSONValue = summaries.count == 1 && sweep == nil
                ? summaries[0].adding("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)).adding("seconds", .double(seconds))
                : .object([JSONMember("outputs", .array(summaries)), JSONMember("seconds", .double(seconds)),
                           JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes))])
            print(top.adding("notes", .array(notes.map(\.json))).serialized(indent: 2))
        }
    }

    /// SHA-256 of every file, hashed on all cores (a sweep has many outputs).
    static func sha256(of paths: [String]) throws(MergeKitError) -> [String: String] {
        // Each iteration writes only its own slot.
        nonisolated(unsafe) let results = UnsafeMutableBufferPointer<Result<String, MergeKitError>?>.allocate(capacity: paths.count)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            results[i] = Result { () throws(MergeKitError) in try FileDigest.sha256(path: paths[i]) }
        }
        var digests: [String: String] = [:]
        for (path, result) in zip(paths, results) { digests[path] = try result!.get() }
        return digests
    }

    static func summaryJSON(_ plan: MergePlan, _ result: MergeResult, point: [(name: String, value: String)],
                            digests: [String: String]) -> JSONValue {
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
            members.insert(JSONMember("sweep", sweepJSON(point)), at: 1)
        }
        members.append(JSONMember("warnings", .array(result.warnings.map { .string($0) })))
        return .object(members)
    }

    /// A sweep point's parameters (numbers as numbers).
    static func sweepJSON(_ point: [(name: String, value: String)]) -> JSONValue {
        .object(point.map { JSONMember($0.name, Double($0.value).map { .double($0) } ?? .string($0.value)) })
    }
}
