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
/// transformers' "5GB"; KiB/MiB/GiB/TiB are powers of 1024.
struct ByteSize: ExpressibleByArgument {
    let bytes: Int

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [
            ("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824), ("TIB", 1_099_511_627_776),
            ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
            ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("B", 1),
        ]
        var multiplier = 1.0
        var number = Substring(text)
        for (suffix, factor) in units where text.uppercased().hasSuffix(suffix) {
            multiplier = factor
            number = text.dropLast(suffix.count)
            break
        }
        guard let value = Double(number.trimmingCharacters(in: .whitespaces)), value.isFinite, value > 0,
              value * multiplier < 9e18 else { return nil }
        bytes = Int((value * multiplier).rounded())
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// Inputs shared by every merge command: the base, fine-tuned models, task-vector files and PEFT
/// LoRA adapters.
struct InputOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The pre-trained base checkpoint θ₀ (file or directory).", valueName: "path"))
    var base: String

    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned checkpoint θᵢ; its task vector θᵢ − θ₀ is computed on the fly. Repeatable.", valueName: "path"))
    var models: [String] = []

    @Option(name: .customLong("task-vector"), help: ArgumentHelp("A task-vector file τᵢ (from `merge-cli task-vector`). Repeatable.", valueName: "path"))
    var taskVectors: [String] = []

    @Option(name: .customLong("lora"), help: ArgumentHelp("A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors); its task vector is (lora_alpha/r)·B·A on every module it targets and zero elsewhere. Repeatable.", valueName: "dir"))
    var loras: [String] = []

    @Option(name: .customLong("weight"), help: ArgumentHelp("Weight wᵢ of each input, in order: every --model first, then every --task-vector, then every --lora. Give one per input or none (all 1). May be negative.", valueName: "w"))
    var weights: [Double] = []

    func validate() throws {
        if models.isEmpty && taskVectors.isEmpty && loras.isEmpty {
            throw ValidationError("Give at least one --model, --task-vector or --lora to merge.")
        }
        let count = models.count + taskVectors.count + loras.count
        if !weights.isEmpty && weights.count != count {
            throw ValidationError("Got \(weights.count) --weight values for \(count) inputs; give one per input (models first, then task vectors, then LoRA adapters) or none.")
        }
        if let bad = weights.first(where: { !$0.isFinite }) {
            throw ValidationError("--weight \(bad) is not a finite number.")
        }
    }

    /// Opens the base and the inputs (headers only), with their weights.
    func open() throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
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

/// Output options shared by every command that writes a checkpoint.
struct OutputOptions: ParsableArguments {
    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Output: a path ending in .safetensors is written as one file; any other path as a Hugging Face directory (shards, index and the base's config/tokenizer files).", valueName: "path"))
    var output: String

    @Option(name: .long, help: ArgumentHelp("Output dtype of merged tensors (default: the base's dtype; F32 for task vectors).", valueName: "dtype"))
    var dtype: OutputDType?

    @Option(name: .customLong("max-shard-size"), help: ArgumentHelp("Largest shard of a directory output, e.g. 2G, 500MB, 4GiB (default 5GB, as transformers).", valueName: "size"))
    var maxShardSize: ByteSize?

    @Flag(name: .long, help: "Replace an existing output (only once the new one is complete).")
    var overwrite = false

    @Option(name: .long, help: ArgumentHelp("Worker threads (default: the number of cores). Results are identical for any value.", valueName: "n"))
    var threads: Int?

    @Flag(name: .long, help: "Print a JSON summary on stdout (inputs, method, parameters, output files with sizes and SHA-256, time, peak memory).")
    var json = false

    @Flag(name: .long, help: "Record every output file's SHA-256 in a sweep's manifest.json (one more read of each output; --json always includes them).")
    var checksums = false

    @Flag(name: .long, help: "Print the validated plan (what each tensor will get) and exit without writing.")
    var dryRun = false

    @Flag(name: .long, help: "No progress bar and no summary line on stderr.")
    var quiet = false

    @Option(name: .long, help: ArgumentHelp("Write the merged model, or only the merged task vector τ (for consumers that apply it themselves).", valueName: "model|task-vector"))
    var emit: EmitKind = .model

    @Flag(name: .customLong("check-finite"), help: "Before merging, fail if any input holds NaN or ±Inf, naming the first offending tensor (costs one read of the inputs). By default NaN and Inf are merged as the arithmetic says.")
    var checkFinite = false

    func validate() throws {
        if let threads, threads < 1 {
            throw ValidationError("--threads must be at least 1.")
        }
        if maxShardSize != nil && output.hasSuffix(".safetensors") {
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
    /// Runs one plan (a recipe or command-line merge) or several in one pass (a sweep, with a
    /// manifest written to `manifestDirectory`).
    static func run(_ plans: [MergePlan], options: OutputOptions, points: [[(name: String, value: String)]] = [],
                    manifestDirectory: String? = nil, command: String? = nil) throws(MergeKitError) {
        var plans = plans
        if let command {
            for i in plans.indices where plans[i].output.isDirectory && plans[i].generatedFiles["README.md"] == nil {
                plans[i].generatedFiles["README.md"] = Array(ModelCard.text(plan: plans[i], command: command).utf8)
            }
        }
        if options.dryRun {
            for (i, plan) in plans.enumerated() {
                if plans.count > 1 { print("# point \(i): " + (points.indices.contains(i) ? points[i].map { "\($0.name) = \($0.value)" }.joined(separator: ", ") : "")) }
                print(PlanDescription.text(plan))
            }
            return
        }
        if options.checkFinite {
            // Every checkpoint read by the merge, in command-line order: the first offending tensor is reported.
            var seen = Set<ObjectIdentifier>()
            for checkpoint in [plans[0].base] + plans[0].inputs.map(\.checkpoint) where seen.insert(ObjectIdentifier(checkpoint)).inserted {
                let report = try CheckpointVerifier(checkFinite: true).verify(checkpoint)
                if let error = report.nonFiniteError { throw error }
            }
        }
        let bar = ProgressBar(enabled: !options.quiet && isatty(2) != 0)
        let start = Date()
        let results = try MergeExecutor.run(plans, threads: options.threads) { bar.update($0) }
        bar.finish()
        if !options.quiet {
            for result in results {
                let merged = result.tensorsMerged, copied = result.tensorsCopied
                let gb = Double(result.outputBytes) / 1e9
                FileHandle.standardError.write(Data("wrote \(result.outputPath): \(merged) tensors merged, \(copied) copied, \(String(format: "%.3f", gb)) GB in \(String(format: "%.2f", result.seconds)) s\n".utf8))
            }
            // The plans share the base, so its skipped files are the same for every point.
            if let skipped = plans.first?.skippedFiles, !skipped.isEmpty {
                let list = skipped.map { "\($0.name) (\($0.reason))" }.joined(separator: "; ")
                FileHandle.standardError.write(Data("note: not copied from \(plans[0].base.path): \(list)\n".utf8))
            }
        }
        let seconds = Date().timeIntervalSince(start)
        var summaries: [JSONValue] = []
        if options.json || manifestDirectory != nil {
            let digests = options.json || options.checksums ? try sha256(of: results.flatMap { $0.files.map(\.path) }) : [:]
            for (i, (plan, result)) in zip(plans, results).enumerated() {
                summaries.append(summaryJSON(plan, result, point: points.indices.contains(i) ? points[i] : [], digests: digests))
            }
        }
        if let manifestDirectory {
            let manifest = JSONValue.object([
                JSONMember("method", .string(plans[0].method.info.name)),
                JSONMember("base", .string(plans[0].base.path)),
                JSONMember("points", .array(summaries)),
            ])
            try FileSystemWriter.writeText(manifest.serialized(indent: 2) + "\n", to: manifestDirectory + "/manifest.json")
        }
        if options.json {
            let top: JSONValue = summaries.count == 1 && manifestDirectory == nil
                ? summaries[0].adding("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)).adding("seconds", .double(seconds))
                : .object([JSONMember("outputs", .array(summaries)), JSONMember("seconds", .double(seconds)),
                           JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes))])
            print(top.serialized(indent: 2))
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
            members.insert(JSONMember("sweep", .object(point.map { JSONMember($0.name, Double($0.value).map { .double($0) } ?? .string($0.value)) })), at: 1)
        }
        return .object(members)
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

/// Writes small text files from the CLI (manifests).
enum FileSystemWriter {
    static func writeText(_ text: String, to path: String) throws(MergeKitError) {
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw MergeKitError(.writeFailed, file: path, "cannot be written (\(error.localizedDescription))")
        }
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

/// Turns library errors into the CLI's contract: message on stderr, exit status 1.
func reportingErrors(_ body: () throws(MergeKitError) -> Void) throws {
    do {
        try body()
    } catch {
        FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
        throw ExitCode(1)
    }
}
