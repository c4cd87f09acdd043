import ArgumentParser
import Foundation
import MergeKit

/// The float dtypes a merge can write.
enum OutputDType: String, ExpressibleByArgument, CaseIterable {
    case F32, F16, BF16, F64

    init?(argument: String) {
        self.init(rawValue: argument.uppercased())
    }

    var dtype: DType { DType(rawValue: rawValue)! }
}

/// A byte count with an optional suffix: K/M/G/T (or KB/MB/GB/TB) are powers of 1000 as in
/// transformers' "5GB"; KiB/MiB/GiB/TiB are powers of 1024. Rounded to whole bytes; a size that
/// rounds to 0 parses, and `OutputOptions.validate` rejects it with the flag named.
struct ByteSize: ExpressibleByArgument {
    let bytes: Int
    /// The text as given.
    let text: String

    init?(argument: String) {
        guard let bytes = ByteCount.parse(argument) else { return nil }
        self.bytes = bytes
        text = argument
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// What a merge command reads: the base and the inputs, opened (headers only), with their weights.
protocol MergeInputOptions: ParsableArguments {
    /// The number of inputs (models, task vectors and LoRA adapters).
    var count: Int { get }
    /// The --weight values (empty: every input weighs 1).
    var weights: [Double] { get }
    func open() throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput])
}

/// The checkpoints a merge reads: the base, fine-tuned models, task-vector files and PEFT LoRA
/// adapters. Methods that set their own per-task coefficients (TSV-M, Iso-C) take these alone;
/// the others take `InputOptions`, these with --weight.
struct InputPaths: MergeInputOptions {
    @Option(name: .long, help: ArgumentHelp("The pre-trained base checkpoint θ₀ (file or directory).", valueName: "path"))
    var base: String

    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned checkpoint θᵢ; its task vector θᵢ − θ₀ is computed on the fly. Repeatable.", valueName: "path"))
    var models: [String] = []

    @Option(name: .customLong("task-vector"), help: ArgumentHelp("A task-vector file τᵢ (from `merge-cli task-vector`). Repeatable.", valueName: "path"))
    var taskVectors: [String] = []

    @Option(name: .customLong("lora"), help: ArgumentHelp("A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors); its task vector is (lora_alpha/r)·B·A on every module it targets and zero elsewhere. Repeatable.", valueName: "dir"))
    var loras: [String] = []

    /// The number of inputs.
    var count: Int { models.count + taskVectors.count + loras.count }

    /// No --weight: every input weighs 1.
    var weights: [Double] { [] }

    func validate() throws {
        if models.isEmpty && taskVectors.isEmpty && loras.isEmpty {
            throw ValidationError("Give at least one --model, --task-vector or --lora to merge.")
        }
    }

    /// Opens the base and the inputs (headers only), all with weight 1.
    func open() throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        try open(weights: [])
    }

    /// Opens the base and the inputs (headers only) with `weights` (in input order; empty: all 1).
    func open(weights: [Double]) throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        let base = try Checkpoint(path: self.base)
        var inputs: [MergeInput] = []
        let paths = models.map { (MergeInput.Kind.model, $0) } + taskVectors.map { (MergeInput.Kind.taskVector, $0) }
        for (i, (kind, path)) in paths.enumerated() {
            let weight = weights.isEmpty ? 1.0 : weights[i]
            inputs.append(MergeInput(kind: kind, checkpoint: try Checkpoint(path: path), weight: weight))
        }
        for (i, path) in loras.enumerated() {
            let weight = weights.isEmpty ? 1.0 : weights[paths.count + i]
            inputs.append(MergeInput(lora: try LoRAAdapter(path: path), weight: weight))
        }
        return (base, inputs)
    }
}

/// Inputs shared by the merge commands whose methods take per-input weights: the checkpoints and
/// --weight.
struct InputOptions: MergeInputOptions {
    @OptionGroup var paths: InputPaths

    @Option(name: .customLong("weight"), parsing: .unconditionalSingleValue, help: ArgumentHelp("Weight wᵢ of each input, in order: every --model first, then every --task-vector, then every --lora. Give one per input or none (all 1). May be negative.", valueName: "w"))
    var weights: [Double] = []

    var base: String { paths.base }
    var models: [String] { paths.models }
    var taskVectors: [String] { paths.taskVectors }
    var loras: [String] { paths.loras }
    var count: Int { paths.count }

    func validate() throws {
        if !weights.isEmpty && weights.count != paths.count {
            throw ValidationError("Got \(weights.count) --weight values for \(paths.count) inputs; give one per input (models first, then task vectors, then LoRA adapters) or none.")
        }
        for weight in weights { try ArgumentCheck.value(weight, .weight, flag: "--weight") }
    }

    /// Opens the base and the inputs (headers only), with their weights.
    func open() throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        try paths.open(weights: weights)
    }
}

/// Output options shared by every command that writes a checkpoint.
struct OutputOptions: ParsableArguments {
    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Output: a path ending in .safetensors (any case) is written as one file; any other path as a Hugging Face directory (shards, index and the base's config/tokenizer files).", valueName: "path"))
    var output: String

    @Option(name: .long, help: ArgumentHelp("Output dtype of merged tensors (default: the base's dtype; F32 for task vectors).", valueName: "dtype"))
    var dtype: OutputDType?

    @Option(name: .customLong("max-shard-size"), parsing: .unconditional, help: ArgumentHelp("Largest shard of a directory output, e.g. 2G, 500MB, 4GiB (default 5GB, as transformers).", valueName: "size"))
    var maxShardSize: ByteSize?

    @Flag(name: .long, help: "Replace an existing output once the new one is complete (a directory only when it holds nothing but an output's files).")
    var overwrite = false

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Worker threads (default: the number of cores). Results are identical for any value.", valueName: "n"))
    var threads: Int?

    @Flag(name: .long, help: "Print a JSON summary on stdout (inputs, method, parameters, output files with sizes and SHA-256, time, peak memory).")
    var json = false

    @Flag(name: .long, help: "Record every output file's SHA-256 in a sweep's manifest.json (one more read of each output; --json always includes them).")
    var checksums = false

    @Flag(name: .long, help: "Print the validated plan (what each tensor will get; as JSON with --json) and exit without writing.")
    var dryRun = false

    @Flag(name: .long, help: "No progress bar and no summary line on stderr (the progress bar only shows on a terminal; the summary line always does without --quiet).")
    var quiet = false

    @Option(name: .long, help: ArgumentHelp("Write the merged model, or only the merged task vector τ (for consumers that apply it themselves).", valueName: "model|task-vector"))
    var emit: EmitKind = .model

    @Flag(name: .customLong("check-finite"), help: "Scan every input for NaN and ±Inf before merging (one more read of the inputs), so that the error comes before any work. Merges always fail on a NaN or ±Inf they read (unless the base and every input hold it identically) and on a result that overflows the output dtype.")
    var checkFinite = false

    func validate() throws {
        try ArgumentCheck.path(output, flag: "--output")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        if let maxShardSize, maxShardSize.bytes < 1 {
            throw ValidationError("--max-shard-size must be at least 1 byte, not \(maxShardSize.text)")
        }
        if maxShardSize != nil && OutputGuard.isFileOutput(output) {
            throw ValidationError("--max-shard-size needs a directory output; \(output) is a single .safetensors file.")
        }
    }

    func spec(emit: EmitKind? = nil) -> OutputSpec {
        OutputSpec(path: output, dtype: dtype?.dtype, maxShardSize: maxShardSize?.bytes, emit: emit ?? self.emit, overwrite: overwrite)
    }
}

extension EmitKind: ExpressibleByArgument {}

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

extension JSONValue {
    /// This object with `key` set to `value` (replacing an existing member).
    func adding(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case .object(var members) = self else { return self }
        members.removeAll { $0.key == key }
        members.append(JSONMember(key, value))
        return .object(members)
    }
}

/// A one-line progress display on stderr, "[=====     ]  40% <detail>", redrawn at most ten times
/// a second and always when done reaches total; `finish()` ends the line. Safe to update from any
/// thread.
final class ProgressLine: @unchecked Sendable {
    private let enabled: Bool
    private let lock = NSLock()
    private var last = Date.distantPast
    private var drawn = false
    /// When the line was created (for rates and ETAs).
    let start = Date()

    init(enabled: Bool) { self.enabled = enabled }

    /// `detail` (given the time now) is only built when the line is redrawn.
    func update(done: Int, total: Int, detail: (Date) -> String) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(last) >= 0.1 || done == total else { return }
        last = now
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let width = 28, filled = Int(fraction * Double(width))
        let line = String(format: "\r[%@%@] %3.0f%% ", String(repeating: "=", count: filled),
                          String(repeating: " ", count: width - filled), fraction * 100) + detail(now)
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    func finish() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

/// A merge's progress line: tensors, bytes, rate and ETA.
final class ProgressBar: Sendable {
    private let line: ProgressLine

    init(enabled: Bool) { line = ProgressLine(enabled: enabled) }

    func update(_ progress: MergeProgress) {
        line.update(done: progress.completedBytes, total: progress.totalBytes) { now in
            let elapsed = now.timeIntervalSince(line.start)
            let rate = elapsed > 0 ? Double(progress.completedBytes) / elapsed : 0
            let eta = rate > 0 ? Double(progress.totalBytes - progress.completedBytes) / rate : 0
            return String(format: "%d/%d tensors %.2f/%.2f GB %.2f GB/s ETA %.0fs ",
                          progress.completedTensors, progress.totalTensors, Double(progress.completedBytes) / 1e9,
                          Double(progress.totalBytes) / 1e9, rate / 1e9, eta)
        }
    }

    func finish() { line.finish() }
}

/// Prints what a run did around its outputs (stale temporaries removed, entries left aside) on
/// stderr, one "note: …" or "warning: …" line each; warnings even with --quiet.
func printNotes(_ notes: [OutputNote], quiet: Bool) {
    for note in notes where !quiet || note.isWarning {
        FileHandle.standardError.write(Data((TerminalText.escaped(note.description) + "\n").utf8))
    }
}

/// Turns library errors into the CLI's contract: message on stderr (and a JSON error document on
/// stdout with --json, `ErrorOutput`), exit status 1.
func reportingErrors(_ body: () throws(MergeKitError) -> Void) throws {
    do {
        try body()
    } catch {
        throw ErrorOutput.report(error)
    }
}
