import Foundation
import Testing
@testable import MergeKit

/// One case of Fixtures/expected/cases.json (made by Fixtures/make_fixtures.py with numpy).
struct GoldenCase: Sendable, CustomTestStringConvertible {
    let name: String
    let dtypeDirectory: String
    let kind: String
    let models: [String]
    let weights: [Double]
    let scale: Double
    let outDType: DType
    let file: String

    var testDescription: String { "\(name) (\(dtypeDirectory))" }

    static let all: [GoldenCase] = {
        let bytes = try! FileSystem.readFile(TestSupport.fixture("expected/cases.json"))
        let json = try! JSONParser.parse(bytes)
        return json.arrayValue!.map { c in
            GoldenCase(name: c["name"]!.stringValue!, dtypeDirectory: c["dtype_dir"]!.stringValue!,
                       kind: c["kind"]!.stringValue!, models: c["models"]!.arrayValue!.map { $0.stringValue! },
                       weights: c["weights"]!.arrayValue!.map { $0.doubleValue! }, scale: c["scale"]!.doubleValue!,
                       outDType: DType(rawValue: c["out_dtype"]!.stringValue!)!, file: c["file"]!.stringValue!)
        }
    }()

    /// Runs the case through the library into `output`.
    func merge(to output: String, threads: Int = 2, maxShardSize: Int? = nil) throws -> MergeResult {
        let base = try Checkpoint(path: TestSupport.fixture("\(dtypeDirectory)/base"))
        let inputs = try zip(models, weights).map { model, weight in
            MergeInput(kind: .model, checkpoint: try Checkpoint(path: TestSupport.fixture("\(dtypeDirectory)/\(model)")), weight: weight)
        }
        let emit: EmitKind = kind == "task_vector" ? .taskVector : .model
        let spec = OutputSpec(path: output, dtype: outDType, maxShardSize: maxShardSize, emit: emit)
        let plan = try MergePlan(base: base, inputs: inputs, method: try TaskArithmetic(scale: scale), output: spec)
        return try MergeExecutor.run(plan, threads: threads)
    }
}

@Suite("Golden merges against the numpy reference")
struct GoldenMergeTests {
    @Test("Each case of cases.json matches its numpy expectation", arguments: GoldenCase.all)
    func matchesReference(_ golden: GoldenCase) throws {
        let dir = TestSupport.temporaryDirectory("golden")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/out.safetensors"
        _ = try golden.merge(to: output)
        let expected = try Checkpoint(path: TestSupport.fixture(golden.file))
        // F32 results carry float32 rounding of terms of size ≤ ~1 (so ≤ ~1e-8 absolute where
        // terms cancel); 16-bit outputs are rounded once from nearly the same value (1 ulp; the
        // bit-exact test below is stricter).
        let f32 = golden.outDType == .F32
        expectCheckpointsMatch(try Checkpoint(path: output), expected, ulps: f32 ? 2 : 1, absolute: f32 ? 1e-8 : 0)
    }

    @Test("The fixture cases cover add, negate, analogy, weights and all three dtypes")
    func coverage() {
        let names = Set(GoldenCase.all.map(\.name))
        #expect(names.isSuperset(of: ["tv_a", "sum", "negate_a", "analogy", "weighted"]))
        #expect(Set(GoldenCase.all.map(\.dtypeDirectory)) == ["f32", "f16", "bf16"])
    }

    @Test("16-bit outputs equal the reference bit for bit")
    func sixteenBitExact() throws {
        for golden in GoldenCase.all where golden.outDType != .F32 {
            let dir = TestSupport.temporaryDirectory("exact")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            _ = try golden.merge(to: dir + "/out.safetensors")
            let actual = try Checkpoint(path: dir + "/out.safetensors")
            let expected = try Checkpoint(path: TestSupport.fixture(golden.file))
            for entry in expected.entries {
                let mine = try #require(actual.entry(named: entry.name))
                #expect(Array(mine.file.bytes(of: mine.info)) == Array(entry.file.bytes(of: entry.info)),
                        "\(golden.testDescription): \(entry.name)")
            }
        }
    }

    @Test("Output bytes are identical for 1 and 2 threads and on a second run")
    func deterministic() throws {
        let golden = try #require(GoldenCase.all.first { $0.name == "analogy" && $0.dtypeDirectory == "bf16" })
        let dir = TestSupport.temporaryDirectory("determinism")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try golden.merge(to: dir + "/one.safetensors", threads: 1)
        _ = try golden.merge(to: dir + "/two.safetensors", threads: 2)
        _ = try golden.merge(to: dir + "/again.safetensors", threads: 2)
        let one = try Data(contentsOf: URL(fileURLWithPath: dir + "/one.safetensors"))
        #expect(one == (try Data(contentsOf: URL(fileURLWithPath: dir + "/two.safetensors"))))
        #expect(one == (try Data(contentsOf: URL(fileURLWithPath: dir + "/again.safetensors"))))
    }

    @Test("A sharded directory output holds the same tensors as a single file, with index and companions")
    func shardedOutput() throws {
        let golden = try #require(GoldenCase.all.first { $0.name == "sum" && $0.dtypeDirectory == "bf16" })
        let dir = TestSupport.temporaryDirectory("sharded")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try golden.merge(to: dir + "/model", maxShardSize: 3000)
        #expect(result.files.count > 1)
        let files = TestSupport.listing(dir + "/model")
        #expect(files.contains("model.safetensors.index.json"))
        #expect(files.contains("config.json") && files.contains("tokenizer_config.json") && files.contains("generation_config.json"))
        #expect(files.filter { $0.hasPrefix("model-") }.count == result.files.count)
        let merged = try Checkpoint(path: dir + "/model")
        #expect(merged.layout == .sharded(index: "model.safetensors.index.json"))
        for file in merged.files {
            #expect(file.metadata?["format"] == "pt")
            #expect(file.tensors.reduce(0) { $0 + $1.byteCount } <= 3000 || file.tensors.count == 1)
        }
        let index = try JSONParser.parse(try FileSystem.readFile(dir + "/model/model.safetensors.index.json"))
        #expect(index["metadata"]?["total_size"]?.nonNegativeInt == merged.dataBytes)
        expectCheckpointsMatch(merged, try Checkpoint(path: TestSupport.fixture(golden.file)), ulps: 1)
    }

    @Test("Changing the output dtype rewrites torch_dtype in the copied config.json")
    func configDType() throws {
        let golden = try #require(GoldenCase.all.first { $0.name == "sum_f32out" })
        let dir = TestSupport.temporaryDirectory("config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try golden.merge(to: dir + "/model")
        let config = try JSONParser.parse(try FileSystem.readFile(dir + "/model/config.json"))
        #expect(config["torch_dtype"]?.stringValue == "float32")
        let original = try JSONParser.parse(try FileSystem.readFile(TestSupport.fixture("bf16/base/config.json")))
        #expect(original["torch_dtype"]?.stringValue == "bfloat16")
        #expect(config["hidden_size"] == original["hidden_size"])
    }
}
