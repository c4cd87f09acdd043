import Foundation
import Testing
@testable import MergeKit

/// What scripts and terminals get from merge-cli: with --json exactly one JSON document on stdout
/// (the result, the plan with --dry-run, or an error object), names from files printed with their
/// control characters escaped, and on a pipe no progress bar — only a summary line per output.
@Suite("Output contract")
struct OutputContractTests {
    let fixtures = TestSupport.fixture("")

    /// stdout parsed as exactly one JSON document.
    func document(_ output: CLI.Output, sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue? {
        do {
            return try JSONParser.parse(Array(output.stdout.utf8))
        } catch {
            Issue.record("stdout is not one JSON document (\(error)): \(output.stdout)", sourceLocation: sourceLocation)
            return nil
        }
    }

    /// The error object of a failed --json run, checked for its shape and exit status.
    @discardableResult
    func expectErrorDocument(_ output: CLI.Output, status: Int32, code: String? = nil, _ label: String,
                             sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue? {
        #expect(output.status == status, "\(label): \(output.stderr)", sourceLocation: sourceLocation)
        guard let json = document(output, sourceLocation: sourceLocation) else { return nil }
        // verify --json prints its report with the same error object under "error".
        guard case .object(let error)? = json["error"] else {
            Issue.record("\(label): no error object in \(output.stdout)", sourceLocation: sourceLocation)
            return nil
        }
        #expect(error.map(\.key) == ["code", "message", "file", "tensor", "fix", "exit_status", "problems"], "\(label)",
                sourceLocation: sourceLocation)
        #expect(json["error"]?["exit_status"] == .int(Int(status)), "\(label)", sourceLocation: sourceLocation)
        if let code { #expect(json["error"]?["code"] == .string(code), "\(label): \(output.stdout)", sourceLocation: sourceLocation) }
        #expect(output.stderr.hasPrefix("error: ") || output.stderr.hasPrefix("Error: "), "\(label): \(output.stderr)",
                sourceLocation: sourceLocation)
        return json
    }

    @Test("--dry-run --json prints the plan as one JSON document and writes nothing (single merges and sweeps)")
    func dryRunJSON() throws {
        let dir = TestSupport.temporaryDirectory("contract")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let merge = try CLI.run(["ties", "--base", "f32/base", "--model", "f32/ft_a", "--model", "f32/ft_b", "--dry-run", "--json",
                                 "-o", dir + "/out"], in: fixtures)
        #expect(merge.status == 0, "\(merge.stderr)")
        let plan = document(merge)
        #expect(plan?["method"] == .string("ties"))
        #expect(plan?["output"]?["path"] == .string(dir + "/out"))
        if case .array(let tensors)? = plan?["tensors"] {
            #expect(!tensors.isEmpty && tensors.allSatisfy { $0["action"] == .string("merge") || $0["action"] == .string("copy") })
        } else {
            Issue.record("no tensors in \(merge.stdout)")
        }
        let sweep = try CLI.run(["sweep", "--method", "task_arithmetic", "--base", "f32/base", "--model", "f32/ft_a", "--scale", "0.5,1",
                                 "--dry-run", "--json", "-o", dir + "/sweep"], in: fixtures)
        #expect(sweep.status == 0, "\(sweep.stderr)")
        if case .array(let points)? = document(sweep)?["points"] {
            #expect(points.count == 2 && points[1]["sweep"]?["lambda"] == .int(1), "\(sweep.stdout)")
        } else {
            Issue.record("no points in \(sweep.stdout)")
        }
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("Every command with --json prints one JSON error document on failure: library errors (exit 1) and argument errors (exit 64)")
    func errorDocuments() throws {
        let dir = TestSupport.temporaryDirectory("contract")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let missing = dir + "/missing.safetensors"
        let failing: [[String]] = [
            ["task-arithmetic", "--base", missing, "--model", "f32/ft_a", "-o", dir + "/o.safetensors"],
            ["ties", "--base", "f32/base", "--model", missing, "-o", dir + "/o.safetensors"],
            ["run", missing, "-o", dir + "/o.safetensors"],
            ["sweep", "--method", "ties", "--base", missing, "--model", "f32/ft_a", "--scale", "0.5,1", "-o", dir + "/s"],
            ["analyze", "--base", missing, "--model", "f32/ft_a"],
            ["inspect", missing],
            ["verify", missing],
            ["task-vector", "--base", missing, "--finetuned", "f32/ft_a", "-o", dir + "/t.safetensors"],
            ["extract-lora", "--base", missing, "--model", "f32/ft_a", "--rank", "2", "-o", dir + "/lora"],
            ["eval", "--model", missing, "--head", missing, "--data", missing],
            ["finetune", "--base", missing, "--head", missing, "--data", missing, "-o", dir + "/ft.safetensors"],
            ["linearize", "--base", missing, "-o", dir + "/lin.safetensors"],
            ["wemoe-train", "--model", missing, "--data", missing, "--head", missing, "-o", dir + "/w.safetensors"],
            ["regmean", "--model", missing, "--data", missing, "--model", missing, "--data", missing, "-o", dir + "/r"],
            ["fisher", "--model", missing, "--data", missing, "--head", missing, "--model", missing, "--data", missing,
             "--head", missing, "-o", dir + "/f"],
            ["disentanglement", "--base", missing, "--model", missing, "--model", missing, "--head", missing, "--head", missing,
             "--data", missing, "--data", missing],
        ]
        for arguments in failing {
            let run = try CLI.run(arguments + ["--json"], in: fixtures)
            let json = expectErrorDocument(run, status: 1, code: "fileNotFound", arguments[0])
            #expect(json?["error"]?["file"]?.stringValue?.hasSuffix("missing.safetensors") == true, "\(arguments[0]): \(run.stdout)")
        }
        // Argument errors (exit 64): a validate() failure, an unknown option, a bad value.
        for arguments in [["task-arithmetic", "--base", "f32/base", "--model", "f32/ft_a", "--threads", "0", "-o", dir + "/x.safetensors"],
                          ["inspect", "f32/base", "--no-such-option"],
                          ["ties", "--base", "f32/base", "--model", "f32/ft_a", "--trim-scope", "sideways", "-o", dir + "/x.safetensors"],
                          ["analyze", "--base", "f32/base"]] {
            let run = try CLI.run(arguments + ["--json"], in: fixtures)
            expectErrorDocument(run, status: 64, code: "invalidArgument", arguments.joined(separator: " "))
        }
        // Several problems found together are listed one by one.
        let many = try CLI.run(["task-arithmetic", "--base", "f32/base", "--model", missing, "--model", "f32/ft_a", "--weight", "1",
                                "--weight", "1", "-o", "f32/base", "--json"], in: fixtures)
        #expect(many.status == 1)
        // Help is not an error.
        let help = try CLI.run(["inspect", "--help", "--json"])
        #expect(help.status == 0 && !help.stdout.contains("\"error\""))
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("Control characters in tensor names and metadata are escaped in text output and errors; JSON keeps the name exactly")
    func controlCharacters() throws {
        let dir = TestSupport.temporaryDirectory("contract")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let name = "evil\nerror: forged line\u{1B}[31m\r\u{9B}2J"
        let spec = TensorSpec(name: name, dtype: .F32, shape: [2])
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [(spec, [1, 2])], metadata: ["format": "pt", "note\u{1B}]0;x": "v\nerror: meta"])
        TestSupport.writeCheckpoint(dir + "/ft.safetensors", [(spec, [1, .nan])])
        func expectClean(_ text: String, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(!text.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x9B || $0 == "\r" }, "\(label): \(text.debugDescription)",
                    sourceLocation: sourceLocation)
            #expect(!text.split(separator: "\n").contains { $0.hasPrefix("error: forged") || $0.hasPrefix("error: meta") },
                    "\(label): \(text.debugDescription)", sourceLocation: sourceLocation)
        }
        let inspect = try CLI.run(["inspect", dir + "/base.safetensors", "--check-finite"])
        #expect(inspect.status == 0)
        expectClean(inspect.stdout, "inspect")
        #expect(inspect.stdout.contains("evil\\nerror: forged line\\u{1B}[31m\\r\\u{9B}2J"), "\(inspect.stdout)")
        let dryRun = try CLI.run(["task-arithmetic", "--base", dir + "/base.safetensors", "--model", dir + "/ft.safetensors", "--dry-run",
                                  "-o", dir + "/out.safetensors"])
        expectClean(dryRun.stdout, "dry-run")
        let merge = try CLI.run(["task-arithmetic", "--base", dir + "/base.safetensors", "--model", dir + "/ft.safetensors",
                                 "-o", dir + "/out.safetensors"])
        #expect(merge.status == 1)
        expectClean(merge.stderr, "merge error")
        #expect(merge.stderr.split(separator: "\n").count == 1, "\(merge.stderr.debugDescription)")
        let verify = try CLI.run(["verify", dir + "/ft.safetensors", "--check-finite"])
        expectClean(verify.stdout + verify.stderr, "verify")
        // JSON is escaped by the serialiser and parses back to the exact name.
        let json = try CLI.run(["inspect", dir + "/base.safetensors", "--json"])
        expectClean(json.stdout, "inspect --json")
        if case .array(let tensors)? = document(json)?["tensors"] {
            #expect(tensors.first?["name"] == .string(name))
        }
        let failed = try CLI.run(["task-arithmetic", "--base", dir + "/base.safetensors", "--model", dir + "/ft.safetensors",
                                  "-o", dir + "/out.safetensors", "--json"])
        #expect(expectErrorDocument(failed, status: 1, code: "nonFiniteValue", "merge --json")?["error"]?["tensor"] == .string(name))
    }

    @Test("On a pipe: no progress bar, no ANSI, no carriage return; one summary line per output unless --quiet")
    func pipedOutput() throws {
        let dir = TestSupport.temporaryDirectory("contract")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try CLI.run(["task-arithmetic", "--base", "bf16/base", "--model", "bf16/ft_a", "--model", "bf16/ft_b", "-o", dir + "/m"],
                              in: fixtures)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!run.stderr.contains("\r") && !run.stderr.contains("\u{1B}"))
        let lines = run.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2 && lines[0].hasPrefix("wrote \(dir)/m: ") && lines[1].isEmpty, "\(run.stderr.debugDescription)")
        #expect(run.stdout.isEmpty)
        let sweep = try CLI.run(["sweep", "--method", "task_arithmetic", "--base", "bf16/base", "--model", "bf16/ft_a", "--scale", "0.5,1",
                                 "-o", dir + "/s"], in: fixtures)
        #expect(sweep.status == 0 && sweep.stderr.split(separator: "\n").count == 2 && !sweep.stderr.contains("\r"), "\(sweep.stderr)")
        let quiet = try CLI.run(["task-arithmetic", "--base", "bf16/base", "--model", "bf16/ft_a", "-o", dir + "/q", "--quiet"], in: fixtures)
        #expect(quiet.status == 0 && quiet.stderr.isEmpty && quiet.stdout.isEmpty, "\(quiet.stderr)")
        let json = try CLI.run(["task-arithmetic", "--base", "bf16/base", "--model", "bf16/ft_a", "-o", dir + "/j", "--json", "--quiet"],
                               in: fixtures)
        #expect(json.status == 0 && json.stderr.isEmpty)
        #expect(document(json)?["output"] == .string(dir + "/j"))
    }

    @Test("--dtype with a config.json that is not JSON: the merge succeeds and warns that torch_dtype was not updated")
    func unparsableConfig() throws {
        let dir = TestSupport.temporaryDirectory("contract")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: fixtures + "/f32/base", toPath: dir + "/base")
        try "{\"torch_dtype\": \"float32\",".write(toFile: dir + "/base/config.json", atomically: true, encoding: .utf8)
        let run = try CLI.run(["task-arithmetic", "--base", dir + "/base", "--model", fixtures + "/f32/ft_a", "--dtype", "F16",
                               "-o", dir + "/out", "--quiet", "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.hasPrefix("warning: \(dir)/out/config.json: copied unchanged") && run.stderr.contains("torch_dtype was not set to float16"),
                "\(run.stderr)")
        if case .array(let warnings)? = document(run)?["warnings"] {
            #expect(warnings.count == 1)
        } else {
            Issue.record("no warnings in \(run.stdout)")
        }
        // A parsable config is updated without a warning.
        try "{\"torch_dtype\": \"float32\"}".write(toFile: dir + "/base/config.json", atomically: true, encoding: .utf8)
        let good = try CLI.run(["task-arithmetic", "--base", dir + "/base", "--model", fixtures + "/f32/ft_a", "--dtype", "F16",
                                "-o", dir + "/good", "--quiet"])
        #expect(good.status == 0 && good.stderr.isEmpty, "\(good.stderr)")
        #expect(try String(contentsOfFile: dir + "/good/config.json", encoding: .utf8).contains("float16"))
    }
}
