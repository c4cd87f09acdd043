import Foundation
import Testing
@testable import MergeKit

/// One LoRA case of Fixtures/svd_lora/cases.json (made by Fixtures/svd_lora/make_svd_lora_fixtures.py
/// with PEFT's merge_and_unload()).
struct LoRAGoldenCase: Sendable, CustomTestStringConvertible {
    let name: String
    let method: String
    let inputs: [String]
    let args: [String]
    let file: String
    let tolerance: Double
    let changed: [String]

    var testDescription: String { name }

    /// The cases of Fixtures/svd_lora/cases.json and Fixtures/svd_lora/peft_rules/cases.json that merge adapters.
    static let all: [LoRAGoldenCase] = ["svd_lora/cases.json", "svd_lora/peft_rules/cases.json"].flatMap { manifest in
        let json = try! JSONParser.parse(try! FileSystem.readFile(TestSupport.fixture(manifest)))
        return json["cases"]!.arrayValue!.compactMap { c -> LoRAGoldenCase? in
            let inputs = c["inputs"]!.arrayValue!.map { $0.stringValue! }
            guard inputs.contains("--lora") else { return nil }
            return LoRAGoldenCase(name: c["name"]!.stringValue!, method: c["method"]!.stringValue!, inputs: inputs,
                                  args: c["args"]!.arrayValue!.map { $0.stringValue! }, file: c["file"]!.stringValue!,
                                  tolerance: c["tolerance"]!.doubleValue!,
                                  changed: c["changed_tensors"]?.arrayValue?.map { $0.stringValue! } ?? [])
        }
    }
}

@Suite("LoRA adapters as inputs")
struct LoRAInputTests {
    // MARK: PEFT interop

    @Test("Merging PEFT adapters gives PEFT merge_and_unload()'s weights", arguments: LoRAGoldenCase.all)
    func matchesPEFT(_ golden: LoRAGoldenCase) throws {
        let dir = TestSupport.temporaryDirectory("lora-golden")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/out.safetensors"
        // The case's command line, as the subcommand reads it.
        var inputs = try LibraryMerge.inputs(commandLine: golden.inputs)
        let method: any MergeMethod
        (method, inputs.weights) = try LibraryMerge.method(golden.method, flags: golden.args)
        try LibraryMerge.run(method, inputs, output: OutputSpec(path: output))
        let actual = TestSupport.values(try Checkpoint(path: output))
        let expected = TestSupport.values(try Checkpoint(path: TestSupport.fixture(golden.file)))
        let base = TestSupport.values(try Checkpoint(path: TestSupport.fixture(golden.inputs[1])))
        #expect(!expected.isEmpty && !golden.changed.isEmpty)
        #expect(Set(golden.changed).isSubset(of: Set(expected.keys)))
        for (name, reference) in expected {
            let mine = try #require(actual[name], "\(name) missing")
            #expect(mine.info.shape == reference.info.shape)
            expectClose(mine.values, reference.values, tolerance: golden.tolerance, name)
        }
        // Exactly the tensors PEFT changed move; every other tensor keeps the base's values
        // (goldens of the PEFT rule cases hold only the changed tensors).
        for (name, mine) in actual where base[name]?.info.dtype.isMergeable == true {
            if golden.changed.contains(name) {
                #expect(mine.values != base[name]!.values, "\(name) should change")
            } else {
                #expect(mine.values == base[name]!.values, "\(name) should be the base's")
            }
        }
    }

    @Test("A PEFT-made adapter with use_rslora, an Embedding (lora_embedding_A/B + a saved base_layer copy) and lm_head merges as PEFT does")
    func peftMadeEmbeddingAdapter() throws {
        let json = try JSONParser.parse(try FileSystem.readFile(TestSupport.fixture("svd_lora/extracted/cases.json")))
        let cases = try #require(json["peft_made"]?.arrayValue)
        #expect(!cases.isEmpty)
        for c in cases {
            let dir = TestSupport.temporaryDirectory("lora-peft-made")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let adapter = try LoRAAdapter(path: TestSupport.fixture(c["adapter"]!.stringValue!))
            #expect(adapter.config.useRSLoRA && !adapter.savedBaseLayers.isEmpty)
            #expect(adapter.modules.contains { $0.transposed && $0.a.name.hasSuffix("lora_embedding_A") })
            let plan = try MergePlan(base: try Checkpoint(path: TestSupport.fixture(c["base"]!.stringValue!)), inputs: [MergeInput(lora: adapter)],
                                     method: try TaskArithmetic(scale: 1), output: OutputSpec(path: dir + "/merged.safetensors"))
            _ = try MergeExecutor.run(plan, threads: 2)
            try LoRAExtractionTests.expectMatches(dir + "/merged.safetensors", c["peft_merged"]!.stringValue!, tolerance: c["tolerance"]!.doubleValue!)
        }
    }

    @Test("The golden cases cover one adapter, rank/alpha patterns, two adapters and fan_in_fan_out")
    func coverage() {
        #expect(Set(LoRAGoldenCase.all.map(\.name)).isSuperset(of: ["merged_lora_a", "merged_lora_b", "merged_both", "merged_lora_gpt2_fifo",
            "rules_target_regex", "rules_target_suffix_list", "rules_exclude_list", "rules_exclude_regex", "rules_layers_pattern",
            "rules_layers_default_pattern", "rules_layers_pattern_list_and_exact_name", "rules_fan_in_fan_out_on_linear",
            "rules_fan_in_fan_out_on_square_linear", "rules_no_fan_in_fan_out_on_conv1d", "rules_no_fan_in_fan_out_on_square_conv1d",
            "rules_pattern_regex_keys", "rules_all_linear"]))
    }

    @Test("Configs PEFT refuses are refused, naming the config file and what PEFT says",
          arguments: try! JSONParser.parse(try! FileSystem.readFile(TestSupport.fixture("svd_lora/peft_rules/cases.json")))["refused"]!.arrayValue!
              .map { [$0["name"]!.stringValue!, $0["base"]!.stringValue!, $0["adapter"]!.stringValue!] })
    func refusesWhatPEFTRefuses(_ c: [String]) throws {
        let dir = TestSupport.temporaryDirectory("lora-refused")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try #require(throws: MergeKitError.self, "\(c[0]) merged") {
            let adapter = try LoRAAdapter(path: TestSupport.fixture(c[2]))
            _ = try MergePlan(base: try Checkpoint(path: TestSupport.fixture(c[1])), inputs: [MergeInput(lora: adapter)],
                              method: try TaskArithmetic(scale: 1), output: OutputSpec(path: dir + "/out.safetensors"))
        }
        #expect(error.description.contains("adapter_config.json") && error.description.contains("PEFT refuses"), "\(c[0]): \(error)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.safetensors"))
    }

    // MARK: Reading adapters

    @Test("rank_pattern and alpha_pattern are matched as PEFT's get_pattern_key does")
    func patterns() throws {
        let adapter = try LoRAAdapter(path: TestSupport.fixture("svd_lora/lora_b"))
        #expect(adapter.modules.count == 6)
        let down1 = try #require(adapter.module(forTarget: "model.layers.1.mlp.down_proj.weight"))
        #expect(down1.rank == 2 && down1.alpha == 3 && down1.scale == 1.5)
        let v0 = try #require(adapter.module(forTarget: "model.layers.0.self_attn.v_proj.weight"))
        #expect(v0.rank == 4 && v0.alpha == 16 && v0.scale == 4)
        let v1 = try #require(adapter.module(forTarget: "model.layers.1.self_attn.v_proj.weight"))
        #expect(v1.rank == 4 && v1.alpha == 8 && v1.scale == 2)
        #expect(!v1.transposed && v1.deltaShape == [8, 16])
        // The pattern must match a whole dotted suffix: "layers.0.self_attn.v_proj" does not
        // match "model.layers.10.self_attn.v_proj", and "proj" does not match "q_proj".
        func config(_ rankPattern: String) throws -> LoRAAdapter.Config {
            try LoRAAdapter.parseConfig(Array("{\"r\": 8, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], \"rank_pattern\": \(rankPattern)}".utf8), file: "adapter_config.json")
        }
        let patterns = try config(#"{"layers.0.self_attn.v_proj": 1, "proj": 2}"#)
        #expect(patterns.rank(for: "model.layers.10.self_attn.v_proj") == 8)
        #expect(patterns.rank(for: "model.layers.0.self_attn.v_proj") == 1)
        #expect(patterns.rank(for: "x.proj") == 2)
        #expect(patterns.rank(for: "x.q_proj") == 8)
        #expect(try config(#"{"q_proj|v_proj": 3}"#).rank(for: "a.v_proj") == 3)
        // The key is spliced into PEFT's (.*\.)?(key)$ as text: a ')' in it changes the grouping,
        // here to (.*\.)?(a) | (b)$, whose first branch has no $ (Python: re.match finds "abc").
        let spliced = try config(#"{"a)|(b": 3}"#)
        #expect(spliced.rank(for: "abc") == 3 && spliced.rank(for: "xb") == 8 && spliced.rank(for: "b") == 3)
    }

    @Test("Plain rank/alpha keys (module names) skip the regex and give the regex's answer")
    func plainPatternKeys() throws {
        let keys = ["q_proj", "model.layers.1.mlp.down_proj", "layers.0.self_attn.v_proj", "a.b", "x-y", "proj", "0"]
        let names = ["q_proj", "x.q_proj", "xq_proj", "q_proj\n", "q_proj\n\n", "a\nb.q_proj", "a.b\n.q_proj", "model.layers.1.mlp.down_proj",
                     "model.layers.11mlp.down_proj", "model.layers.1Xmlp.down_proj", "model.layers.1\nmlp.down_proj", "y.model.layers.1.mlp.down_proj",
                     "layers.0.self_attn.v_proj", "model.layers.10.self_attn.v_proj", "a.b", "aXb", "a\nb", "z.a.b", "za.b", "x-y", "proj", ".proj", "0", "", "."]
        for key in keys {
            let pattern = LoRAAdapter.PatternKey(key: key, regex: try PythonRegex("(.*\\.)?(\(key))$"), value: 1)
            for name in names {
                #expect(pattern.matches(name) == pattern.regex.matchesStart(name), "\(key) on \(name.debugDescription)")
            }
        }
    }

    @Test("fan_in_fan_out adapters and use_rslora scale as PEFT does")
    func orientationAndRSLoRA() throws {
        let fifo = try LoRAAdapter(path: TestSupport.fixture("svd_lora/lora_gpt2_fifo"))
        let cAttn = try #require(fifo.module(forTarget: "transformer.h.0.attn.c_attn.weight"))
        #expect(cAttn.transposed && cAttn.deltaShape == [16, 48] && cAttn.scale == 2)

        let dir = TestSupport.temporaryDirectory("lora-rslora")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try LoRAFixture.write(dir, config: ["r": "4", "lora_alpha": "8", "use_rslora": "true"],
                              modules: [("m.proj", a: [4, 3], b: [2, 4], embedding: false)])
        let module = try #require(try LoRAAdapter(path: dir).module(forTarget: "m.proj.weight"))
        #expect(module.scale == 4) // 8 / √4
    }

    // MARK: Module selection and config patterns

    @Test("Factors for modules the config does not target are ignored, as PEFT ignores them")
    func untargetedFactorsAreIgnored() throws {
        let dir = TestSupport.temporaryDirectory("lora-ignored")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let q0 = "model.layers.0.self_attn.q_proj", q1 = "model.layers.1.self_attn.q_proj"
        try LoRAFixture.write(dir + "/adapter", config: ["r": "2", "lora_alpha": "4", "target_modules": "[\"\(q0)\"]"],
                              modules: [(q0, a: [2, 16], b: [16, 2], embedding: false), (q1, a: [2, 16], b: [16, 2], embedding: false)])
        let adapter = try LoRAAdapter(path: dir + "/adapter")
        #expect(adapter.modules.map(\.name) == [q0] && adapter.ignoredModules == [q1])
        let plan = try MergePlan(base: try Checkpoint(path: TestSupport.fixture("f32/base")), inputs: [MergeInput(lora: adapter)],
                                 method: try TaskArithmetic(scale: 1), output: OutputSpec(path: dir + "/tau.safetensors", emit: .taskVector))
        func source(_ name: String) -> InputSource? { plan.tensors.first { $0.name == name + ".weight" }?.inputs.first }
        if case .lora? = source(q0) {} else { Issue.record("\(q0) should take the adapter's delta") }
        if case .zero? = source(q1) {} else { Issue.record("\(q1) should be zero") }
    }

    @Test("Config patterns with nested quantifiers are matched in linear time; unsupported syntax is refused naming the file and key")
    func configPatternsAreBounded() throws {
        let dir = TestSupport.temporaryDirectory("lora-hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let hostile = #"((a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s|t|u|v|w|x|y|z|_|\\.|[0-9])+)+Q"#
        let q0 = "model.layers.0.self_attn.q_proj"
        let modules: [(String, a: [Int], b: [Int], embedding: Bool)] = [(q0, a: [2, 16], b: [16, 2], embedding: false)]
        // In every place PEFT reads a pattern: none of them matches, so the adapter merges with the defaults.
        try LoRAFixture.write(dir + "/hostile", config: [
            "r": "2", "lora_alpha": "4", "target_modules": "[\"q_proj\"]",
            "alpha_pattern": "{\"\(hostile)\": 99}", "rank_pattern": "{\"\(hostile)\": 7}",
            "exclude_modules": "\"\(hostile)\"", "layers_to_transform": "[0]", "layers_pattern": "[\"\(hostile)\", \"layers\"]",
        ], modules: modules)
        let adapter = try LoRAAdapter(path: dir + "/hostile")
        let module = try #require(adapter.module(forTarget: q0 + ".weight"))
        #expect(module.rank == 2 && module.alpha == 4)
        let long = String(repeating: "model.layers.12.self_attn.", count: 60) + "q_proj"
        #expect(adapter.config.select(long, linear: true) == .unmatched) // "layers" finds layer 12, which is not listed
        #expect(adapter.config.alpha(for: long + "Q") == 99)
        // A string target_modules with the same shape.
        try LoRAFixture.write(dir + "/target", config: ["r": "2", "lora_alpha": "4", "target_modules": "\"(.*\\\\.)?\(hostile)\""], modules: modules)
        #expect(try LoRAAdapter(path: dir + "/target").config.select(long, linear: true) == .unmatched)

        // Syntax MergeKit does not match, and patterns past the bound.
        let cases: [(key: String, value: String)] = [
            ("rank_pattern", #"{"(q)_proj\\1": 2}"#), ("alpha_pattern", #"{"q(?=_proj)": 2}"#),
            ("exclude_modules", #""(?<!x)q_proj""#), ("target_modules", #""(?i)Q_PROJ""#), ("layers_pattern", #""(layers""#),
            ("exclude_modules", "\"" + String(repeating: "a", count: PythonRegex.maximumPatternLength + 1) + "\""),
        ]
        for (key, value) in cases {
            var config = ["r": "2", "lora_alpha": "4", key: value]
            if key == "layers_pattern" { config["layers_to_transform"] = "[0]" }
            try LoRAFixture.write(dir + "/bad", config: config, modules: modules)
            do {
                _ = try LoRAAdapter(path: dir + "/bad")
                Issue.record("\(key) \(value) was accepted")
            } catch {
                #expect(error.code == .invalidArgument && error.file?.hasSuffix("bad/adapter_config.json") == true, "\(error)")
                #expect(error.description.contains("\"\(key)\"") && error.description.contains("pattern"), "\(error)")
            }
        }
    }

    @Test("Features whose merge is not s·B·A, and a config without target_modules, are refused naming the key")
    func unmergeableConfigs() throws {
        let dir = TestSupport.temporaryDirectory("lora-features")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let modules: [(String, a: [Int], b: [Int], embedding: Bool)] = [("model.layers.0.self_attn.q_proj", a: [2, 16], b: [16, 2], embedding: false)]
        let cases: [(key: String, value: String)] = [
            ("modules_to_save", #"["lm_head"]"#), ("init_lora_weights", #""pissa""#), ("init_lora_weights", #""olora""#),
            ("layer_replication", "[[0, 1], [0, 2]]"), ("target_parameters", #"["mlp.experts.down_proj"]"#), ("lora_bias", "true"),
            ("trainable_token_indices", "[1, 2]"), ("bias", #""all""#), ("target_modules", "null"),
        ]
        for (key, value) in cases {
            try LoRAFixture.write(dir + "/a", config: ["r": "2", "lora_alpha": "4", key: value], modules: modules)
            do {
                _ = try LoRAAdapter(path: dir + "/a")
                Issue.record("\(key): \(value) was accepted")
            } catch {
                #expect(error.code == .invalidArgument && error.file?.hasSuffix("adapter_config.json") == true && error.description.contains("\"\(key)\""), "\(error)")
            }
        }
        // What PEFT loads as plain LoRA is accepted.
        for (key, value) in [("init_lora_weights", #""gaussian""#), ("init_lora_weights", "false"), ("modules_to_save", "null"),
                             ("layers_to_transform", "[]"), ("exclude_modules", "[]"), ("loftq_config", "{}"), ("bias", #""none""#)] {
            try LoRAFixture.write(dir + "/a", config: ["r": "2", "lora_alpha": "4", key: value], modules: modules)
            #expect((try? LoRAAdapter(path: dir + "/a")) != nil, "\(key): \(value)")
        }
    }

    @Test("Square weights take the orientation the adapter's other targets, or the base's biases, show; embeddings are transposed")
    func squareOrientation() throws {
        let dir = TestSupport.temporaryDirectory("lora-square")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func bound(_ base: String, _ config: [String: String], _ modules: [(String, a: [Int], b: [Int], embedding: Bool)]) throws -> [String: Bool] {
            try LoRAFixture.write(dir + "/a", config: config, modules: modules)
            let binding = try LoRAAdapter(path: dir + "/a").bind(to: try Checkpoint(path: TestSupport.fixture(base)))
            #expect(binding.problems.isEmpty, "\(binding.problems)")
            return binding.modules.mapValues(\.transposed)
        }
        let fifo = ["r": "2", "lora_alpha": "4", "fan_in_fan_out": "true"]
        // Llama (no biases, no other target): nn.Linear, whatever fan_in_fan_out says.
        #expect(try bound("f32/base", fifo, [("model.layers.0.self_attn.o_proj", a: [2, 16], b: [16, 2], embedding: false)])
                == ["model.layers.0.self_attn.o_proj.weight": false])
        // With a non-square Linear target beside it.
        #expect(try bound("f32/base", fifo, [("model.layers.0.self_attn.o_proj", a: [2, 16], b: [16, 2], embedding: false),
                                             ("model.layers.0.mlp.up_proj", a: [2, 16], b: [24, 2], embedding: false)])
                == ["model.layers.0.self_attn.o_proj.weight": false, "model.layers.0.mlp.up_proj.weight": false])
        // GPT-2: the square attn.c_proj alone is a Conv1D (the biases of c_attn and c_fc say so), whatever fan_in_fan_out says.
        #expect(try bound("svd_lora/gpt2_base", ["r": "2", "lora_alpha": "4"], [("transformer.h.0.attn.c_proj", a: [2, 16], b: [16, 2], embedding: false)])
                == ["transformer.h.0.attn.c_proj.weight": true])
        // An embedding (wpe is square here) is always transposed.
        #expect(try bound("svd_lora/gpt2_base", ["r": "2", "lora_alpha": "4"], [("transformer.wpe", a: [2, 16], b: [16, 2], embedding: true)])
                == ["transformer.wpe.weight": true])
    }

    // MARK: Streaming products

    @Test("Large adapters stream across work items and partial rows: τ = s·B·A (and s·(B·A)ᵀ), any dtype, any thread count",
          arguments: [(false, DType.F32, DType.F32), (true, .F32, .F32), (false, .BF16, .BF16), (true, .F16, .F64)])
    func streamingProduct(transposed: Bool, factorDType: DType, baseDType: DType) throws {
        let dir = TestSupport.temporaryDirectory("lora-large")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 701 × 1999 = 1.4 M elements: two work items of 2²⁰, chunks of 2¹⁴ that split rows.
        let out = 701, inFeatures = 1999, r = 5
        let weightShape = transposed ? [inFeatures, out] : [out, inFeatures]
        var rng = SplitMix64(seed: transposed ? 7 : 3)
        let base = (0..<(out * inFeatures)).map { _ in rng.normalOpen() * 0.02 }
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [
            (TensorSpec(name: "layer.proj.weight", dtype: baseDType, shape: weightShape), base),
            (TensorSpec(name: "layer.norm.weight", dtype: baseDType, shape: [7]), [1, 2, 3, 4, 5, 6, 7]),
        ])
        let a = (0..<(r * inFeatures)).map { _ in rng.normalOpen() * 0.1 }
        let b = (0..<(out * r)).map { _ in rng.normalOpen() * 0.1 }
        try LoRAFixture.write(dir + "/adapter", config: ["r": "\(r)", "lora_alpha": "7.5", "fan_in_fan_out": transposed ? "true" : "false"],
                              modules: [("layer.proj", a: [r, inFeatures], b: [out, r], embedding: false)],
                              values: ["layer.proj": (a, b)], dtype: factorDType)
        // The factors as stored, then τ in Double.
        let stored = TestSupport.values(try Checkpoint(path: dir + "/adapter/adapter_model.safetensors"))
        let sa = stored["base_model.model.layer.proj.lora_A.weight"]!.values, sb = stored["base_model.model.layer.proj.lora_B.weight"]!.values
        let storedBase = TestSupport.values(try Checkpoint(path: dir + "/base.safetensors"))["layer.proj.weight"]!.values
        let scale = 7.5 / Double(r)
        var expected = [Double](repeating: 0, count: out * inFeatures)
        for o in 0..<out {
            for i in 0..<inFeatures {
                var sum = 0.0
                for k in 0..<r { sum += sb[o * r + k] * sa[k * inFeatures + i] }
                expected[transposed ? i * out + o : o * inFeatures + i] = scale * sum
            }
        }
        var outputs: [[UInt8]] = []
        for threads in [1, 2] {
            let path = dir + "/tau\(threads).safetensors"
            let plan = try MergePlan(base: try Checkpoint(path: dir + "/base.safetensors"),
                                     inputs: [MergeInput(lora: try LoRAAdapter(path: dir + "/adapter"))],
                                     method: try TaskArithmetic(scale: 1),
                                     output: OutputSpec(path: path, dtype: baseDType == .F64 ? .F64 : .F32, emit: .taskVector))
            #expect(plan.tensors.first { $0.name == "layer.proj.weight" }.map { if case .lora = $0.inputs[0] { true } else { false } } == true)
            #expect(plan.tensors.first { $0.name == "layer.norm.weight" }.map { if case .zero = $0.inputs[0] { true } else { false } } == true)
            _ = try MergeExecutor.run(plan, threads: threads)
            outputs.append(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            let tau = TestSupport.values(try Checkpoint(path: path))
            #expect(tau["layer.norm.weight"]!.values == [Double](repeating: 0, count: 7))
            let got = tau["layer.proj.weight"]!.values
            #expect(tau["layer.proj.weight"]!.info.shape == weightShape)
            let tolerance = baseDType == .F64 ? 1e-14 : 1e-7
            expectClose(got, expected, tolerance: tolerance)
        }
        #expect(outputs[0] == outputs[1], "output depends on the thread count")
        // The merged model is θ₀ + τ.
        let merged = dir + "/merged.safetensors"
        _ = try MergeExecutor.run(try MergePlan(base: try Checkpoint(path: dir + "/base.safetensors"),
                                                inputs: [MergeInput(lora: try LoRAAdapter(path: dir + "/adapter"), weight: 2)],
                                                method: try TaskArithmetic(scale: 0.5), output: OutputSpec(path: merged, dtype: .F64)), threads: 2)
        let mergedValues = TestSupport.values(try Checkpoint(path: merged))["layer.proj.weight"]!.values
        expectClose(mergedValues, zip(storedBase, expected).map { $0 + $1 }, tolerance: 1e-6, "merged")
    }

    /// Writes each adapter's dense task vector (θ₀ + (lora_alpha/r)·B·A − θ₀, emitted as τ) into `dir`.
    static func denseTaskVectors(into dir: String) throws -> [String] {
        let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
        return try ["lora_a", "lora_b"].map { name in
            let path = "\(dir)/\(name).safetensors"
            let plan = try MergePlan(base: base, inputs: [MergeInput(lora: try LoRAAdapter(path: TestSupport.fixture("svd_lora/" + name)))],
                                     method: try TaskArithmetic(scale: 1), output: OutputSpec(path: path, emit: .taskVector))
            _ = try MergeExecutor.run(plan, threads: 1)
            return path
        }
    }

    static func adapters(weights: [Double]) throws -> [MergeInput] {
        try zip(["lora_a", "lora_b"], weights).map { MergeInput(lora: try LoRAAdapter(path: TestSupport.fixture("svd_lora/" + $0)), weight: $1) }
    }

    @Test("Every method works on LoRA inputs: the result equals merging the adapters' dense task vectors",
          arguments: ["ties", "ties-mergekit", "dare", "breadcrumbs", "magmax", "metagpt", "model-stock", "tsv-m", "iso-c"])
    func methodsOnLoRA(_ name: String) throws {
        let dir = TestSupport.temporaryDirectory("lora-methods")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let method: any MergeMethod = switch name {
        case "ties": try TIES(density: 0.3)
        case "ties-mergekit": try TIES(density: 0.5, trimScope: .tensor, vote: .weighted, merge: .normalized)
        case "dare": try DARE(dropRate: 0.5, seed: 3)
        case "breadcrumbs": try Breadcrumbs()
        case "magmax": try MagMax()
        case "metagpt": MetaGPT()
        case "model-stock": ModelStock()
        case "tsv-m": try TSVM()
        default: try IsoC()
        }
        let weights = ["ties", "ties-mergekit", "dare", "breadcrumbs"].contains(name) ? [1, 0.5] : [1, 1]
        let dense = try Self.denseTaskVectors(into: dir)
        let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
        _ = try MergeExecutor.run(try MergePlan(base: base, inputs: try Self.adapters(weights: weights), method: method,
                                                output: OutputSpec(path: dir + "/lora.safetensors")), threads: 2)
        let vectors = try zip(dense, weights).map { MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: $0), weight: $1) }
        _ = try MergeExecutor.run(try MergePlan(base: base, inputs: vectors, method: method, output: OutputSpec(path: dir + "/dense.safetensors")),
                                  threads: 2)
        let a = TestSupport.values(try Checkpoint(path: dir + "/lora.safetensors"))
        let b = TestSupport.values(try Checkpoint(path: dir + "/dense.safetensors"))
        #expect(a.keys.sorted() == b.keys.sorted())
        for (tensor, value) in b { #expect(a[tensor]?.values == value.values, "\(tensor) differs") }
        let original = TestSupport.values(base)
        #expect(a["model.layers.0.self_attn.q_proj.weight"]!.values != original["model.layers.0.self_attn.q_proj.weight"]!.values)
    }

    @Test("The analysis and sweeps take LoRA adapters: the same numbers as for the adapters' dense task vectors")
    func analyzeAndSweep() throws {
        let dir = TestSupport.temporaryDirectory("lora-analyze")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dense = try Self.denseTaskVectors(into: dir)
        let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
        let viaLoRA = try TaskVectorAnalysis.run(base: base, inputs: try Self.adapters(weights: [1, 1]), threads: 1)
        let viaDense = try TaskVectorAnalysis.run(base: base, inputs: try dense.map { MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: $0)) },
                                                  threads: 1)
        #expect(viaLoRA.cosines.count == 2 && viaLoRA.cosines == viaDense.cosines && viaLoRA.norms == viaDense.norms
                && viaLoRA.signConflicts == viaDense.signConflicts)
        let recipe = Recipe(method: "task_arithmetic", baseModel: base.path,
                            inputs: ["lora_a", "lora_b"].map { Recipe.Input(kind: .lora, path: TestSupport.fixture("svd_lora/" + $0)) },
                            sweep: [(name: "lambda", values: [.number(1), .number(2)])], path: "test")
        let sweep = try recipe.plan(output: dir + "/sweep")
        _ = try MergeRun.run(sweep.plans, threads: 1, points: sweep.points.map { $0.map { (name: $0.name, value: $0.value.description) } },
                             sweepDirectory: dir + "/sweep")
        let point = TestSupport.values(try Checkpoint(path: dir + "/sweep/point-000"))
        for (name, value) in TestSupport.values(try Checkpoint(path: TestSupport.fixture("svd_lora/merged_both.safetensors"))) {
            expectClose(point[name]!.values, value.values, tolerance: 2e-7, name)
        }
    }

    @Test("Negating an adapter removes it, and a recipe's lora: entries merge like adapters given directly")
    func negateAndRecipe() throws {
        let dir = TestSupport.temporaryDirectory("lora-recipe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = TestSupport.fixture("")
        let negation = try MergePlan(base: try Checkpoint(path: TestSupport.fixture("svd_lora/merged_lora_a.safetensors")),
                                     inputs: [MergeInput(lora: try LoRAAdapter(path: TestSupport.fixture("svd_lora/lora_a")), weight: -1)],
                                     method: try TaskArithmetic(scale: 1), output: OutputSpec(path: dir + "/neg.safetensors"))
        _ = try MergeExecutor.run(negation, threads: 1)
        let back = TestSupport.values(try Checkpoint(path: dir + "/neg.safetensors"))
        for (name, value) in TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/base"))) where value.info.dtype == .F32 {
            expectClose(back[name]!.values, value.values, tolerance: 2e-7, name)
        }
        let recipe = dir + "/recipe.yml"
        try """
            merge_method: task_arithmetic
            base_model: \(fixtures)/f32/base
            models:
              - lora: \(fixtures)/svd_lora/lora_a
                parameters: {weight: 1.0}
              - lora: \(fixtures)/svd_lora/lora_b
                parameters: {weight: 1.0}
            """.write(toFile: recipe, atomically: true, encoding: .utf8)
        let run = try Recipe.load(path: recipe).plan(output: dir + "/both.safetensors")
        _ = try MergeRun.run(run.plans, threads: 1)
        let both = TestSupport.values(try Checkpoint(path: dir + "/both.safetensors"))
        for (name, value) in TestSupport.values(try Checkpoint(path: TestSupport.fixture("svd_lora/merged_both.safetensors"))) {
            expectClose(both[name]!.values, value.values, tolerance: 2e-7, name)
        }
    }

    // MARK: Errors

    @Test("Adapter mistakes are plan-time errors naming the adapter file, the tensor and the fix")
    func errors() throws {
        let dir = TestSupport.temporaryDirectory("lora-errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let llama = TestSupport.fixture("f32/base")
        func planError(_ adapter: String, base: String = llama) -> MergeKitError? {
            do {
                let input = MergeInput(lora: try LoRAAdapter(path: adapter))
                _ = try MergePlan(base: try Checkpoint(path: base), inputs: [input], method: try TaskArithmetic(scale: 1),
                                  output: OutputSpec(path: dir + "/never.safetensors"))
                return nil
            } catch {
                return error
            }
        }
        func adapter(_ name: String, config: [String: String] = ["r": "2", "lora_alpha": "4"],
                     modules: [(String, a: [Int], b: [Int], embedding: Bool)], extra: [TensorSpec] = []) throws -> String {
            let path = dir + "/" + name
            try LoRAFixture.write(path, config: config, modules: modules, extra: extra)
            return path
        }
        let q = "model.layers.0.self_attn.q_proj"

        // A module the base does not have (the key mapping is named).
        var e = planError(try adapter("unknown", modules: [("model.layers.7.self_attn.q_proj", a: [2, 16], b: [16, 2], embedding: false)]))
        #expect(e?.code == .extraTensor)
        #expect(e?.file?.hasSuffix("unknown/adapter_model.safetensors") == true)
        #expect(e?.tensor == "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight")
        #expect(e?.description.contains("model.layers.7.self_attn.q_proj.weight") == true)
        // Saved without the wrapper prefix: the fix points at the similar base tensor.
        e = planError(try adapter("prefix", modules: [("layers.0.self_attn.q_proj", a: [2, 16], b: [16, 2], embedding: false)]))
        #expect(e?.code == .extraTensor && e?.fix?.contains(q + ".weight") == true)
        // Shape mismatch, and the transposed case suggests fan_in_fan_out.
        e = planError(try adapter("shape", modules: [(q, a: [2, 12], b: [16, 2], embedding: false)]))
        #expect(e?.code == .shapeMismatch && e?.tensor == "base_model.model.\(q).lora_A.weight")
        #expect(e?.file?.hasSuffix("shape/adapter_model.safetensors") == true && e?.description.contains("adapter_model.safetensors") == true, "\(String(describing: e))")
        let ties = try #require(throws: MergeKitError.self) {
            try LibraryMerge.plan(try LibraryMerge.method("ties"), LibraryMerge.Inputs(base: llama, loras: [dir + "/shape"]),
                                  output: OutputSpec(path: dir + "/out"))
        }
        #expect(ties.code == .shapeMismatch && ties.description.contains("lora_A.weight"), "\(ties)")
        // fan_in_fan_out on an nn.Linear weight: PEFT resets it to false, and the shape says Linear.
        #expect(planError(try adapter("fifo", config: ["r": "2", "lora_alpha": "4", "fan_in_fan_out": "true"],
                                      modules: [("model.layers.0.mlp.down_proj", a: [2, 24], b: [16, 2], embedding: false)])) == nil)
        // A Llama adapter on GPT-2: every target is missing; problems are reported together.
        e = planError(TestSupport.fixture("svd_lora/lora_a"), base: TestSupport.fixture("svd_lora/gpt2_base"))
        #expect(e?.code == .extraTensor && e?.detail.contains("6 problems") == true)
        // Rank disagreeing with the config, a lone factor, a key that is not a factor, DoRA.
        e = planError(try adapter("rank", config: ["r": "4", "lora_alpha": "4"], modules: [(q, a: [2, 16], b: [16, 2], embedding: false)]))
        #expect(e?.code == .shapeMismatch && e?.description.contains("r = 4") == true)
        e = planError(try adapter("lone", modules: [(q, a: [2, 16], b: [], embedding: false)]))
        #expect(e?.code == .missingTensor && e?.description.contains("lora_B") == true)
        e = planError(try adapter("bias", modules: [(q, a: [2, 16], b: [16, 2], embedding: false)],
                                  extra: [TensorSpec(name: "base_model.model.\(q).lora_B.bias", dtype: .F32, shape: [16])]))
        #expect(e?.code == .extraTensor && e?.tensor == "base_model.model.\(q).lora_B.bias" && e?.fix?.contains("merge_and_unload") == true)
        e = planError(try adapter("dora", config: ["r": "2", "lora_alpha": "4", "use_dora": "true"], modules: [(q, a: [2, 16], b: [16, 2], embedding: false)]))
        #expect(e?.code == .invalidArgument && e?.description.contains("DoRA") == true)
        e = planError(try adapter("ia3", config: ["r": "2", "lora_alpha": "4", "peft_type": "\"IA3\""], modules: [(q, a: [2, 16], b: [16, 2], embedding: false)]))
        #expect(e?.code == .invalidArgument && e?.description.contains("IA3") == true)
        e = planError(try adapter("badpattern", config: ["r": "2", "lora_alpha": "4", "rank_pattern": "{\"q_proj(\": 2}"], modules: [(q, a: [2, 16], b: [16, 2], embedding: false)]))
        #expect(e?.code == .invalidArgument && e?.description.contains("rank_pattern") == true)
        // A saved copy of a base layer (PEFT's save_embedding_layers) that differs from the base.
        e = planError(try adapter("baselayer", modules: [(q, a: [2, 16], b: [16, 2], embedding: false)],
                                  extra: [TensorSpec(name: "base_model.model.\(q).base_layer.weight", dtype: .F32, shape: [16, 16])]))
        #expect(e?.code == .baseMismatch && e?.tensor == "base_model.model.\(q).base_layer.weight")
        // Missing files.
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        e = planError(dir + "/empty")
        #expect(e?.code == .fileNotFound && e?.file?.hasSuffix("adapter_config.json") == true)
        #expect(!FileManager.default.fileExists(atPath: dir + "/out") && !FileManager.default.fileExists(atPath: dir + "/never.safetensors"))
        // merge-cli's --weight values count models, task vectors and adapters (exit 64).
        let weights = try CLI.run(["task-arithmetic", "--base", llama, "--lora", TestSupport.fixture("svd_lora/lora_a"), "--weight", "1", "--weight", "2", "-o", dir + "/w"])
        #expect(weights.status == 64)
    }
}

/// Writes small PEFT-format adapters for tests.
enum LoRAFixture {
    /// `config` values are JSON text; `modules` give each module's A and B shapes (an empty shape
    /// leaves the factor out); `values` optionally give A's and B's values (else 0.01·index).
    static func write(_ dir: String, config: [String: String], modules: [(String, a: [Int], b: [Int], embedding: Bool)],
                      values: [String: ([Double], [Double])] = [:], dtype: DType = .F32, extra: [TensorSpec] = []) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var members = config
        members["peft_type"] = members["peft_type"] ?? "\"LORA\""
        // As PEFT saves it: the modules the factors are for (full names select exactly those).
        members["target_modules"] = members["target_modules"] ?? "[" + modules.map { "\"\($0.0)\"" }.joined(separator: ", ") + "]"
        let json = "{" + members.keys.sorted().map { "\"\($0)\": \(members[$0]!)" }.joined(separator: ", ") + "}"
        try json.write(toFile: dir + "/adapter_config.json", atomically: true, encoding: .utf8)
        var tensors: [(TensorSpec, [Double])] = []
        for (name, aShape, bShape, embedding) in modules {
            let (aKey, bKey) = embedding ? ("lora_embedding_A", "lora_embedding_B") : ("lora_A.weight", "lora_B.weight")
            for (key, shape, which) in [(aKey, aShape, 0), (bKey, bShape, 1)] where !shape.isEmpty {
                let n = shape.reduce(1, *)
                let given = values[name].map { which == 0 ? $0.0 : $0.1 }
                tensors.append((TensorSpec(name: "base_model.model.\(name).\(key)", dtype: dtype, shape: shape),
                                given ?? (0..<n).map { 0.01 * Double($0 % 17) - 0.05 }))
            }
        }
        for spec in extra { tensors.append((spec, [Double](repeating: 0.5, count: spec.elementCount))) }
        TestSupport.writeCheckpoint(dir + "/adapter_model.safetensors", tensors)
    }
}

extension SplitMix64 {
    /// Box–Muller with u1 in (0, 1] (the LoRA tests' normal numbers).
    mutating func normalOpen() -> Double {
        let u1 = (Double(next() >> 11) + 1) / 9_007_199_254_740_993.0
        let u2 = Double(next() >> 11) / 9_007_199_254_740_992.0
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }
}
