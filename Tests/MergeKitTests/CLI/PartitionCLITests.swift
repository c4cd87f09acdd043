import Foundation
import Testing
@testable import MergeKit

/// `--partition INDEX/COUNT`, `--assemble` and `merge-cli assemble`, as separate processes: the
/// assembled bytes against one machine's (a method command, `run` with a recipe, `sweep`), exit
/// statuses and JSON documents. The library's policy is tested in Finish/PartitionTests.
@Suite("merge-cli --partition and assemble")
struct PartitionCLITests {
    let fixtures = TestSupport.fixture("")
    static let inputs = ["--base", "bf16/base", "--model", "bf16/ft_a", "--model", "bf16/ft_b", "--model", "bf16/ft_c"]

    /// Starts merge-cli with `arguments` in the fixtures; `wait()` the result.
    static func start(_ arguments: [String], in directory: String) throws -> () -> CLI.Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return {
            let stdout = out.fileHandleForReading.readDataToEndOfFile()
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return CLI.Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                              stderr: String(decoding: stderr, as: UTF8.self))
        }
    }

    /// Runs `command` on one machine into `output`, moves it to `output.reference`, then runs its
    /// `count` partitions at once as processes and assembles; returns the assembly's run.
    func compare(_ command: [String], output: String, count: Int) throws -> CLI.Output {
        // (--quiet on both: the model card records the command, less --partition and --assemble.)
        let whole = try CLI.run(command + ["-o", output, "--quiet"], in: fixtures)
        #expect(whole.status == 0, "\(whole.stderr)")
        try FileManager.default.moveItem(atPath: output, toPath: output + ".reference")
        let running = try (0..<count).map { index in
            try Self.start(command + ["-o", output, "--quiet", "--partition", "\(index)/\(count)"], in: fixtures)
        }
        for wait in running {
            let part = wait()
            #expect(part.status == 0, "\(part.stderr)")
            #expect(part.stderr.isEmpty, "\(part.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: output))
        let assembled = try CLI.run(["assemble", output, "--json"], in: fixtures)
        #expect(assembled.status == 0, "\(assembled.stderr)")
        #expect(try PartitionTests.contents(output) == PartitionTests.contents(output + ".reference"))
        #expect(!FileManager.default.fileExists(atPath: OutputParts.directory(for: output)))
        return assembled
    }

    @Test("A method command's partitions, run at once as processes, assemble to one machine's bytes (--json)")
    func methodCommand() throws {
        let dir = TestSupport.temporaryDirectory("partition-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let assembled = try compare(["dare", "--drop-rate", "0.3", "--seed", "7", "--max-shard-size", "3KB"] + Self.inputs,
                                    output: dir + "/merged", count: 3)
        let summary = try JSONParser.parse(Array(assembled.stdout.utf8))
        #expect(summary["output"]?.stringValue == dir + "/merged")
        #expect(summary["partitions"]?.nonNegativeInt == 3)
        let files = try #require(summary["files"]?.arrayValue)
        let paths = files.map { $0["path"]?.stringValue ?? "" }
        #expect(paths.contains("model.safetensors.index.json"))
        for file in files {
            let path = dir + "/merged/" + (file["path"]?.stringValue ?? "")
            #expect(file["sha256"]?.stringValue == (try FileDigest.sha256(path: path)))
        }
        #expect(assembled.stderr.contains("assembled \(dir)/merged from 3 parts"))
        // The model card records the one-machine command (no --partition).
        let card = try String(contentsOfFile: dir + "/merged/README.md", encoding: .utf8)
        #expect(!card.contains("--partition") && card.contains("--drop-rate 0.3"))
    }

    @Test("run with a recipe: partitions and assemble give one machine's bytes")
    func recipe() throws {
        let dir = TestSupport.temporaryDirectory("partition-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = dir + "/recipe.yml"
        try Data("""
            merge_method: ties
            base_model: \(fixtures)/bf16/base
            models:
              - model: \(fixtures)/bf16/ft_a
                parameters: {weight: 0.7, density: 0.5}
              - model: \(fixtures)/bf16/ft_b
                parameters: {weight: 0.5, density: 0.6}
            parameters: {normalize: true}
            dtype: bfloat16
            """.utf8).write(to: URL(fileURLWithPath: recipe))
        _ = try compare(["run", recipe, "--max-shard-size", "4KB"], output: dir + "/merged", count: 2)
        #expect(FileManager.default.fileExists(atPath: dir + "/merged/recipe.yml"))
    }

    @Test("sweep: points and shards divided between partitions; the last one assembles with --assemble (--json)")
    func sweep() throws {
        let dir = TestSupport.temporaryDirectory("partition-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let command = ["sweep", "--method", "task_arithmetic", "--scale", "0.25,0.5,1", "--max-shard-size", "5KB", "--json"] + Self.inputs
        let output = dir + "/sweep"
        let whole = try CLI.run(command + ["-o", output], in: fixtures)
        #expect(whole.status == 0, "\(whole.stderr)")
        try FileManager.default.moveItem(atPath: output, toPath: output + ".reference")
        for index in 0..<3 {
            let part = try CLI.run(command + ["-o", output, "--partition", "\(index)/4"], in: fixtures)
            #expect(part.status == 0, "\(part.stderr)")
            let document = try JSONParser.parse(Array(part.stdout.utf8))
            #expect(document["partition"]?.stringValue == "\(index)/4")
            #expect(document["assembled"] == .null)
            #expect(part.stderr.contains("wrote part \(index)/4 of \(output)"))
        }
        let last = try CLI.run(command + ["-o", output, "--partition", "3/4", "--assemble"], in: fixtures)
        #expect(last.status == 0, "\(last.stderr)")
        let document = try JSONParser.parse(Array(last.stdout.utf8))
        #expect(document["assembled"]?["partitions"]?.nonNegativeInt == 4)
        #expect(try PartitionTests.contents(output) == PartitionTests.contents(output + ".reference"))
    }

    @Test("Malformed or out-of-range --partition, --assemble alone, a single-file output: exit 64",
          arguments: [["--partition", "2/2"], ["--partition", "x"], ["--partition", "1/0"], ["--partition=-1/2"], ["--assemble"],
                      ["--partition", "0/2", "--file-output"]])
    func argumentErrors(_ flags: [String]) throws {
        let dir = TestSupport.temporaryDirectory("partition-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = flags.contains("--file-output")
        let output = dir + (file ? "/merged.safetensors" : "/merged")
        let result = try CLI.run(["task-arithmetic"] + Self.inputs + ["-o", output, "--json"] + flags.filter { $0 != "--file-output" }, in: fixtures)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains(flags[0].hasPrefix("--partition") ? "--partition" : "--assemble"), "\(result.stderr)")
        let error = try JSONParser.parse(Array(result.stdout.utf8))
        #expect(error["error"]?["exit_status"]?.nonNegativeInt == 64)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    @Test("A method with model-wide statistics without its statistics files is refused: exit 64 on its command, 1 from a recipe; the message names it and the rounds")
    func modelWide() throws {
        let dir = TestSupport.temporaryDirectory("partition-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ties = try CLI.run(["ties"] + Self.inputs + ["-o", dir + "/merged", "--partition", "0/2"], in: fixtures)
        #expect(ties.status == 64, "\(ties.stderr)")
        #expect(ties.stderr.contains("ties") && ties.stderr.contains("statistics over the whole model") && ties.stderr.contains("--write-stats"),
                "\(ties.stderr)")
        let perTensor = try CLI.run(["ties", "--trim-scope", "tensor", "--vote", "weighted"] + Self.inputs
                                    + ["-o", dir + "/merged", "--partition", "0/1", "--assemble"], in: fixtures)
        #expect(perTensor.status == 0, "\(perTensor.stderr)")
        let sweep = try CLI.run(["sweep", "--method", "ties", "--param", "trim_scope=global", "--param", "vote=mass", "--density", "0.5,0.6"]
                                + Self.inputs + ["-o", dir + "/sweep", "--partition", "0/2", "--json"], in: fixtures)
        #expect(sweep.status == 64, "\(sweep.stderr)")
        #expect(try JSONParser.parse(Array(sweep.stdout.utf8))["error"]?["code"]?.stringValue == "invalidArgument")
        let recipe = dir + "/metagpt.yml"
        try Data("""
            merge_method: metagpt
            base_model: \(fixtures)/bf16/base
            models:
              - model: \(fixtures)/bf16/ft_a
              - model: \(fixtures)/bf16/ft_b
            """.utf8).write(to: URL(fileURLWithPath: recipe))
        let run = try CLI.run(["run", recipe, "-o", dir + "/meta", "--partition", "1/2"], in: fixtures)
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("metagpt") && run.stderr.contains("statistics over the whole model") && run.stderr.contains("1 statistics round"),
                "\(run.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["merged", "metagpt.yml"])
    }

    @Test("A recipe of several stages cannot be partitioned yet: exit 1 before any work; negate can")
    func stagesAndNegate() throws {
        let dir = TestSupport.temporaryDirectory("partition-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = dir + "/stages.yml"
        try Data("""
            name: pair
            merge_method: linear
            models:
              - model: \(fixtures)/bf16/ft_a
                parameters: {weight: 0.5}
              - model: \(fixtures)/bf16/ft_b
                parameters: {weight: 0.5}
            dtype: bfloat16
            ---
            merge_method: task_arithmetic
            base_model: \(fixtures)/bf16/base
            models:
              - model: pair
                parameters: {weight: 0.5}
            dtype: bfloat16
            """.utf8).write(to: URL(fileURLWithPath: recipe))
        let staged = try CLI.run(["run", recipe, "-o", dir + "/merged", "--partition", "0/2"], in: fixtures)
        #expect(staged.status == 1, "\(staged.stderr)")
        #expect(staged.stderr.contains("2 stages") && staged.stderr.contains("cannot be partitioned"), "\(staged.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["stages.yml"])
        _ = try compare(["negate", "--base", "bf16/base", "--model", "bf16/ft_a", "--scale", "0.5", "--max-shard-size", "3KB"],
                        output: dir + "/negated", count: 2)
    }

    @Test("assemble: a missing part and a foreign output directory exit 1, naming them (--json error documents)")
    func assembleErrors() throws {
        let dir = TestSupport.temporaryDirectory("partition-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        let first = try CLI.run(["linear"] + Self.inputs + ["--max-shard-size", "3KB", "-o", output, "--partition", "0/2", "--assemble", "--json"],
                                in: fixtures)
        #expect(first.status == 1)
        #expect(first.stderr.contains("part-00001-of-00002.json") && first.stderr.contains("Run (or rerun) partition 1/2"), "\(first.stderr)")
        #expect(try JSONParser.parse(Array(first.stdout.utf8))["error"]?["code"]?.stringValue == "partMissing")
        // Flags that change no output byte may differ between partitions.
        let second = try CLI.run(["linear"] + Self.inputs + ["--max-shard-size", "3KB", "-o", output, "--partition", "1/2", "--threads", "1"],
                                 in: fixtures)
        #expect(second.status == 0, "\(second.stderr)")
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: false)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: output + "/keep.txt"))
        let foreign = try CLI.run(["assemble", output, "--overwrite", "--json"], in: fixtures)
        #expect(foreign.status == 1)
        #expect(foreign.stderr.contains("keep.txt"), "\(foreign.stderr)")
        #expect(try JSONParser.parse(Array(foreign.stdout.utf8))["error"]?["code"]?.stringValue == "outputNotReplaceable")
        #expect(try String(contentsOfFile: output + "/keep.txt", encoding: .utf8) == "mine")
        try FileManager.default.removeItem(atPath: output + "/keep.txt")
        let done = try CLI.run(["assemble", output, "--overwrite"], in: fixtures)
        #expect(done.status == 0, "\(done.stderr)")
        let listing = try FileManager.default.contentsOfDirectory(atPath: output)
        #expect(listing.contains("model.safetensors.index.json") && listing.contains("README.md"))
    }
}
