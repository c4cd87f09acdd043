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

    /// What merging `set` with `line` into `output` throws (nil when it succeeds).
    func failure(_ line: MethodCase, _ set: Set, output: String, dtype: DType? = nil) -> MergeKitError? {
        do throws(MergeKitError) {
            try line.merge(base: set.base, models: set.models, output: output, dtype: dtype)
            return nil
        } catch {
            return error
        }
    }

    @Test("NaN or +Inf in an input fails, naming the file, the tensor and the element; nothing is written", arguments: MethodCase.all)
    func nonFiniteInput(_ line: MethodCase) throws {
        // (the value planted in ft_2, the tensor, the message)
        let cases: [(edit: (inout [Set.Values]) -> Void, tensor: String, message: String)] = [
            ({ $0[2].matrix[5] = .nan }, "m.weight", "element [1, 2] (flat index 5) is NaN"),
            ({ $0[2].vector[3] = .infinity }, "v.bias", "element [3] (flat index 3) is +Inf"),
        ]
        for (edit, tensor, message) in cases {
            let set = Set(edit)
            defer { try? FileManager.default.removeItem(atPath: set.dir) }
            let output = line.output(set.dir + "/out")
            let error = try #require(failure(line, set, output: output), "\(line): the merge succeeded")
            #expect(error.code == .nonFiniteValue && error.file == set.models[1] && error.tensor == tensor, "\(error)")
            #expect(error.description.contains(message) && error.uses(.finitenessScan), "\(error)")
            #expect(!FileManager.default.fileExists(atPath: output) || TestSupport.listing(output).isEmpty)
        }
    }

    @Test("-Inf (or NaN) held identically by the base and every input is kept; the rest merges as usual", arguments: MethodCase.all)
    func sharedValuesKept(_ line: MethodCase) throws {
        let set = Set { values in
            for m in 0..<3 { values[m].matrix[1] = -.infinity; values[m].vector[4] = -.infinity; values[m].vector[0] = .nan }
        }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        let outputs = try line.merge(base: set.base, models: set.models, output: line.output(set.dir + "/out"))
        #expect(outputs.count == (line.isSweep ? 2 : 1))
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
            try line.merge(base: set.base, models: set.models, output: tau, emit: .taskVector)
            let values = TestSupport.values(try Checkpoint(path: tau))
            #expect(values["m.weight"]!.values.allSatisfy { $0.isFinite } && values["v.bias"]!.values.allSatisfy { $0.isFinite })
            #expect(values["v.bias"]!.values[0] == 0 && values["v.bias"]!.values[4] == 0)
        }
    }

    @Test("A result that overflows F16 fails, naming the tensor, the element and a wider dtype; nothing is written", arguments: MethodCase.all)
    func outputOverflow(_ line: MethodCase) throws {
        // Every element of m.weight: θ₀ = 60000, τ = ±40000 in both models (negation subtracts).
        let sign: Double = line.label == "negate" ? -1 : 1
        let set = Set { values in
            values[0].matrix = Array(repeating: 60000, count: 12)
            values[1].matrix = Array(repeating: 60000 + sign * 40000, count: 12)
            values[2].matrix = Array(repeating: 60000 + sign * 40000, count: 12)
        }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        let output = line.output(set.dir + "/out")
        let error = try #require(failure(line, set, output: output, dtype: .F16), "\(line): the merge succeeded")
        #expect(error.code == .nonFiniteValue && error.tensor == "m.weight", "\(error)")
        #expect(error.description.contains("beyond F16's largest finite value 65504") && error.uses(.widerDType), "\(error)")
        #expect(!FileManager.default.fileExists(atPath: output) || TestSupport.listing(output).isEmpty)
        // The same merge in F32 fits.
        try line.merge(base: set.base, models: set.models, output: line.output(set.dir + "/wide"), dtype: .F32)
    }

    @Test("Task-vector and LoRA inputs: NaN fails naming the file; τ ≠ 0 where the base is -Inf fails naming the base; a huge lora_alpha overflows")
    func taskVectorAndLoRAInputs() throws {
        let set = Set { values in for m in 0..<3 { values[m].matrix[1] = -.infinity } }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        // A task vector made from the set is 0 where the values were shared, and applies cleanly.
        let tau = set.dir + "/tau.safetensors"
        try LibraryMerge.taskVector(base: set.base, finetuned: set.models[0], output: tau)
        let tauValues = TestSupport.values(try Checkpoint(path: tau))
        #expect(tauValues["m.weight"]?.values[1] == 0)
        try LibraryMerge.run(try TaskArithmetic(), LibraryMerge.Inputs(base: set.base, taskVectors: [tau]),
                             output: OutputSpec(path: set.dir + "/applied.safetensors"))

        // τ ≠ 0 (a file made by another tool) where the base is -Inf.
        let foreign = set.dir + "/foreign.safetensors"
        TestSupport.writeCheckpoint(foreign, [(Set.matrix, Array(repeating: 0.5, count: 12)), (Set.vector, Array(repeating: 0.25, count: 5))])
        let bad = try #require(throws: MergeKitError.self) {
            try LibraryMerge.run(try TaskArithmetic(), LibraryMerge.Inputs(base: set.base, taskVectors: [foreign]),
                                 output: OutputSpec(path: set.dir + "/bad.safetensors"))
        }
        #expect(bad.code == .nonFiniteValue && bad.file == set.base && bad.tensor == "m.weight", "\(bad)")
        #expect(bad.description.contains(set.base + ": tensor 'm.weight': element [0, 1] (flat index 1) is -Inf in the base"), "\(bad)")

        // NaN in a task-vector file.
        let nan = set.dir + "/nan.safetensors"
        TestSupport.writeCheckpoint(nan, [(Set.matrix, (0..<12).map { $0 == 7 ? .nan : 0.5 }), (Set.vector, Array(repeating: 0.25, count: 5))],
                                    metadata: ["format": "pt", TaskVectorFile.kindKey: TaskVectorFile.kindValue])
        let clean = Set()
        defer { try? FileManager.default.removeItem(atPath: clean.dir) }
        let nanError = try #require(throws: MergeKitError.self) {
            try LibraryMerge.run(try LibraryMerge.method("ties"), LibraryMerge.Inputs(base: clean.base, taskVectors: [nan]),
                                 output: OutputSpec(path: clean.dir + "/nan-out.safetensors"))
        }
        #expect(nanError.code == .nonFiniteValue && nanError.file == nan && nanError.tensor == "m.weight", "\(nanError)")
        #expect(nanError.description.contains(nan + ": tensor 'm.weight': element [2, 1] (flat index 7) of the task vector is NaN"), "\(nanError)")

        // LoRA: a NaN in a factor, a lora_alpha so large that τ overflows, one that makes θ₀ + 4τ overflow.
        try LoRAFixture.write(clean.dir + "/nan-adapter", config: ["r": "1", "lora_alpha": "1"],
                              modules: [("m", a: [1, 3], b: [4, 1], embedding: false)],
                              values: ["m": ([0.5, .nan, 0.5], [1, 1, 1, 1])])
        let loraNaN = try #require(throws: MergeKitError.self) {
            try LibraryMerge.run(try TaskArithmetic(), LibraryMerge.Inputs(base: clean.base, loras: [clean.dir + "/nan-adapter"]),
                                 output: OutputSpec(path: clean.dir + "/l1.safetensors"))
        }
        #expect(loraNaN.code == .nonFiniteValue && loraNaN.tensor == "m.weight" && loraNaN.description.contains("LoRA update s·B·A is NaN"), "\(loraNaN)")
        try LoRAFixture.write(clean.dir + "/huge-adapter", config: ["r": "1", "lora_alpha": "1e37"],
                              modules: [("m", a: [1, 3], b: [4, 1], embedding: false)],
                              values: ["m": ([100, 100, 100], [100, 100, 100, 100])])
        // (τ = 1e37 per element: small enough that the SVD's singular values stay finite in Float.)
        try LoRAFixture.write(clean.dir + "/large-adapter", config: ["r": "1", "lora_alpha": "1e33"],
                              modules: [("m", a: [1, 3], b: [4, 1], embedding: false)],
                              values: ["m": ([100, 100, 100], [100, 100, 100, 100])])
        // (task-arithmetic --weight 40, tsv-m --scale 40)
        for (label, method, weights) in [("task-arithmetic", try LibraryMerge.method("task-arithmetic"), [40.0]),
                                         ("tsv-m", try LibraryMerge.method("tsv-m", ["lambda": .number(40)]), [])] {
            for (adapter, expected) in [("huge-adapter", "LoRA update s·B·A is +Inf"), ("large-adapter", "arithmetic overflowed")] {
                let huge = try #require(throws: MergeKitError.self, "\(label) \(adapter)") {
                    try LibraryMerge.run(method, LibraryMerge.Inputs(base: clean.base, loras: [clean.dir + "/" + adapter], weights: weights),
                                         output: OutputSpec(path: clean.dir + "/l2.safetensors"))
                }
                #expect(huge.code == .nonFiniteValue && huge.tensor == "m.weight", "\(label) \(adapter): \(huge)")
                #expect(huge.description.contains(expected) && huge.description.contains("lora_alpha"), "\(label) \(adapter): \(huge)")
                #expect(!FileManager.default.fileExists(atPath: clean.dir + "/l2.safetensors"))
            }
        }
    }

    @Test("The finiteness check reports the first offending input before merging, with the same policy (shared values pass)")
    func checkFiniteFlag() throws {
        let set = Set { values in
            for m in 0..<3 { values[m].matrix[1] = -.infinity }
            values[2].vector[2] = .nan
        }
        defer { try? FileManager.default.removeItem(atPath: set.dir) }
        let method = try TaskArithmetic(scale: 0.5), inputs = LibraryMerge.Inputs(base: set.base, models: set.models)
        let plan = try LibraryMerge.plan(method, inputs, output: OutputSpec(path: set.dir + "/out.safetensors"))
        let checked = try #require(throws: MergeKitError.self) { try MergeExecutor.checkInputsFinite(plan, threads: nil) }
        #expect(checked.code == .nonFiniteValue && checked.file == set.models[1] && checked.tensor == "v.bias", "\(checked)")
        #expect(checked.description.contains(set.models[1] + ": tensor 'v.bias': element [2] (flat index 2) is NaN"), "\(checked)")
        #expect(throws: MergeKitError.self) {
            try LibraryMerge.run(method, inputs, output: OutputSpec(path: set.dir + "/out.safetensors"), checkFinite: true)
        }
        #expect(!FileManager.default.fileExists(atPath: set.dir + "/out.safetensors"))
        let shared = Set { values in for m in 0..<3 { values[m].matrix[1] = -.infinity } }
        defer { try? FileManager.default.removeItem(atPath: shared.dir) }
        try LibraryMerge.run(method, LibraryMerge.Inputs(base: shared.base, models: shared.models),
                             output: OutputSpec(path: shared.dir + "/out.safetensors"), checkFinite: true)
    }

    @Test("The policy holds in every compute path: F64 inputs (Double), cached and streamed per-tensor passes")
    func computePaths() throws {
        for dtype in [DType.F64, .F16, .BF16] {
            let set = Set(matrixDType: dtype) { $0[1].matrix[10] = -.infinity }
            defer { try? FileManager.default.removeItem(atPath: set.dir) }
            for line in [MethodCase.all[0], MethodCase.all[3], MethodCase.all[13]] {
                let error = failure(line, set, output: set.dir + "/out.safetensors")
                #expect(error?.code == .nonFiniteValue && error?.description.contains("element [3, 1] (flat index 10) is -Inf") == true,
                        "\(dtype) \(line): \(error.map(\.description) ?? "no error")")
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
        let (base, inputs) = try LibraryMerge.open(LibraryMerge.Inputs(base: set.base, models: Array(set.models)))
        let analysis = try TaskVectorAnalysis.run(base: base, inputs: inputs)
        let text = analysis.text
        #expect(text.contains("warning: input [0] \(set.models[0]): tensor 'm.weight' has 1 NaN, 1 +Inf and 0 -Inf"), "\(text)")
        #expect(text.contains("warning: input [1] \(set.models[1]): the task vector is all zero"), "\(text)")
        let normLine = text.split(separator: "\n").first { $0.hasPrefix("norm") }.map(String.init) ?? ""
        #expect(!normLine.isEmpty && !normLine.lowercased().contains("nan"), "\(text)")
        #expect(text.contains("n/a"), "\(text)")
        // The JSON document, serialized and parsed back as a script reads it.
        guard case .object(let members) = try JSONParser.parse(Array(analysis.json.serialized(indent: 2).utf8)) else {
            Issue.record("not an object")
            return
        }
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
