import Foundation
import Testing
@testable import MergeKit

/// Recipe files of several documents (mergekit-multi): reading them, the graph's checks (each
/// with its recipe line and the fix), the order the stages are made in, and planning every stage
/// before any work on the planned layouts of the intermediates.
@Suite("Multi-document recipes: graph and planning")
struct MultiDocumentRecipeTests {
    static let f32 = TestSupport.fixture("f32")

    /// A document merging `models` (names or paths) onto the f32 base with task arithmetic.
    static func document(_ name: String?, models: [String], base: String? = "\(f32)/base", method: String = "task_arithmetic") -> String {
        var lines: [String] = []
        if let name { lines.append("name: \(name)") }
        lines.append("merge_method: \(method)")
        if let base { lines.append("base_model: \(base)") }
        lines.append("models:")
        for model in models { lines += ["  - model: \(model)", "    parameters: {weight: 0.5}"] }
        lines.append("dtype: float32")
        return lines.joined(separator: "\n")
    }

    static func file(_ documents: [String], in dir: String = "/nonexistent") throws -> RecipeFile {
        try RecipeFile.parse(documents.joined(separator: "\n---\n") + "\n", path: dir + "/recipe.yml")
    }

    /// A path where nothing is, in an existing directory.
    static var nowhere: String { FileManager.default.temporaryDirectory.appendingPathComponent("mergekit-absent-\(UUID().uuidString)").path }

    /// The problems `plan` reports (each one's description), or [] when it plans.
    static func problems(_ file: RecipeFile, output: String = nowhere, target: String? = nil,
                         work: WorkDirectory.Options = .init()) -> [String] {
        do {
            _ = try file.plan(output: output, target: target, workDirectory: work)
            return []
        } catch {
            return error.problems.isEmpty ? [error.description] : error.problems.map(\.description)
        }
    }

    @Test("Documents are read with their names and lines; an empty document (a stray ---) is skipped")
    func reading() throws {
        let file = try Self.file([Self.document("first", models: ["\(Self.f32)/ft_a"]), "", Self.document(nil, models: ["first"])])
        #expect(file.documents.count == 2)
        #expect(file.documents[0].name == "first" && file.documents[0].nameLine == 1 && file.documents[0].line == 1)
        #expect(file.documents[1].name == nil && file.documents[1].line == 11)
        // Recipe.parse reads one document and names the multi-document reader otherwise.
        let error = try #require(throws: MergeKitError.self) { try Recipe.parse(file.text, path: "r.yml") }
        #expect(error.description.contains("holds 2 YAML documents"))
        // An anchor belongs to its document: an alias of an earlier document's is refused (PyYAML refuses it too).
        let first = "name: a\nmerge_method: linear\nmodels:\n  - model: m\n    parameters: &w {weight: 1}\n"
        let aliased = try #require(throws: MergeKitError.self) {
            try RecipeFile.parse(first + "---\nmerge_method: linear\nmodels:\n  - model: a\n    parameters: *w\n", path: "r.yml")
        }
        #expect(aliased.description.contains("line 10: *w names an anchor of an earlier document"), "\(aliased)")
        let own = try RecipeFile.parse(first + "---\nmerge_method: linear\nmodels:\n  - model: a\n    parameters: &w {weight: 2}\n  - model: m\n    parameters: *w\n",
                                       path: "r.yml")
        #expect(own.documents[1].inputs.map { $0.parameters["weight"] } == [.number(2), .number(2)])
        // A name key in an ordinary recipe is accepted.
        #expect(try Recipe.parse(Self.document("solo", models: ["\(Self.f32)/ft_a"]), path: "r.yml").name == "solo")
    }

    @Test("Stages are made in dependency order, as mergekit-multi sorts them: documents may use names defined further down")
    func order() throws {
        let file = try Self.file([
            Self.document(nil, models: ["blend", "\(Self.f32)/ft_c"]),
            Self.document("blend", models: ["pair", "\(Self.f32)/ft_b"]),
            Self.document("pair", models: ["\(Self.f32)/ft_a", "\(Self.f32)/ft_b"]),
            Self.document("spare", models: ["\(Self.f32)/ft_a"]),
        ])
        let staged = try file.plan(output: Self.nowhere)
        #expect(staged.stages.map(\.stage.name) == ["pair", "blend", nil, "spare"])
        #expect(staged.stages.map(\.role) == [.intermediate, .intermediate, .output, .unused])
        #expect(staged.stages[1].stage.dependencies == [0] && staged.stages[2].stage.dependencies == [1])
        #expect(staged.target.stage.name == nil && staged.intermediates.count == 2 && !staged.isSingle)
        // The later stages were planned on their inputs' planned layouts, under the recipe's names.
        #expect(staged.stages[1].plans[0].inputs[0].checkpoint.isPlanned && staged.stages[1].plans[0].inputs[0].path == "pair")
        #expect(!staged.stages[0].plans[0].base.isPlanned)
        // --target picks another document; only what it needs is made.
        let spare = try file.plan(output: Self.nowhere, target: "blend")
        #expect(spare.stages.map(\.role) == [.intermediate, .output, .unused, .unused])
        // Without an unnamed document, the last document is the output.
        let named = try Self.file([Self.document("a", models: ["\(Self.f32)/ft_a"]), Self.document("b", models: ["a"])])
        #expect(try named.plan(output: Self.nowhere).target.stage.name == "b")
    }

    @Test("A planned intermediate has the names, shapes, dtypes, offsets and metadata the written one gets")
    func plannedLayout() throws {
        let dir = TestSupport.temporaryDirectory("planned")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = try Recipe.parse(Self.document("x", models: ["\(Self.f32)/ft_a", "\(Self.f32)/ft_b"]) + "\nout_dtype: bfloat16\n",
                                      path: dir + "/r.yml")
        let plan = try recipe.plan(output: dir + "/written", maxShardSize: 6000).plans[0]
        #expect(plan.shards.count > 1)
        let planned = try Checkpoint(planned: plan, path: "x")
        _ = try MergeRun.run([plan], threads: 1)
        let written = try Checkpoint(path: dir + "/written")
        #expect(planned.isPlanned && !written.isPlanned && planned.layout == written.layout)
        #expect(planned.entries.map(\.info) == written.entries.map(\.info))
        #expect(planned.files.map { FileSystem.lastComponent(of: $0.path) } == written.files.map { FileSystem.lastComponent(of: $0.path) })
        #expect(zip(planned.files, written.files).allSatisfy { $0.header == $1.header && $0.fileSize == $1.fileSize })
        #expect(planned.metadata == written.metadata)
        #expect(try planned.companionFiles() == written.companionFiles().filter { $0 != "recipe.yml" })
    }

    @Test("The graph's problems are reported together before any work, each with its line and the fix")
    func graphProblems() throws {
        let a = "\(Self.f32)/ft_a"
        // A name twice.
        var found = Self.problems(try Self.file([Self.document("x", models: [a]), Self.document("x", models: [a])]))
        #expect(found.count == 1 && found[0].contains("line 9: the name \"x\" is also the name of the document at line 1")
                && found[0].contains("Give every document its own name"), "\(found)")
        // Two documents without a name.
        found = Self.problems(try Self.file([Self.document(nil, models: [a]), Self.document(nil, models: [a])]))
        #expect(found.count == 1 && found[0].contains("line 8: this document has no name, and neither has the document at line 1")
                && found[0].contains("Add name: NAME"), "\(found)")
        // A cycle of two, and a document reading itself.
        found = Self.problems(try Self.file([Self.document("a", models: ["b"]), Self.document("b", models: ["a"]), Self.document(nil, models: ["b"])]))
        #expect(found.count == 1 && found[0].contains("line 1: these documents use each other's outputs, in a cycle: \"a\" (line 1) → \"b\" (line 9) → \"a\" (line 1)")
                && found[0].contains("Remove one of these references"), "\(found)")
        found = Self.problems(try Self.file([Self.document("self", models: [a, "self"]), Self.document(nil, models: ["self"])]))
        #expect(found.count == 1 && found[0].contains("line 7: the document \"self\" uses its own name as a model")
                && found[0].contains("./self"), "\(found)")
        // In a file of one document a name refers to nothing (mergekit-yaml ignores it): a path of that spelling is a path.
        let dir = TestSupport.temporaryDirectory("one-name")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: a, toPath: dir + "/ft_a")
        let one = try Self.file([Self.document("ft_a", models: ["ft_a"])], in: dir).plan(output: Self.nowhere)
        #expect(one.isSingle && one.target.plans[0].inputs[0].path == dir + "/ft_a")
        // An unknown name (a typo), and a name given as a task vector.
        found = Self.problems(try Self.file([Self.document("pair", models: [a]), Self.document(nil, models: ["piar"])]))
        #expect(found.count == 1 && found[0].contains("line 12: \"piar\" is neither the name of a document of this recipe (\"pair\") nor an existing path (did you mean \"pair\"?)"),
                "\(found)")
        let asTaskVector = "merge_method: task_arithmetic\nbase_model: \(Self.f32)/base\nmodels:\n  - task_vector: pair"
        found = Self.problems(try Self.file([Self.document("pair", models: [a]), asTaskVector]))
        #expect(found.count == 1 && found[0].contains("line 12: task_vector: pair names a document, whose output is a model")
                && found[0].contains("Write model: pair"), "\(found)")
        // An output that is no document's name.
        found = Self.problems(try Self.file([Self.document("pair", models: [a]), Self.document("final", models: ["pair"])]), target: "fnal")
        #expect(found.count == 1 && found[0].contains("there is no document named \"fnal\" to make the output from (the output's document) (did you mean \"final\"?)"),
                "\(found)")
        // Names that cannot name a directory.
        found = Self.problems(try Self.file([Self.document("a/b", models: [a]), Self.document(".hidden", models: [a])]))
        #expect(found.contains { $0.contains("line 1: name \"a/b\" contains /") } && found.contains { $0.contains("line 9: name \".hidden\" starts with a dot") },
                "\(found)")
        // Several problems at once, with a document's own (a parameter out of range).
        found = Self.problems(try Self.file([Self.document("x", models: [a]), Self.document("x", models: ["y"]) + "\nparameters: {lamda: 1}"]))
        #expect(found.count == 3 && found[2].contains("line 16: task_arithmetic has no parameter \"lamda\""), "\(found)")
    }

    @Test("Only the output may sweep; the intermediates cannot be kept in the default work directory")
    func stagePolicies() throws {
        let a = "\(Self.f32)/ft_a"
        var found = Self.problems(try Self.file([Self.document("x", models: [a]) + "\nsweep: {lambda: [0.5, 1]}", Self.document(nil, models: ["x"])]))
        #expect(found.count == 1 && found[0].contains("line 1: this document sweeps, but its output is read by another document"), "\(found)")
        found = Self.problems(try Self.file([Self.document("x", models: [a]), Self.document(nil, models: ["x"])]), output: Self.nowhere, work: .init(keep: true))
        #expect(found.count == 1 && found[0].contains("cannot be kept in the default work directory"), "\(found)")
        // The output may sweep over an intermediate: one plan per point, all on the same planned base.
        let dir = TestSupport.temporaryDirectory("sweep-stage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let staged = try Self.file([Self.document("x", models: [a]), Self.document(nil, models: ["x"], base: "x") + "\nsweep: {lambda: [0.5, 1]}"])
            .plan(output: dir + "/sweep")
        #expect(staged.target.plans.count == 2 && staged.target.plans.allSatisfy { $0.base === staged.target.plans[0].base && $0.base.isPlanned })
    }

    @Test("A later stage's problems with an intermediate are found before any work: nothing is written")
    func laterStageProblems() throws {
        let dir = TestSupport.temporaryDirectory("later-stage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // GPT-2 tensors against the Llama intermediate: every name differs.
        let file = try Self.file([Self.document("pair", models: ["\(Self.f32)/ft_a", "\(Self.f32)/ft_b"]),
                                  Self.document(nil, models: [TestSupport.fixture("svd_lora/gpt2_ft")], base: "pair")], in: dir)
        let found = Self.problems(file, output: dir + "/out")
        // Of several documents, a problem the merge's planner finds names its document by its first line.
        #expect(found.contains { $0.contains("line 11 of \(dir)/recipe.yml: ") && $0.contains("is in the base (pair) but not in this model") }, "\(found)")
        #expect(TestSupport.listing(dir).isEmpty, "\(TestSupport.listing(dir))")
        // A stage that reads a stage that could not be planned is still checked for what needs no file.
        let broken = try Self.file([Self.document("pair", models: ["\(Self.f32)/ft_a"], base: nil, method: "ties"),
                                    Self.document(nil, models: ["pair"]) + "\nparameters: {lamda: 1}"], in: dir)
        let both = Self.problems(broken, output: dir + "/out")
        #expect(both.contains { $0.contains("ties needs a base_model") } && both.contains { $0.contains("line 14: task_arithmetic has no parameter") }, "\(both)")
    }

    @Test("The output and a work directory of one's own are checked against every input of every stage")
    func places() throws {
        let dir = TestSupport.temporaryDirectory("places")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let copy = dir + "/ft_a"
        try FileManager.default.copyItem(atPath: "\(Self.f32)/ft_a", toPath: copy)
        let file = try Self.file([Self.document("pair", models: [copy, "\(Self.f32)/ft_b"]), Self.document(nil, models: ["pair"])], in: dir)
        // The output is an input of the first stage only (not of the output's document).
        var found = Self.problems(file, output: copy)
        #expect(found.contains { $0.contains("is, contains or lies inside the input \(copy)") }, "\(found)")
        // A work directory inside an input, or inside the output; an output that is an intermediate's place.
        found = Self.problems(file, output: dir + "/out", work: .init(path: copy + "/work"))
        #expect(found.contains { $0.contains("is, or lies inside, the input \(copy)") }, "\(found)")
        found = Self.problems(file, output: dir + "/out", work: .init(path: dir + "/out/work"))
        #expect(found.contains { $0.contains("cannot be created as the work directory") }, "\(found)")
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: false)
        found = Self.problems(file, output: dir + "/out", work: .init(path: dir + "/out/work"))
        #expect(found.contains { $0.contains("is, or lies inside, the output") }, "\(found)")
        found = Self.problems(file, output: dir + "/work/pair", work: .init(path: dir + "/work"))
        #expect(found.contains { $0.contains("where an intermediate of the recipe is written") }, "\(found)")
        // An existing intermediate in the work directory needs overwriting, like any output.
        try FileManager.default.createDirectory(atPath: dir + "/work/pair", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/work/pair/model.safetensors", contents: Data([0]))
        found = Self.problems(file, output: dir + "/new", work: .init(path: dir + "/work"))
        #expect(found.count == 1 && found[0].contains("\(dir)/work/pair") && found[0].contains("already exists"), "\(found)")
        #expect(try file.plan(output: dir + "/new", overwrite: true, workDirectory: .init(path: dir + "/work")).intermediates.count == 1)
    }
}
