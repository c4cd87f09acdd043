import ArgumentParser
import MergeKit

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
        try Self.check(maxShardSize: maxShardSize, output: output)
    }

    /// --max-shard-size: at least a byte, and only for a directory output.
    static func check(maxShardSize: ByteSize?, output: String) throws {
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
