import Foundation
import Testing
@testable import MergeKit

/// One TSV-M / Iso-C case of Fixtures/svd_lora/cases.json, produced by
/// Fixtures/svd_lora/make_svd_lora_fixtures.py (numpy, float64, the papers' formulas).
struct SVDGoldenCase: Sendable, CustomTestStringConvertible {
    let name: String
    let method: String
    let inputs: [String]
    let args: [String]
    let file: String
    let tolerance: Double

    var testDescription: String { name }

    static let all: [SVDGoldenCase] = {
        let json = try! JSONParser.parse(try! FileSystem.readFile(TestSupport.fixture("svd_lora/cases.json")))
        return json["cases"]!.arrayValue!.compactMap { c in
            let method = c["method"]!.stringValue!
            guard ["tsv-m", "iso-c"].contains(method) else { return nil }
            return SVDGoldenCase(name: c["name"]!.stringValue!, method: method,
                                 inputs: c["inputs"]!.arrayValue!.map { $0.stringValue! },
                                 args: c["args"]!.arrayValue!.map { $0.stringValue! },
                                 file: c["file"]!.stringValue!, tolerance: c["tolerance"]!.doubleValue!)
        }
    }()
}

@Suite("SVD methods (TSV-M, Iso-C)")
struct SVDMethodTests {
    // MARK: - Goldens

    @Test("The methods match the numpy goldens (both null-space variants: the fixtures have full rank)",
          arguments: SVDGoldenCase.all, [SVDNullSpace.drop, .keep])
    func goldens(_ golden: SVDGoldenCase, nullSpace: SVDNullSpace) throws {
        let dir = TestSupport.temporaryDirectory("svd-golden")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/out.safetensors"
        let (method, weights) = try LibraryMerge.method(golden.method, flags: golden.args + ["--null-space", nullSpace.rawValue])
        #expect(weights.isEmpty)
        try LibraryMerge.run(method, try LibraryMerge.inputs(commandLine: golden.inputs), output: OutputSpec(path: output))
        let actual = TestSupport.values(try Checkpoint(path: output))
        let expected = TestSupport.values(try Checkpoint(path: TestSupport.fixture(golden.file)))
        #expect(expected.count == 21)
        var matrices = 0
        for (name, reference) in expected {
            let mine = try #require(actual[name], "\(name) missing")
            #expect(mine.info.shape == reference.info.shape)
            expectClose(mine.values, reference.values, tolerance: golden.tolerance, name)
            if reference.info.shape.count == 2 { matrices += 1 }
        }
        #expect(matrices == 16)
        // The integer buffer is copied from the base.
        let base = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/base")))
        #expect(actual["model.rotary_emb.position_ids"]?.values == base["model.rotary_emb.position_ids"]?.values)
    }

    @Test("The goldens cover both methods, 2 and 3 tasks, and a scale ≠ 1")
    func coverage() {
        let cases = SVDGoldenCase.all
        #expect(Set(cases.map(\.method)) == ["tsv-m", "iso-c"])
        #expect(Set(cases.filter { $0.method == "tsv-m" }.map { $0.inputs.filter { $0 == "--model" }.count }) == [2, 3])
        #expect(cases.contains { $0.args.contains("0.5") })
    }

    // MARK: - Known answers (library, in Double)

    static func deltas(_ shape: [Int], _ values: [[Double]]) -> TensorDeltas<Double> {
        TensorDeltas(tensor: "w", shape: shape, values: values)
    }

    static func tsvm(_ shape: [Int], _ values: [[Double]], nullSpace: SVDNullSpace = .drop, scale: Double = 1) throws -> [Double] {
        var out = [Double](repeating: .nan, count: shape.reduce(1, *))
        let method = try TSVM(scale: scale, nullSpace: nullSpace)
        try out.withUnsafeMutableBufferPointer { o in
            try method.combineTensor(deltas(shape, values), weights: values.map { _ in 1 }, into: o, context: context(shape))
        }
        return out.map { method.lambda! * $0 }
    }

    static func isoc(_ shape: [Int], _ values: [[Double]], nullSpace: SVDNullSpace = .drop, scale: Double = 1) throws -> [Double] {
        var out = [Double](repeating: .nan, count: shape.reduce(1, *))
        let method = try IsoC(scale: scale, nullSpace: nullSpace)
        try out.withUnsafeMutableBufferPointer { o in
            try method.combineTensor(deltas(shape, values), weights: values.map { _ in 1 }, into: o, context: context(shape))
        }
        return out.map { method.lambda! * $0 }
    }

    nonisolated(unsafe) static let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: ChunkContext.scratchBytes, alignment: 64)
    static func context(_ shape: [Int]) -> ChunkContext {
        ChunkContext(tensor: "w", shape: shape, model: ModelStatistics(), statistics: TensorStatistics(), scratch: scratch)
    }

    /// Σ σᵢ pᵢ qᵢᵀ for columns pᵢ of P (m×r) and qᵢ of Q (n×r), row-major m×n.
    static func outer(_ p: [Double], _ q: [Double], m: Int, n: Int, r: Int, sigma: [Double]) -> [Double] {
        var a = [Double](repeating: 0, count: m * n)
        for (l, s) in sigma.enumerated() where s != 0 {
            for i in 0..<m { for j in 0..<n { a[i * n + j] += s * p[i * r + l] * q[j * r + l] } }
        }
        return a
    }

    @Test("TSV-M of one task is the task vector itself (k = min(m, n), polar factors of orthonormal U, V are U, V)")
    func tsvmSingleTask() throws {
        let tau: [Double] = LAPACKTests.gaussian(5, 7, seed: 31)
        let merged = try Self.tsvm([5, 7], [tau])
        #expect(maxAbsError(merged, tau) <= 1e-12)
        let scaled = try Self.tsvm([5, 7], [tau], scale: -0.5)
        #expect(maxAbsError(scaled, tau.map { -0.5 * $0 }) <= 1e-12)
    }

    @Test("TSV-M, two rank-1 tasks 60° apart: the polar factor turns each left vector 15° away from the other")
    func tsvmPolarRotation() throws {
        // τ₁ = 3·u₁e₁ᵀ, τ₂ = 2·u₂e₂ᵀ, u₁ at 0°, u₂ at 60°; 2×2, T = 2 → k = 1. V = [e₁ e₂] is already
        // orthonormal; the nearest orthonormal pair to (u₁, u₂) sits at −15° and 75°.
        func unit(_ degrees: Double) -> (Double, Double) { (cos(degrees * .pi / 180), sin(degrees * .pi / 180)) }
        let (a, b) = (unit(0), unit(60))
        let tau1 = [3 * a.0, 0, 3 * a.1, 0], tau2 = [0, 2 * b.0, 0, 2 * b.1]
        let (r1, r2) = (unit(-15), unit(75))
        let expected = [3 * r1.0, 2 * r2.0, 3 * r1.1, 2 * r2.1]
        let merged = try Self.tsvm([2, 2], [tau1, tau2])
        #expect(maxAbsError(merged, expected) <= 1e-12, "\(merged) vs \(expected)")
        // Task arithmetic would give τ₁ + τ₂: TSV-M differs from it exactly by the rotation.
        #expect(maxAbsError(merged, zip(tau1, tau2).map(+)) > 0.1)
    }

    @Test("TSV-M keeps the top ⌊min(m, n)/T⌋ triplets of each task; tasks in orthogonal subspaces just add")
    func tsvmOrthogonalTasks() throws {
        let (m, n) = (8, 6)
        let p = LAPACKTests.orthonormal(m, 6, seed: 4), q = LAPACKTests.orthonormal(n, 6, seed: 5)
        // T = 2, k = 3. Task 1 lives on directions 0–2 (and has a small 4th triplet that is cut),
        // task 2 on 3–5 (it has exactly 3).
        let tau1 = Self.outer(p, q, m: m, n: n, r: 6, sigma: [5, 4, 3, 0, 0, 0]), cut = Self.outer(p, q, m: m, n: n, r: 6, sigma: [0, 0, 0, 0, 0, 0.5])
        let tau2 = Self.outer(p, q, m: m, n: n, r: 6, sigma: [0, 0, 0, 2.5, 2, 1])
        let withCut = zip(tau1, cut).map(+)
        let merged = try Self.tsvm([m, n], [withCut, tau2])
        // Task 1's 0.5 triplet is below its top 3 and is dropped; the rest is orthogonal already.
        #expect(maxAbsError(merged, zip(tau1, tau2).map(+)) <= 1e-12)
    }

    @Test("TSV-M: a zero or low-rank task vector (frozen tensor, LoRA) with null-space drop leaves the other tasks intact")
    func tsvmNullSpace() throws {
        let (m, n) = (6, 4)
        let tau1: [Double] = LAPACKTests.gaussian(m, n, seed: 8)
        let zero = [Double](repeating: 0, count: m * n)
        // T = 2, k = 2: the result is τ₁'s best rank-2 approximation, as if task 2 were absent.
        let exact = try LAPACK.svd(tau1, rows: m, columns: n, tensor: "t")
        let merged = try Self.tsvm([m, n], [tau1, zero])
        #expect(maxAbsError(merged, exact.reconstruct(rank: 2)) <= 1e-12)
        // All-zero inputs give τ = 0.
        #expect(try Self.tsvm([m, n], [zero, zero]).allSatisfy { $0 == 0 })
    }

    @Test("TSV-M: min(m, n) < T keeps nothing of the matrix (k = 0, as the authors' code); empty matrices are fine")
    func tsvmTooFewSingularValues() throws {
        let taus: [[Double]] = (0..<3).map { LAPACKTests.gaussian(2, 5, seed: UInt64(40 + $0)) }
        #expect(try Self.tsvm([2, 5], taus).allSatisfy { $0 == 0 })
        #expect(try Self.tsvm([0, 5], [[], []]).isEmpty)
    }

    @Test("Iso-C: every singular value of Σ τₜ becomes their mean (known spectrum 6, 2, 1 → 3)")
    func isocKnownSpectrum() throws {
        let (m, n) = (5, 3)
        let p = LAPACKTests.orthonormal(m, 3, seed: 12), q = LAPACKTests.orthonormal(n, 3, seed: 13)
        let tau1 = Self.outer(p, q, m: m, n: n, r: 3, sigma: [6, 0, 1]), tau2 = Self.outer(p, q, m: m, n: n, r: 3, sigma: [0, 2, 0])
        let expected = Self.outer(p, q, m: m, n: n, r: 3, sigma: [3, 3, 3])
        for nullSpace in SVDNullSpace.allCases {
            #expect(maxAbsError(try Self.isoc([m, n], [tau1, tau2], nullSpace: nullSpace), expected) <= 1e-12)
        }
        let half = try Self.isoc([m, n], [tau1, tau2], scale: 0.5)
        #expect(maxAbsError(half, expected.map { 0.5 * $0 }) <= 1e-12)
    }

    @Test("Iso-C on a rank-deficient sum: drop averages over the ρ non-zero σ; keep (authors') adds σ̄ on a null direction")
    func isocRankDeficient() throws {
        let (m, n) = (5, 3)
        let p = LAPACKTests.orthonormal(m, 3, seed: 14), q = LAPACKTests.orthonormal(n, 3, seed: 15)
        let tau = Self.outer(p, q, m: m, n: n, r: 3, sigma: [6, 2, 0])
        let dropped = try Self.isoc([m, n], [tau])
        #expect(maxAbsError(dropped, Self.outer(p, q, m: m, n: n, r: 3, sigma: [4, 4, 0])) <= 1e-12)
        // With keep, σ̄ = 8/3 and the null right vector q₃ is mapped to a unit vector times σ̄.
        let kept = try Self.isoc([m, n], [tau], nullSpace: .keep)
        func imageNorm(_ a: [Double]) -> Double {
            (0..<m).map { i in (0..<n).reduce(0.0) { $0 + a[i * n + $1] * q[$1 * 3 + 2] } }.reduce(0) { $0 + $1 * $1 }.squareRoot()
        }
        #expect(abs(imageNorm(kept) - 8.0 / 3) <= 1e-12)
        #expect(imageNorm(dropped) <= 1e-12)
        #expect(try Self.isoc([m, n], [[Double](repeating: 0, count: m * n)]).allSatisfy { $0 == 0 })
    }

    @Test("Float and Double agree to float precision; non-matrix tensors get the mean task vector")
    func floatAndNonMatrix() throws {
        let taus: [[Double]] = (0..<3).map { LAPACKTests.gaussian(12, 9, seed: UInt64(60 + $0)) }
        let double = try Self.tsvm([12, 9], taus)
        var float = [Float](repeating: 0, count: 12 * 9)
        try float.withUnsafeMutableBufferPointer { o in
            try TSVM().combineTensor(TensorDeltas(tensor: "w", shape: [12, 9], values: taus.map { $0.map { Float($0) } }),
                                     weights: [1, 1, 1], into: o, context: Self.context([12, 9]))
        }
        #expect(maxAbsError(float.map { Double($0) }, double) <= 1e-4)
        #expect(TSVM.info.name == "tsv-m" && IsoC.info.name == "iso-c")
        let (tsvm, isoc) = (try TSVM(), try IsoC())
        #expect(tsvm.mergesWhole(shape: [3, 4]) && !tsvm.mergesWhole(shape: [4]) && !isoc.mergesWhole(shape: [2, 3, 4]) && isoc.mergesWhole(shape: [1, 7]))
        var a: [Float] = [1, 2, 3], b: [Float] = [3, 0, -3], out = [Float](repeating: .nan, count: 3)
        a.withUnsafeMutableBufferPointer { ap in
            b.withUnsafeMutableBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { op in
                    (try! IsoC(scale: 2)).combine([ap, bp], base: UnsafeBufferPointer(start: nil, count: 0), weights: [1, 1], into: op,
                                                  context: Self.context([3]))
                }
            }
        }
        // The mean before α; the executor applies α (the method's λ).
        #expect(out == [2, 1, 0])
        let (isoc2, tsvmHalf) = (try IsoC(scale: 2), try TSVM(scale: 0.5))
        #expect(isoc2.lambda == 2 && tsvmHalf.lambda == 0.5)
    }

    // MARK: - Executor (whole tensors larger than a work item, threads, sweeps, emit)

    @Test("A matrix larger than one work item merges whole: the executor equals the in-memory computation")
    func largeTensor() throws {
        let dir = TestSupport.temporaryDirectory("svd-large")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (m, n) = (1031, 1024)  // > MergeExecutor.itemElements elements, not a multiple of it
        #expect(m * n > MergeExecutor.itemElements)
        let base: [Double] = LAPACKTests.gaussian(m, n, seed: 70).map { $0 * 0.02 }
        let models: [[Double]] = (0..<2).map { t in
            let noise: [Double] = LAPACKTests.gaussian(m, n, seed: UInt64(71 + t))
            return zip(base, noise).map { $0 + 0.001 * $1 }
        }
        let spec = TensorSpec(name: "w", dtype: .F32, shape: [m, n]), bias = TensorSpec(name: "b", dtype: .F32, shape: [3])
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [(spec, base), (bias, [1, 2, 3])])
        for (t, model) in models.enumerated() {
            TestSupport.writeCheckpoint(dir + "/ft\(t).safetensors", [(spec, model), (bias, [2, 2, 2 + Double(t)])])
        }
        let inputs = try (0..<2).map { MergeInput(kind: .model, checkpoint: try Checkpoint(path: dir + "/ft\($0).safetensors")) }
        let plan = try MergePlan(base: try Checkpoint(path: dir + "/base.safetensors"), inputs: inputs, method: try IsoC(scale: 0.7),
                                 output: OutputSpec(path: dir + "/out.safetensors"))
        _ = try MergeExecutor.run(plan, threads: 2)
        let merged = TestSupport.values(try Checkpoint(path: dir + "/out.safetensors"))
        // The same in memory: τₜ = Float(θₜ) − Float(θ₀), Iso-C, θ₀ + τ.
        let b32 = base.map { Float($0) }
        let taus = models.map { model in zip(model, b32).map { Float($0) - $1 } }
        var tau = [Float](repeating: 0, count: m * n)
        try tau.withUnsafeMutableBufferPointer { o in
            try IsoC(scale: 0.7).combineTensor(TensorDeltas(tensor: "w", shape: [m, n], values: taus), weights: [1, 1], into: o,
                                               context: Self.context([m, n]))
            Float.scal(0.7, o)
        }
        let expected = zip(b32, tau).map { Double($0 + $1) }
        let actual = try #require(merged["w"]).values
        #expect(maxAbsError(actual, expected) <= 1e-6, "the executor must compute what the method does in memory")
        #expect(maxAbsError(try #require(merged["b"]).values, [1.7, 2, 2.65]) <= 1e-6)
    }

    @Test("Any thread count, a sweep, and emitting the task vector give the same bytes as one plain run")
    func threadsSweepEmit() throws {
        let dir = TestSupport.temporaryDirectory("svd-sweep")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inputs = LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_a", "f32/ft_b", "f32/ft_c"])
        func tensors(_ path: String) throws -> [String: [UInt8]] {
            let c = try Checkpoint(path: path)
            return Dictionary(uniqueKeysWithValues: c.entries.map { ($0.name, Array($0.file.bytes(of: $0.info))) })
        }
        for method in ["tsv-m", "iso-c"] {
            var runs: [[String: [UInt8]]] = []
            for (label, threads) in [("t1", 1), ("t3", 3)] {
                let out = "\(dir)/\(method)-\(label).safetensors"
                try LibraryMerge.run(try LibraryMerge.method(method, ["lambda": .number(0.5)]), inputs, output: OutputSpec(path: out), threads: threads)
                runs.append(try tensors(out))
            }
            #expect(runs[0] == runs[1], "\(method): 1 and 3 threads differ")
            try LibraryMerge.run(LibraryMerge.sweep(method, inputs, grids: [("lambda", [0.5, 1])]), output: "\(dir)/\(method)-sweep")
            #expect(try tensors("\(dir)/\(method)-sweep/point-000") == runs[0], "\(method): the sweep's λ = 0.5 point differs")
            let emitted = "\(dir)/\(method)-tv.safetensors"
            try LibraryMerge.run(try LibraryMerge.method(method, ["lambda": .number(0.5)]), inputs, output: OutputSpec(path: emitted, emit: .taskVector))
            let base = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/base")))
            let model = TestSupport.values(try Checkpoint(path: "\(dir)/\(method)-t1.safetensors"))
            for (name, tau) in TestSupport.values(try Checkpoint(path: emitted)) where tau.info.dtype == .F32 {
                let theta = try #require(model[name]).values, theta0 = try #require(base[name]).values
                expectClose(tau.values, zip(theta, theta0).map { $0 - $1 }, tolerance: 1e-6, "\(method) \(name): θ₀ + τ ≠ θ")
            }
        }
    }

    @Test("Task-vector files as inputs (mixed with a model) give the same bytes as the models")
    func taskVectorInputs() throws {
        let dir = TestSupport.temporaryDirectory("svd-tv")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for model in ["ft_b", "ft_c"] {
            try LibraryMerge.taskVector(base: "f32/base", finetuned: "f32/\(model)", output: "\(dir)/\(model).safetensors")
        }
        for method in ["tsv-m", "iso-c"] {
            try LibraryMerge.run(try LibraryMerge.method(method), LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_a", "f32/ft_b", "f32/ft_c"]),
                                 output: OutputSpec(path: "\(dir)/\(method)-models.safetensors"))
            try LibraryMerge.run(try LibraryMerge.method(method),
                                 LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_a"], taskVectors: ["\(dir)/ft_b.safetensors", "\(dir)/ft_c.safetensors"]),
                                 output: OutputSpec(path: "\(dir)/\(method)-mixed.safetensors"))
            let a = try Checkpoint(path: "\(dir)/\(method)-models.safetensors"), b = try Checkpoint(path: "\(dir)/\(method)-mixed.safetensors")
            #expect(a.entries.count == 22)
            for entry in a.entries {
                let other = try #require(b.entry(named: entry.name))
                #expect(Array(other.file.bytes(of: other.info)) == Array(entry.file.bytes(of: entry.info)), "\(method) \(entry.name)")
            }
        }
    }

    /// A whole-tensor method that counts its decompositions: τ₁ = Σ τₜ for matrices.
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func increment() { lock.lock(); value += 1; lock.unlock() }
        var count: Int { lock.lock(); defer { lock.unlock() }; return value }
    }

    struct CountingSum: WholeTensorMergeMethod {
        let scale: Double
        let counter: Counter
        var info: MethodInfo { MethodInfo(name: "counting-sum", summary: "test", reference: "test") }
        var parameters: [JSONMember] { [JSONMember("scale", .double(scale))] }
        func mergesWhole(shape: [Int]) -> Bool { shape.count == 2 }
        var lambda: Double? { scale }
        var wholeTensorKey: String { "" }
        func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                     weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
            out.update(repeating: 0)
        }
        func combineTensor<T: MergeScalar>(_ deltas: TensorDeltas<T>, weights: [T], into out: UnsafeMutableBufferPointer<T>,
                                           context: ChunkContext) throws(MergeKitError) {
            counter.increment()
            let next = UnsafeMutableBufferPointer<T>.allocate(capacity: out.count)
            defer { next.deallocate() }
            for i in 0..<deltas.count {
                try deltas.load(i, into: next)
                T.axpy(1, UnsafeBufferPointer(next), out)
            }
        }
    }

    @Test("Plans run together (a sweep over α) decompose each matrix once and each get α·τ₁")
    func sharedAcrossTargets() throws {
        let dir = TestSupport.temporaryDirectory("svd-shared")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
        let inputs = try ["ft_a", "ft_b"].map { MergeInput(kind: .model, checkpoint: try Checkpoint(path: TestSupport.fixture("f32/\($0)"))) }
        let together = Counter(), alone = Counter()
        let plans = try [1.0, -2.0].enumerated().map { i, scale in
            try MergePlan(base: base, inputs: inputs, method: CountingSum(scale: scale, counter: together),
                          output: OutputSpec(path: "\(dir)/together-\(i).safetensors"))
        }
        _ = try MergeExecutor.run(plans, threads: 2)
        #expect(together.count == 16, "16 matrices, each decomposed once for both plans")
        _ = try MergeExecutor.run(try MergePlan(base: base, inputs: inputs, method: CountingSum(scale: -2, counter: alone),
                                                output: OutputSpec(path: "\(dir)/alone.safetensors")))
        #expect(alone.count == 16)
        let a = try Checkpoint(path: "\(dir)/together-1.safetensors"), b = try Checkpoint(path: "\(dir)/alone.safetensors")
        let theta0 = TestSupport.values(base), one = TestSupport.values(try Checkpoint(path: "\(dir)/together-0.safetensors"))
        for entry in b.entries {
            let other = try #require(a.entry(named: entry.name))
            #expect(Array(other.file.bytes(of: other.info)) == Array(entry.file.bytes(of: entry.info)), "\(entry.name)")
        }
        // The plans really differ: α = −2 moved the matrices the other way, twice as far.
        let name = "model.layers.0.mlp.down_proj.weight"
        let x = try #require(one[name]).values, y = try #require(TestSupport.values(a)[name]).values, x0 = try #require(theta0[name]).values
        #expect(zip(zip(x, y), x0).allSatisfy { abs(($0.1 - $1) + 2 * ($0.0 - $1)) <= 1e-6 })
    }

    // MARK: - Errors

    /// base, and fine-tuned models with a NaN planted in a matrix or a vector.
    static func nanSetup(_ dir: String, nanIn: String, tensor: String) {
        let specs: [(TensorSpec, [Double])] = [
            (TensorSpec(name: "layer.weight", dtype: .F32, shape: [3, 4]), (0..<12).map { Double($0) / 10 }),
            (TensorSpec(name: "layer.bias", dtype: .F32, shape: [3]), [0.1, 0.2, 0.3]),
        ]
        for (file, offset) in [("base", 0.0), ("ft_a", 0.25), ("ft_b", -0.125)] {
            var tensors = specs.map { ($0.0, $0.1.map { $0 + offset * ($0 + 1) }) }
            if file == nanIn, let t = tensors.firstIndex(where: { $0.0.name == tensor }) {
                tensors[t].1[tensors[t].1.count - 2] = .nan
            }
            TestSupport.writeCheckpoint("\(dir)/\(file).safetensors", tensors)
        }
    }

    /// What merging the NaN setup in `dir` with `method` throws; nothing may be written.
    static func nanError(_ dir: String, method: String) throws -> MergeKitError {
        let error = try #require(throws: MergeKitError.self) {
            try LibraryMerge.run(try LibraryMerge.method(method),
                                 LibraryMerge.Inputs(base: dir + "/base.safetensors", models: [dir + "/ft_a.safetensors", dir + "/ft_b.safetensors"]),
                                 output: OutputSpec(path: dir + "/merged.safetensors"))
        }
        #expect(TestSupport.listing(dir).sorted() == ["base.safetensors", "ft_a.safetensors", "ft_b.safetensors"])
        return error
    }

    @Test("NaN in a matrix of a fine-tuned model or the base: an error naming the file, the tensor, the element and the fix; nothing written",
          arguments: ["ft_b", "base"], ["tsv-m", "iso-c"])
    func nonFinite(file: String, method: String) throws {
        let dir = TestSupport.temporaryDirectory("svd-nan")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.nanSetup(dir, nanIn: file, tensor: "layer.weight")
        let error = try Self.nanError(dir, method: method)
        #expect(error.code == .nonFiniteValue && error.file == "\(dir)/\(file).safetensors" && error.tensor == "layer.weight", "\(error)")
        #expect(error.description.contains("\(dir)/\(file).safetensors: tensor 'layer.weight': element [2, 2] (flat index 10) is NaN"), "\(error)")
        #expect(error.uses(.finitenessScan), "the fix names the finiteness scan: \(error)")
    }

    @Test("NaN in a vector (averaged, no SVD) is an error too, as for every method")
    func nonFiniteVector() throws {
        let dir = TestSupport.temporaryDirectory("svd-nan-vector")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.nanSetup(dir, nanIn: "ft_a", tensor: "layer.bias")
        let error = try Self.nanError(dir, method: "tsv-m")
        #expect(error.code == .nonFiniteValue && error.tensor == "layer.bias", "\(error)")
        #expect(error.description.contains("\(dir)/ft_a.safetensors: tensor 'layer.bias': element [1] (flat index 1) is NaN"), "\(error)")
    }

    @Test("The plan merges matrices whole with an SVD and the other tensors per chunk")
    func planDescription() throws {
        let dir = TestSupport.temporaryDirectory("svd-plan")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plan = try LibraryMerge.plan(try LibraryMerge.method("tsv-m"), LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_a", "f32/ft_b"]),
                                         output: OutputSpec(path: dir + "/d.safetensors"))
        let text = PlanDescription.text(plan)
        #expect(text.contains("model.layers.0.mlp.down_proj.weight [16, 24] F32 -> F32: merged whole (tsv-m: SVD per matrix)"), "\(text)")
        #expect((text + "\n").contains("model.norm.weight [16] F32 -> F32: merged\n"), "\(text)")
    }
}
