import Foundation
import Testing
@testable import MergeKit

/// What a layer-wise recipe writes besides the tensors' values: config.json's layer counts and
/// per-layer lists, the order and determinism of the output, and averages over slices merging
/// different numbers of models.
@Suite("Slices and modules: outputs")
struct SliceOutputTests {
    static let models = TestSupport.fixture("mergekit_goldens/slices/models")

    /// A copy of fixture model `name` in `dir` with `edit` applied to its config.json object.
    static func model(_ name: String, in dir: String, as copy: String, config edit: (inout [JSONMember]) -> Void) throws -> String {
        let target = dir + "/" + copy
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: models + "/\(name)/model.safetensors", toPath: target + "/model.safetensors")
        guard case .object(var members) = try JSONParser.parse(FileSystem.readFile(models + "/\(name)/config.json")) else {
            throw MergeKitError(.invalidArgument, "config")
        }
        edit(&members)
        FileManager.default.createFile(atPath: target + "/config.json", contents: Data(JSONValue.object(members).serialized(indent: 2).utf8))
        return target
    }

    static func plan(_ text: String, in dir: String, output: String = "out") throws -> MergePlan {
        try Recipe.parse(text, path: dir + "/recipe.yml").plan(output: dir + "/" + output).plans[0]
    }

    @Test("config.json: num_hidden_layers and layer_types follow the output's layers, each layer's entry from the model it comes from")
    func perLayerLists() throws {
        let dir = TestSupport.temporaryDirectory("slice-config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let strings = { (prefix: String, n: Int) in JSONValue.array((0..<n).map { .string("\(prefix)\($0)") }) }
        let a = try Self.model("a", in: dir, as: "a") { $0.append(JSONMember("layer_types", strings("a", 6))) }
        // c's list has the wrong length for its 4 layers: its layers take the donor's entries.
        let c = try Self.model("c", in: dir, as: "c") { $0.append(JSONMember("layer_types", strings("c", 3))) }
        let b = try Self.model("b", in: dir, as: "b") { $0.append(JSONMember("layer_types", strings("b", 6))) }
        let plan = try Self.plan("""
            merge_method: linear
            dtype: bfloat16
            slices:
              - sources: [{model: \(a), layer_range: [0, 2]}]
              - sources: [{model: \(b), layer_range: [4, 6]}]
              - sources: [{model: \(c), layer_range: [1, 3]}]
            """, in: dir)
        _ = try MergeRun.run([plan], threads: 1)
        let config = try JSONParser.parse(FileSystem.readFile(dir + "/out/config.json"))
        #expect(config["num_hidden_layers"] == .int(6))
        #expect(config["layer_types"] == .array(["a0", "a1", "b4", "b5", "a1", "a2"].map { .string($0) }))
        #expect(config["torch_dtype"] == .string("bfloat16"))
        // The other keys keep their place and values.
        let original = try JSONParser.parse(FileSystem.readFile(a + "/config.json"))
        #expect(config.objectMembers?.map(\.key) == original.objectMembers?.map(\.key))
        #expect(config["hidden_size"] == original["hidden_size"])
    }

    @Test("Config edits: nested key paths, keys added where their object exists, nothing created, an unparseable config copied with a warning")
    func configEdits() throws {
        let text = Array(#"{"text_config": {"num_hidden_layers": 2, "x": 1}, "vision_config": 3}"#.utf8)
        let edited = ConfigRewriter.setting([.init(path: ["text_config", "num_hidden_layers"], value: .int(5)),
                                             .init(path: ["text_config", "layer_types"], value: .array([.string("f")])),
                                             .init(path: ["vision_config", "num_hidden_layers"], value: .int(9)),
                                             .init(path: ["audio_config", "num_hidden_layers"], value: .int(9))], in: text)
        let json = try JSONParser.parse(edited)
        #expect(json["text_config"]?["num_hidden_layers"] == .int(5) && json["text_config"]?["layer_types"] == .array([.string("f")]))
        #expect(json["text_config"]?.objectMembers?.map(\.key) == ["num_hidden_layers", "x", "layer_types"])
        #expect(json["vision_config"] == .int(3) && json["audio_config"] == nil)
        #expect(ConfigRewriter.setting([.init(path: ["text_config", "num_hidden_layers"], value: .int(2))], in: text) == text)

        let dir = TestSupport.temporaryDirectory("slice-config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let broken = try Self.model("a", in: dir, as: "broken") { _ in }
        FileManager.default.createFile(atPath: broken + "/config.json", contents: Data("{not json".utf8))
        let plan = try Self.plan("""
            merge_method: linear
            slices: [{sources: [{model: \(broken), layer_range: [0, 2]}]}]
            """, in: dir)
        let outcome = try MergeRun.run([plan], threads: 1)
        #expect(outcome.results[0].warnings.contains { $0.contains("num_hidden_layers was not set to 2") })
        #expect(try FileSystem.readFile(dir + "/out/config.json") == Array("{not json".utf8))
    }

    @Test("Output order: the tensors before the layers, the layers in order, the tensors after; the same bytes for any thread count")
    func orderAndDeterminism() throws {
        let dir = TestSupport.temporaryDirectory("slice-order")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = """
            merge_method: linear
            slices:
              - sources:
                  - {model: \(Self.models)/a, layer_range: [3, 6], parameters: {weight: [1, 0.25]}}
                  - {model: \(Self.models)/b, layer_range: [0, 3], parameters: {weight: 0.5}}
              - sources:
                  - {model: \(Self.models)/c, layer_range: [0, 4], parameters: {weight: 1}}
                  - {model: \(Self.models)/a, layer_range: [0, 4], parameters: {weight: [0, 1]}}
            """
        let first = try Self.plan(text, in: dir, output: "one")
        let names = first.tensors.map(\.name)
        #expect(names.first == "model.embed_tokens.weight" && Set(names.suffix(2)) == ["model.norm.weight", "lm_head.weight"])
        let layers = names.compactMap { name -> Int? in
            guard name.hasPrefix("model.layers.") else { return nil }
            return Int(name.split(separator: ".")[2])
        }
        #expect(layers == layers.sorted() && Set(layers) == Set(0..<7) && layers.count == 7 * 9)
        _ = try MergeRun.run([first], threads: 1)
        _ = try MergeRun.run([try Self.plan(text, in: dir, output: "three")], threads: 3)
        #expect(try FileSystem.readFile(dir + "/one/model.safetensors", limit: 1 << 24)
                == FileSystem.readFile(dir + "/three/model.safetensors", limit: 1 << 24))
    }

    @Test("--dry-run names where each output tensor is read from")
    func origins() throws {
        let dir = TestSupport.temporaryDirectory("slice-origins")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plan = try Recipe.load(path: SliceRecipeTests.folder + "/franken_linear.yml").plan(output: dir + "/out").plans[0]
        let text = PlanDescription.text(plan)
        #expect(text.contains("model.layers.4.mlp.up_proj.weight [6, 4] F32 -> F32: merged from models/c: model.layers.1.mlp.up_proj.weight\n"))
        #expect(text.contains("model.layers.10.mlp.up_proj.weight [6, 4] F32 -> F32: merged from models/a: model.layers.5.mlp.up_proj.weight\n"))
        let json = PlanDescription.json(plan)
        let tensor = json["tensors"]?.arrayValue?.first { $0["name"] == .string("model.layers.7.self_attn.q_proj.weight") }
        #expect(tensor?["from"] == .array([.string("models/a: model.layers.2.self_attn.q_proj.weight")]))
    }

    @Test("An average over slices merging different numbers of models: the missing inputs weigh 0, so a one-source slice copies its layers")
    func paddedAverage() throws {
        let dir = TestSupport.temporaryDirectory("slice-padded")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plan = try Self.plan("""
            merge_method: linear
            slices:
              - sources:
                  - {model: \(Self.models)/a, layer_range: [0, 2]}
                  - {model: \(Self.models)/b, layer_range: [0, 2], parameters: {weight: 3}}
              - sources:
                  - {model: \(Self.models)/b, layer_range: [2, 6]}
            """, in: dir)
        #expect(plan.inputs.count == 2)
        _ = try MergeRun.run([plan], threads: 2)
        let out = TestSupport.values(try Checkpoint(path: dir + "/out"))
        let a = TestSupport.values(try Checkpoint(path: Self.models + "/a")), b = TestSupport.values(try Checkpoint(path: Self.models + "/b"))
        let suffix = "mlp.down_proj.weight"
        // Layers 2…5 are b's layers 2…5, byte for byte; layer 0 is (a + 3b)/4 within float32 rounding.
        for layer in 2..<6 {
            #expect(out["model.layers.\(layer).\(suffix)"]!.values == b["model.layers.\(layer).\(suffix)"]!.values)
        }
        #expect(out["lm_head.weight"]!.values == b["lm_head.weight"]!.values)
        let mixed = zip(a["model.layers.0.\(suffix)"]!.values, b["model.layers.0.\(suffix)"]!.values).map { ($0 + 3 * $1) / 4 }
        expectClose(out["model.layers.0.\(suffix)"]!.values, mixed, tolerance: 3e-7)
        let embed = zip(a["model.embed_tokens.weight"]!.values, b["model.embed_tokens.weight"]!.values).map { ($0 + 3 * $1) / 4 }
        expectClose(out["model.embed_tokens.weight"]!.values, embed, tolerance: 3e-7)
    }

    @Test("A sweep over a layer-wise recipe: one output per point; λ = 0 gives the base's layers, renumbered")
    func sweep() throws {
        let dir = TestSupport.temporaryDirectory("slice-sweep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try Recipe.parse("""
            merge_method: task_arithmetic
            base_model: \(Self.models)/base
            slices:
              - sources:
                  - {model: \(Self.models)/base, layer_range: [4, 6]}
                  - {model: \(Self.models)/a, layer_range: [4, 6]}
              - sources:
                  - {model: \(Self.models)/base, layer_range: [0, 1]}
                  - {model: \(Self.models)/b, layer_range: [2, 3]}
            sweep: {lambda: [0, 1]}
            """, path: dir + "/recipe.yml").plan(output: dir + "/sweep")
        #expect(run.plans.count == 2)
        _ = try MergeRun.run(run.plans, threads: 2, points: run.points.map { $0.map { ($0.name, $0.value.description) } },
                             sweepDirectory: dir + "/sweep")
        let zero = TestSupport.values(try Checkpoint(path: dir + "/sweep/point-000")), one = TestSupport.values(try Checkpoint(path: dir + "/sweep/point-001"))
        let base = TestSupport.values(try Checkpoint(path: Self.models + "/base")), b = TestSupport.values(try Checkpoint(path: Self.models + "/b"))
        let suffix = "self_attn.o_proj.weight"
        #expect(zero["model.layers.0.\(suffix)"]!.values == base["model.layers.4.\(suffix)"]!.values)
        #expect(zero["model.layers.2.\(suffix)"]!.values == base["model.layers.0.\(suffix)"]!.values)
        // λ = 1 on the second slice: θ₀ + (θ_b − θ₀) = layer 2 of b, within the rounding of θ_b − θ₀.
        expectClose(one["model.layers.2.\(suffix)"]!.values, b["model.layers.2.\(suffix)"]!.values, tolerance: 1.2e-7)
        let config = try JSONParser.parse(FileSystem.readFile(dir + "/sweep/point-001/config.json"))
        #expect(config["num_hidden_layers"] == .int(3))
    }

    @Test("Sources in shards and other dtypes: a frankenmerge of a sharded BF16 model and an F16 one, written as F32")
    func shardsAndDTypes() throws {
        let dir = TestSupport.temporaryDirectory("slice-shards")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bf16 = TestSupport.fixture("bf16/base"), f16 = TestSupport.fixture("f16/ft_c")
        let plan = try Recipe.parse("""
            merge_method: linear
            out_dtype: float32
            slices:
              - sources: [{model: \(bf16), layer_range: [0, 2]}]
              - sources: [{model: \(f16), layer_range: [1, 2]}]
            """, path: dir + "/recipe.yml").plan(output: dir + "/out").plans[0]
        _ = try MergeRun.run([plan], threads: 2)
        let out = TestSupport.values(try Checkpoint(path: dir + "/out"))
        let first = TestSupport.values(try Checkpoint(path: bf16)), last = TestSupport.values(try Checkpoint(path: f16))
        // Every value is its source's, exactly (BF16 and F16 widen to F32 exactly); the I64 buffer is copied.
        #expect(out["model.layers.1.mlp.up_proj.weight"]!.values == first["model.layers.1.mlp.up_proj.weight"]!.values)
        #expect(out["model.layers.2.mlp.up_proj.weight"]!.values == last["model.layers.1.mlp.up_proj.weight"]!.values)
        #expect(out["model.embed_tokens.weight"]!.values == first["model.embed_tokens.weight"]!.values)
        #expect(out["lm_head.weight"]!.values == last["lm_head.weight"]!.values)
        #expect(out["model.rotary_emb.position_ids"]!.values == first["model.rotary_emb.position_ids"]!.values)
        #expect(out["model.rotary_emb.position_ids"]!.info.dtype == .I64 && out["model.layers.2.mlp.up_proj.weight"]!.info.dtype == .F32)
        #expect(out.count == 1 + 3 * 9 + 3)
    }
}
