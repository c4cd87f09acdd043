import Foundation
import Testing
@testable import MergeKit

/// Every command that writes refuses an output that is, contains, lies inside, or links to any
/// path it reads — checkpoints, task vectors, LoRA adapters, recipes, datasets, heads, config
/// files — before any work, even with --overwrite, and leaves every input byte for byte as it was.
///
/// The table lists every writing command with all of its inputs; a command whose help offers
/// --output but that is missing from the table fails the first test, so a new command cannot
/// skip the check unnoticed.
@Suite("Outputs versus inputs, every command")
struct OutputVersusInputsTests {
    /// One command: its arguments with the inputs as relative paths (inside the workspace),
    /// and every path it reads.
    struct Row: CustomStringConvertible {
        let command: String
        let arguments: [String]
        let inputs: [String]
        var description: String { command + " " + arguments.joined(separator: " ") }
    }

    static let f32Merge = ["--base", "f32/base", "--model", "f32/ft_a", "--model", "f32/ft_b"]
    static let f32Inputs = ["f32/base", "f32/ft_a", "f32/ft_b"]

    static let table: [Row] = [
        Row(command: "task-arithmetic", arguments: ["--base", "f32/base", "--model", "f32/ft_a", "--task-vector", "tv.safetensors", "--lora", "lora_a"],
            inputs: ["f32/base", "f32/ft_a", "tv.safetensors", "lora_a", "lora_a/adapter_model.safetensors"]),
        Row(command: "negate", arguments: ["--base", "f32/base", "--model", "f32/ft_a"], inputs: ["f32/base", "f32/ft_a"]),
        Row(command: "negate", arguments: ["--base", "f32/base", "--task-vector", "tv.safetensors"], inputs: ["f32/base", "tv.safetensors"]),
        Row(command: "task-vector", arguments: ["--base", "f32/base", "--finetuned", "f32/ft_a"], inputs: ["f32/base", "f32/ft_a"]),
        Row(command: "task-vector", arguments: ["--base", "f32/base", "--lora", "lora_a"], inputs: ["f32/base", "lora_a"]),
        Row(command: "ties", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "dare", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "linear", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "breadcrumbs", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "model-stock", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "metagpt", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "magmax", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "tsv-m", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "iso-c", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "della", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "sce", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "nearswap", arguments: ["--base", "f32/base", "--model", "f32/ft_a"], inputs: ["f32/base", "f32/ft_a"]),
        Row(command: "passthrough", arguments: ["--base", "f32/base", "--model", "f32/ft_a"], inputs: ["f32/base", "f32/ft_a"]),
        Row(command: "arcee-fusion", arguments: ["--base", "f32/base", "--model", "f32/ft_a"], inputs: ["f32/base", "f32/ft_a"]),
        Row(command: "slerp", arguments: ["--base", "f32/base", "--model", "f32/ft_a"], inputs: ["f32/base", "f32/ft_a"]),
        Row(command: "nuslerp", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "multislerp", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "karcher", arguments: f32Merge, inputs: f32Inputs),
        Row(command: "run", arguments: ["r.yml"], inputs: ["r.yml", "f32/base", "f32/ft_a"]),
        Row(command: "run", arguments: ["sweep.yml"], inputs: ["sweep.yml", "f32/base", "f32/ft_a"]),
        Row(command: "sweep", arguments: ["--method", "task_arithmetic", "--base", "f32/base", "--model", "f32/ft_a", "--lora", "lora_a", "--scale", "0.5,1"],
            inputs: ["f32/base", "f32/ft_a", "lora_a"]),
        Row(command: "convert", arguments: ["f32/base"], inputs: ["f32/base"]),
        Row(command: "convert", arguments: ["views.pt"], inputs: ["views.pt"]),
        Row(command: "extract-lora", arguments: ["--base", "f32/base", "--model", "f32/ft_a", "--rank", "2"], inputs: ["f32/base", "f32/ft_a"]),
        Row(command: "linearize", arguments: ["--base", "clip/base", "--model", "clip/finetuned"], inputs: ["clip/base", "clip/finetuned"]),
        Row(command: "finetune", arguments: ["--base", "clip/base", "--head", "clip/head.safetensors", "--data", "clip/data.safetensors",
                                             "--steps", "1", "--batch-size", "2", "--warmup-steps", "0"],
            inputs: ["clip/base", "clip/head.safetensors", "clip/data.safetensors", "clip/base/config.json"]),
        Row(command: "wemoe", arguments: ["--base", "clip/base", "--model", "experts/task0", "--model", "experts/task1"],
            inputs: ["clip/base", "experts/task0", "experts/task1", "clip/base/config.json"]),
        Row(command: "wemoe-train", arguments: ["--model", "moe", "--data", "task0/data.safetensors", "--head", "task0/head.safetensors", "--steps", "1"],
            inputs: ["moe", "task0/data.safetensors", "task0/head.safetensors", "moe/config.json"]),
        Row(command: "adamerging", arguments: ["--base", "clip/base", "--model", "clip/finetuned", "--data", "task0/data.safetensors",
                                               "--head", "task0/head.safetensors", "--steps", "1"],
            inputs: ["clip/base", "clip/finetuned", "task0/data.safetensors", "task0/head.safetensors", "clip/base/config.json"]),
        Row(command: "atlas", arguments: ["--base", "clip/base", "--model", "clip/finetuned", "--data", "task0/data.safetensors",
                                          "--head", "task0/head.safetensors", "--shots", "1", "--steps", "1"],
            inputs: ["clip/base", "clip/finetuned", "task0/data.safetensors", "task0/head.safetensors", "clip/finetuned/config.json"]),
    ]

    /// A workspace holding a copy of every input (so a failure cannot damage the fixtures).
    struct Workspace {
        let dir: String

        /// - Parameter needs: the inputs of the row (the task vector and the WEMoE model are only
        ///   made when needed).
        init(needs: [String]) throws {
            dir = TestSupport.temporaryDirectory("outputs-vs-inputs")
            let copies = [("f32/base", "f32/base"), ("f32/ft_a", "f32/ft_a"), ("f32/ft_b", "f32/ft_b"), ("svd_lora/lora_a", "lora_a"),
                          ("clip/quick/base", "clip/base"), ("clip/quick/finetuned", "clip/finetuned"),
                          ("clip/quick/head.safetensors", "clip/head.safetensors"), ("clip/quick/data.safetensors", "clip/data.safetensors"),
                          ("wemoe/experts/task0", "experts/task0"), ("wemoe/experts/task1", "experts/task1"),
                          ("wemoe/task0/data.safetensors", "task0/data.safetensors"), ("wemoe/task0/head.safetensors", "task0/head.safetensors"),
                          ("pytorch/views.pt", "views.pt")]
            for (from, to) in copies {
                try FileManager.default.createDirectory(atPath: FileSystem.parentDirectory(of: dir + "/" + to), withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: TestSupport.fixture(from), toPath: dir + "/" + to)
            }
            let recipe = "merge_method: task_arithmetic\nbase_model: f32/base\nmodels:\n  - model: f32/ft_a\n"
            try Data(recipe.utf8).write(to: URL(fileURLWithPath: dir + "/r.yml"))
            try Data((recipe + "sweep:\n  lambda: \"0.5:1:0.5\"\n").utf8).write(to: URL(fileURLWithPath: dir + "/sweep.yml"))
            for (arguments, output) in [(["task-vector", "--base", "f32/base", "--finetuned", "f32/ft_b"], "tv.safetensors"),
                                        (["wemoe", "--base", "clip/base", "--model", "experts/task0", "--model", "experts/task1"], "moe")]
                where needs.contains(output) {
                let made = try CLI.run(arguments + ["-o", output, "--quiet"], in: dir)
                #expect(made.status == 0, "\(made.stderr)")
            }
        }

        /// Every entry under the workspace, with the bytes of its files.
        func snapshot() throws -> [String: Data] {
            var result: [String: Data] = [:]
            let enumerator = try #require(FileManager.default.enumerator(atPath: dir))
            while let relative = enumerator.nextObject() as? String {
                let path = dir + "/" + relative
                result[relative] = FileSystem.kind(of: path, followingLinks: false) == .file ? try Data(contentsOf: URL(fileURLWithPath: path)) : Data()
            }
            return result
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test("Every command whose help offers --output is in the table")
    func tableCoversEveryWritingCommand() throws {
        let help = try CLI.run(["--help"])
        let lines = help.stdout.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex { $0.hasSuffix("SUBCOMMANDS:") })
        let commands = lines[(start + 1)...].compactMap { line -> String? in
            guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first else { return nil }
            return String(name)
        }
        #expect(commands.count >= 20, "\(commands)")
        let covered = Set(Self.table.map(\.command))
        for command in commands {
            let usage = try CLI.run(["help", command])
            let writes = usage.stdout.contains("--output")
            #expect(writes == covered.contains(command), "\(command): \(writes ? "writes an output but is not in the table" : "is in the table but has no --output")")
        }
    }

    @Test("-o equal to, inside, containing or linked to each input is refused with exit 1 and every input is unchanged",
          arguments: table)
    func refused(row: Row) throws {
        let w = try Workspace(needs: row.inputs)
        defer { w.remove() }
        let before = try w.snapshot()
        var outputs: [(String, String)] = []
        #expect(row.inputs.allSatisfy { !$0.hasPrefix("/") }, "inputs are relative to the workspace")
        for (i, input) in row.inputs.enumerated() {
            outputs.append((input, input))
            let kind = FileSystem.kind(of: w.dir + "/" + input)
            if kind == .directory {
                outputs.append((input + "/", input))
                outputs.append((input + "/merged.safetensors", input))
                outputs.append((input + "/sub", input))
            }
            // The directory holding the input, relative to the workspace like the input.
            let parent = input.split(separator: "/").dropLast().joined(separator: "/")
            if !parent.isEmpty { outputs.append((parent, input)) }
            let symlink = "link-\(i)" + (input.hasSuffix(".safetensors") ? ".safetensors" : "")
            try FileManager.default.createSymbolicLink(atPath: w.dir + "/" + symlink, withDestinationPath: w.dir + "/" + input)
            outputs.append((symlink, input))
            if kind == .file {
                let hard = "hard-\(i)" + (input.hasSuffix(".safetensors") ? ".safetensors" : "")
                #expect(link(w.dir + "/" + input, w.dir + "/" + hard) == 0)
                outputs.append((hard, input))
            }
        }
        let withLinks = try w.snapshot()
        #expect(withLinks.count > before.count)
        for (output, input) in outputs {
            // Without --overwrite too for the input itself: the refusal must not be "already exists".
            for overwrite in output == input ? [true, false] : [true] {
                let run = try CLI.run([row.command] + row.arguments + ["-o", output] + (overwrite ? ["--overwrite"] : []), in: w.dir)
                #expect(run.status == 1, "\(row) -o \(output): exit \(run.status) \(run.stderr)")
                #expect(run.stderr.contains("input") && !run.stderr.contains("already exists"), "\(row) -o \(output) (\(input)): \(run.stderr)")
            }
        }
        #expect(try w.snapshot() == withLinks, "an input or the workspace changed")
    }
}
