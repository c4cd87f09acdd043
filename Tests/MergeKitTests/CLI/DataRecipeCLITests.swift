import Foundation
import Testing
@testable import MergeKit

/// `merge-cli run` on recipes that merge from data: the same bytes as the method command with the
/// same settings, and each refusal with its exit status and recipe line.
@Suite("Data recipes: run")
struct DataRecipeCLITests {
    static let fixtures = TestSupport.packageRoot.appendingPathComponent("Fixtures").path

    /// Two tasks of the CLIP fixtures, as recipe entries and as command arguments.
    static let tasks = [0, 1].map { t in
        (model: "datamerging/models/task\(t)", data: "wemoe/task\(t)/data.safetensors", head: "wemoe/task\(t)/head.safetensors")
    }

    static func recipe(method: String, settings: String, extra: String = "") -> String {
        var text = "merge_method: \(method)\nbase_model: clip/quick/base\nmodels:\n"
        for task in tasks { text += "  - model: \(task.model)\n    data: \(task.data)\n    head: \(task.head)\n" }
        return text + settings + extra
    }

    static func write(_ text: String, in dir: String) -> String {
        let path = dir + "/recipe.yml"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test("An AdaMerging recipe writes the bytes (model and coefficients) of the adamerging command with the same settings")
    func sameBytesAsCommand() throws {
        let dir = TestSupport.temporaryDirectory("data-recipe-cli")
        let path = Self.write(Self.recipe(method: "adamerging", settings: """
            data: {batch_size: 4, seed: 3}
            parameters: {steps: 3, granularity: task-wise, clamp: true, init: 0.25}

            """), in: dir)
        let viaRecipe = try CLI.run(["run", path, "-o", dir + "/recipe-out", "--quiet", "--threads", "2"], in: Self.fixtures)
        #expect(viaRecipe.status == 0, "\(viaRecipe.stderr)")
        var arguments = ["adamerging", "--base", "clip/quick/base"]
        for task in Self.tasks { arguments += ["--model", task.model, "--data", task.data, "--head", task.head] }
        arguments += ["--batch-size", "4", "--seed", "3", "--steps", "3", "--granularity", "task-wise", "--clamp", "--init", "0.25",
                      "-o", dir + "/command-out", "--quiet", "--threads", "2"]
        let viaCommand = try CLI.run(arguments, in: Self.fixtures)
        #expect(viaCommand.status == 0, "\(viaCommand.stderr)")
        let a = FileManager.default.contents(atPath: dir + "/recipe-out/model.safetensors")
        let b = FileManager.default.contents(atPath: dir + "/command-out/model.safetensors")
        #expect(a != nil && a == b)
        // The coefficients differ only in the output paths they name.
        let ca = try String(contentsOfFile: dir + "/recipe-out.coefficients.json", encoding: .utf8)
        let cb = try String(contentsOfFile: dir + "/command-out.coefficients.json", encoding: .utf8)
        #expect(ca.replacingOccurrences(of: "recipe-out", with: "X") == cb.replacingOccurrences(of: "command-out", with: "X"))
        // A different setting in the recipe is a different merge (the settings are used).
        let other = Self.write(Self.recipe(method: "adamerging", settings: """
            data: {batch_size: 4, seed: 3}
            parameters: {steps: 3, granularity: task-wise, clamp: true, init: 0.5}

            """), in: dir)
        #expect(try CLI.run(["run", other, "-o", dir + "/other-out", "--quiet"], in: Self.fixtures).status == 0)
        #expect(FileManager.default.contents(atPath: dir + "/other-out/model.safetensors") != a)
    }

    @Test("A RegMean++ recipe writes the bytes of regmean --plusplus with the same settings")
    func regMeanPlusPlus() throws {
        let dir = TestSupport.temporaryDirectory("data-recipe-cli")
        var text = "merge_method: regmean_plusplus\nmodels:\n"
        for t in 0..<3 { text += "  - model: datamerge/experts/task\(t)\n    data: datamerge/task\(t)/data.safetensors\n" }
        text += "data: {samples: 6, batch_size: 3, seed: 2}\nparameters: {alpha: 0.8}\n"
        let path = Self.write(text, in: dir)
        let viaRecipe = try CLI.run(["run", path, "-o", dir + "/recipe.safetensors", "--quiet"], in: Self.fixtures)
        #expect(viaRecipe.status == 0, "\(viaRecipe.stderr)")
        var arguments = ["regmean", "--plusplus"]
        for t in 0..<3 { arguments += ["--model", "datamerge/experts/task\(t)", "--data", "datamerge/task\(t)/data.safetensors"] }
        arguments += ["--samples", "6", "--batch-size", "3", "--seed", "2", "--alpha", "0.8", "-o", dir + "/command.safetensors", "--quiet"]
        let viaCommand = try CLI.run(arguments, in: Self.fixtures)
        #expect(viaCommand.status == 0, "\(viaCommand.stderr)")
        let a = FileManager.default.contents(atPath: dir + "/recipe.safetensors")
        #expect(a != nil && a == FileManager.default.contents(atPath: dir + "/command.safetensors"))
    }

    @Test("A setting the method does not have, or a value it refuses: exit 1 with the recipe's line, also as JSON")
    func refusedSettings() throws {
        let dir = TestSupport.temporaryDirectory("data-recipe-cli")
        let unknown = Self.write(Self.recipe(method: "adamerging", settings: "data: {batch_size: 4}\nparameters:\n  steps: 2\n  alpha: 0.5\n"), in: dir)
        let result = try CLI.run(["run", unknown, "-o", dir + "/out"], in: Self.fixtures)
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 13: parameters.alpha — adamerging: Unknown option '--alpha'"), "\(result.stderr)")
        #expect(result.stderr.contains("merge-cli adamerging --help"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))

        let json = try CLI.run(["run", unknown, "-o", dir + "/out", "--json"], in: Self.fixtures)
        #expect(json.status == 1)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let error = try #require(document["error"] as? [String: Any])
        #expect(error["exit_status"] as? Int == 1 && (error["message"] as? String)?.contains("line 13") == true)

        let badValue = Self.write(Self.recipe(method: "adamerging", settings: "parameters: {steps: -3}\n"), in: dir)
        let refused = try CLI.run(["run", badValue, "-o", dir + "/out"], in: Self.fixtures)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("parameters.steps"), "\(refused.stderr)")
    }

    @Test("Options of run that a merge from data has no use for: exit 64 naming them; schema problems: exit 1 with lines")
    func runOptions() throws {
        let dir = TestSupport.temporaryDirectory("data-recipe-cli")
        let path = Self.write(Self.recipe(method: "fisher", settings: "data: {samples: 4}\n"), in: dir)
        let result = try CLI.run(["run", path, "-o", dir + "/out", "--dtype", "f16", "--compute-dtype", "float32"], in: Self.fixtures)
        #expect(result.status == 64)
        #expect(result.stderr.contains("--dtype, --compute-dtype do not apply to"), "\(result.stderr)")
        let partitioned = try CLI.run(["run", path, "-o", dir + "/out", "--partition", "0/2", "--assemble"], in: Self.fixtures)
        #expect(partitioned.status == 64)
        #expect(partitioned.stderr.contains("--partition, --assemble do not apply to"), "\(partitioned.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out") && !FileManager.default.fileExists(atPath: dir + "/.out.mergekit-parts"))

        let schema = Self.write("merge_method: fisher\nmodels:\n  - model: a\n    weight: 1\nsweep: {samples: [1, 2]}\n", in: dir)
        let problems = try CLI.run(["run", schema, "-o", dir + "/out"], in: Self.fixtures)
        #expect(problems.status == 1)
        #expect(problems.stderr.contains("line 4: unknown key \"weight\" in a models entry"), "\(problems.stderr)")
        #expect(problems.stderr.contains("line 5: unknown key \"sweep\""))
    }
}
