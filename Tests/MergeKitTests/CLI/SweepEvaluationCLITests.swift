import Foundation
import Testing
@testable import MergeKit

/// `merge-cli sweep --eval` and `merge-cli run` with a recipe's `eval:` section: what they print
/// and write, the same choice both ways, and each refusal's exit status.
@Suite("Sweep evaluation: command line")
struct SweepEvaluationCLITests {
    static let fixtures = TestSupport.packageRoot.appendingPathComponent("Fixtures").path
    static let merge = ["--method", "task_arithmetic", "--base", "clip/quick/base",
                        "--model", "wemoe/experts/task0", "--model", "wemoe/experts/task1", "--model", "wemoe/experts/task2"]
    static let eval = (0..<3).flatMap { ["--eval", "wemoe/task\($0)/head.safetensors=wemoe/task\($0)/data.safetensors"] }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test("sweep --eval --json: every point's scores, the choice, the written point; a line per point for people")
    func sweepJSON() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval-cli")
        let result = try CLI.run(["sweep"] + Self.merge + ["--scale", "0,0.3,1"] + Self.eval + ["-o", dir + "/s", "--json"], in: Self.fixtures)
        #expect(result.status == 0, "\(result.stderr)")
        let document = try Self.json(result.stdout)
        let outputs = try #require(document["outputs"] as? [[String: Any]])
        #expect(outputs.count == 3)
        #expect(outputs.map { $0["written"] as? Bool } == [false, true, false])
        let scores = try #require(outputs[1]["scores"] as? [String: Any])
        let tasks = try #require(scores["tasks"] as? [[String: Any]])
        #expect(tasks.map { $0["name"] as? String } == ["task0/head", "task1/head", "task2/head"])
        #expect(tasks.map { $0["accuracy"] as? Double } == [0.75, 0.625, 0.75])  // PyTorch's (Fixtures/wemoe/expected.json)
        let evaluation = try #require(document["evaluation"] as? [String: Any])
        #expect((evaluation["selected"] as? [String: Any])?["index"] as? Int == 1)
        #expect(document["peak_memory_bytes"] is Int)
        // Written point has files with SHA-256; the others none.
        #expect(((outputs[1]["files"] as? [[String: Any]])?.first?["sha256"] as? String)?.count == 64)
        #expect((outputs[0]["files"] as? [Any])?.isEmpty == true)
        #expect(result.stderr.contains("← selected"))
        #expect(result.stderr.contains("selected \(dir)/s/point-001 by the highest mean accuracy over the tasks; wrote 1 of 3 points"))
    }

    @Test("run with a recipe's eval: section chooses and writes as sweep --eval does")
    func recipeMatchesFlags() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval-cli")
        let recipe = """
            merge_method: task_arithmetic
            base_model: clip/quick/base
            models:
              - model: wemoe/experts/task0
              - model: wemoe/experts/task1
              - model: wemoe/experts/task2
            sweep: {lambda: "0.2:0.6:0.2"}
            eval:
              tasks:
                - {head: wemoe/task0/head.safetensors, data: wemoe/task0/data.safetensors, name: zero}
                - {head: wemoe/task1/head.safetensors, data: wemoe/task1/data.safetensors}
                - {head: wemoe/task2/head.safetensors, data: wemoe/task2/data.safetensors}
              keep: all
              select: zero

            """
        FileManager.default.createFile(atPath: dir + "/recipe.yml", contents: Data(recipe.utf8))
        let viaRecipe = try CLI.run(["run", dir + "/recipe.yml", "-o", dir + "/r", "--json", "--quiet"], in: Self.fixtures)
        #expect(viaRecipe.status == 0, "\(viaRecipe.stderr)")
        let flags = try CLI.run(["sweep"] + Self.merge + ["--scale", "0.2:0.6:0.2"] + Self.eval
                                + ["--keep", "all", "--select", "task0/head", "-o", dir + "/f", "--json", "--quiet"], in: Self.fixtures)
        #expect(flags.status == 0, "\(flags.stderr)")
        let a = try #require(try Self.json(viaRecipe.stdout)["evaluation"] as? [String: Any])
        let b = try #require(try Self.json(flags.stdout)["evaluation"] as? [String: Any])
        #expect((a["selected"] as? [String: Any])?["index"] as? Int == (b["selected"] as? [String: Any])?["index"] as? Int)
        #expect(a["select"] as? String == "zero" && a["keep"] as? String == "all")
        #expect((a["tasks"] as? [[String: Any]])?.map { $0["name"] as? String } == ["zero", "task1/head", "task2/head"])
        for point in ["point-000", "point-001", "point-002"] {
            let x = FileManager.default.contents(atPath: "\(dir)/r/\(point)/model.safetensors")
            #expect(x != nil && x == FileManager.default.contents(atPath: "\(dir)/f/\(point)/model.safetensors"))
        }
    }

    @Test("Argument mistakes exit 64 before any work; inputs that do not fit exit 1 naming the file; both as JSON")
    func refusals() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval-cli")
        let grid = ["--scale", "0.5,1"]
        let cases: [(arguments: [String], status: Int32, message: String)] = [
            (["--keep", "all"], 64, "go with --eval"),
            (["--eval", "wemoe/task0/head.safetensors"], 64, "is not HEAD=DATA"),
            (Self.eval + ["--select", "svhn"], 64, "select svhn is neither"),
            (Self.eval + ["--emit", "task-vector"], 64, "cannot be used with --emit task-vector"),
            (Self.eval + ["--partition", "0/2"], 64, "cannot be used with --partition"),
            (Self.eval + ["--eval-batch-size", "0"], 64, "at least 1"),
            (["--eval", "wemoe/task0/head.safetensors=wemoe/missing.safetensors"], 1, "wemoe/missing.safetensors"),
            (["--eval", "wemoe/task0/data.safetensors=wemoe/task0/data.safetensors"], 1, "wemoe/task0/data.safetensors"),
        ]
        for (i, item) in cases.enumerated() {
            let output = "\(dir)/out\(i)"
            let result = try CLI.run(["sweep"] + Self.merge + grid + item.arguments + ["-o", output], in: Self.fixtures)
            #expect(result.status == item.status, "\(item.arguments): \(result.stderr)")
            #expect(result.stderr.contains(item.message), "\(item.arguments): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output))
            if item.status == 1 {
                let json = try CLI.run(["sweep"] + Self.merge + grid + item.arguments + ["-o", output, "--json"], in: Self.fixtures)
                #expect(json.status == 1)
                #expect(((try? Self.json(json.stdout))?["error"]) != nil, "\(json.stdout)")
            }
        }
        // --png without rsvg-convert: refused before any work, naming the fix.
        let noRenderer = try CLI.run(["sweep"] + Self.merge + grid + Self.eval + ["--png", "-o", dir + "/png"], in: Self.fixtures,
                                     environment: ["PATH": "/nonexistent"])
        #expect(noRenderer.status == 1, "\(noRenderer.stderr)")
        #expect(noRenderer.stderr.contains("rsvg-convert") && noRenderer.stderr.contains("librsvg2-bin"), "\(noRenderer.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/png"))
        // --dry-run checks the evaluation and describes it; nothing is written.
        let dry = try CLI.run(["sweep"] + Self.merge + grid + Self.eval + ["--select", "worst", "--dry-run", "--json", "-o", dir + "/dry"],
                              in: Self.fixtures)
        #expect(dry.status == 0, "\(dry.stderr)")
        let described = try Self.json(dry.stdout)
        #expect((described["points"] as? [Any])?.count == 2)
        #expect((described["evaluation"] as? [String: Any])?["select"] as? String == "worst")
        #expect(!FileManager.default.fileExists(atPath: dir + "/dry"))
        let dryWrong = try CLI.run(["sweep"] + Self.merge + grid + ["--eval", "wemoe/task0/head.safetensors=wemoe/nope.safetensors",
                                                                     "--dry-run", "-o", dir + "/dry"], in: Self.fixtures)
        #expect(dryWrong.status == 1 && dryWrong.stderr.contains("wemoe/nope.safetensors"), "\(dryWrong.stderr)")
        // A recipe with eval: but no sweep:, and eval: keys that do not exist: exit 1, with lines.
        let recipe = """
            merge_method: task_arithmetic
            base_model: clip/quick/base
            models:
              - model: wemoe/experts/task0
            eval:
              tasks: [{head: wemoe/task0/head.safetensors, data: wemoe/task0/data.safetensors}]
              kep: all

            """
        FileManager.default.createFile(atPath: dir + "/recipe.yml", contents: Data(recipe.utf8))
        let result = try CLI.run(["run", dir + "/recipe.yml", "-o", dir + "/r"], in: Self.fixtures)
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 5") && result.stderr.contains("no sweep: section"), "\(result.stderr)")
        #expect(result.stderr.contains("line 7") && result.stderr.contains("unknown key \"kep\" in eval"), "\(result.stderr)")
    }
}
