import Foundation
import Testing
@testable import MergeKit

/// `--compute-dtype` on `run`, `sweep` and the merge subcommands (`ComputeDType`).
@Suite("CLI: --compute-dtype")
struct ComputeDTypeCLITests {
    static let f16 = TestSupport.fixture("f16")

    /// A float16 task-arithmetic recipe whose weights and λ make mergekit's roundings matter.
    static func recipe(in dir: String, dtype: String = "float16") -> String {
        let path = dir + "/recipe-\(dtype).yml"
        let text = """
            merge_method: task_arithmetic
            base_model: \(f16)/base
            models:
              - model: \(f16)/ft_a
                parameters: {weight: 0.5}
              - model: \(f16)/ft_b
                parameters: {weight: 0.3}
            parameters: {lambda: 0.8}
            dtype: \(dtype)

            """
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test("A value other than float32, float16 or bfloat16 exits 64 naming the option", arguments: ["F16", "float64", "half", ""])
    func badValue(_ value: String) throws {
        let dir = TestSupport.temporaryDirectory("compute-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = Self.recipe(in: dir)
        for arguments in [["run", recipe, "-o", dir + "/out.safetensors"],
                          ["task-arithmetic", "--base", Self.f16 + "/base", "--model", Self.f16 + "/ft_a", "-o", dir + "/out.safetensors"],
                          ["sweep", "--method", "task_arithmetic", "--base", Self.f16 + "/base", "--model", Self.f16 + "/ft_a",
                           "--scale", "0.5,1", "-o", dir + "/sweep"]] {
            let run = try CLI.run(arguments + ["--compute-dtype", value])
            #expect(run.status == 64 && run.stderr.contains("--compute-dtype"), "\(arguments[0]) \(value): \(run.status) \(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out.safetensors"))
        }
    }

    @Test("run: a float16 recipe computes as mergekit (the library's default), --compute-dtype float32 in full precision")
    func run() throws {
        let dir = TestSupport.temporaryDirectory("compute-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = Self.recipe(in: dir)
        var outputs: [String: [UInt8]] = [:]
        for (label, extra) in [("default", [String]()), ("float16", ["--compute-dtype", "float16"]), ("float32", ["--compute-dtype", "float32"])] {
            let out = dir + "/\(label).safetensors"
            let run = try CLI.run(["run", recipe, "-o", out, "--quiet", "--threads", "2"] + extra)
            #expect(run.status == 0, "\(run.stderr)")
            outputs[label] = try FileSystem.readFile(out)
        }
        // The library, planning the same recipe in each mode, writes the same tensors.
        for (label, compute) in [("default", ComputeDType.float16), ("float32", .float32)] {
            let out = dir + "/library-\(label).safetensors"
            _ = try MergeExecutor.run(try Recipe.load(path: recipe).plan(output: out, compute: compute).plans[0], threads: 1)
            #expect(TestSupport.values(try Checkpoint(path: out)).mapValues(\.values)
                    == TestSupport.values(try Checkpoint(path: dir + "/\(label).safetensors")).mapValues(\.values))
        }
        #expect(outputs["default"] == outputs["float16"])
        #expect(outputs["default"] != outputs["float32"])
        // A float32 recipe is not rounded unless asked.
        let wide = Self.recipe(in: dir, dtype: "float32")
        #expect(try Recipe.load(path: wide).compute == .float32)
        #expect(try Recipe.load(path: recipe).compute == .float16)
    }

    @Test("The merge subcommands compute in float32 unless --compute-dtype is given; sweep likewise")
    func subcommands() throws {
        let dir = TestSupport.temporaryDirectory("compute-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inputs = ["--base", Self.f16 + "/base", "--model", Self.f16 + "/ft_a", "--model", Self.f16 + "/ft_b", "--weight", "0.5", "--weight", "0.3"]
        var outputs: [String: [UInt8]] = [:]
        for (label, extra) in [("default", [String]()), ("float32", ["--compute-dtype", "float32"]), ("float16", ["--compute-dtype", "float16"])] {
            let out = dir + "/\(label).safetensors"
            let run = try CLI.run(["task-arithmetic"] + inputs + ["--scale", "0.8", "-o", out, "--quiet"] + extra)
            #expect(run.status == 0, "\(run.stderr)")
            outputs[label] = try FileSystem.readFile(out)
        }
        #expect(outputs["default"] == outputs["float32"])
        #expect(outputs["default"] != outputs["float16"])
        // The recipe's merge in float16 is the subcommand's with --compute-dtype float16.
        let recipeOut = dir + "/recipe.safetensors"
        #expect(try CLI.run(["run", Self.recipe(in: dir), "-o", recipeOut, "--quiet"]).status == 0)
        #expect(TestSupport.values(try Checkpoint(path: recipeOut)).mapValues(\.values)
                == TestSupport.values(try Checkpoint(path: dir + "/float16.safetensors")).mapValues(\.values))

        // Two λ share one merge per chunk (`MergeWorker.groups`); the first point is λ = 0.8.
        for (label, extra) in [("sweep-default", [String]()), ("sweep-float16", ["--compute-dtype", "float16"])] {
            let run = try CLI.run(["sweep", "--method", "task_arithmetic"] + inputs + ["--scale", "0.8,0.5", "-o", dir + "/" + label, "--quiet"] + extra)
            #expect(run.status == 0, "\(run.stderr)")
        }
        let points = try FileManager.default.contentsOfDirectory(atPath: dir + "/sweep-default").filter { $0.hasPrefix("point") }.sorted()
        #expect(points.count == 2, "\(points)")
        let first = "/" + (points.first ?? "")
        #expect(TestSupport.values(try Checkpoint(path: dir + "/sweep-default" + first)).mapValues(\.values)
                == TestSupport.values(try Checkpoint(path: dir + "/float32.safetensors")).mapValues(\.values))
        #expect(TestSupport.values(try Checkpoint(path: dir + "/sweep-float16" + first)).mapValues(\.values)
                == TestSupport.values(try Checkpoint(path: dir + "/float16.safetensors")).mapValues(\.values))
    }
}
