import Foundation
import Testing
@testable import MergeKit

/// `merge-cli convert` (exit statuses, --json) and every command taking a PyTorch checkpoint
/// where it takes a model.
@Suite("CLI: convert and PyTorch inputs")
struct ConvertCommandTests {
    @Test("convert writes a sharded directory with --json: the files with their SHA-256, the tensors and the bytes")
    func convertJSON() throws {
        let dir = TestSupport.temporaryDirectory("convert-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = TestSupport.fixture("pytorch/sharded")
        let result = try CLI.run(["convert", input, "-o", dir + "/out", "--max-shard-size", "150", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONParser.parse(Array(result.stdout.utf8))
        #expect(json["output"]?.stringValue == dir + "/out" && json["input"]?.stringValue == input)
        #expect(json["tensors"] == .int(4) && json["output_bytes"] == .int(208))
        guard case .array(let files)? = json["files"] else { Issue.record("no files"); return }
        #expect(files.count == 2 && files.allSatisfy { $0["sha256"]?.stringValue?.count == 64 })
        #expect(json["companions"] == .array([.string("config.json")]))
        #expect(result.stderr.hasPrefix("wrote " + dir + "/out: 4 tensors"), "\(result.stderr)")
        try PyTorchCheckpointTests.expectSameTensors(try Checkpoint(path: dir + "/out"), as: "pytorch/sharded.safetensors")
        // Again without --overwrite: the output exists (exit 1); with it, replaced.
        #expect(try CLI.run(["convert", input, "-o", dir + "/out", "--quiet"]).status == 1)
        #expect(try CLI.run(["convert", input, "-o", dir + "/out", "--quiet", "--overwrite"]).status == 0)
    }

    @Test("convert: malformed arguments exit 64; an unreadable input exits 1 with its code in --json")
    func exitStatuses() throws {
        let dir = TestSupport.temporaryDirectory("convert-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = TestSupport.fixture("pytorch/views.pt")
        #expect(try CLI.run(["convert", input]).status == 64)
        #expect(try CLI.run(["convert", input, "-o", dir + "/a.safetensors", "--threads", "0"]).status == 64)
        #expect(try CLI.run(["convert", input, "-o", dir + "/a.safetensors", "--max-shard-size", "1K"]).status == 64)
        #expect(try CLI.run(["convert", input, "-o", ""]).status == 64)
        let legacy = try CLI.run(["convert", "--json", TestSupport.fixture("pytorch/legacy.pt"), "-o", dir + "/a.safetensors"])
        #expect(legacy.status == 1 && legacy.stderr.contains("torch.save(torch.load("))
        let json = try JSONParser.parse(Array(legacy.stdout.utf8))
        #expect(json["error"]?["code"]?.stringValue == "legacyCheckpointFormat")
        #expect(json["error"]?["file"]?.stringValue == TestSupport.fixture("pytorch/legacy.pt"))
        // A missing input: its fix says what a checkpoint is, PyTorch's formats included.
        let missing = try CLI.run(["convert", "--json", dir + "/missing.bin", "-o", dir + "/a.safetensors"])
        #expect(missing.status == 1)
        let error = try JSONParser.parse(Array(missing.stdout.utf8))["error"]
        #expect(error?["code"]?.stringValue == "fileNotFound" && error?["file"]?.stringValue == dir + "/missing.bin")
        #expect(error?["fix"]?.stringValue?.contains("PyTorch .bin/.pt/.pth/.ckpt") == true && error?["fix"]?.stringValue?.contains("pytorch_model.bin") == true)
        // Argument errors are JSON documents too (exit 64).
        let usage = try CLI.run(["convert", "--json", input])
        let usageJSON = try JSONParser.parse(Array(usage.stdout.utf8))
        #expect(usage.status == 64 && usageJSON["error"]?["exit_status"] == .int(64))
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("Every command that takes a model takes a .bin directory or a .pt file: merges, recipes, task-vector, inspect, verify, analyze, negate, sweep, extract-lora, --lora")
    func pytorchInputsEverywhere() throws {
        let dir = TestSupport.temporaryDirectory("bin-inputs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bin = TestSupport.fixture("pytorch/f32_bin"), st = TestSupport.fixture("f32")
        // A merge subcommand, from .bin and from safetensors: the same tensors.
        for (label, root) in [("bin", bin), ("st", st)] {
            let merge = try CLI.run(["ties", "--base", root + "/base", "--model", root + "/ft_a", "--model", root + "/ft_b",
                                     "-o", dir + "/ties-\(label).safetensors", "--quiet"])
            #expect(merge.status == 0, "\(merge.stderr)")
        }
        // (The files' tensor order is each base's own: the .bin's state dict order, the fixture's data order.)
        let a = PyTorchCheckpointTests.bytes(try Checkpoint(path: dir + "/ties-bin.safetensors"))
        let b = PyTorchCheckpointTests.bytes(try Checkpoint(path: dir + "/ties-st.safetensors"))
        #expect(a.count == 22 && a.keys.sorted() == b.keys.sorted())
        for (name, tensor) in b { #expect(a[name]?.bytes == tensor.bytes, "\(name)") }
        // A recipe naming .bin directories.
        let recipe = dir + "/recipe.yml"
        try Data("""
            merge_method: task_arithmetic
            base_model: \(bin)/base
            models:
              - model: \(bin)/ft_a
                parameters: {weight: 0.5}
              - model: \(bin)/ft_b
                parameters: {weight: 0.5}
            """.utf8).write(to: URL(fileURLWithPath: recipe))
        let run = try CLI.run(["run", recipe, "-o", dir + "/recipe-out", "--quiet"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/recipe-out/config.json"))
        // task-vector from a .bin fine-tune, applied to the .bin base.
        let tv = try CLI.run(["task-vector", "--base", bin + "/base", "--finetuned", bin + "/ft_a", "-o", dir + "/tv.safetensors", "--quiet"])
        #expect(tv.status == 0, "\(tv.stderr)")
        let applied = try CLI.run(["task-arithmetic", "--base", bin + "/base", "--task-vector", dir + "/tv.safetensors",
                                   "-o", dir + "/applied.safetensors", "--quiet"])
        #expect(applied.status == 0, "\(applied.stderr)")
        // inspect and verify.
        let inspect = try CLI.run(["inspect", "--json", TestSupport.fixture("pytorch/views.pt")])
        let report = try JSONParser.parse(Array(inspect.stdout.utf8))
        #expect(inspect.status == 0 && report["tensors"] != nil)
        let verify = try CLI.run(["verify", "--check-finite", TestSupport.fixture("pytorch/bf16_bin/base")])
        #expect(verify.status == 0, "\(verify.stderr)")
        // analyze, negate, sweep and extract-lora: the same results from .bin as from safetensors.
        var analyses: [JSONValue] = []
        for root in [bin, st] {
            let analyze = try CLI.run(["analyze", "--json", "--base", root + "/base", "--model", root + "/ft_a", "--model", root + "/ft_b"])
            #expect(analyze.status == 0, "\(analyze.stderr)")
            // Everything but the input paths.
            guard case .object(let members) = try JSONParser.parse(Array(analyze.stdout.utf8)) else { Issue.record("not an object"); return }
            analyses.append(.object(members.filter { $0.key != "inputs" }))
        }
        #expect(analyses[0] == analyses[1] && analyses[0]["cosine_similarity"] != nil)
        for (label, root) in [("bin", bin), ("st", st)] {
            let negate = try CLI.run(["negate", "--base", root + "/base", "--model", root + "/ft_a", "-o", dir + "/negate-\(label).safetensors", "--quiet"])
            #expect(negate.status == 0, "\(negate.stderr)")
            let sweep = try CLI.run(["sweep", "--method", "task-arithmetic", "--base", root + "/base", "--model", root + "/ft_a",
                                     "--model", root + "/ft_b", "--scale", "0.5,1", "-o", dir + "/sweep-\(label)", "--quiet"])
            #expect(sweep.status == 0, "\(sweep.stderr)")
            let lora = try CLI.run(["extract-lora", "--base", root + "/base", "--model", root + "/ft_a", "--rank", "2",
                                    "-o", dir + "/lora-\(label)", "--quiet"])
            #expect(lora.status == 0, "\(lora.stderr)")
        }
        // The same tensors, byte for byte (each file in its base's tensor order).
        let sameBytes = { (a: String, b: String) throws in
            let x = PyTorchCheckpointTests.bytes(try Checkpoint(path: dir + "/" + a)), y = PyTorchCheckpointTests.bytes(try Checkpoint(path: dir + "/" + b))
            #expect(!x.isEmpty && x.keys.sorted() == y.keys.sorted(), "\(a)")
            for (name, tensor) in x { #expect(tensor.bytes == y[name]?.bytes, "\(a): \(name)") }
        }
        try sameBytes("negate-bin.safetensors", "negate-st.safetensors")
        try sameBytes("sweep-bin/point-001/model.safetensors", "sweep-st/point-001/model.safetensors")
        try sameBytes("lora-bin/adapter_model.safetensors", "lora-st/adapter_model.safetensors")
        // A PEFT adapter saved as adapter_model.bin, through --lora.
        let adapter = try CLI.run(["task-arithmetic", "--base", st + "/base", "--lora", TestSupport.fixture("pytorch/lora_bin"),
                                   "-o", dir + "/lora-merged.safetensors", "--quiet"])
        #expect(adapter.status == 0, "\(adapter.stderr)")
    }
}
