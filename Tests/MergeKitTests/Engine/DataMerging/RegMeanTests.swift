import Foundation
import Testing
@testable import MergeKit

@Suite("RegMean")
struct RegMeanTests {
    @Test("RegMean matches FusionBench's RegMeanAlgorithmForCLIP (α 0.95, every image, float64 reference)")
    func goldenRegMean() throws {
        let result = try RegMean.run(try DataMergeFixtures.inputs(), options: RegMeanOptions(batchSize: 4), threads: 2)
        let errors = DataMergeFixtures.relativeErrors(result.merged, try DataMergeFixtures.golden("regmean"))
        let worst = errors.max { $0.value < $1.value }!
        #expect(worst.value < 1e-5, "\(worst.key): \(worst.value)")
        #expect(result.samples == [10, 10, 10])
        #expect(result.solved.count == 13 && result.identical.isEmpty && result.pseudoInverse.isEmpty)
    }

    @Test("RegMean++ matches FusionBench's RegMeanAlgorithmForCLIPPlusPlus")
    func goldenRegMeanPlusPlus() throws {
        let result = try RegMean.run(try DataMergeFixtures.inputs(), options: RegMeanOptions(batchSize: 4, plusPlus: true), threads: 2)
        let errors = DataMergeFixtures.relativeErrors(result.merged, try DataMergeFixtures.golden("regmean_plusplus"))
        let worst = errors.max { $0.value < $1.value }!
        #expect(worst.value < 1e-5, "\(worst.key): \(worst.value)")
    }
}

@Suite("RegMean: behaviour")
struct RegMeanBehaviourTests {
    @Test("RegMean and RegMean++ give the same bits for 1, 2 and 3 threads (two Gram tiles, uneven image shards)",
          arguments: [false, true])
    func threads(plusPlus: Bool) throws {
        let tasks = DataMergeSynthetic.tasks()
        defer { try? FileManager.default.removeItem(atPath: tasks.directory) }
        let options = RegMeanOptions(batchSize: 4, plusPlus: plusPlus)
        let reference = try RegMean.run(try tasks.inputs(), options: options, threads: 1).merged.flat
        for threads in [2, 3] {
            #expect(try RegMean.run(try tasks.inputs(), options: options, threads: threads).merged.flat == reference, "\(threads) threads")
        }
        // The batch size changes the rounding of the sums only.
        let other = try RegMean.run(try tasks.inputs(), options: RegMeanOptions(batchSize: 9, plusPlus: plusPlus), threads: 2).merged.flat
        let scale = reference.map(abs).max()!
        #expect(zip(other, reference).allSatisfy { abs($0 - $1) <= 1e-4 * scale } && other != reference)
    }

    @Test("Linear layers every model shares are copied byte for byte; only the others are solved")
    func frozenLayers() throws {
        // The WEMoE fixture's experts were fine-tuned in their MLPs only.
        let w = TestSupport.fixture("wemoe") + "/"
        let inputs = try DataMergeInputs(models: (0..<3).map { w + "experts/task\($0)" }, data: (0..<3).map { w + "task\($0)/data.safetensors" },
                                         output: TestSupport.temporaryDirectory("regmean") + "/m")
        let result = try RegMean.run(inputs, options: RegMeanOptions(), threads: 2)
        #expect(result.solved.count == 4 && result.solved.allSatisfy { $0.contains(".mlp.fc") }, "\(result.solved)")
        let base = try CLIPVisionModel(path: TestSupport.fixture("clip/quick/base")).parameters
        for name in result.identical + ["vision_model.post_layernorm.weight", "vision_model.encoder.layers.1.layer_norm1.bias"] {
            #expect(result.merged.values(of: name) == base.values(of: name), "\(name)")
        }
        // Three copies of one model merge into that model exactly.
        let one = try DataMergeInputs(models: Array(repeating: w + "experts/task1", count: 3), data: inputs.data.map(\.path),
                                      output: TestSupport.temporaryDirectory("regmean") + "/m")
        let same = try RegMean.run(one, options: RegMeanOptions(plusPlus: true), threads: 2)
        #expect(same.merged.flat == (try CLIPVisionModel(path: w + "experts/task1").parameters.flat) && same.solved.isEmpty)
    }

    @Test("--others task-arithmetic: θ₀ + λ·Σₜ(θₜ − θ₀) for every tensor that is not a linear weight")
    func taskArithmetic() throws {
        let inputs = try DataMergeFixtures.inputs(base: true)
        let result = try RegMean.run(inputs, options: RegMeanOptions(others: .taskArithmetic(scale: 0.3)), threads: 2)
        let base = TestSupport.values(try Checkpoint(path: DataMergeFixtures.path("base/model.safetensors")))
        let models = try DataMergeFixtures.models.map { TestSupport.values(try Checkpoint(path: $0 + "/model.safetensors")) }
        for name in ["vision_model.encoder.layers.0.self_attn.q_proj.bias", "vision_model.embeddings.patch_embedding.weight",
                     "vision_model.post_layernorm.weight"] {
            let theta0 = base[name]!.values
            let expected = theta0.indices.map { i in theta0[i] + 0.3 * models.reduce(0) { $0 + $1[name]!.values[i] - theta0[i] } }
            let actual = result.merged.values(of: name)!
            #expect(zip(actual, expected).allSatisfy { abs(Double($0) - $1) <= 1e-6 * max(1, abs($1)) }, "\(name)")
        }
        // The linear weights are the same as with averaging: the others do not enter their solve in RegMean.
        let averaged = try RegMean.run(try DataMergeFixtures.inputs(), options: RegMeanOptions(), threads: 2)
        let q = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
        #expect(result.merged.values(of: q) == averaged.merged.values(of: q))
        // Without a base it is refused.
        #expect(throws: MergeKitError.self) {
            try RegMean.run(try DataMergeFixtures.inputs(), options: RegMeanOptions(others: .taskArithmetic(scale: 0.3)))
        }
    }

    @Test("A task with more images than --samples uses a seeded choice of them, in file order")
    func samples() throws {
        let inputs = try DataMergeFixtures.inputs()
        let chosen = inputs.sampleIndices(task: 1, samples: 4, seed: 9)
        #expect(chosen.count == 4 && chosen == chosen.sorted() && Set(chosen).count == 4 && chosen.allSatisfy { (0..<10).contains($0) })
        #expect(inputs.sampleIndices(task: 1, samples: 4, seed: 9) == chosen)
        #expect((0..<8).map { inputs.sampleIndices(task: 1, samples: 4, seed: UInt64($0)) }.contains { $0 != chosen })
        #expect(inputs.sampleIndices(task: 1, samples: 10, seed: 9) == Array(0..<10))
        let result = try RegMean.run(inputs, options: RegMeanOptions(samples: 4), threads: 2)
        #expect(result.samples == [4, 4, 4])
        let again = try RegMean.run(inputs, options: RegMeanOptions(samples: 4), threads: 1)
        let reseeded = try RegMean.run(inputs, options: RegMeanOptions(samples: 4, seed: 5), threads: 1)
        #expect(again.merged.flat == result.merged.flat && reseeded.merged.flat != result.merged.flat)
    }

    @Test("A singular Gram sum: an error naming the layers with --singular error, else the pseudo-inverse (its rank reported)")
    func singular() throws {
        let directory = TestSupport.temporaryDirectory("regmean-singular")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Feature 3 of layer 0's LN1 output is zero on every input of every model.
        let models = try DataMergeFixtures.models.enumerated().map { t, path in
            try DataMergeSynthetic.edited(path, into: directory, name: "m\(t)") { name, values in
                guard name.hasPrefix("vision_model.encoder.layers.0.layer_norm1.") else { return values }
                var v = values
                v[3] = 0
                return v
            }
        }
        let inputs = try DataMergeInputs(models: models, data: DataMergeFixtures.data, output: directory + "/merged")
        do {
            _ = try RegMean.run(inputs, options: RegMeanOptions(singular: .error), threads: 2)
            Issue.record("a singular Gram sum was solved")
        } catch {
            #expect(error.code == .invalidArgument && error.tensor == "vision_model.encoder.layers.0.self_attn.q_proj.weight")
            #expect(error.detail.contains("singular") && error.detail.contains("v_proj") && error.fix?.contains("pseudo-inverse") == true,
                    "\(error)")
        }
        let result = try RegMean.run(inputs, options: RegMeanOptions(), threads: 2)
        #expect(result.pseudoInverse.count == 1 && result.pseudoInverse[0].rank == 15 && result.pseudoInverse[0].size == 16)
        #expect(result.pseudoInverse[0].tensors.count == 3)
        // The minimum-norm solution leaves the dead input's column at zero.
        let q = result.merged.values(of: "vision_model.encoder.layers.0.self_attn.q_proj.weight")!
        let largest = q.map(abs).max()!
        #expect((0..<16).allSatisfy { abs(q[$0 * 16 + 3]) <= 1e-6 * largest } && largest > 0.1)
    }
}

@Suite("RegMean: Gram sums and the solve")
struct GramSolverTests {
    @Test("GramAccumulator: XᵀX/rows over several calls, mirrored, off-diagonals × α, across tile edges, for any thread count")
    func gram() {
        var random = TestRandom(seed: 3)
        let n = 300, rows = 37
        let x = random.normals(rows * n)
        var expected = [Double](repeating: 0, count: n * n)
        for r in 0..<rows { for i in 0..<n { for j in 0..<n { expected[i * n + j] += Double(x[r * n + i]) * Double(x[r * n + j]) } } }
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            let gram = GramAccumulator(n: n)
            x.withUnsafeBufferPointer { p in
                GramAccumulator.add([(gram, p.baseAddress!)], rows: 20, threads: threads)
                GramAccumulator.add([(gram, p.baseAddress! + 20 * n)], rows: 17, threads: threads)
            }
            #expect(gram.rows == rows)
            #expect(gram.finish(alpha: 0.9))
            results.append(gram.matrix.array)
        }
        #expect(results[1] == results[0] && results[2] == results[0])
        let g = results[0]
        for i in 0..<n {
            for j in 0..<n {
                let want = expected[i * n + j] / Double(rows) * (i == j ? 1 : 0.9)
                #expect(abs(Double(g[i * n + j]) - want) <= 1e-5 * max(1, abs(want)))
                if abs(Double(g[i * n + j]) - want) > 1e-5 * max(1, abs(want)) { return }
            }
        }
    }

    @Test("The solve: W = C·A⁻¹ by Cholesky; a singular A gives C·A⁺ or an error; NaN is refused")
    func solve() throws {
        var a: [Float] = [4, 1, 1, 3]
        var c: [Float] = [1, 2]
        let rank = try c.withUnsafeMutableBufferPointer { rhs in
            try GramSolver.solve(gram: a, n: 2, rightHandSides: [(rhs.baseAddress!, 1)], tensors: ["w"], policy: .error)
        }
        #expect(rank == nil)
        #expect(abs(c[0] - 1.0 / 11) < 1e-7 && abs(c[1] - 7.0 / 11) < 1e-7)

        let singular: [Float] = [1, 0, 0, 0, 2, 0, 0, 0, 0]
        var rhs: [Float] = [1, 2, 3, 4, 6, 8]
        let pinv = try rhs.withUnsafeMutableBufferPointer { r in
            try GramSolver.solve(gram: singular, n: 3, rightHandSides: [(r.baseAddress!, 1), (r.baseAddress! + 3, 1)], tensors: ["w"],
                                 policy: .pseudoInverse)
        }
        #expect(pinv == 2)
        #expect(zip(rhs, [1, 1, 0, 4, 3, 0] as [Float]).allSatisfy { abs($0 - $1) < 1e-6 }, "\(rhs)")
        var again: [Float] = [1, 2, 3]
        #expect(throws: MergeKitError.self) {
            try again.withUnsafeMutableBufferPointer { r in
                try GramSolver.solve(gram: singular, n: 3, rightHandSides: [(r.baseAddress!, 1)], tensors: ["layer.weight"], policy: .error)
            }
        }
        a[1] = .nan
        let error = #expect(throws: MergeKitError.self) {
            try c.withUnsafeMutableBufferPointer { r in
                try GramSolver.solve(gram: a, n: 2, rightHandSides: [(r.baseAddress!, 1)], tensors: ["w"], policy: .pseudoInverse)
            }
        }
        #expect(error?.code == .nonFiniteValue && error?.tensor == "w")
    }
}
