import Foundation
import Testing
@testable import MergeKit

/// The NaN/Inf policy (`FiniteCheck`), for every method: a NaN or ±Inf in an element a merge
/// reads is an error naming the file, the tensor and the element, unless the base and every
/// input hold it identically (then the output keeps it); a result that overflows the output dtype
/// is an error naming the tensor and the fix; nothing is written on failure.
@Suite("NaN and Inf policy")
struct NonFinitePolicyTests {
    /// A base and two fine-tuned models: `m.weight` (F32, 4×3, a matrix for the SVD methods) and
    /// `v.bias` (BF16, 5). `edit` changes the values (base, ft_1, ft_2) before they are written.
    struct Set {
        let dir = TestSupport.temporaryDirectory("nonfinite")
        var base: String { dir + "/base.safetensors" }
        var models: [String] { [dir + "/ft_1.safetensors", dir + "/ft_2.safetensors"] }
        static let matrix = TensorSpec(name: "m.weight", dtype: .F32, shape: [4, 3])
        static let vector = TensorSpec(name: "v.bias", dtype: .BF16, shape: [5])

        typealias Values = (matrix: [Double], vector: [Double])

        init(matrixDType: DType = .F32, _ edit: (inout [Values]) -> Void = { _ in }) {
            var values: [Values] = []
            for model in 0..<3 {
                var matrix: [Double] = []
                for k in 0..<12 {
                    let change: Double = model == 0 ? 0 : 0.0625 * Double((model * 7 + k) % 3) - 0.03125
                    matrix.append(0.25 + 0.125 * Double(k % 5) + change)
                }
                var vector: [Double] = []
                for k in 0..<5 {
                    let change: Double = model == 0 ? 0 : 0.125 * Double(model) - 0.0625 * Double(k % 2)
                    vector.append(1 + change)
                }
                values.append((matrix, vector))
            }
            edit(&values)
            let matrix = TensorSpec(name: Self.matrix.name, dtype: matrixDType, shape: Self.matrix.shape)
            for (path, v) in zip([base] + models, values) {
                TestSupport.writeCheckpoint(path, [(matrix, v.matrix), (Self.vector, v.vector)])
            }
        }
    }

    func run(_ line: MethodCommandLine, _ set: Set, output: String, extra: [String] = []) throws -> CLI.Output {
        try CLI.run(line.arguments(base: set.base, models: set.models, output: output, extra: ["--quiet"] + extra))
    }

    @Test("NaN or +Inf in an input fails, naming the file, the tensor and the element; nothing is written", arguments: MethodCommandLine.all)
    func nonFiniteInput(_ line: MethodCommandLine) throws {
        // (the value planted in ft_2, the tensor, the message)
        let cases: [(edit: (inout [Set.Values]) -> Void, tensor: String, message: String)] = [
            ({ $0[2].matrix[5] = .nan }, "'m.weight'", "element [1, 2] (flat index 5) is NaN"),
            ({ $0[2].vector[3] = .infinity }, "'v.bias'", "element [3] (flat index 3) is +Inf"),
        ]
        for (edit, tensor, message) in cases {
            let set = Set(edit)
            defer { try? FileManager.default.removeItem(atPath: set.dir) }
            let output = set.dir + "/out" + (line.isSweep ? "" : ".safetensors")
            let result = try run(line, set, output: output)
            #expect(result.status == 1, "\(result.stderr)")
            #expect(result.stderr.contains(set.models[1]) && result.stderr.contains(tensor), "\(result.stderr)")
            #expect(result.stderr.contains(message) && result.stderr.contains("inspect --check-finite"), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output) || TestSupport.listing(output).isEmpty)
        }
    }

    @Test("-Inf (or NaN) held identically by the base and every input is kept; the rest merges as usual", arguments: MethodCommandLine.all)
    func sharedValuesKept(_ line: MethodCommandLine) throws {
        let set = Set { values in
            for m in 0..<3 { values[m].matrix[1] = -.infinity; values[m].vector[4] = -.infinity; values[m].vector[0] = .nan }
        }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        let output = set.dir + "/out" + (line.isSweep ? "" : ".safetensors")
        let result = try run(line, set, output: output)
        #expect(result.status == 0, "\(result.stderr)")
        guard result.status == 0 else { return }
        let outputs = line.isSweep ? TestSupport.listing(output).filter { $0 != "manifest.json" }.map { output + "/" + $0 } : [output]
        #expect(!outputs.isEmpty)
        for path in outputs {
            let merged = TestSupport.values(try Checkpoint(path: path))
            let m = try #require(merged["m.weight"]?.values), v = try #require(merged["v.bias"]?.values)
            #expect(m[1] == -.infinity && v[4] == -.infinity && v[0].isNaN, "\(path): \(m) \(v)")
            #expect(m.enumerated().allSatisfy { $0.offset == 1 || $0.element.isFinite }, "\(path): \(m)")
            #expect(v[1...3].allSatisfy { $0.isFinite }, "\(path): \(v)")
        }
        // Emitting the task vector: τ is finite everywhere (0 where the values were shared, for
        // every method but the SVD ones, which mix elements).
        if !line.isSweep {
            let tau = set.dir + "/tau.safetensors"
            let emitted = try run(line, set, output: tau, extra: ["--emit", "task-vector"])
            #expect(emitted.status == 0, "\(emitted.stderr)")
            if emitted.status == 0 {
                let values = TestSupport.values(try Checkpoint(path: tau))
                #expect(values["m.weight"]!.values.allSatisfy { $0.isFinite } && values["v.bias"]!.values.allSatisfy { $0.isFinite })
                #expect(values["v.bias"]!.values[0] == 0 && values["v.bias"]!.values[4] == 0)
            }
        }
    }

    @Test("A result that overflows F16 fails, naming the tensor, the element and --dtype F32; nothing is written", arguments: MethodCommandLine.all)
    func outputOverflow(_ line: MethodCommandLine) throws {
        // Every element of m.weight: θ₀ = 60000, τ = ±40000 in both models (negation subtracts).
        let sign: Double = line.label == "negate" ? -1 : 1
        let set = Set { values in
            values[0].matrix = Array(repeating: 60000, count: 12)
            values[1].matrix = Array(repeating: 60000 + sign * 40000, count: 12)
            values[2].matrix = Array(repeating: 60000 + sign * 40000, count: 12)
        }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        let output = set.dir + "/out" + (line.isSweep ? "" : ".safetensors")
        let result = try run(line, set, output: output, extra: ["--dtype", "F16"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("'m.weight'") && result.stderr.contains("beyond F16's largest finite value 65504"), "\(result.stderr)")
        #expect(result.stderr.contains("--dtype F32 or BF16"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output) || TestSupport.listing(output).isEmpty)
        // The same merge in F32 fits.
        let wide = try run(line, set, output: set.dir + "/wide" + (line.isSweep ? "" : ".safetensors"), extra: ["--dtype", "F32"])
        #expect(wide.status == 0, "\(wide.stderr)")
    }

    @Test("Task-vector and LoRA inputs: NaN fails naming the file; τ ≠ 0 where the base is -Inf fails naming the base; a huge lora_alpha overflows")
    func taskVectorAndLoRAInputs() throws {
        let set = Set { values in for m in 0..<3 { values[m].matrix[1] = -.infinity } }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        // A task vector made from the set is 0 where the values were shared, and applies cleanly.
        let tau = set.dir + "/tau.safetensors"
        let made = try CLI.run(["task-vector", "--base", set.base, "--finetuned", set.models[0], "-o", tau])
        #expect(made.status == 0, "\(made.stderr)")
        let tauValues = TestSupport.values(try Checkpoint(path: tau))
        #expect(tauValues["m.weight"]?.values[1] == 0)
        let applied = try CLI.run(["task-arithmetic", "--base", set.base, "--task-vector", tau, "-o", set.dir + "/applied.safetensors"])
        #expect(applied.status == 0, "\(applied.stderr)")

        // τ ≠ 0 (a file made by another tool) where the base is -Inf.
        let foreign = set.dir + "/foreign.safetensors"
        TestSupport.writeCheckpoint(foreign, [(Set.matrix, Array(repeating: 0.5, count: 12)), (Set.vector, Array(repeating: 0.25, count: 5))])
        let bad = try CLI.run(["task-arithmetic", "--base", set.base, "--task-vector", foreign, "-o", set.dir + "/bad.safetensors"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains(set.base + ": tensor 'm.weight': element [0, 1] (flat index 1) is -Inf in the base"), "\(bad.stderr)")

        // NaN in a task-vector file.
        let nan = set.dir + "/nan.safetensors"
        TestSupport.writeCheckpoint(nan, [(Set.matrix, (0..<12).map { $0 == 7 ? .nan : 0.5 }), (Set.vector, Array(repeating: 0.25, count: 5))],
                                    metadata: ["format": "pt", TaskVectorFile.kindKey: TaskVectorFile.kindValue])
        let clean = Set()
        defer { try? FileManager.default.removeItem(atPath: clean.dir) }
        let nanRun = try CLI.run(["ties", "--base", clean.base, "--task-vector", nan, "-o", clean.dir + "/nan-out.safetensors"])
        #expect(nanRun.status == 1)
        #expect(nanRun.stderr.contains(nan + ": tensor 'm.weight': element [2, 1] (flat index 7) of the task vector is NaN"), "\(nanRun.stderr)")

        // LoRA: a NaN in a factor, a lora_alpha so large that τ overflows, one that makes θ₀ + 4τ overflow.
        try LoRAFixture.write(clean.dir + "/nan-adapter", config: ["r": "1", "lora_alpha": "1"],
                              modules: [("m", a: [1, 3], b: [4, 1], embedding: false)],
                              values: ["m": ([0.5, .nan, 0.5], [1, 1, 1, 1])])
        let loraNaN = try CLI.run(["task-arithmetic", "--base", clean.base, "--lora", clean.dir + "/nan-adapter", "-o", clean.dir + "/l1.safetensors"])
        #expect(loraNaN.status == 1)
        #expect(loraNaN.stderr.contains("'m.weight'") && loraNaN.stderr.contains("LoRA update s·B·A is NaN"), "\(loraNaN.stderr)")
        try LoRAFixture.write(clean.dir + "/huge-adapter", config: ["r": "1", "lora_alpha": "1e37"],
                              modules: [("m", a: [1, 3], b: [4, 1], embedding: false)],
                              values: ["m": ([100, 100, 100], [100, 100, 100, 100])])
        // (τ = 1e37 per element: small enough that the SVD's singular values stay finite in Float.)
        try LoRAFixture.write(clean.dir + "/large-adapter", config: ["r": "1", "lora_alpha": "1e33"],
                              modules: [("m", a: [1, 3], b: [4, 1], embedding: false)],
                              values: ["m": ([100, 100, 100], [100, 100, 100, 100])])
        for method in [["task-arithmetic", "--weight", "40"], ["tsv-m", "--scale", "40"]] {
            for (adapter, expected) in [("huge-adapter", "LoRA update s·B·A is +Inf"), ("large-adapter", "arithmetic overflowed")] {
                let huge = try CLI.run(method + ["--base", clean.base, "--lora", clean.dir + "/" + adapter, "-o", clean.dir + "/l2.safetensors"])
                #expect(huge.status == 1, "\(method) \(adapter): \(huge.stderr)")
                #expect(huge.stderr.contains("'m.weight'") && huge.stderr.contains(expected) && huge.stderr.contains("lora_alpha"),
                        "\(method) \(adapter): \(huge.stderr)")
                #expect(!FileManager.default.fileExists(atPath: clean.dir + "/l2.safetensors"))
            }
        }
    }

    @Test("--check-finite reports the first offending input before merging, with the same policy (shared values pass)")
    func checkFiniteFlag() throws {
        let set = Set { values in
            for m in 0..<3 { values[m].matrix[1] = -.infinity }
            values[2].vector[2] = .nan
        }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        let checked = try CLI.run(MethodCommandLine.all[0].arguments(base: set.base, models: set.models, output: set.dir + "/out.safetensors",
                                                                    extra: ["--check-finite"]))
        #expect(checked.status == 1)
        #expect(checked.stderr.contains(set.models[1] + ": tensor 'v.bias': element [2] (flat index 2) is NaN"), "\(checked.stderr)")
        #expect(!FileManager.default.fileExists(atPath: set.dir + "/out.safetensors"))
        let shared = Set { values in for m in 0..<3 { values[m].matrix[1] = -.infinity } }
        defer { try? FileManager.default.removeItem(atPath: shared.dir) }
        let passed = try CLI.run(MethodCommandLine.all[0].arguments(base: shared.base, models: shared.models, output: shared.dir + "/out.safetensors",
                                                                   extra: ["--check-finite"]))
        #expect(passed.status == 0, "\(passed.stderr)")
    }

    @Test("The policy holds in every compute path: F64 inputs (Double), cached and streamed per-tensor passes")
    func computePaths() throws {
        for dtype in [DType.F64, .F16, .BF16] {
            let set = Set(matrixDType: dtype) { $0[1].matrix[10] = -.infinity }
            defer { try? FileManager.default.removeItem(atPath: set.dir) }
            for line in [MethodCommandLine.all[0], MethodCommandLine.all[3], MethodCommandLine.all[13]] {
                let result = try run(line, set, output: set.dir + "/out.safetensors")
                #expect(result.status == 1 && result.stderr.contains("element [3, 1] (flat index 10) is -Inf"), "\(dtype) \(line): \(result.stderr)")
            }
        }
    }

    @Test("analyze warns, naming the tensor and the counts, and prints no NaN norm or made-up cosine")
    func analyze() throws {
        let set = Set { values in
            values[1].matrix[4] = .nan
            values[1].matrix[5] = .infinity
            values[2].vector = values[0].vector  // τ₂ = 0 in v.bias
            values[2].matrix = values[0].matrix  // τ₂ = 0 everywhere
            for m in 0..<3 { values[m].vector[0] = -.infinity }  // shared: not reported
        }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        let args = ["analyze", "--base", set.base, "--model", set.models[0], "--model", set.models[1]]
        let text = try CLI.run(args)
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("warning: input [0] \(set.models[0]): tensor 'm.weight' has 1 NaN, 1 +Inf and 0 -Inf"), "\(text.stdout)")
        #expect(text.stdout.contains("warning: input [1] \(set.models[1]): the task vector is all zero"), "\(text.stdout)")
        let normLine = text.stdout.split(separator: "\n").first { $0.hasPrefix("norm") }.map(String.init) ?? ""
        #expect(!normLine.isEmpty && !normLine.lowercased().contains("nan"), "\(text.stdout)")
        #expect(text.stdout.contains("n/a"), "\(text.stdout)")
        let json = try CLI.run(args + ["--json"])
        #expect(json.status == 0)
        guard case .object(let members) = try JSONParser.parse(Array(json.stdout.utf8)) else { Issue.record("not an object"); return }
        let value = { (key: String) in members.first { $0.key == key }?.value }
        #expect(value("non_finite") == .array([.object([JSONMember("input", .int(0)), JSONMember("tensor", .string("m.weight")),
                                                        JSONMember("nan", .int(1)), JSONMember("pos_inf", .int(1)), JSONMember("neg_inf", .int(0))])]))
        if case .array(let norms) = value("norms") {
            #expect(norms.count == 2 && norms[1] == .int(0) && norms[0].doubleValue.map { $0 > 0 && $0.isFinite } == true, "\(norms)")
        }
        if case .array(let rows) = value("cosine_similarity"), case .array(let row) = rows.first {
            #expect(row.last == .null, "\(rows)")
        }
    }
}
