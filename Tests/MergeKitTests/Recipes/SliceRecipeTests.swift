import Foundation
import Testing
@testable import MergeKit

/// Layer-wise recipes (`slices:`, `modules:`) against mergekit 0.1.5's own outputs
/// (Fixtures/mergekit_goldens/make_slices_goldens.py): tiny Llama-shaped models with 6 and 4
/// layers, recipes with model paths relative to the recipe, planned and run through the library.
@Suite("Slices and modules: mergekit goldens")
struct SliceRecipeTests {
    static let folder = TestSupport.fixture("mergekit_goldens/slices")

    /// Plans `case`'s recipe (`folder`/`name`.yml), runs it into `dir`/out and returns the output directory.
    static func run(_ name: String, from folder: String = folder, in dir: String) throws -> String {
        let recipe = try Recipe.load(path: folder + "/\(name).yml")
        let output = dir + "/out"
        let run = try recipe.plan(output: output)
        _ = try MergeRun.run(run.plans, threads: 2)
        return output
    }

    /// The output equals mergekit's: the same tensors and shapes, the values within `ulps` units in
    /// the last place (0: byte for byte) plus `absolute` (float32 rounding of the inputs, about 1,
    /// where merged values cancel: an average is formed here as θ₀ + Σwτ/Σw, in mergekit as
    /// Σwθ/Σw), and the same num_hidden_layers in config.json.
    static func expectGolden(_ name: String, ulps: Double, absolute: Double = 2.5e-7, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let dir = TestSupport.temporaryDirectory("slices")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = try run(name, in: dir)
        let golden = try Checkpoint(path: folder + "/\(name)")
        let mine = try Checkpoint(path: output)
        if ulps == 0 {
            let a = TestSupport.values(mine), e = TestSupport.values(golden)
            #expect(a.keys.sorted() == e.keys.sorted(), sourceLocation: sourceLocation)
            for (tensor, expected) in e {
                #expect(a[tensor]?.info.shape == expected.info.shape && a[tensor]?.values == expected.values, "\(tensor)",
                        sourceLocation: sourceLocation)
            }
        } else {
            expectCheckpointsMatch(mine, golden, ulps: ulps, absolute: absolute, sourceLocation: sourceLocation)
        }
        let config = try JSONParser.parse(FileSystem.readFile(output + "/config.json"))
        let expected = try JSONParser.parse(FileSystem.readFile(folder + "/\(name)/config.json"))
        #expect(config["num_hidden_layers"] != nil && config["num_hidden_layers"] == expected["num_hidden_layers"],
                "num_hidden_layers", sourceLocation: sourceLocation)
        #expect(config["architectures"] == expected["architectures"], sourceLocation: sourceLocation)
    }

    @Test("A frankenmerge of three one-source slices (4-layer model between two ranges of a 6-layer one) copies mergekit's layers byte for byte")
    func frankenLinear() throws { try Self.expectGolden("franken_linear", ulps: 0) }

    @Test("Merged slices (linear) over different ranges: per-source gradients, a filter falling through to the slice's gradient")
    func mergedLinear() throws { try Self.expectGolden("merged_linear", ulps: 2) }

    @Test("task_arithmetic slices with the base among each slice's sources, an offset range and slice-level parameters")
    func mergedTaskArithmetic() throws { try Self.expectGolden("merged_task_arithmetic", ulps: 2) }

    @Test("Filters naming a layer: a source's weight for the source's own tensor (its layer 3 is output layer 1), lambda for the output's")
    func sourceFilters() throws { try Self.expectGolden("source_filters", ulps: 2) }

    @Test("modules: with slices and module-level parameters under the slices'")
    func modulesTaskArithmetic() throws { try Self.expectGolden("modules_task_arithmetic", ulps: 2) }

    @Test("modules: with a frankenmerge")
    func modulesFranken() throws { try Self.expectGolden("modules_franken", ulps: 0) }

    @Test("modules: with models: (the base added, a gradient over every layer)")
    func modulesModels() throws { try Self.expectGolden("modules_models", ulps: 2) }

    @Test("mergekit's orcamini-platy-44layer shape: passthrough slices", .enabled(if: MethodRegistry.recipeMethod(named: "passthrough") != nil))
    func frankenPassthrough() throws { try Self.expectGolden("franken_passthrough", ulps: 0) }

    @Test("mergekit's gradient-slerp shape: one slice of two models, t filters with gradients",
          .enabled(if: MethodRegistry.recipeMethod(named: "slerp") != nil))
    func gradientSlerp() throws { try Self.expectGolden("gradient_slerp", ulps: 4) }
}
