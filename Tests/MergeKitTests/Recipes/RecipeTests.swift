import Foundation
import Testing
@testable import MergeKit

@Suite("Recipe parameters: filters and gradients")
struct ParameterSettingTests {
    @Test("Gradients interpolate piecewise-linearly over layer positions; filters take the first match")
    func resolution() {
        let gradient = ParameterSetting.gradient([0, 1, 0.5])
        #expect(gradient.value(for: "x", t: 0) == .number(0))
        #expect(gradient.value(for: "x", t: 0.25) == .number(0.5))
        #expect(gradient.value(for: "x", t: 0.5) == .number(1))
        #expect(gradient.value(for: "x", t: 1) == .number(0.5))
        let conditions = ParameterSetting.conditions([
            .init(filter: "self_attn", value: .number(0.3)),
            .init(filter: "mlp", value: .gradient([0, 1])),
            .init(filter: nil, value: .number(1)),
        ])
        #expect(conditions.value(for: "model.layers.3.self_attn.q_proj.weight", t: 1) == .number(0.3))
        #expect(conditions.value(for: "model.layers.3.mlp.up_proj.weight", t: 0.5) == .number(0.5))
        #expect(conditions.value(for: "lm_head.weight", t: 0) == .number(1))
        #expect(ParameterSetting.conditions([.init(filter: "mlp", value: .number(2))]).value(for: "norm", t: 0) == nil)
    }

    @Test("Sweep grids: start:stop:step inclusive, comma lists, bad input rejected")
    func grids() {
        let grid = SweepGrid.parse("0:1:0.05")
        #expect(grid?.count == 21 && grid?.first == 0 && grid?.last == 1 && grid?[1] == 0.05 && grid?[3] == 0.15)
        #expect(SweepGrid.parse("0.1, 0.3,0.5") == [0.1, 0.3, 0.5])
        #expect(SweepGrid.parse("1:0:0.1") == nil && SweepGrid.parse("0:1:0") == nil && SweepGrid.parse("a,b") == nil)
    }
}

@Suite("Recipes")
struct RecipeTests {
    let fixtures = TestSupport.fixture("")

    func write(_ text: String, in dir: String, name: String = "recipe.yml") -> String {
        let path = dir + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test("A mergekit ties recipe equals mergekit's own output (golden) and the equivalent CLI merge")
    func mergekitTies() throws {
        let dir = TestSupport.temporaryDirectory("recipe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = write("""
            merge_method: ties
            base_model: \(fixtures)/f32/base
            models:
              - model: \(fixtures)/f32/ft_a
                parameters: {weight: 1.0, density: 0.3}
              - model: \(fixtures)/f32/ft_b
                parameters: {weight: 1.0, density: 0.3}
              - model: \(fixtures)/f32/ft_c
                parameters: {weight: 1.0, density: 0.3}
            parameters: {normalize: true, lambda: 1.0}
            dtype: float32
            """, in: dir)
        try LibraryMerge.run(try Recipe.load(path: recipe), output: dir + "/out.safetensors")
        let mine = TestSupport.values(try Checkpoint(path: dir + "/out.safetensors"))
        let golden = TestSupport.values(try Checkpoint(path: TestSupport.fixture("method_goldens/ties_mergekit.safetensors")))
        for (name, reference) in golden {
            expectClose(try #require(mine[name]).values, reference.values, tolerance: 4e-7, name)
        }
    }

    @Test("Filters and gradients give tensors their own weights")
    func filtersAndGradients() throws {
        let dir = TestSupport.temporaryDirectory("recipe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // weight 0 on attention tensors, a 0 → 1 gradient over the 2 layers elsewhere (t = 0 outside the layers).
        let recipe = write("""
            merge_method: task_arithmetic
            base_model: \(fixtures)/f32/base
            models:
              - model: \(fixtures)/f32/ft_a
                parameters:
                  weight: [{filter: self_attn, value: 0}, {value: [0, 1]}]
            """, in: dir)
        try LibraryMerge.run(try Recipe.load(path: recipe), output: dir + "/out.safetensors")
        let out = TestSupport.values(try Checkpoint(path: dir + "/out.safetensors"))
        let base = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/base")))
        let tuned = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/ft_a")))
        #expect(out["model.layers.1.self_attn.q_proj.weight"]!.values == base["model.layers.1.self_attn.q_proj.weight"]!.values)
        #expect(out["model.layers.0.mlp.up_proj.weight"]!.values == base["model.layers.0.mlp.up_proj.weight"]!.values)
        #expect(out["model.embed_tokens.weight"]!.values == base["model.embed_tokens.weight"]!.values)
        // Layer 1 (t = 1) gets weight 1: θ₀ + (θ − θ₀) = θ up to float rounding.
        expectClose(out["model.layers.1.mlp.up_proj.weight"]!.values, tuned["model.layers.1.mlp.up_proj.weight"]!.values, tolerance: 1e-7)
    }

    /// What loading and planning the recipe at `path` into `output` throws.
    func planError(_ path: String, output: String) throws -> MergeKitError {
        try #require(throws: MergeKitError.self) { try Recipe.load(path: path).plan(output: output) }
    }

    @Test("Every problem is reported at once, with recipe lines, before anything is written")
    func problemsTogether() throws {
        let dir = TestSupport.temporaryDirectory("recipe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shaped = dir + "/shaped.safetensors"
        TestSupport.writeCheckpoint(shaped, [(TensorSpec(name: "model.embed_tokens.weight", dtype: .F32, shape: [16, 32]),
                                              Array(repeating: 0, count: 512))])
        let recipe = write("""
            merge_method: ties
            base_model: \(fixtures)/f32/base
            modles: []
            models:
              - model: \(fixtures)/f32/ft_a
                parameters: {wieght: 1.0, density: 0.3}
              - model: \(fixtures)/f32/missing
            parameters: {normalise: true}
            out_dtype: bfloat17
            """, in: dir)
        let error = try planError(recipe, output: dir + "/out")
        #expect(error.problems.count >= 5, "\(error)")
        for expected in ["line 3: unknown key \"modles\" (did you mean \"models\"?)", "line 9: out_dtype must be one of",
                         "no per-model parameter \"wieght\" (did you mean \"weight\"?)", "has no parameter \"normalise\" (did you mean \"normalize\"?)",
                         "f32/missing: line 7 of", "does not exist"] {
            #expect(error.description.contains(expected), "missing: \(expected)\n\(error)")
        }
        let unknown = write("merge_method: tie\nbase_model: x\nmodels: [{model: y}]\n", in: dir, name: "unknown.yml")
        let method = try planError(unknown, output: dir + "/out")
        #expect(method.description.contains("unknown merge_method \"tie\" (did you mean \"ties\"?)"), "\(method)")
        // A key written as the first part of a longer one is taken for it, before a near short key.
        let short = write("merge_method: ties\nbase: x\nmodels: [{model: y}]\nout: float16\n", in: dir, name: "short.yml")
        let shortError = try planError(short, output: dir + "/out")
        #expect(shortError.description.contains("line 2: unknown key \"base\" (did you mean \"base_model\"?)")
                && shortError.description.contains("line 4: unknown key \"out\" (did you mean \"out_dtype\"?)"), "\(shortError)")
        // A shape mismatch surfaces from planning, still before any output. An embedding of
        // another width ([16, 32] against the base's [32, 16]) is another architecture, not
        // another vocabulary: no tokenizer_source fix.
        let shapes = write("""
            merge_method: task_arithmetic
            base_model: \(fixtures)/f32/base
            models: [{model: \(shaped)}]
            """, in: dir, name: "shapes.yml")
        let mismatch = try planError(shapes, output: dir + "/out")
        #expect(mismatch.code != .vocabularyMismatch
                && mismatch.description.contains("tensor 'model.embed_tokens.weight': has shape [16, 32] but the base")
                && !mismatch.description.contains("tokenizer_source"), "\(mismatch)")
        // Of an embedding's rows only (the base's width): a vocabulary mismatch, at the model's
        // line, with tokenizer_source as the fix.
        let rows = dir + "/rows.safetensors"
        TestSupport.writeCheckpoint(rows, [(TensorSpec(name: "model.embed_tokens.weight", dtype: .F32, shape: [40, 16]),
                                            Array(repeating: 0, count: 640))])
        let vocabulary = write("""
            merge_method: task_arithmetic
            base_model: \(fixtures)/f32/base
            models: [{model: \(rows)}]
            """, in: dir, name: "rows.yml")
        let rowMismatch = try planError(vocabulary, output: dir + "/out")
        #expect(rowMismatch.code == .vocabularyMismatch && rowMismatch.description.contains("line 3 of")
                && rowMismatch.description.contains("has 40 vocabulary rows (model.embed_tokens.weight is [40, 16])")
                && rowMismatch.description.contains("tokenizer_source: base"), "\(rowMismatch)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
    }

    @Test("JSON recipes work like YAML; task-vector inputs are accepted")
    func jsonRecipe() throws {
        let dir = TestSupport.temporaryDirectory("recipe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try LibraryMerge.taskVector(base: "f32/base", finetuned: "f32/ft_b", output: dir + "/tv_b.safetensors")
        let recipe = write("""
            {"merge_method": "task_arithmetic", "base_model": "\(fixtures)/f32/base",
             "models": [{"model": "\(fixtures)/f32/ft_a", "parameters": {"weight": 1}},
                        {"task_vector": "\(dir)/tv_b.safetensors", "parameters": {"weight": 1}}],
             "parameters": {"lambda": 0.5}}
            """, in: dir, name: "recipe.json")
        try LibraryMerge.run(try Recipe.load(path: recipe), output: dir + "/out.safetensors")
        try LibraryMerge.run(try TaskArithmetic(scale: 0.5), LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_a", "f32/ft_b"]),
                             output: OutputSpec(path: dir + "/direct.safetensors"))
        expectCheckpointsMatch(try Checkpoint(path: dir + "/out.safetensors"), try Checkpoint(path: dir + "/direct.safetensors"), ulps: 1)
    }

    @Test("A directory output carries a model card and the recipe")
    func modelCard() throws {
        let dir = TestSupport.temporaryDirectory("recipe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = "merge_method: linear\nmodels:\n  - model: \(fixtures)/f32/ft_a\n  - model: \(fixtures)/f32/ft_b\n"
        let recipe = write(text, in: dir)
        try LibraryMerge.run(try Recipe.load(path: recipe), output: dir + "/out")
        let card = try String(contentsOfFile: dir + "/out/README.md", encoding: .utf8)
        #expect(card.contains("base_model:") && card.contains("**linear**") && card.contains("f32/ft_b") && card.contains(text))
        #expect(try String(contentsOfFile: dir + "/out/recipe.yml", encoding: .utf8) == text)
    }
}

@Suite("Sweeps and script output")
struct SweepTests {
    let fixtures = TestSupport.fixture("")

    /// The paper's TIES spelled in mergekit's semantics (as `sweep --method ties` takes them): the
    /// `ties` command's values of a separate run equal to a point of such a sweep.
    static let mergekitTIES: [String: ParameterSetting] = ["trim_scope": .string("tensor"), "vote": .string("weighted"), "merge": .string("normalized")]

    /// Every tensor of `a` has the bytes of the same tensor in `b`; returns the names that differ.
    static func differing(_ a: String, _ b: String) throws -> [String] {
        let first = try Checkpoint(path: a), second = try Checkpoint(path: b)
        return try second.entries.filter { entry in
            let other = try #require(first.entry(named: entry.name), "\(entry.name) missing from \(a)")
            return Array(other.file.bytes(of: other.info)) != Array(entry.file.bytes(of: entry.info))
        }.map(\.name)
    }

    @Test("A λ sweep's points equal separate merges byte for byte; the manifest lists them with SHA-256")
    func sweepEqualsSeparateRuns() throws {
        let dir = TestSupport.temporaryDirectory("sweep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inputs = LibraryMerge.Inputs(base: "bf16/base", models: ["bf16/ft_a", "bf16/ft_b", "bf16/ft_c"])
        let lambdas = try #require(SweepGrid.parse("0.5:1.5:0.5"))
        try LibraryMerge.run(LibraryMerge.sweep("ties", inputs, grids: [("lambda", lambdas)], fixed: ["density": .number(0.3)]),
                             output: dir + "/sweep", checksums: true)
        let manifest = try JSONParser.parse(try FileSystem.readFile(dir + "/sweep/manifest.json"))
        let points = try #require(manifest["points"]?.arrayValue)
        #expect(points.count == 3)
        for (i, lambda) in [0.5, 1.0, 1.5].enumerated() {
            #expect(points[i]["sweep"]?["lambda"]?.doubleValue == lambda)
            let separate = dir + "/separate-\(i).safetensors"
            let values = Self.mergekitTIES.merging(["density": .number(0.3), "lambda": .number(lambda)]) { $1 }
            try LibraryMerge.run(try LibraryMerge.method("ties", values), inputs, output: OutputSpec(path: separate))
            let pointFile = dir + "/sweep/point-00\(i)/model.safetensors"
            #expect(try Self.differing(pointFile, separate).isEmpty, "at λ = \(lambda)")
            let file = try #require(points[i]["files"]?.arrayValue?.first)
            #expect(file["sha256"]?.stringValue == (try FileDigest.sha256(path: pointFile)))
        }
    }

    /// A grid of `sweep --method NAME` (λ ∈ {0.3, 1, −0.7} and `grids`) and the merge command
    /// (`method` with `values`) whose separate runs must equal its points.
    struct GridCase: Sendable, CustomTestStringConvertible {
        let label: String
        let recipeMethod: String
        var grids: [MethodCase.Grid] = []
        var fixed: [String: ParameterSetting] = [:]
        var weights: [Double] = []
        var emit: EmitKind = .model
        var dtype = "f16"
        let method: String
        var values: [String: ParameterSetting] = [:]
        var testDescription: String { label }
    }

    /// Grid points that differ only in λ share one unscaled merge per chunk; the others don't.
    /// `sweep --method ties` takes mergekit's semantics (the recipe vocabulary), so the separate
    /// runs spell them out.
    @Test("A λ × density grid equals separate merges byte for byte (per-tensor and global TIES, weighted task arithmetic)",
          arguments: [
            GridCase(label: "ties, density grid", recipeMethod: "ties", grids: [.init(name: "density", values: [0.2, 0.5])],
                     method: "ties", values: mergekitTIES),
            GridCase(label: "ties, density grid, global trim", recipeMethod: "ties", grids: [.init(name: "density", values: [0.2, 0.5])],
                     fixed: ["trim_scope": .string("global")], method: "ties", values: mergekitTIES.merging(["trim_scope": .string("global")]) { $1 }),
            GridCase(label: "task arithmetic, weighted", recipeMethod: "task_arithmetic", weights: [1, 0.5, 2], method: "task-arithmetic"),
            // F32 outputs show every rounding: a model, and task vectors (no base added).
            GridCase(label: "task arithmetic, weighted, F32", recipeMethod: "task_arithmetic", weights: [1, 0.5, 2], dtype: "f32", method: "task-arithmetic"),
            GridCase(label: "ties, task vectors, F32", recipeMethod: "ties", fixed: ["density": .number(0.3)], emit: .taskVector, dtype: "f32",
                     method: "ties", values: mergekitTIES.merging(["density": .number(0.3)]) { $1 }),
          ])
    func gridEqualsSeparateRuns(_ grid: GridCase) throws {
        let dir = TestSupport.temporaryDirectory("sweep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dtype = grid.dtype
        let inputs = LibraryMerge.Inputs(base: "\(dtype)/base", models: ["\(dtype)/ft_a", "\(dtype)/ft_b", "\(dtype)/ft_c"], weights: grid.weights)
        let recipe = LibraryMerge.sweep(grid.recipeMethod, inputs, grids: [("lambda", [0.3, 1, -0.7])] + grid.grids.map { ($0.name, $0.values) },
                                        fixed: grid.fixed)
        let outcome = try LibraryMerge.run(recipe, output: dir + "/sweep", emit: grid.emit)
        let points = outcome.summaries
        let densities = !grid.grids.isEmpty
        #expect(points.count == (densities ? 6 : 3))
        var mismatched = 0
        for (i, point) in points.enumerated() {
            var values = grid.values
            values["lambda"] = .number(try #require(point["sweep"]?["lambda"]?.doubleValue))
            if densities { values["density"] = .number(try #require(point["sweep"]?["density"]?.doubleValue)) }
            let separate = dir + "/separate-\(i).safetensors"
            try LibraryMerge.run(try LibraryMerge.method(grid.method, values), inputs, output: OutputSpec(path: separate, emit: grid.emit))
            mismatched += try Self.differing(dir + "/sweep/" + String(format: "point-%03d", i), separate).count
        }
        #expect(mismatched == 0, "\(mismatched) tensors differ from the separate runs")
    }

    @Test("A one-point sweep writes point-000 and a manifest; a sweep that fails to plan leaves no directory behind")
    func onePointAndFailedSweep() throws {
        let dir = TestSupport.temporaryDirectory("sweep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inputs = LibraryMerge.Inputs(base: "f16/base", models: ["f16/ft_a", "f16/ft_b"])
        try LibraryMerge.run(LibraryMerge.sweep("ties", inputs, grids: [("density", [0.2])]), output: dir + "/one")
        #expect(TestSupport.listing(dir + "/one").sorted() == ["manifest.json", "point-000"])
        // Without checksums (or a summary) the manifest lists files and sizes, not digests.
        let manifest = try JSONParser.parse(try FileSystem.readFile(dir + "/one/manifest.json"))
        let point = try #require(manifest["points"]?.arrayValue?.first)
        let file = try #require(point["files"]?.arrayValue?.first)
        #expect(file["bytes"]?.nonNegativeInt != nil && file["sha256"] == nil)
        let bad = try #require(throws: MergeKitError.self) {
            try LibraryMerge.run(LibraryMerge.sweep("ties", inputs, grids: [("density", [0.2, 1.5])]), output: dir + "/bad")
        }
        #expect(bad.code == .invalidArgument && bad.description.contains("density must be in (0, 1], not 1.5"), "\(bad)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/bad"))
        // A problem found only when the inputs are opened (here the base) still leaves no directory.
        let missing = try #require(throws: MergeKitError.self) {
            try LibraryMerge.run(LibraryMerge.sweep("ties", LibraryMerge.Inputs(base: "f16/missing", models: ["f16/ft_a"]), grids: [("density", [0.2])]),
                                 output: dir + "/missing")
        }
        #expect(missing.code == .fileNotFound && missing.description.contains("f16/missing: does not exist"), "\(missing)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/missing"))
    }

    @Test("Task-vector sweeps emit τ only; the same seed gives identical bytes")
    func taskVectorEmitAndSeeds() throws {
        let dir = TestSupport.temporaryDirectory("sweep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = LibraryMerge.sweep("dare_ties", LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_a", "f32/ft_b"]),
                                        grids: [("density", [0.5, 0.7])])
        try LibraryMerge.run(recipe, output: dir + "/one", emit: .taskVector, seed: 3)
        try LibraryMerge.run(recipe, output: dir + "/two", emit: .taskVector, seed: 3, threads: 1)
        for point in ["point-000", "point-001"] {
            let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/one/\(point)/model.safetensors"))
            let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/two/\(point)/model.safetensors"))
            #expect(a == b, "\(point)")
            let checkpoint = try Checkpoint(path: dir + "/one/\(point)")
            #expect(TaskVectorFile.isTaskVector(checkpoint))
            #expect(checkpoint.entry(named: "model.rotary_emb.position_ids") == nil)
        }
    }

    @Test("A plan's description names what each tensor gets; --json reports files with SHA-256 and peak memory")
    func dryRunAndJSON() throws {
        let dir = TestSupport.temporaryDirectory("sweep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // What --dry-run prints: the plan's description (planning writes nothing).
        let plan = try LibraryMerge.plan(try LibraryMerge.method("ties"), LibraryMerge.Inputs(base: "f16/base", models: ["f16/ft_a", "f16/ft_c"]),
                                         output: OutputSpec(path: dir + "/out"))
        let dry = PlanDescription.text(plan)
        #expect(dry.contains("model.layers.0.mlp.down_proj.weight [16, 24] F16 -> F16: merged"))
        #expect(dry.contains("model.rotary_emb.position_ids [1, 8] I64 -> I64: copied from the base"))
        #expect(TestSupport.listing(dir).isEmpty)

        // The command's JSON summary (merge-cli adds the peak memory; no progress bar on a pipe).
        let run = try CLI.run(["ties", "--base", "f16/base", "--model", "f16/ft_a", "--model", "f16/ft_c", "--json", "-o", dir + "/out"], in: fixtures)
        #expect(run.status == 0, "\(run.stderr)")
        let summary = try JSONParser.parse(Array(run.stdout.utf8))
        let file = try #require(summary["files"]?.arrayValue?.first)
        let path = try #require(file["path"]?.stringValue)
        #expect(file["sha256"]?.stringValue == (try FileDigest.sha256(path: path)))
        #expect((summary["peak_memory_bytes"]?.nonNegativeInt ?? 0) > 1_000_000)
        #expect(summary["method"]?.stringValue == "ties")
        #expect(!run.stderr.contains("\r"), "no progress bar when stderr is not a terminal")
    }
}

@Suite("analyze")
struct AnalyzeTests {
    @Test("The numbers are the same bits for 1–4 threads over many work items (exact sums, no per-item store)")
    func threadIndependent() throws {
        let dir = TestSupport.temporaryDirectory("analyze-threads")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 120 tensors of mixed sizes (one work item each), values spanning several magnitudes so
        // that the order of additions would show in the last bits of a plain sum.
        let specs = (0..<120).map { TensorSpec(name: "t\($0)", dtype: .F32, shape: [1 + ($0 * 37) % 50]) }
        func values(_ input: Int) -> [(TensorSpec, [Double])] {
            specs.enumerated().map { t, spec in
                (spec, (0..<spec.shape[0]).map { k in
                    input == 0 ? 0 : sin(Double(input * 7919 + t * 131 + k)) * pow(10.0, Double((t + k + input) % 7) - 3)
                })
            }
        }
        for input in 0..<6 { TestSupport.writeCheckpoint(dir + "/m\(input).safetensors", values(input)) }
        let base = try Checkpoint(path: dir + "/m0.safetensors")
        let inputs = try (1..<6).map { MergeInput(kind: .model, checkpoint: try Checkpoint(path: dir + "/m\($0).safetensors")) }
        let reference = try TaskVectorAnalysis.run(base: base, inputs: inputs, threads: 1)
        for threads in 2...4 {
            let analysis = try TaskVectorAnalysis.run(base: base, inputs: inputs, threads: threads)
            #expect(analysis.cosines.flatMap { $0 }.map(\.bitPattern) == reference.cosines.flatMap { $0 }.map(\.bitPattern), "\(threads) threads")
            #expect(analysis.norms.map(\.bitPattern) == reference.norms.map(\.bitPattern), "\(threads) threads")
        }
    }

    @Test("Cosines, sign conflicts and TIES trimming on hand-made task vectors")
    func knownAnswers() throws {
        let dir = TestSupport.temporaryDirectory("analyze")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = TensorSpec(name: "w", dtype: .F32, shape: [4])
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [(spec, [0, 0, 0, 0])])
        TestSupport.writeCheckpoint(dir + "/a.safetensors", [(spec, [1, 2, 3, 4])])
        TestSupport.writeCheckpoint(dir + "/b.safetensors", [(spec, [-1, -2, -3, 4])])
        TestSupport.writeCheckpoint(dir + "/c.safetensors", [(spec, [4, 3, 2, 1])])
        let inputs = try ["a", "b", "c"].map { MergeInput(kind: .model, checkpoint: try Checkpoint(path: dir + "/\($0).safetensors")) }
        let analysis = try TaskVectorAnalysis.run(base: try Checkpoint(path: dir + "/base.safetensors"), inputs: inputs, density: 0.5)
        #expect(abs(analysis.norms[0] - Double(30).squareRoot()) < 1e-9)
        #expect(abs(analysis.cosines[0][1] - 2.0 / 30) < 1e-9)        // (−1 − 4 − 9 + 16)/30
        #expect(abs(analysis.cosines[0][2] - 20.0 / 30) < 1e-9)       // (4 + 6 + 6 + 4)/30
        #expect(analysis.signConflicts[0][1] == 0.75 && analysis.signConflicts[0][2] == 0)
        // K = 0.5 of d = 4: k = 2, keep |τ| ≥ the 2nd smallest. a keeps {2, 3, 4}: 29/30 of ‖τ‖².
        #expect(abs(analysis.keptEnergy[0] - 29.0 / 30) < 1e-9)
        // Trimmed: a = [0,2,3,4], b = [0,−2,−3,4], c = [4,3,2,0]; S = [4,3,2,8] all positive:
        // the vote drops b's −2 and −3 (2 of its 3 kept entries), nothing of a or c.
        #expect(analysis.droppedByVote == [0, 2.0 / 3, 0])
    }
}
