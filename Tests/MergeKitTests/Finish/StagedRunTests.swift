import Foundation
import Testing
@testable import MergeKit

/// Running recipe files of several stages (`MergeRun.run(_ staged:)`): the output equals the
/// stages run by hand, mergekit's goldens, and the work directory's policy (removed on success and
/// on failure, kept on request, a killed run's removed by the next).
@Suite("Multi-document recipes: runs and the work directory")
struct StagedRunTests {
    static let f32 = TestSupport.fixture("f32")
    static let goldens = TestSupport.fixture("mergekit_goldens")

    static let pair = """
        name: pair
        merge_method: linear
        models:
          - model: \(f32)/ft_a
            parameters: {weight: 0.5}
          - model: \(f32)/ft_b
            parameters: {weight: 0.5}
        dtype: float32
        """

    /// The output document, reading `pair` (as written: a name, or a path).
    static func final(_ pair: String) -> String {
        """
        merge_method: ties
        base_model: \(f32)/base
        models:
          - model: \(pair)
            parameters: {weight: 1.0, density: 0.5}
          - model: \(f32)/ft_c
            parameters: {weight: 0.8, density: 0.7}
        parameters: {normalize: true}
        dtype: float32
        """
    }

    static func write(_ text: String, to path: String) {
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }

    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// The worst absolute difference between the float tensors of `path` and the golden `name`.
    static func difference(_ path: String, golden name: String) throws -> Double {
        let mine = TestSupport.values(try Checkpoint(path: path))
        let golden = TestSupport.values(try Checkpoint(path: goldens + "/" + name))
        #expect(golden.count == 21)
        var worst = 0.0
        for (tensor, reference) in golden {
            let values = try #require(mine[tensor], "\(tensor) missing from \(path)")
            #expect(values.info.shape == reference.info.shape)
            worst = max(worst, zip(values.values, reference.values).map { abs($0 - $1) }.max() ?? 0)
        }
        return worst
    }

    /// A mergekit golden recipe with FIXTURES replaced, written into `dir`.
    static func goldenRecipe(_ name: String, in dir: String) throws -> RecipeFile {
        let text = try String(contentsOfFile: goldens + "/" + name, encoding: .utf8)
            .replacingOccurrences(of: "FIXTURES", with: TestSupport.fixture("").hasSuffix("/") ? String(TestSupport.fixture("").dropLast()) : TestSupport.fixture(""))
        write(text, to: dir + "/" + name)
        return try RecipeFile.load(path: dir + "/" + name)
    }

    /// No MergeKit temporary, and nothing registered for removal, is left.
    static func expectNoTemporaries(in dir: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let left = TestSupport.listing(dir).filter { OutputTemporaries.isTemporaryName($0) }
        #expect(left.isEmpty, "temporaries left in \(dir): \(left)", sourceLocation: sourceLocation)
        #expect(!TemporaryFiles.registeredPaths.contains { $0.hasPrefix(dir + "/") }, sourceLocation: sourceLocation)
    }

    @Test("A two-stage recipe's output is byte-identical to running the two stages by hand")
    func equalsByHand() throws {
        let dir = TestSupport.temporaryDirectory("by-hand")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // By hand: the first document to dir/pair, then the second reading that directory.
        _ = try MergeRun.run(try Recipe.parse(Self.pair, path: dir + "/one.yml").plan(output: dir + "/pair").plans, threads: 2)
        _ = try MergeRun.run(try Recipe.parse(Self.final(dir + "/pair"), path: dir + "/two.yml").plan(output: dir + "/hand").plans, threads: 2)
        // As one recipe file.
        let file = try RecipeFile.parse(Self.pair + "\n---\n" + Self.final("pair"), path: dir + "/both.yml")
        let outcome = try MergeRun.run(try file.plan(output: dir + "/staged"), threads: 3, summarize: true)
        for name in ["model.safetensors", "config.json", "generation_config.json", "tokenizer_config.json"] {
            #expect(try Self.bytes(dir + "/staged/" + name) == Self.bytes(dir + "/hand/" + name), "\(name)")
        }
        #expect(TestSupport.listing(dir + "/staged") == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                                                         "recipe.yml", "tokenizer_config.json"])
        // The recipe and its card name the intermediate as the recipe does; the summaries say where it was.
        #expect(try String(contentsOfFile: dir + "/staged/recipe.yml", encoding: .utf8) == file.text)
        let card = try String(contentsOfFile: dir + "/staged/README.md", encoding: .utf8)
        #expect(card.contains("| `pair` | model | 1.0 |") && !card.contains(".mergekit-tmp"))
        #expect(outcome.stages.count == 1 && outcome.stages[0].stage.stage.name == "pair" && !outcome.stages[0].kept)
        #expect(outcome.stages[0].location.hasSuffix("/stage-000") && outcome.stages[0].summary?["tensors_merged"] == .int(21))
        #expect(outcome.output.results[0].outputPath == dir + "/staged")
        #expect(TestSupport.listing(dir) == ["hand", "pair", "staged"])
        Self.expectNoTemporaries(in: dir)
    }

    @Test("A layer-wise document reads an earlier document's output by name: slices from an intermediate equal the stages run by hand")
    func slicesOfAnIntermediate() throws {
        let dir = TestSupport.temporaryDirectory("slices-staged")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let models = TestSupport.fixture("mergekit_goldens/slices/models")
        let blend = """
            name: blend
            merge_method: linear
            models:
              - model: \(models)/a
                parameters: {weight: 0.5}
              - model: \(models)/b
                parameters: {weight: 0.5}
            dtype: float32
            """
        func stack(_ blend: String) -> String {
            """
            merge_method: linear
            slices:
              - sources:
                  - model: \(blend)
                    layer_range: [0, 4]
              - sources:
                  - model: \(models)/a
                    layer_range: [2, 6]
            dtype: float32
            """
        }
        _ = try MergeRun.run(try Recipe.parse(blend, path: dir + "/one.yml").plan(output: dir + "/blend").plans, threads: 2)
        _ = try MergeRun.run(try Recipe.parse(stack(dir + "/blend"), path: dir + "/two.yml").plan(output: dir + "/hand").plans, threads: 2)
        let file = try RecipeFile.parse(blend + "\n---\n" + stack("blend"), path: dir + "/both.yml")
        let staged = try file.plan(output: dir + "/staged")
        #expect(staged.stages.map(\.stage.name) == ["blend", nil])
        _ = try MergeRun.run(staged, threads: 2)
        for name in ["model.safetensors", "config.json"] {
            #expect(try Self.bytes(dir + "/staged/" + name) == Self.bytes(dir + "/hand/" + name), "\(name)")
        }
        let layers = try Checkpoint(path: dir + "/staged").tensorNames.filter { $0.hasPrefix("model.layers.") }
        #expect(Set(layers.map { $0.split(separator: ".")[2] }) == ["0", "1", "2", "3", "4", "5", "6", "7"])
        Self.expectNoTemporaries(in: dir)
    }

    @Test("mergekit-multi's goldens: documents in any order, the intermediates kept in a work directory of one's own")
    func chainGolden() throws {
        let dir = TestSupport.temporaryDirectory("chain")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = try Self.goldenRecipe("multidoc_chain.yml", in: dir)
        let staged = try file.plan(output: dir + "/out", workDirectory: .init(path: dir + "/work", keep: true))
        #expect(staged.stages.map(\.stage.name) == ["pair", "blend", nil])
        let outcome = try MergeRun.run(staged, threads: 2)
        #expect(outcome.stages.map(\.location) == [dir + "/work/pair", dir + "/work/blend"] && outcome.stages.allSatisfy(\.kept))
        #expect(TestSupport.listing(dir + "/work") == ["blend", "pair"])
        #expect(TestSupport.listing(dir + "/work/pair").contains("config.json") && !TestSupport.listing(dir + "/work/pair").contains("recipe.yml"))
        // mergekit rounds in float32 as MergeKit does: within one float32 ulp at 1 (outputs reach about 1.1; 3.7e-9 measured).
        #expect(try Self.difference(dir + "/work/pair/model.safetensors", golden: "multidoc_chain_pair.safetensors") <= 1.2e-7)
        #expect(try Self.difference(dir + "/work/blend/model.safetensors", golden: "multidoc_chain_blend.safetensors") <= 1.2e-7)
        #expect(try Self.difference(dir + "/out/model.safetensors", golden: "multidoc_chain.safetensors") <= 1.2e-7)
        Self.expectNoTemporaries(in: dir)
        Self.expectNoTemporaries(in: dir + "/work")
    }

    @Test("A work directory of one's own: intermediates removed at the end unless kept; a directory the run created goes too, the user's stays with what it held")
    func ownWorkDirectory() throws {
        let dir = TestSupport.temporaryDirectory("own-work")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = try RecipeFile.parse(Self.pair + "\n---\n" + Self.final("pair"), path: dir + "/r.yml")
        // Created by the run, not kept: gone.
        _ = try MergeRun.run(try file.plan(output: dir + "/out1", workDirectory: .init(path: dir + "/new")), threads: 1)
        #expect(!FileSystem.exists(dir + "/new") && FileSystem.exists(dir + "/out1/model.safetensors"))
        // The user's, holding a file of theirs: only the intermediate goes.
        try FileManager.default.createDirectory(atPath: dir + "/mine", withIntermediateDirectories: false)
        Self.write("notes", to: dir + "/mine/notes.txt")
        _ = try MergeRun.run(try file.plan(output: dir + "/out2", workDirectory: .init(path: dir + "/mine")), threads: 1)
        #expect(TestSupport.listing(dir + "/mine") == ["notes.txt"])
        #expect(try Self.bytes(dir + "/out1/model.safetensors") == Self.bytes(dir + "/out2/model.safetensors"))
        // Kept; a second run needs overwriting to replace the kept intermediate.
        _ = try MergeRun.run(try file.plan(output: dir + "/out3", workDirectory: .init(path: dir + "/mine", keep: true)), threads: 1)
        #expect(TestSupport.listing(dir + "/mine") == ["notes.txt", "pair"])
        #expect(throws: MergeKitError.self) { try file.plan(output: dir + "/out4", workDirectory: .init(path: dir + "/mine", keep: true)) }
        _ = try MergeRun.run(try file.plan(output: dir + "/out4", overwrite: true, workDirectory: .init(path: dir + "/mine", keep: true)), threads: 1)
        #expect(try Self.bytes(dir + "/out4/model.safetensors") == Self.bytes(dir + "/out1/model.safetensors"))
        Self.expectNoTemporaries(in: dir)
        Self.expectNoTemporaries(in: dir + "/mine")
    }

    /// A recipe whose second stage fails when it runs (not before): a task vector made from the
    /// f32 base applied to the intermediate, whose fingerprint is only known once it is written.
    static func failingRecipe(in dir: String) throws -> RecipeFile {
        let base = try Checkpoint(path: "\(f32)/base")
        let vector = try MergePlan(base: base, inputs: [MergeInput(kind: .model, checkpoint: try Checkpoint(path: "\(f32)/ft_c"))],
                                   method: try TaskArithmetic(), output: OutputSpec(path: dir + "/tau.safetensors", emit: .taskVector))
        _ = try MergeRun.run([vector], threads: 1)
        let second = """
            merge_method: task_arithmetic
            base_model: pair
            models:
              - task_vector: \(dir)/tau.safetensors
            """
        return try RecipeFile.parse(Self.pair + "\n---\n" + second, path: dir + "/r.yml")
    }

    @Test("A check that needs an intermediate's values runs with its stage; the failure removes the work directory, or keeps the completed intermediates when asked")
    func failure() throws {
        let dir = TestSupport.temporaryDirectory("staged-failure")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = try Self.failingRecipe(in: dir)
        // Planned without complaint: the fingerprint needs the intermediate's values.
        let staged = try file.plan(output: dir + "/out")
        let error = try #require(throws: MergeKitError.self) { try MergeRun.run(staged, threads: 1) }
        #expect(error.code == .baseMismatch && error.description.contains("its base fingerprint does not match"), "\(error)")
        #expect(TestSupport.listing(dir) == ["tau.safetensors"], "\(TestSupport.listing(dir))")
        Self.expectNoTemporaries(in: dir)
        // A work directory of one's own, not kept: removed as well.
        #expect(throws: MergeKitError.self) { try MergeRun.run(try file.plan(output: dir + "/out", workDirectory: .init(path: dir + "/work")), threads: 1) }
        #expect(TestSupport.listing(dir) == ["tau.safetensors"])
        // Kept: the completed intermediate stays, complete.
        #expect(throws: MergeKitError.self) {
            try MergeRun.run(try file.plan(output: dir + "/out", workDirectory: .init(path: dir + "/work", keep: true)), threads: 1)
        }
        #expect(TestSupport.listing(dir + "/work") == ["pair"] && !FileSystem.exists(dir + "/out"))
        #expect(try Checkpoint(path: dir + "/work/pair").entries.count == 22)
        Self.expectNoTemporaries(in: dir + "/work")
    }

    @Test("A stage whose inputs changed after the plan was checked (another output dtype) is refused when it runs, and nothing is left")
    func changedInputs() throws {
        let dir = TestSupport.temporaryDirectory("changed-inputs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: "\(Self.f32)/base", toPath: dir + "/base")
        let second = "merge_method: task_arithmetic\nbase_model: \(dir)/base\nmodels:\n  - model: pair\n"
        let staged = try RecipeFile.parse(Self.pair + "\n---\n" + second, path: dir + "/r.yml").plan(output: dir + "/out")
        // The base becomes a BF16 checkpoint of the same tensors: the output would be BF16, not the F32 planned.
        try FileManager.default.removeItem(atPath: dir + "/base")
        try FileManager.default.copyItem(atPath: TestSupport.fixture("bf16/base"), toPath: dir + "/base")
        let error = try #require(throws: MergeKitError.self) { try MergeRun.run(staged, threads: 1) }
        #expect(error.description.contains("the unnamed document (line 10): its inputs changed while the recipe ran"), "\(error)")
        #expect(TestSupport.listing(dir) == ["base"])
    }

    @Test("A killed run's work directory is removed as a stale temporary by the next run writing the output")
    func staleWorkDirectory() throws {
        let dir = TestSupport.temporaryDirectory("stale-work")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // What a run killed during its second stage leaves: its work directory (unlocked now).
        let stale = dir + "/.out.mergekit-tmp-999999-1a2b"
        try FileManager.default.createDirectory(atPath: stale + "/stage-000", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: stale + "/.stage-001.mergekit-tmp-999999-3c4d", withIntermediateDirectories: true)
        for file in ["model.safetensors", "config.json", "README.md"] { Self.write("x", to: stale + "/stage-000/" + file) }
        Self.write("x", to: stale + "/.stage-001.mergekit-tmp-999999-3c4d/model.safetensors")
        let file = try RecipeFile.parse(Self.pair + "\n---\n" + Self.final("pair"), path: dir + "/r.yml")
        let outcome = try MergeRun.run(try file.plan(output: dir + "/out"), threads: 1)
        #expect(TestSupport.listing(dir) == ["out"], "\(TestSupport.listing(dir))")
        #expect((outcome.output.notes + outcome.notes).contains { $0.kind == .removedStaleTemporary && $0.path == stale })
    }
}
