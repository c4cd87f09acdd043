import Foundation
import Testing
@testable import MergeKit

/// What layer-wise recipes refuse before any work, each problem at its recipe line, and the
/// neighbouring cases they accept.
@Suite("Slices and modules: errors before work")
struct SliceRecipeErrorTests {
    static let models = TestSupport.fixture("mergekit_goldens/slices/models")

    /// Plans `text` and returns every problem's message (`RecipeProblems`).
    static func problems(_ text: String, emit: EmitKind = .model, sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
        RecipeProblems.of(text, emit: emit, sourceLocation: sourceLocation)
    }

    /// Expects exactly the problems matching `expected` (`RecipeProblems`).
    static func expect(_ text: String, _ expected: [[String]], emit: EmitKind = .model, sourceLocation: SourceLocation = #_sourceLocation) {
        RecipeProblems.expect(text, expected, emit: emit, sourceLocation: sourceLocation)
    }

    @Test("A recipe without merge_method says that alone, at line 1: not also that \"\" needs a base_model (whole models and slices)")
    func missingMethod() {
        Self.expect("""
            models:
              - model: \(Self.models)/a
              - model: \(Self.models)/b
            """, [["line 1:", "merge_method is missing", "Add e.g. merge_method: ties"]])
        Self.expect("""
            slices:
              - sources:
                  - model: \(Self.models)/a
                    layer_range: [0, 2]
                  - model: \(Self.models)/b
                    layer_range: [0, 2]
            """, [["line 1:", "merge_method is missing"]])
    }

    @Test("The schema: one of models, slices and modules; sources with model and layer_range; modules with slices or models")
    func schema() {
        Self.expect("""
            merge_method: linear
            models: [{model: \(Self.models)/a}]
            slices: [{sources: [{model: \(Self.models)/a, layer_range: [0, 2]}]}]
            """, [["line 3:", "give one of models, slices and modules, not models and slices"]])
        Self.expect("""
            merge_method: linear
            slices:
              - sources:
                  - model: \(Self.models)/a
                  - model: \(Self.models)/b
                    layer_range: [0]
                  - model: \(Self.models)/b
                    layer_range: [0, 1.5]
                    layers: 3
              - source: []
            """, [["line 4:", "layer_range is missing"], ["line 6:", "layer_range must be a list of two layer indices"],
                  ["line 8:", "layer_range must hold two whole numbers"],
                  ["line 9:", "unknown key \"layers\" in a slice's source", "A source has model, layer_range, parameters"],
                  ["line 10:", "unknown key \"source\" in a slice (did you mean \"sources\"?)"]])
        Self.expect("""
            merge_method: linear
            modules:
              default:
                slices: [{sources: [{model: \(Self.models)/a, layer_range: [0, 2]}]}]
                models: [{model: \(Self.models)/a}]
              other: {parameters: {weight: 1}}
            """, [["line 5:", "module default needs one of slices and models, not both"],
                  ["line 6:", "module other needs one of slices and models"]])
        // A misspelt top-level key is suggested as the nearest (a transposition is one edit).
        Self.expect("merge_method: linear\nmodles: []\n", [["line 2:", "unknown key \"modles\" (did you mean \"models\"?)"], ["models is missing"]])
        #expect(editDistance("modles", "models") == 1 && editDistance("modles", "modules") == 1 && editDistance("ab", "ba") == 1)
    }

    @Test("Ranges: empty, reversed, negative or past a model's layers; sources of one slice of different lengths")
    func ranges() throws {
        Self.expect("""
            merge_method: linear
            slices:
              - sources: [{model: \(Self.models)/c, layer_range: [2, 6]}]
              - sources: [{model: \(Self.models)/a, layer_range: [4, 2]}]
              - sources: [{model: \(Self.models)/a, layer_range: [3, 3]}]
              - sources: [{model: \(Self.models)/a, layer_range: [-1, 2]}]
              - sources:
                  - {model: \(Self.models)/a, layer_range: [0, 4]}
                  - {model: \(Self.models)/b, layer_range: [0, 3]}
            """, [["line 3:", "layer_range [2, 6] reaches layer 5, but \(Self.models)/c has 4 layers (0 to 3)", "Keep END at most 4"],
                  ["line 4:", "layer_range [4, 2] is reversed"], ["line 5:", "layer_range [3, 3] is empty"],
                  ["line 6:", "layer_range [-1, 2] is reversed"],
                  ["line 7:", "the sources of this slice give 4, 3 layers; every source of a slice gives the same number of layers"]])
        // Overlapping ranges, a layer repeated, the full depth: all accepted (mergekit stacks them);
        // so is residual_weight, which mergekit reads and never uses.
        let dir = TestSupport.temporaryDirectory("slice-ranges")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let accepted = try? Recipe.parse("""
            merge_method: linear
            slices:
              - sources: [{model: \(Self.models)/a, layer_range: [0, 6]}]
              - sources: [{model: \(Self.models)/a, layer_range: [2, 4]}]
                residual_weight: 0.5
              - sources: [{model: \(Self.models)/c, layer_range: [3, 4]}]
            """, path: dir + "/recipe.yml").plan(output: dir + "/out")
        #expect(accepted?.plans.first.map { $0.tensors.filter { $0.name.hasSuffix(".input_layernorm.weight") }.count } == 9)
    }

    @Test("Roles: a base not among a slice's sources, a model twice in a slice, slices merging different numbers of models")
    func roles() {
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            slices:
              - sources:
                  - {model: \(Self.models)/a, layer_range: [0, 3]}
                  - {model: \(Self.models)/b, layer_range: [0, 3]}
              - sources:
                  - {model: \(Self.models)/base, layer_range: [3, 6]}
                  - {model: \(Self.models)/a, layer_range: [3, 6]}
                  - {model: \(Self.models)/a, layer_range: [0, 3]}
            """, [["line 4:", "the base model \(Self.models)/base is not among this slice's sources", "Add a source - model: \(Self.models)/base"],
                  ["line 10:", "\(Self.models)/a is listed twice in one slice"]])
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            slices:
              - sources:
                  - {model: \(Self.models)/base, layer_range: [0, 3]}
                  - {model: \(Self.models)/a, layer_range: [0, 3]}
                  - {model: \(Self.models)/b, layer_range: [0, 3]}
              - sources:
                  - {model: \(Self.models)/base, layer_range: [3, 6]}
                  - {model: \(Self.models)/a, layer_range: [3, 6]}
            """, [["line 8:", "this slice merges 1 model(s) with its base, the slice at line 4 2"]])
        Self.expect("""
            merge_method: task_arithmetic
            slices: [{sources: [{model: \(Self.models)/a, layer_range: [0, 3]}]}]
            """, [["line 2:", "task_arithmetic merges against a base model, and this slice has none"]])
    }

    @Test("Modules: a name the architecture lacks, slices: on a model with several modules, a module left out")
    func modules() throws {
        Self.expect("""
            merge_method: linear
            modules:
              decoder: {slices: [{sources: [{model: \(Self.models)/a, layer_range: [0, 2]}]}]}
            """, [["line 3:", "has no module \"decoder\"", "Its modules: default"]])
        let dir = TestSupport.temporaryDirectory("slice-modules")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t5 = try LayerLayoutTests.checkpoint(["shared.weight"] + LayerLayoutTests.layers("encoder.block.", 2, ["layer.0.w"])
                                                 + LayerLayoutTests.layers("decoder.block.", 2, ["layer.0.w"]) + ["lm_head.weight"],
                                                 in: dir, name: "t5")
        Self.expect("""
            merge_method: linear
            slices: [{sources: [{model: \(t5.path), layer_range: [0, 2]}]}]
            """, [["line 2:", "slices: stack the layers of a model with one module", "has 3: encoder, decoder, shared",
                   "Write modules: with one entry per module"]])
        Self.expect("""
            merge_method: linear
            modules:
              encoder: {slices: [{sources: [{model: \(t5.path), layer_range: [0, 2]}]}]}
            """, [["modules: leaves out module decoder"], ["modules: leaves out module shared"]])
    }

    @Test("Sources of another architecture, missing or extra tensors in a layer, unknown layouts")
    func tensors() throws {
        let dir = TestSupport.temporaryDirectory("slice-tensors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = TestSupport.values(try Checkpoint(path: Self.models + "/a"))
        func variant(_ name: String, _ edit: (inout [String: (info: TensorInfo, values: [Double])]) -> Void) -> String {
            var tensors = a
            edit(&tensors)
            let path = dir + "/\(name).safetensors"
            TestSupport.writeCheckpoint(path, tensors.sorted { $0.key < $1.key }.map {
                (TensorSpec(name: $0.key, dtype: .F32, shape: $0.value.info.shape), $0.value.values)
            })
            return path
        }
        let lacking = variant("lacking") { $0["model.layers.1.mlp.up_proj.weight"] = nil }
        let extra = variant("extra") { $0["model.layers.2.mlp.extra.weight"] = $0["model.layers.2.mlp.up_proj.weight"] }
        let reshaped = variant("reshaped") { t in
            let old = t["model.layers.0.input_layernorm.weight"]!
            t["model.layers.0.input_layernorm.weight"] = (TensorInfo(name: "", dtype: .F32, shape: [2, 2], begin: 0, end: 16), old.values)
        }
        let gpt2 = dir + "/gpt2.safetensors"
        TestSupport.writeCheckpoint(gpt2, LayerLayoutTests.layers("transformer.h.", 6, ["mlp.w"]).map { (TensorSpec(name: $0, dtype: .F32, shape: [1]), [0]) })
        let timm = dir + "/timm.safetensors"
        TestSupport.writeCheckpoint(timm, LayerLayoutTests.layers("blocks.", 6, ["mlp.w"]).map { (TensorSpec(name: $0, dtype: .F32, shape: [1]), [0]) })
        Self.expect("""
            merge_method: linear
            slices:
              - sources:
                  - {model: \(Self.models)/a, layer_range: [0, 3]}
                  - {model: \(lacking), layer_range: [0, 3]}
                  - {model: \(extra), layer_range: [0, 3]}
                  - {model: \(reshaped), layer_range: [0, 3]}
            """, [["lacking.safetensors: tensor 'model.layers.1.mlp.up_proj.weight': line 5 of", "is missing, and this slice merges it into model.layers.1.mlp.up_proj.weight"],
                  ["extra.safetensors: tensor 'model.layers.2.mlp.extra.weight': line 6 of", "is not in \(Self.models)/a", "silently drop it"],
                  ["reshaped.safetensors: tensor 'model.layers.0.input_layernorm.weight': line 7 of", "has shape [2, 2]"]])
        Self.expect("""
            merge_method: linear
            slices:
              - sources: [{model: \(Self.models)/a, layer_range: [0, 3]}]
              - sources: [{model: \(gpt2), layer_range: [0, 3]}]
            """, [["gpt2.safetensors: is a GPT-2-style decoder", "but the output is laid out as \(Self.models)/a, a Llama-style decoder"]])
        Self.expect("""
            merge_method: linear
            slices:
              - sources: [{model: \(Self.models)/a, layer_range: [0, 3]}]
              - sources: [{model: \(timm), layer_range: [0, 3]}]
            """, [["timm.safetensors: line 4 of", "has no layers named in a way MergeKit knows"]])
    }

    @Test("Parameter names and values of slices and sources are checked like the recipe's, at their lines")
    func parameters() {
        Self.expect("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            slices:
              - sources:
                  - {model: \(Self.models)/base, layer_range: [0, 3]}
                  - model: \(Self.models)/a
                    layer_range: [0, 3]
                    parameters: {wieght: 1, normalize: true}
                parameters: {lamda: 0.5, weight: .nan}
            """, [["line 6:", "task_arithmetic takes no per-model parameter \"normalize\""],
                  ["line 6:", "task_arithmetic takes no per-model parameter \"wieght\" (did you mean \"weight\"?)"],
                  ["line 9:", "task_arithmetic has no parameter \"lamda\" (did you mean \"lambda\"?)"],
                  ["line 9:", "weight"]])
    }

    @Test("A layer-wise recipe writes a model, not a task vector")
    func taskVector() {
        Self.expect("""
            merge_method: linear
            slices: [{sources: [{model: \(Self.models)/a, layer_range: [0, 3]}]}]
            """, [["a layer-wise recipe (slices, modules) writes a model"]], emit: .taskVector)
    }

    @Test("A whole-model recipe needs a known layout only for a gradient")
    func wholeModelGradient() throws {
        let dir = TestSupport.temporaryDirectory("slice-gradient")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["base", "ft"] {
            TestSupport.writeCheckpoint(dir + "/\(name).safetensors", LayerLayoutTests.layers("blocks.", 2, ["mlp.w"]).map {
                (TensorSpec(name: $0, dtype: .F32, shape: [1]), [name == "base" ? 0 : 1])
            })
        }
        let text = { (weight: String) in "merge_method: task_arithmetic\nbase_model: \(dir)/base.safetensors\nmodels:\n  - model: \(dir)/ft.safetensors\n    parameters: {weight: \(weight)}\n" }
        Self.expect(text("[0, 1]"), [["base.safetensors: line 2 of", "has no layers named in a way MergeKit knows", "layer gradients"]])
        let recipe = try Recipe.parse(text("0.5"), path: dir + "/recipe.yml")
        #expect(try recipe.plan(output: dir + "/out").plans.count == 1)
    }
}
