import Foundation
import Testing
import Yams
@testable import MergeKit

/// Parses `text` as a recipe named "r.yml" and returns the error it throws (nil if none).
private func parseError(_ text: String) -> MergeKitError? {
    do throws(MergeKitError) {
        _ = try Recipe.parse(text, path: "r.yml")
        return nil
    } catch {
        return error
    }
}

@Suite("Recipe YAML: merge keys, bounds")
struct RecipeYAMLTests {
    /// A composed node with merge keys resolved by the recipe reader, as plain JSON (every scalar
    /// as its text), or nil when the reader reported a problem.
    static func resolved(_ node: Node, parser: inout RecipeParser) -> JSONValue {
        switch node {
        case .scalar(let scalar): return .string(scalar.string)
        case .sequence(let sequence): return .array(sequence.map { resolved($0, parser: &parser) })
        case .mapping(let mapping):
            return .object(parser.pairs(mapping).map { JSONMember($0.key.string ?? "?", resolved($0.value, parser: &parser)) })
        }
    }

    @Test("Merge keys (<<: *a, <<: [*a, *b], nested, repeated, quoted) resolve as PyYAML resolves them; what PyYAML refuses is refused")
    func mergeKeysMatchPyYAML() throws {
        let goldens = try JSONParser.parse(try FileSystem.readFile(TestSupport.fixture("recipes/merge_keys.json")))
        let directory = TestSupport.fixture("recipes/merge_keys")
        let cases = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".yml") }.sorted()
        #expect(cases.count >= 13)
        for file in cases {
            let name = String(file.dropLast(4))
            let golden = try #require(goldens[name], "no golden for \(name)")
            let text = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            let node = try #require(try Yams.compose(yaml: text))
            var parser = RecipeParser(path: file)
            let mine = Self.resolved(node, parser: &parser)
            if golden["error"] == .bool(true) {
                #expect(!parser.problems.items.isEmpty, "\(name): PyYAML refuses it, the recipe reader accepted \(mine.serialized())")
                #expect(parser.problems.items.allSatisfy { $0.detail.contains("merge key (<<)") }, "\(name): \(parser.problems.items)")
            } else {
                #expect(parser.problems.items.isEmpty, "\(name): \(parser.problems.items)")
                #expect(mine == golden, "\(name):\n\(mine.serialized())\n!=\n\(golden.serialized())")
            }
        }
    }

    @Test("A recipe using merge keys for model parameters gets the merged values")
    func mergeKeysInRecipe() throws {
        let text = try String(contentsOfFile: TestSupport.fixture("recipes/merge_keys/recipe-models.yml"), encoding: .utf8)
        let recipe = try Recipe.parse(text, path: "recipe-models.yml")
        #expect(recipe.schemaProblems.isEmpty, "\(recipe.schemaProblems)")
        #expect(recipe.inputs.map { $0.parameters["weight"] } == [.number(1), .number(2), .number(3)])
        #expect(recipe.inputs.map { $0.parameters["density"] } == [.number(0.5), .number(0.5), .number(0.5)])
    }

    @Test("Nesting deeper than 64 (flow, block, indentation, conditions, aliases) is refused before parsing; 64 is accepted")
    func nestingBound() throws {
        func flow(_ depth: Int) -> String { "merge_method: ties\nmodels: " + String(repeating: "[", count: depth - 1) + String(repeating: "]", count: depth - 1) + "\n" }
        // The root mapping is level 1, `models:` adds depth − 1 lists.
        #expect(parseError(flow(64))?.detail.contains("nest") != true)
        let deep = try #require(parseError(flow(65)))
        #expect(deep.detail == "line 2: lists and mappings nest more than 64 deep (counting what aliases stand for)", "\(deep)")
        let hostile = [
            "flow [": flow(5000),
            "flow {": "merge_method: ties\nmodels: " + String(repeating: "{a: ", count: 5000) + "1" + String(repeating: "}", count: 5000),
            "block sequences": "merge_method: ties\nmodels:\n" + String(repeating: "- ", count: 5000) + "x\n",
            "indentation": "merge_method: ties\nparameters:\n" + (1..<100).map { String(repeating: " ", count: $0) + "k\($0):\n" }.joined() + String(repeating: " ", count: 100) + "x: 1\n",
            "conditions": "merge_method: ties\nmodels:\n  - model: a\n    parameters:\n      weight: " + String(repeating: "[{value: ", count: 3000) + "1" + String(repeating: "}]", count: 3000),
            // 40 + 30 levels only through the alias.
            "alias": "merge_method: ties\na: &a " + String(repeating: "[", count: 40) + "1" + String(repeating: "]", count: 40)
                + "\nb: " + String(repeating: "[", count: 30) + "*a" + String(repeating: "]", count: 30) + "\n",
        ]
        for (name, text) in hostile {
            let error = try #require(parseError(text), "\(name)")
            #expect(error.detail.contains("nest more than 64 deep") && error.file == "r.yml", "\(name): \(error)")
        }
    }

    @Test("Aliases that expand past 100 000 values (billion laughs, merge-key bombs) are refused; ordinary aliases are not")
    func aliasExpansionBound() throws {
        func bomb(levels: Int, leaf: String, use: String) -> String {
            "merge_method: ties\na0: &a0 \(leaf)\n" + (1..<levels).map { i in "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ",") + "]\n" }.joined() + use
        }
        let laughs = try #require(parseError(bomb(levels: 10, leaf: "[1,1,1,1,1,1,1,1,1,1]", use: "models: [{model: x, parameters: {weight: *a9}}]\n")))
        #expect(laughs.detail.contains("more than 100000 values"), "\(laughs)")
        let merges = try #require(parseError(bomb(levels: 10, leaf: "{weight: 1}", use: "parameters: {<<: *a9}\n")))
        #expect(merges.detail.contains("more than 100000 values"), "\(merges)")
        // 10⁴ values through aliases is fine (the tree is read, then the recipe is checked).
        let small = bomb(levels: 4, leaf: "[1,1,1,1,1,1,1,1,1,1]", use: "")
        #expect(parseError(small)?.detail.contains("values") != true)
    }

    @Test("A recipe larger than 1 MiB is refused without being read whole; an endless device by its type")
    func sizeBound() throws {
        let dir = TestSupport.temporaryDirectory("recipe-size")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big = "merge_method: ties\n# " + String(repeating: "x", count: 1 << 20) + "\n"
        #expect(parseError(big)?.detail.contains("larger than 1048576 bytes") == true)
        #expect(FileManager.default.createFile(atPath: dir + "/big.yml", contents: Data(big.utf8)))
        let error = try #require(throws: MergeKitError.self) { try Recipe.load(path: dir + "/big.yml") }
        #expect(error.detail.contains("larger than 1048576 bytes") && error.file == dir + "/big.yml", "\(error)")
        // An endless device is refused by its type, before any byte is read.
        if FileManager.default.fileExists(atPath: "/dev/zero") {
            let device = try #require(throws: MergeKitError.self) { try Recipe.load(path: "/dev/zero") }
            #expect(device.detail.contains("not a regular file") && device.file == "/dev/zero", "\(device)")
        }
        let directory = try #require(throws: MergeKitError.self) { try Recipe.load(path: dir) }
        #expect(directory.code == .isDirectory)
    }

    @Test("A syntax error's message stays short even when the offending line is a megabyte")
    func longSyntaxError() throws {
        let error = try #require(parseError("merge_method: ties\nmodels: " + String(repeating: "- ", count: 200_000) + "x\n"))
        #expect(error.detail.contains("is not valid YAML") && error.description.count < 600, "\(error.description.count)")
    }
}

@Suite("Recipe values: ranges, lines, sweeps")
struct RecipeValueTests {
    let fixtures = TestSupport.fixture("")

    /// The problems planning `text` reports, one per line of the message.
    func problems(_ text: String) throws -> [String] {
        let recipe = try Recipe.parse(text, path: "r.yml")
        let directory = TestSupport.temporaryDirectory("recipe-values")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let output = directory + "/out"
        do throws(MergeKitError) {
            _ = try recipe.plan(output: output)
            return []
        } catch {
            return error.description.split(separator: "\n").map { $0.hasPrefix("  - ") ? String($0.dropFirst(4)) : String($0) }
        }
    }

    @Test("Every out-of-range value of every model, of parameters and of the sweep is reported, each at its own line, in recipe words")
    func everyValueWithItsLine() throws {
        let found = try problems("""
            merge_method: breadcrumbs
            base_model: \(fixtures)/f32/base
            models:
              - model: \(fixtures)/f32/ft_a
                parameters: {density: 1.5, weight: .nan}
              - model: \(fixtures)/f32/ft_b
                parameters:
                  density: [0.5,
                            -1]
                  gamma: [{filter: mlp, value: 1}, {value: 0.01}]
            parameters: {lambda: .inf, seed: -3}
            sweep: {density: "0:2:1"}
            """)
        func at(_ line: Int, _ parameter: MethodParameter, _ value: Double, _ label: String) -> String {
            "r.yml: line \(line): " + parameter.problem(value, label: label)!
        }
        let expected = [
            at(5, .density, 1.5, "density"), at(5, .weight, .nan, "weight"), at(9, .density, -1, "density"),
            at(10, .gamma, 1, "gamma"), at(11, .scale, .infinity, "lambda"), at(11, .seed, -3, "seed"),
            at(12, .density, 0, "density"), at(12, .density, 2, "density"),
        ]
        #expect(found.first == "\(expected.count) problems found before merging:", "\(found)")
        #expect(Set(found.dropFirst()) == Set(expected), "\(found)")
        #expect(!found.joined().contains("--"), "no command-line flags in recipe messages")
    }

    @Test("weight: [] (and any empty list value), a non-number for a number, a duplicate key are errors")
    func emptyListsAndKinds() throws {
        let found = try problems("""
            merge_method: ties
            base_model: \(fixtures)/f32/base
            models:
              - model: \(fixtures)/f32/ft_a
                parameters: {weight: [], density: high}
              - model: \(fixtures)/f32/ft_b
                parameters: {weight: [{filter: mlp, value: []}]}
            parameters: {lambda: 1, lambda: 2}
            """)
        let joined = found.joined(separator: "\n")
        #expect(joined.contains("line 5: weight: [] is empty"), "\(joined)")
        #expect(joined.contains("line 7: weight: [] is empty"), "\(joined)")
        #expect(joined.contains("line 5: density must be a number, not \"high\""), "\(joined)")
        #expect(joined.contains("line 8: \"lambda\" appears twice"), "\(joined)")
    }

    @Test("Sweeps: an axis swept twice or also fixed, a point listed twice, a step that rounds points together, too many points")
    func sweepAxes() throws {
        let head = "merge_method: ties\nbase_model: \(fixtures)/f32/base\nmodels: [{model: \(fixtures)/f32/ft_a}]\n"
        #expect(try problems(head + "sweep: {lambda: [1, 2], lambda: [3]}\n").joined().contains("line 4: \"lambda\" appears twice"))
        #expect(try problems(head + "parameters: {lambda: 1}\nsweep: {lambda: [1, 2]}\n").joined()
            .contains("line 4: lambda is both fixed under parameters and swept"))
        #expect(try problems(head + "sweep: {lambda: [0.5, 1, 0.5]}\n").joined().contains("sweep lambda: 0.5 appears twice"))
        #expect(try problems(head + "sweep: {lambda: \"1:1.000000000001:1e-14\"}\n").joined().contains("line 4: sweep lambda: the step is so small that points round to the same value"))
        #expect(try problems(head + "sweep: {lambda: \"0:1:0.0001\"}\n").joined().contains("more than 10000 points"))
        #expect(try problems(head + "sweep: {lambda: \"0:1:0.01\", density: \"0.01:1:0.01\"}\n").joined()
            .contains("the sweep has 10100 points (the product of its axes); a sweep writes at most 10000"))
        #expect(try problems(head + "sweep: {lambda: []}\n").joined().contains("a sweep axis needs at least one value"))
        #expect(try problems(head + "sweep: {lambda: \"0:1:0.25\"}\n").isEmpty)
        // A value-built recipe (the sweep command's) is checked the same way, without lines.
        let built = Recipe(method: "ties", baseModel: fixtures + "/f32/base", inputs: [.init(kind: .model, path: fixtures + "/f32/ft_a")],
                           parameters: ["lambda": .number(1)], sweep: [("lambda", [.number(1)]), ("lambda", [.number(2)])], path: "merge-cli sweep")
        let error = try #require(throws: MergeKitError.self) { try built.plan(output: NSTemporaryDirectory() + "/mergekit-never-written") }
        #expect(error.description.contains("merge-cli sweep: lambda is swept twice") && error.description.contains("lambda is both fixed"), "\(error)")
    }

    @Test("Grids: start:stop:step inclusive and comma lists; empty, malformed, repeated, rounded-together and huge grids are refused with the reason")
    func grids() {
        #expect(SweepGrid.parse("0:1:0.25") == [0, 0.25, 0.5, 0.75, 1])
        #expect(SweepGrid.parse("-1:1:1") == [-1, 0, 1])
        #expect(SweepGrid.parse("0:1:0.05")?[3] == 0.15)
        #expect(SweepGrid.parse("0:1e-12:1e-13")?.count == 11)
        #expect(SweepGrid.parse(" 0.1, 0.3 ,0.5") == [0.1, 0.3, 0.5])
        #expect(SweepGrid.parse("1e300:2e300:1e300") == [1e300, 2e300])
        for (text, reason) in [("", "empty"), ("  ", "empty"), (",", "empty entry"), ("1,,2", "empty entry"), ("a,b", "a is not a number"),
                               ("0:1", "start:stop:step"), ("0:1:2:3", "start:stop:step"), ("0:nan:1", "start:stop:step"),
                               ("1:0:0.1", "positive step"), ("0:1:0", "positive step"), ("0:1:-0.1", "positive step"),
                               ("0:1e300:1e-300", "more than 10000 points"), ("0:1:0.00001", "more than 10000 points"),
                               ("0.1,0.2,0.1", "0.1 appears twice"), ("0,-0", "0 appears twice"),
                               ("1:1.000000000001:1e-14", "round to the same value")] {
            guard case .failure(let failure) = SweepGrid.values(text) else { Issue.record("\(text) was accepted"); continue }
            #expect(failure.reason.contains(reason), "\(text): \(failure.reason)")
        }
    }

    @Test("Sweep point names pad to the width of the point count, so they sort in point order")
    func pointNames() {
        #expect(OutputEntries.pointName(0, of: 1) == "point-000" && OutputEntries.pointName(20, of: 21) == "point-020")
        #expect(OutputEntries.pointName(999, of: 1000) == "point-999")
        #expect(OutputEntries.pointName(182, of: 2000) == "point-0182" && OutputEntries.pointName(1819, of: 2000) == "point-1819")
        #expect(OutputEntries.pointName(5, of: 100_000) == "point-00005")
        let names = (0..<2001).map { OutputEntries.pointName($0, of: 2001) }
        #expect(names.sorted() == names)
    }

    @Test("A recipe built from values writes YAML that parses back to the same values, whatever the strings hold")
    func valueRecipeRoundTrip() throws {
        let hostile = ["a\nmerge_method: ties", "\"quoted\" and 'single'", "- not a list", "*alias", "<<", "key: value", "#comment", " lead",
                       "trail ", "", "1.5", "true", "null", "~", "日本語", "tab\there", "back\\slash", "{[", "-1"]
        let parameters: [String: ParameterSetting] = [
            "lambda": .number(-0.5), "weird key: x": .string("v"), "tiny": .number(1e-5), "huge": .number(1e20), "flag": .bool(true),
            "gradient": .gradient([0, 0.5, 1]), "conditions": .conditions([.init(filter: "mlp\n", value: .number(0.25)), .init(filter: nil, value: .gradient([1, 2]))]),
            "yes": .string("off-by-one"),
        ]
        // (A parameter value reading true/false/yes/no is a bool even when quoted, so it is no string.)
        let inputs = hostile.map { Recipe.Input(kind: .model, path: $0, parameters: ["weight": .number(-1)].merging($0 == "true" ? [:] : ["note": .string($0)]) { a, _ in a }) }
            + [Recipe.Input(kind: .taskVector, path: "tv"), Recipe.Input(kind: .lora, path: "adapter")]
        let sweep: [(name: String, values: [ParameterSetting])] = [("lambda", [.number(0.1), .number(-3)]), ("vote", [.string("mass"), .string("1")])]
        let built = Recipe(method: "ties\nbase_model: x", baseModel: "b\"ase", inputs: inputs, parameters: parameters, sweep: sweep, path: "p")
        let parsed = try Recipe.parse(built.text, path: "p")
        #expect(parsed.method == built.method && parsed.baseModel == built.baseModel)
        #expect(parsed.inputs.map(\.path) == hostile + ["tv", "adapter"] && parsed.inputs.map(\.kind) == inputs.map(\.kind))
        #expect(parsed.inputs.map(\.parameters) == inputs.map(\.parameters))
        #expect(parsed.parameters == parameters, "\(built.text)")
        #expect(parsed.sweep.map(\.name) == ["lambda", "vote"] && parsed.sweep.map(\.values) == sweep.map(\.values))
        #expect(parsed.schemaProblems.isEmpty, "\(parsed.schemaProblems)")
    }

    @Test("A command-line value is read as one plain scalar: bool, number or string, never YAML structure")
    func scalarText() {
        #expect(ParameterSetting(scalarText: "0.5") == .number(0.5) && ParameterSetting(scalarText: "-1") == .number(-1))
        #expect(ParameterSetting(scalarText: "true") == .bool(true) && ParameterSetting(scalarText: "global") == .string("global"))
        #expect(ParameterSetting(scalarText: "1\nmerge_method: ties") == .string("1\nmerge_method: ties"))
        #expect(ParameterSetting(scalarText: "[0.5, 1]") == .string("[0.5, 1]"))
        #expect(ParameterSetting(scalarText: ".nan").number?.isNaN == true)
    }
}

@Suite("Sweep point names")
struct SweepPointNameTests {
    @Test("A 1001-point sweep plans outputs point-0000 … point-1000, which sort in point order")
    func thousandPoints() throws {
        let dir = TestSupport.temporaryDirectory("sweep-names")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = TensorSpec(name: "w", dtype: .F32, shape: [4])
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [(spec, [0, 0, 0, 0])])
        TestSupport.writeCheckpoint(dir + "/ft.safetensors", [(spec, [1, 2, 3, 4])])
        let recipe = try Recipe.parse("merge_method: task_arithmetic\nbase_model: base.safetensors\nmodels: [{model: ft.safetensors}]\nsweep: {lambda: \"0:2:0.002\"}\n",
                                      path: dir + "/recipe.yml")
        let run = try recipe.plan(output: dir + "/out")
        let names = run.plans.map { FileSystem.lastComponent(of: $0.output.path) }
        #expect(names.count == 1001 && names.first == "point-0000" && names[182] == "point-0182" && names.last == "point-1000")
        #expect(names.sorted() == names)
        #expect(run.points[182].first?.value == .number(0.364))
    }
}
