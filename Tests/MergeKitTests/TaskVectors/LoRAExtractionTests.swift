import Foundation
import Testing
@testable import MergeKit

/// One case of Fixtures/svd_lora/extracted/cases.json, written by Fixtures/svd_lora/check_peft_interop.py:
/// an adapter extract-lora wrote, PEFT's merge_and_unload() of it, and numpy's optimal errors.
struct ExtractedAdapterCase: Sendable, CustomTestStringConvertible {
    let name: String
    let base: String
    let model: String
    let args: [String]
    let adapter: String
    let peftMerged: String
    /// merge-cli's merge of the committed adapter vs PEFT's merge of it.
    let tolerance: Double
    /// A fresh extraction's merge vs PEFT's merge of the committed adapter: 4× the float32 LAPACK spread
    /// of this case's truncations (numpy's and torch's SVD against float64; see the script).
    let reextractionTolerance: Double
    let randomized: Bool
    /// Per tensor: (optimal, reported) relative errors.
    let errors: [String: (optimal: Double, reported: Double)]

    var testDescription: String { name }

    /// The extraction options `args` (extract-lora's flags) stand for.
    var options: LoRAExtraction.Options {
        var options = LoRAExtraction.Options(rank: 0)
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--rank": options.rank = Int(args[i + 1])!; i += 1
            case "--oversampling": options.oversampling = Int(args[i + 1])!; i += 1
            case "--seed": options.seed = UInt64(args[i + 1])!; i += 1
            case "--randomized": options.randomized = true
            case "--embeddings": options.includeEmbeddings = true
            case "--fan-in-fan-out": options.fanInFanOut = true
            default: preconditionFailure("\(name): unknown extract-lora flag \(args[i])")
            }
            i += 1
        }
        return options
    }

    /// The extraction of this case's model into `output`.
    func extraction(into output: String) throws -> LoRAExtraction {
        try LoRAExtraction(base: try Checkpoint(path: TestSupport.fixture(base)), model: try Checkpoint(path: TestSupport.fixture(model)),
                           output: output, options: options)
    }

    static let all: [ExtractedAdapterCase] = {
        let json = try! JSONParser.parse(try! FileSystem.readFile(TestSupport.fixture("svd_lora/extracted/cases.json")))
        return json["cases"]!.arrayValue!.map { c in
            var errors: [String: (Double, Double)] = [:]
            for member in c["errors"]!.objectMembers! {
                errors[member.key] = (member.value["optimal"]!.doubleValue!, member.value["reported"]!.doubleValue!)
            }
            return ExtractedAdapterCase(name: c["name"]!.stringValue!, base: c["base"]!.stringValue!, model: c["model"]!.stringValue!,
                                        args: c["args"]!.arrayValue!.map { $0.stringValue! }, adapter: c["adapter"]!.stringValue!,
                                        peftMerged: c["peft_merged"]!.stringValue!, tolerance: c["tolerance"]!.doubleValue!,
                                        reextractionTolerance: c["reextraction_tolerance"]!.doubleValue!,
                                        randomized: c["randomized"] == .bool(true), errors: errors)
        }
    }()
}

@Suite("LoRA extraction")
struct LoRAExtractionTests {
    /// `output` and the golden have the same tensors and shapes, and values within `tolerance`.
    static func expectMatches(_ output: String, _ golden: String, tolerance: Double, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let mine = TestSupport.values(try Checkpoint(path: output))
        let expected = TestSupport.values(try Checkpoint(path: TestSupport.fixture(golden)))
        #expect(!expected.isEmpty, sourceLocation: sourceLocation)
        for (name, value) in expected {
            let actual = try #require(mine[name], "\(name) missing", sourceLocation: sourceLocation)
            #expect(actual.info.shape == value.info.shape, sourceLocation: sourceLocation)
            expectClose(actual.values, value.values, tolerance: tolerance, name, sourceLocation: sourceLocation)
        }
    }

    /// Task arithmetic of `base` and the adapter `adapter` (as `merge-cli task-arithmetic --lora`) into `output`.
    static func mergeAdapter(base: String, _ adapter: String, into output: String) throws {
        try LibraryMerge.run(try TaskArithmetic(), LibraryMerge.Inputs(base: base, loras: [adapter]), output: OutputSpec(path: output))
    }

    @Test("An adapter written by extract-lora, merged by PEFT, gives the weights a merge with it as a LoRA input predicts",
          arguments: ExtractedAdapterCase.all)
    func peftMergesWhatMergeKitPredicts(_ golden: ExtractedAdapterCase) throws {
        let dir = TestSupport.temporaryDirectory("extracted")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.mergeAdapter(base: golden.base, golden.adapter, into: dir + "/merged.safetensors")
        try Self.expectMatches(dir + "/merged.safetensors", golden.peftMerged, tolerance: golden.tolerance)
    }

    @Test("Extraction reproduces the committed adapter: its config, optimal errors and PEFT's merge", arguments: ExtractedAdapterCase.all)
    func reproducesCommittedAdapter(_ golden: ExtractedAdapterCase) throws {
        let dir = TestSupport.temporaryDirectory("extract")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let extraction = try golden.extraction(into: dir + "/adapter")
        let result = try extraction.run()
        // The report as --json prints it.
        let report = try JSONParser.parse(Array(result.json(extraction).serialized(indent: 2).utf8))
        let tensors = try #require(report["tensors"]?.arrayValue)
        #expect(tensors.count == golden.errors.count)
        for entry in tensors {
            let name = entry["tensor"]!.stringValue!
            let error = entry["relative_error"]!.doubleValue!
            let expected = try #require(golden.errors[name], "\(name) not in the golden")
            // numpy's optimum (Eckart–Young) for the exact SVD; within 3 % for the randomized case (see the script).
            let slack = golden.randomized ? 0.03 : 1e-5
            #expect(error <= expected.optimal * (1 + slack) + 1e-6 && error >= expected.optimal * (1 - 1e-5) - 1e-6,
                    "\(name): error \(error), optimal \(expected.optimal)")
            #expect(abs(error - expected.reported) <= 1e-4 * max(expected.reported, 1e-3), "\(name): \(error) vs committed \(expected.reported)")
        }
        let config = try JSONParser.parse(try FileSystem.readFile(dir + "/adapter/adapter_config.json"))
        let committed = try JSONParser.parse(try FileSystem.readFile(TestSupport.fixture(golden.adapter + "/adapter_config.json")))
        // The same config, naming the base as it was given (here by its full path).
        guard case .object(let members) = config, case .object(let committedMembers) = committed else {
            Issue.record("adapter_config.json is not an object")
            return
        }
        let base = "base_model_name_or_path"
        #expect(members.first { $0.key == base }?.value == .string(TestSupport.fixture(golden.base)))
        #expect(committedMembers.first { $0.key == base }?.value == .string(golden.base))
        #expect(members.filter { $0.key != base } == committedMembers.filter { $0.key != base })
        // The factors are float32 SVDs of noise-like deltas: another CPU's BLAS kernels (OpenBLAS picks them per
        // CPU) or another LAPACK round differently, by up to the spread the script measured between two LAPACKs.
        try Self.mergeAdapter(base: golden.base, dir + "/adapter", into: dir + "/merged.safetensors")
        try Self.expectMatches(dir + "/merged.safetensors", golden.peftMerged, tolerance: golden.reextractionTolerance)
        // On one machine the bytes do not depend on the thread count.
        let weights = "/adapter_model.safetensors"
        for threads in [1, 3] {
            _ = try golden.extraction(into: dir + "/adapter-\(threads)").run(threads: threads)
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/adapter-\(threads)" + weights)) == Data(contentsOf: URL(fileURLWithPath: dir + "/adapter" + weights)),
                    "\(threads) threads changed the adapter")
        }
    }

    @Test("The interop goldens cover the exact and randomized SVD, embeddings and fan_in_fan_out")
    func coverage() {
        let all = ExtractedAdapterCase.all
        #expect(all.contains { $0.randomized } && all.contains { !$0.randomized })
        #expect(all.contains { $0.args.contains("--embeddings") } && all.contains { $0.args.contains("--fan-in-fan-out") })
    }

    // MARK: Known answers

    /// τ = U·diag(s)·Vᵀ with orthonormal U (rows × s.count), V (columns × s.count) from Gram–Schmidt on
    /// seeded normal vectors; returns τ row-major.
    static func planted(rows: Int, columns: Int, singularValues s: [Double], seed: UInt64) -> [Double] {
        var rng = SplitMix64(seed: seed)
        func orthonormal(_ n: Int) -> [[Double]] {
            var basis: [[Double]] = []
            while basis.count < s.count {
                var v = (0..<n).map { _ in rng.normalOpen() }
                for _ in 0..<2 {
                    for q in basis {
                        let d = zip(v, q).reduce(0) { $0 + $1.0 * $1.1 }
                        for i in 0..<n { v[i] -= d * q[i] }
                    }
                }
                let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                basis.append(v.map { $0 / norm })
            }
            return basis
        }
        let u = orthonormal(rows), v = orthonormal(columns)
        var tau = [Double](repeating: 0, count: rows * columns)
        for k in s.indices {
            for i in 0..<rows where u[k][i] != 0 {
                let x = s[k] * u[k][i]
                for j in 0..<columns { tau[i * columns + j] += x * v[k][j] }
            }
        }
        return tau
    }

    @Test("Known answers: a planted spectrum gives the Eckart–Young error; exact and randomized; any thread count")
    func plantedSpectrum() throws {
        let dir = TestSupport.temporaryDirectory("extract-planted")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (rows, columns) = (300, 200)
        let s = (1...40).map { 1.0 / Double($0) }
        let tau = Self.planted(rows: rows, columns: columns, singularValues: s, seed: 11)
        let tauT = Self.planted(rows: columns, columns: rows, singularValues: s, seed: 12)
        var rng = SplitMix64(seed: 13)
        let w0 = (0..<(rows * columns)).map { _ in rng.normalOpen() * 0.02 }
        let e0 = (0..<(rows * columns)).map { _ in rng.normalOpen() * 0.02 }
        let layers = [(TensorSpec(name: "layer.proj.weight", dtype: .F64, shape: [rows, columns]), w0),
                      (TensorSpec(name: "layer.norm.weight", dtype: .F64, shape: [3]), [1, 1, 1]),
                      (TensorSpec(name: "embed_tokens.weight", dtype: .F64, shape: [columns, rows]), e0)]
        TestSupport.writeCheckpoint(dir + "/base.safetensors", layers)
        TestSupport.writeCheckpoint(dir + "/ft.safetensors", [
            (layers[0].0, zip(w0, tau).map { $0 + $1 }), (layers[1].0, [1.5, 1, 1]), (layers[2].0, zip(e0, tauT).map { $0 + $1 }),
        ])
        let total = s.reduce(0) { $0 + $1 * $1 }
        for (rank, randomized) in [(20, false), (20, true), (40, false), (45, true)] {
            let optimal = s.dropFirst(rank).reduce(0) { $0 + $1 * $1 }.squareRoot() / total.squareRoot()
            var adapters: [[UInt8]] = []
            for threads in [1, 2] {
                let out = dir + "/a\(rank)\(randomized)\(threads)"
                let extraction = try LoRAExtraction(base: try Checkpoint(path: dir + "/base.safetensors"), model: try Checkpoint(path: dir + "/ft.safetensors"),
                                                    output: out, options: .init(rank: rank, randomized: randomized, includeEmbeddings: true, dtype: .F32))
                #expect(extraction.targets.map(\.tensor).sorted() == ["embed_tokens.weight", "layer.proj.weight"])
                let result = try extraction.run(threads: threads)
                for report in result.reports {
                    // Float32 factors of a Float32 τ: ~1e-6 relative noise on top of the optimum.
                    let slack = randomized && rank < s.count ? 0.01 * optimal : 0
                    #expect(report.relativeError >= optimal - 2e-6 && report.relativeError <= optimal + slack + 5e-6,
                            "\(report.tensor) rank \(rank) randomized \(randomized): \(report.relativeError) vs \(optimal)")
                }
                adapters.append(Array(try Data(contentsOf: URL(fileURLWithPath: out + "/adapter_model.safetensors"))))
                // The adapter reads back as PEFT's layout: embeddings transposed, Linear weights not.
                let adapter = try LoRAAdapter(path: out)
                let embed = try #require(adapter.module(forTarget: "embed_tokens.weight"))
                #expect(embed.transposed && embed.a.name.hasSuffix("lora_embedding_A") && embed.a.info.shape == [min(rank, columns), columns])
                let proj = try #require(adapter.module(forTarget: "layer.proj.weight"))
                #expect(!proj.transposed && proj.a.info.shape == [rank, columns] && proj.b.info.shape == [rows, rank] && proj.scale == 1)
            }
            #expect(adapters[0] == adapters[1], "rank \(rank) randomized \(randomized): depends on the thread count")
        }
        // Without --embeddings the embedding is skipped and reported as such.
        let plain = try LoRAExtraction(base: try Checkpoint(path: dir + "/base.safetensors"), model: try Checkpoint(path: dir + "/ft.safetensors"),
                                       output: dir + "/plain", options: .init(rank: 8))
        #expect(plain.targets.map(\.tensor) == ["layer.proj.weight"] && plain.skipped == ["embed_tokens.weight"])
    }

    @Test("Extraction's mistakes are refused before anything is written: a bad rank, a .safetensors output, mismatched models, an existing output")
    func errors() throws {
        let dir = TestSupport.temporaryDirectory("extract-errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Checkpoint(path: TestSupport.fixture("f32/base")), model = try Checkpoint(path: TestSupport.fixture("f32/ft_a"))
        func refused(_ model: Checkpoint, rank: Int = 4, output: String, overwrite: Bool = false) throws -> MergeKitError {
            try #require(throws: MergeKitError.self) {
                try LoRAExtraction(base: base, model: model, output: output, options: LoRAExtraction.Options(rank: rank, overwrite: overwrite))
            }
        }
        let rank = try refused(model, rank: 0, output: dir + "/x")
        #expect(rank.code == .invalidArgument && rank.description.contains("rank 0 must be at least 1. Use a rank such as 64"), "\(rank)")
        #expect(try refused(model, output: dir + "/x.safetensors").description.contains("directory"))
        let other = try Checkpoint(path: TestSupport.fixture("svd_lora/gpt2_ft"))
        let mismatch = try refused(other, output: dir + "/x")
        #expect(mismatch.description.contains(other.path) && mismatch.description.contains("model.layers.0.self_attn.q_proj.weight"), "\(mismatch)")
        try FileManager.default.createDirectory(atPath: dir + "/exists", withIntermediateDirectories: true)
        let exists = try refused(model, output: dir + "/exists")
        #expect(exists.code == .outputExists && exists.description.contains("already exists") && exists.description.contains("allow overwriting"))
        #expect(TestSupport.listing(dir + "/exists").isEmpty)
        _ = try LoRAExtraction(base: base, model: model, output: dir + "/exists", options: LoRAExtraction.Options(rank: 4, overwrite: true)).run(threads: 1)
        #expect(TestSupport.listing(dir + "/exists") == ["adapter_config.json", "adapter_model.safetensors"])
    }

    @Test("merge-cli extract-lora: --rank 0 exits 64; an existing output exits 1 naming --overwrite")
    func commandErrors() throws {
        let dir = TestSupport.temporaryDirectory("extract-cli-errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixtures = TestSupport.fixture("")
        let rank = try CLI.run(["extract-lora", "--base", "f32/base", "--model", "f32/ft_a", "--rank", "0", "-o", dir + "/x"], in: fixtures)
        #expect(rank.status == 64 && rank.stderr.contains("--rank must be at least 1, not 0"), "\(rank.stderr)")
        try FileManager.default.createDirectory(atPath: dir + "/exists", withIntermediateDirectories: true)
        let exists = try CLI.run(["extract-lora", "--base", "f32/base", "--model", "f32/ft_a", "--rank", "4", "-o", dir + "/exists"], in: fixtures)
        #expect(exists.status == 1 && exists.stderr.contains("already exists. Choose a new output path, or pass --overwrite"), "\(exists.stderr)")
    }
}
