import ArgumentParser
import Foundation
import MergeKit

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Write a checkpoint (safetensors, or PyTorch .bin/.pt/.pth/.ckpt) as safetensors: one file, or a sharded directory.",
        discussion: """
            Every tensor is copied byte for byte in its own dtype and order. PyTorch checkpoints are \
            read without running their pickle: only tensor state dicts (also under "state_dict" or \
            "model") are accepted. Tensors that share storage (tied weights) are each written in full.
            """)

    @Argument(help: ArgumentHelp("The checkpoint: a file or a model directory.", valueName: "path"))
    var input: String

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Output: a path ending in .safetensors (any case) is written as one file; any other path as a Hugging Face directory (shards, index and the input's config/tokenizer files).", valueName: "path"))
    var output: String

    @Option(name: .customLong("max-shard-size"), parsing: .unconditional, help: ArgumentHelp("Largest shard of a directory output, e.g. 2G, 500MB, 4GiB (default 5GB, as transformers).", valueName: "size"))
    var maxShardSize: ByteSize?

    @Flag(name: .long, help: "Replace an existing output once the new one is complete (a directory only when it holds nothing but an output's files).")
    var overwrite = false

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Worker threads (default: the number of cores).", valueName: "n"))
    var threads: Int?

    @Flag(name: .long, help: "Print a JSON summary on stdout (the output files with sizes and SHA-256, tensors, bytes, time, peak memory).")
    var json = false

    @Flag(name: .long, help: "No progress bar and no summary line on stderr.")
    var quiet = false

    func validate() throws {
        try ArgumentCheck.path(input, flag: "the input path")
        try ArgumentCheck.path(output, flag: "--output")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        try OutputOptions.check(maxShardSize: maxShardSize, output: output)
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let checkpoint = try Checkpoint(path: input)
            let plan = try MergePlan(converting: checkpoint,
                                     output: OutputSpec(path: output, maxShardSize: maxShardSize?.bytes, overwrite: overwrite))
            let bar = ProgressBar(enabled: !quiet && isatty(2) != 0)
            let start = Date()
            let outcome = try MergeRun.run([plan], threads: threads, summarize: json) { bar.update($0) }
            bar.finish()
            let result = outcome.results[0]
            if !quiet {
                let gb = String(format: "%.3f", Double(result.outputBytes) / 1e9)
                FileHandle.standardError.write(Data("wrote \(TerminalText.escaped(result.outputPath)): \(result.tensorsCopied) tensors, \(gb) GB in \(String(format: "%.2f", result.seconds)) s\n".utf8))
                if !plan.skippedFiles.isEmpty {
                    let list = plan.skippedFiles.map { "\($0.name) (\($0.reason))" }.joined(separator: "; ")
                    FileHandle.standardError.write(Data("note: not copied from \(TerminalText.escaped(checkpoint.path)): \(TerminalText.escaped(list))\n".utf8))
                }
            }
            printNotes(outcome.notes, quiet: quiet)
            if json {
                let summary = outcome.summaries[0]
                let document = JSONValue.object([
                    JSONMember("output", .string(result.outputPath)),
                    JSONMember("input", .string(checkpoint.path)),
                    JSONMember("input_files", .array(checkpoint.filePaths.map { .string($0) })),
                    JSONMember("files", summary["files"] ?? .array([])),
                    JSONMember("companions", summary["companions"] ?? .array([])),
                    JSONMember("skipped_files", summary["skipped_files"] ?? .array([])),
                    JSONMember("tensors", .int(result.tensorsCopied)),
                    JSONMember("output_bytes", .int(result.outputBytes)),
                    JSONMember("seconds", .double(Date().timeIntervalSince(start))),
                    JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)),
                    JSONMember("notes", .array(outcome.notes.map(\.json))),
                ])
                print(document.serialized(indent: 2))
            }
        }
    }
}
