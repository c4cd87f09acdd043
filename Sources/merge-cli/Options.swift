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

/// Inputs shared by every merge command: the base, fine-tuned models and task-vector files.
struct InputOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The pre-trained base checkpoint θ₀ (file or directory).", valueName: "path"))
    var base: String

    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned checkpoint θᵢ; its task vector θᵢ − θ₀ is computed on the fly. Repeatable.", valueName: "path"))
    var models: [String] = []

    @Option(name: .customLong("task-vector"), help: ArgumentHelp("A task-vector file τᵢ (from `merge-cli task-vector`). Repeatable.", valueName: "path"))
    var taskVectors: [String] = []

    @Option(name: .customLong("weight"), help: ArgumentHelp("Weight wᵢ of each input, in order: every --model first, then every --task-vector. Give one per input or none (all 1). May be negative.", valueName: "w"))
    var weights: [Double] = []

    func validate() throws {
        if models.isEmpty && taskVectors.isEmpty {
            throw ValidationError("Give at least one --model or --task-vector to merge.")
        }
        let count = models.count + taskVectors.count
        if !weights.isEmpty && weights.count != count {
            throw ValidationError("Got \(weights.count) --weight values for \(count) inputs; give one per input (models first, then task vectors) or none.")
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

    @Flag(name: .long, help: "Print a JSON summary of the result on stdout.")
    var json = false

    func validate() throws {
        if let threads, threads < 1 {
            throw ValidationError("--threads must be at least 1.")
        }
        if maxShardSize != nil && output.hasSuffix(".safetensors") {
            throw ValidationError("--max-shard-size needs a directory output; \(output) is a single .safetensors file.")
        }
    }

    func spec(emit: EmitKind = .model) -> OutputSpec {
        OutputSpec(path: output, dtype: dtype?.dtype, maxShardSize: maxShardSize?.bytes, emit: emit, overwrite: overwrite)
    }
}

/// Runs a planned merge and reports the result (stderr for people, stdout JSON for scripts).
enum MergeRunner {
    static func run(_ plan: MergePlan, options: OutputOptions) throws(MergeKitError) {
        let result = try MergeExecutor.run(plan, threads: options.threads)
        if options.json {
            print(summaryJSON(plan, result).serialized(indent: 2))
        } else {
            let merged = result.tensorsMerged, copied = result.tensorsCopied
            let gb = Double(result.outputBytes) / 1e9
            FileHandle.standardError.write(Data("wrote \(result.outputPath): \(merged) tensors merged, \(copied) copied, \(String(format: "%.3f", gb)) GB in \(String(format: "%.2f", result.seconds)) s\n".utf8))
        }
    }

    static func summaryJSON(_ plan: MergePlan, _ result: MergeResult) -> JSONValue {
        .object([
            JSONMember("output", .string(result.outputPath)),
            JSONMember("method", .string(plan.method.info.name)),
            JSONMember("parameters", .object(plan.method.parameters)),
            JSONMember("base", .string(plan.base.path)),
            JSONMember("inputs", .array(plan.inputs.map { input in
                .object([JSONMember("path", .string(input.path)), JSONMember("kind", .string(input.kind.rawValue)),
                         JSONMember("weight", .double(input.weight))])
            })),
            JSONMember("emit", .string(plan.output.emit.rawValue)),
            JSONMember("files", .array(result.files.map { file in
                .object([JSONMember("path", .string(file.path)), JSONMember("bytes", .int(file.bytes))])
            })),
            JSONMember("tensors_merged", .int(result.tensorsMerged)),
            JSONMember("tensors_copied", .int(result.tensorsCopied)),
            JSONMember("input_bytes", .int(result.inputBytes)),
            JSONMember("output_bytes", .int(result.outputBytes)),
            JSONMember("seconds", .double(result.seconds)),
        ])
    }
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
