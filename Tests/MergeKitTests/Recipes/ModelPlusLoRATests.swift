import Foundation
import Testing
@testable import MergeKit

/// `model: PATH+ADAPTER` (mergekit's model-plus-LoRA syntax): the model with the PEFT adapter
/// merged in, made as a stage of its own; how the text is split; adapters that do not fit.
@Suite("Recipes: MODEL+ADAPTER")
struct ModelPlusLoRATests {
    static let f32 = TestSupport.fixture("f32")
    static let lora = TestSupport.fixture("svd_lora")

    /// Task arithmetic of `models` (weights 0.7, 0.5, …) on `base`.
    static func recipe(base: String = "\(f32)/base", models: [String]) -> String {
        var lines = ["merge_method: task_arithmetic", "base_model: \(base)", "models:"]
        for (i, model) in models.enumerated() { lines += ["  - model: \(model)", "    parameters: {weight: \(i == 0 ? 0.7 : 0.5)}"] }
        return (lines + ["dtype: float32"]).joined(separator: "\n")
    }

    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    @Test("How a reference is read: a document's name, MODEL+ADAPTER split at the last + when ADAPTER is an adapter directory, else a path")
    func parsing() throws {
        let dir = TestSupport.temporaryDirectory("reference")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let adapter = "\(Self.lora)/lora_a"
        let resolve = { (p: String) in p.hasPrefix("/") ? p : dir + "/" + p }
        #expect(ModelReference.parse("pair", documents: ["pair"], resolve: resolve) == .reference(.document("pair")))
        #expect(ModelReference.parse("pair+\(adapter)", documents: ["pair"], resolve: resolve)
                == .reference(.withAdapter(.document("pair"), adapter: adapter)))
        #expect(ModelReference.parse("m+odel+\(adapter)", documents: [], resolve: resolve)
                == .reference(.withAdapter(.path("m+odel"), adapter: adapter)))
        // Not an adapter directory after the last +: the whole text is a path.
        #expect(ModelReference.parse("\(Self.f32)/ft_a+\(Self.f32)/ft_b", documents: [], resolve: resolve)
                == .reference(.path("\(Self.f32)/ft_a+\(Self.f32)/ft_b")))
        #expect(ModelReference.parse("+\(adapter)", documents: [], resolve: resolve) == .reference(.path("+\(adapter)")))
        #expect(ModelReference.parse("x+", documents: [], resolve: resolve) == .reference(.path("x+")))
        // Both readings exist: ambiguous.
        try FileManager.default.createDirectory(atPath: dir + "/m+lora", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: adapter, toPath: dir + "/lora")
        #expect(ModelReference.parse(dir + "/m+lora", documents: [], resolve: resolve) == .ambiguous(model: dir + "/m", adapter: "lora"))
    }

    @Test("MODEL+ADAPTER merges as the model with PEFT's merge_and_unload applied: byte-identical to the adapter applied by the library first, and PEFT's own merged model within rounding")
    func equalsAppliedModel() throws {
        let dir = TestSupport.temporaryDirectory("model-plus-lora")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The adapter applied by the library: θ_base + 1·(α/r)·B·A.
        let applied = try MergePlan(base: try Checkpoint(path: "\(Self.f32)/base"), inputs: [MergeInput(lora: try LoRAAdapter(path: "\(Self.lora)/lora_a"))],
                                    method: try TaskArithmetic(scale: 1), output: OutputSpec(path: dir + "/applied"))
        _ = try MergeRun.run([applied], threads: 1)
        let models = ["\(Self.f32)/ft_b"]
        _ = try MergeRun.run(try Recipe.parse(Self.recipe(models: [dir + "/applied"] + models), path: dir + "/a.yml").plan(output: dir + "/by-hand").plans, threads: 1)
        // PATH+ADAPTER in the recipe.
        let file = try RecipeFile.parse(Self.recipe(models: ["\(Self.f32)/base+\(Self.lora)/lora_a"] + models), path: dir + "/b.yml")
        let staged = try file.plan(output: dir + "/plus")
        #expect(staged.stages.count == 2 && staged.stages[0].stage.kind == .adapter(model: "\(Self.f32)/base", adapter: "\(Self.lora)/lora_a"))
        #expect(staged.stages[0].stage.line == 4 && staged.stages[0].role == .intermediate)
        let outcome = try MergeRun.run(staged, threads: 2)
        #expect(outcome.stages.count == 1 && !FileSystem.exists(outcome.stages[0].location))
        #expect(try Self.bytes(dir + "/plus/model.safetensors") == Self.bytes(dir + "/by-hand/model.safetensors"))
        // PEFT's merge_and_unload of the same adapter, merged as a model.
        _ = try MergeRun.run(try Recipe.parse(Self.recipe(models: ["\(Self.lora)/merged_lora_a.safetensors"] + models), path: dir + "/c.yml")
                             .plan(output: dir + "/peft").plans, threads: 1)
        let mine = TestSupport.values(try Checkpoint(path: dir + "/plus")), peft = TestSupport.values(try Checkpoint(path: dir + "/peft"))
        for (name, reference) in peft where reference.info.dtype.isMergeable {
            let worst = zip(mine[name]!.values, reference.values).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 2e-7, "\(name): \(worst)")
        }
    }

    @Test("mergekit's goldens: MODEL+ADAPTER as the base and as a model, and a document's name with an adapter")
    func goldens() throws {
        let dir = TestSupport.temporaryDirectory("lora-goldens")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["multidoc_lora", "multidoc_named_lora"] {
            let file = try StagedRunTests.goldenRecipe(name + ".yml", in: dir)
            let staged = try file.plan(output: dir + "/" + name)
            #expect(staged.intermediates.count == 2, "\(staged.stages.map(\.stage.label))")
            _ = try MergeRun.run(staged, threads: 2)
            // mergekit merges through PEFT in float32 too: within one float32 ulp at 1 (3e-8 measured).
            #expect(try StagedRunTests.difference(dir + "/" + name + "/model.safetensors", golden: name + ".safetensors") <= 1.2e-7, "\(name)")
        }
        #expect(TestSupport.listing(dir) == ["multidoc_lora", "multidoc_lora.yml", "multidoc_named_lora", "multidoc_named_lora.yml"])
    }

    @Test("An adapter that does not fit its model, and texts that are neither a path nor MODEL+ADAPTER, are refused before any work with their lines")
    func refusals() throws {
        let dir = TestSupport.temporaryDirectory("lora-refusals")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A Llama adapter on GPT-2.
        var error = try #require(throws: MergeKitError.self) {
            try RecipeFile.parse(Self.recipe(base: "\(Self.lora)/gpt2_base", models: ["\(Self.lora)/gpt2_ft+\(Self.lora)/lora_a"]), path: dir + "/r.yml")
                .plan(output: dir + "/out")
        }
        let all = error.problems.isEmpty ? [error] : error.problems
        #expect(!all.isEmpty && all.allSatisfy { $0.description.contains("line 4 of \(dir)/r.yml: ") && $0.description.contains("lora_a") }, "\(error)")
        #expect(all.contains { $0.description.contains("targets model.layers.0.") && $0.description.contains("which the base (\(Self.lora)/gpt2_ft) does not have") },
                "\(error)")
        #expect(TestSupport.listing(dir).isEmpty)
        // X+Y where Y is no adapter directory and X+Y does not exist.
        error = try #require(throws: MergeKitError.self) {
            try RecipeFile.parse(Self.recipe(models: ["\(Self.f32)/ft_a+\(Self.f32)/ft_b"]), path: dir + "/r.yml").plan(output: dir + "/out")
        }
        #expect(error.description.contains("line 4: \"\(Self.f32)/ft_a+\(Self.f32)/ft_b\" does not exist, and is not MODEL+ADAPTER either")
                && error.description.contains("splits at the last +"), "\(error)")
        // A path holding + is a path.
        try FileManager.default.copyItem(atPath: "\(Self.f32)/ft_a", toPath: dir + "/a+b")
        let staged = try RecipeFile.parse(Self.recipe(models: [dir + "/a+b"]), path: dir + "/r.yml").plan(output: dir + "/out")
        #expect(staged.isSingle && staged.target.plans[0].inputs[0].path == dir + "/a+b")
        // Both readings: refused.
        try FileManager.default.copyItem(atPath: "\(Self.lora)/lora_a", toPath: dir + "/b")
        try FileManager.default.copyItem(atPath: "\(Self.f32)/ft_a", toPath: dir + "/a")
        error = try #require(throws: MergeKitError.self) {
            try RecipeFile.parse(Self.recipe(models: [dir + "/a+b"]), path: dir + "/r.yml").plan(output: dir + "/out")
        }
        #expect(error.description.contains("is both an existing path and MODEL+ADAPTER"), "\(error)")
    }
}
