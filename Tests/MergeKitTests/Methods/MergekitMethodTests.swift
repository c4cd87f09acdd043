import Foundation
import Testing
@testable import MergeKit

/// Merges task vectors of one tensor "w" of `shape` (base zero unless given) with `method`,
/// through a plan and the executor; returns the merged values.
func mergeShaped(_ method: any MergeMethod, _ taus: [[Double]], shape: [Int], base: [Double]? = nil, weights: [Double]? = nil,
                 threads: Int = 2, dtype: DType = .F32) throws -> [Double] {
    let dir = TestSupport.temporaryDirectory("shaped")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let n = shape.reduce(1, *)
    let base = base ?? [Double](repeating: 0, count: n)
    let spec = TensorSpec(name: "w", dtype: dtype, shape: shape)
    TestSupport.writeCheckpoint(dir + "/base.safetensors", [(spec, base)])
    var inputs: [MergeInput] = []
    for (i, tau) in taus.enumerated() {
        let path = dir + "/ft\(i).safetensors"
        TestSupport.writeCheckpoint(path, [(spec, zip(base, tau).map { $0 + $1 })])
        inputs.append(MergeInput(kind: .model, checkpoint: try Checkpoint(path: path), weight: weights?[i] ?? 1))
    }
    let plan = try MergePlan(base: try Checkpoint(path: dir + "/base.safetensors"), inputs: inputs, method: method,
                             output: OutputSpec(path: dir + "/out.safetensors"))
    _ = try MergeExecutor.run(plan, threads: threads)
    return TestSupport.values(try Checkpoint(path: dir + "/out.safetensors"))["w"]!.values
}

/// Random task vectors (float32 values) with a few exact zeros.
func randomTaus(_ count: Int, _ n: Int, seed: UInt64) -> [[Double]] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in
        (0..<n).map { _ in
            let u = rng.uniform()
            return u < 0.01 ? 0 : Double(Float((u - 0.5) * 0.04))
        }
    }
}

@Suite("nearswap and passthrough known answers")
struct NearSwapPassthroughTests {
    @Test("nearswap takes entries nearer than t whole and moves farther ones t towards the model")
    func nearswap() throws {
        let tau: [Double] = [0.00005, -0.0001, 0.0004, -0.002, 0]
        let base: [Double] = [0.1, -0.2, 0.3, 0.05, 1]
        let merged = try mergeShaped(try NearSwap(t: 0.0001), [tau], shape: [5], base: base)
        expectClose(merged, f32(zip(base, [0.00005, -0.0001, 0.0001, -0.0001, 0]).map { $0 + $1 }), tolerance: 1e-7)
        // t ≤ 0 keeps the base.
        expectClose(try mergeShaped(try NearSwap(t: 0), [tau], shape: [5], base: base), f32(base), tolerance: 0)
    }

    @Test("nearswap and passthrough take exactly one model; a nearswap recipe needs t")
    func refusals() throws {
        #expect(throws: MergeKitError.self) { try NearSwap(t: 0.1).validate(weights: [1, 1]) }
        #expect(throws: MergeKitError.self) { try Passthrough(scale: 2).validate(weights: [1, 1]) }
        #expect(throws: MergeKitError.self) { try NearSwap(t: .nan) }
        let recipe = try Recipe.parse("merge_method: nearswap\nbase_model: a\nmodels:\n  - model: b\n", path: "r.yml")
        let error = try #require(throws: MergeKitError.self) { try recipe.validateParameters() }
        #expect(error.detail.contains("nearswap needs t"))
    }

    @Test("passthrough multiplies the model by its scale: 0 gives exact zeros, 1 the model's bytes")
    func passthrough() throws {
        let tau: [Double] = [0.25, -0.5, 0.125, 0]
        let base: [Double] = [0.1, -0.2, 0.3, 0.7]
        let model = zip(base, tau).map { $0 + $1 }
        #expect(try mergeShaped(try Passthrough(scale: 0), [tau], shape: [4], base: base) == [0, 0, 0, 0])
        #expect(try mergeShaped(try Passthrough(scale: 1), [tau], shape: [4], base: base) == f32(model))
        expectClose(try mergeShaped(try Passthrough(scale: 0.5), [tau], shape: [4], base: base), f32(model).map { $0 * 0.5 }, tolerance: 1e-7)
        // Without a base the model anchors itself (τ = 0): s·θ all the same.
        #expect(try mergeShaped(try Passthrough(scale: 0), [[0, 0, 0, 0]], shape: [4], base: model) == [0, 0, 0, 0])
        expectClose(try mergeShaped(try Passthrough(scale: -2), [[0, 0, 0, 0]], shape: [4], base: model), f32(model).map { $0 * -2 },
                    tolerance: 2e-7)
    }
}

@Suite("SCE known answers")
struct SCEKnownAnswerTests {
    static let taus: [[Double]] = [[1, -2, 0, 4], [1, 2, 3, -4], [1, 1, -3, 0]]

    @Test("Weights are the mean squares (21, 30, 11)/62; the sign vote keeps the agreeing entries, zero sums count as +")
    func noSelection() throws {
        let merged = try mergeShaped(try SCE(selectTopK: 1), Self.taus, shape: [4])
        expectClose(merged, [1, 71.0 / 41.0, 3, 4], tolerance: 5e-7)
    }

    @Test("select_topk keeps ⌊z·k⌋ entries of largest variance among the z non-zero ones")
    func selection() throws {
        // Variances 0, 78/27, 6, 32/3: one of three kept (the last); weights then 1/2, 1/2, 0.
        expectClose(try mergeShaped(try SCE(selectTopK: 0.5), Self.taus, shape: [4]), [0, 0, 0, 4], tolerance: 0)
        // ⌊3·0.7⌋ = 2: the last two.
        let two = try mergeShaped(try SCE(selectTopK: 0.7), Self.taus, shape: [4])
        // τ̃ = [0,0,0,4], [0,0,3,-4], [0,0,-3,0]: means of squares 16/4, 25/4, 9/4 → w ∝ 16, 25, 9.
        expectClose(two, [0, 0, 3, 4], tolerance: 5e-7)
    }

    @Test("A tensor over many chunks gives the whole-tensor answer (independent reference)", arguments: [0.3, 1.0])
    func chunked(selectTopK: Double) throws {
        let n = 3 * MergeExecutor.chunkElements + 123
        let taus = randomTaus(3, n, seed: 41)
        let merged = try mergeShaped(try SCE(selectTopK: selectTopK), taus, shape: [n])
        expectClose(merged, Self.reference(taus, selectTopK: selectTopK), tolerance: 1e-7)
        #expect(try mergeShaped(try SCE(selectTopK: selectTopK), taus, shape: [n], threads: 1) == merged)
    }

    /// SCE from the formula, in Double, with a sort.
    static func reference(_ taus: [[Double]], selectTopK: Double) -> [Double] {
        let n = taus[0].count, count = Double(taus.count)
        var kept = taus
        if selectTopK < 1 {
            let variance: [Float] = (0..<n).map { j in
                let mean = taus.reduce(0) { $0 + $1[j] } / count
                return Float(taus.reduce(0) { $0 + ($1[j] - mean) * ($1[j] - mean) } / count)
            }
            let k = Int(Float(variance.filter { $0 != 0 }.count) * Float(selectTopK))
            let order = (0..<n).sorted { variance[$0] != variance[$1] ? variance[$0] > variance[$1] : $0 < $1 }
            let keep = Set(order.prefix(k))
            kept = taus.map { tau in tau.indices.map { keep.contains($0) ? tau[$0] : 0 } }
        }
        let means = kept.map { $0.reduce(0) { $0 + $1 * $1 } / Double(n) }
        let total = means.reduce(0, +)
        let w = total < 1e-6 ? [Double](repeating: 1 / count, count: taus.count) : means.map { $0 / total }
        return (0..<n).map { j in
            let positive = kept.reduce(0) { $0 + $1[j] } >= 0
            var sum = 0.0, weight = 0.0
            for (i, tau) in kept.enumerated() where positive ? tau[j] > 0 : tau[j] < 0 {
                sum += tau[j] * w[i]
                weight += w[i]
            }
            return sum / max(weight, 1e-6)
        }
    }
}

@Suite("DELLA known answers")
struct DELLAKnownAnswerTests {
    @Test("Keep probabilities run from d − ε to d + ε by ascending |τ| rank in each row (ties by position)")
    func probabilities() {
        let p = MagnitudeDropMasks.keepProbabilities([0.3, -0.1, 0.2, 0.4, 0, 0, 0.5, -0.5], shape: [2, 4], density: 0.5, epsilon: 0.2)
        let expected = [0.3 + 0.8 / 3, 0.3, 0.3 + 0.4 / 3, 0.7, 0.3, 0.3 + 0.4 / 3, 0.3 + 0.8 / 3, 0.7]
        expectClose(p, expected, tolerance: 1e-12)
        // A vector is one row; a 3-D tensor ranks along dimension 1 for each index of the others.
        expectClose(MagnitudeDropMasks.keepProbabilities([3, 1, 2], shape: [3], density: 0.5, epsilon: 0.1), [0.6, 0.4, 0.5], tolerance: 1e-12)
        let cube = MagnitudeDropMasks.keepProbabilities([1, 9, 2, 8, 3, 7, 6, 1, 5, 2, 4, 3], shape: [2, 3, 2], density: 0.5, epsilon: 0.1)
        expectClose(cube, [0.4, 0.6, 0.5, 0.5, 0.6, 0.4, 0.6, 0.4, 0.5, 0.5, 0.4, 0.6], tolerance: 1e-12)
        // A row of one element keeps with d.
        #expect(MagnitudeDropMasks.keepProbabilities([5], shape: [1, 1], density: 0.3, epsilon: 0.1) == [0.3])
    }

    @Test("density ± epsilon must lie in (0, 1) below density 1, as mergekit requires")
    func epsilonRange() throws {
        #expect(throws: MergeKitError.self) { try DELLA(density: 0.1, epsilon: 0.15) }
        #expect(throws: MergeKitError.self) { try DELLA(density: 0.9, epsilon: 0.1) }
        _ = try DELLA(density: 1, epsilon: 0.5)
        _ = try DELLA(density: .init([0.5, 0.3]), epsilon: .init([0.4, 0.2]))
    }

    @Test("Rows longer than a chunk, and chunks of several rows, give the whole-tensor answer for any thread count",
          arguments: [[2, 20_000], [7, 5_000], [3 * 16_384 + 5]])
    func chunked(shape: [Int]) throws {
        let n = shape.reduce(1, *)
        let taus = randomTaus(3, n, seed: 17)
        let weights = [0.5, 0.3, 0.2]
        for (rescale, combination) in [(TaskVectorMerge.Rescale.l1, DELLA.Combination.ties), (.inverse, .taskArithmetic), (.none, .ties)] {
            let method = try DELLA(density: .init([0.5, 0.6, 0.4]), epsilon: .init([0.2, 0.1, 0.3]), seed: 9, rescale: rescale,
                                   combination: combination, normalize: true)
            let merged = try mergeShaped(method, taus, shape: shape, weights: weights)
            let expected = Self.reference(taus, shape: shape, densities: [0.5, 0.6, 0.4], epsilons: [0.2, 0.1, 0.3], seed: 9,
                                          rescale: rescale, ties: combination == .ties, weights: weights)
            expectClose(merged, expected, tolerance: 2e-7)
            #expect(try mergeShaped(method, taus, shape: shape, weights: weights, threads: 1) == merged)
        }
    }

    @Test("Kept fractions by rank quartile follow the probabilities (statistical, 2·10⁵ entries)")
    func keptFractions() throws {
        let shape = [50, 4_000]
        let tau = randomTaus(1, 200_000, seed: 3)[0]
        let method = try DELLA(density: 0.5, epsilon: 0.4, seed: 1, rescale: .none, combination: .taskArithmetic, normalize: false)
        let merged = try mergeShaped(method, [tau], shape: shape)
        let p = MagnitudeDropMasks.keepProbabilities(tau.map { Float($0) }, shape: shape, density: 0.5, epsilon: 0.4)
        var kept = [Double](repeating: 0, count: 4), expected = [Double](repeating: 0, count: 4), count = [Double](repeating: 0, count: 4)
        for j in tau.indices where tau[j] != 0 {
            let q = min(3, Int((p[j] - 0.1) / 0.8 * 4))
            kept[q] += merged[j] != 0 ? 1 : 0
            expected[q] += p[j]
            count[q] += 1
        }
        for q in 0..<4 {
            // Binomial: 5 standard deviations of ~50 000 draws.
            #expect(abs(kept[q] - expected[q]) <= 5 * (count[q] * 0.25).squareRoot(), "quartile \(q): \(kept[q]) kept, \(expected[q]) expected")
        }
    }

    /// DELLA from the formula: mergekit's probabilities, the counter stream's decisions, the
    /// rescale, then the weighted sign vote normalised by the agreeing weights (or the
    /// normalised weighted sum).
    static func reference(_ taus: [[Double]], shape: [Int], densities: [Double], epsilons: [Double], seed: UInt64,
                          rescale: TaskVectorMerge.Rescale, ties: Bool, weights: [Double]) -> [Double] {
        let kept: [[Double]] = taus.enumerated().map { i, tau in
            let p = MagnitudeDropMasks.keepProbabilities(tau.map { Float($0) }, shape: shape, density: densities[i], epsilon: epsilons[i])
            let random = CounterRandom(seed: seed, tensor: "w", input: i)
            var out = tau.indices.map { j in random.bits(j) < CounterRandom.threshold(dropProbability: p[j]) ? tau[j] : 0 }
            switch rescale {
            case .l1:
                let before = tau.reduce(0) { $0 + abs($1) }, after = out.reduce(0) { $0 + abs($1) }
                if before >= 1e-7 && after >= 1e-7 { out = out.map { $0 * before / after } }
            case .inverse:
                out = out.indices.map { out[$0] / p[$0] }
            case .none:
                break
            }
            return out.map { $0 * weights[i] }
        }
        return taus[0].indices.map { j in
            guard ties else { return kept.reduce(0) { $0 + $1[j] } / weights.reduce(0, +) }
            let positive = kept.reduce(0) { $0 + $1[j] } >= 0
            var sum = 0.0, weight = 0.0
            for (i, d) in kept.enumerated() where positive ? d[j] > 0 : d[j] < 0 {
                sum += d[j]
                weight += weights[i]
            }
            return sum / (weight == 0 ? 1 : weight)
        }
    }
}

@Suite("Arcee Fusion known answers")
struct ArceeFusionKnownAnswerTests {
    @Test("Rows longer than a chunk, and chunks of several rows, give the whole-tensor answer", arguments: [[3, 20_000], [40, 1_500], [5_000]])
    func chunked(shape: [Int]) throws {
        let n = shape.reduce(1, *)
        let tau = randomTaus(1, n, seed: 23)[0]
        var rng = SplitMix64(seed: 99)
        let base = (0..<n).map { _ in Double(Float(rng.uniform() * 0.1 - 0.05)) }
        let merged = try mergeShaped(ArceeFusion(), [tau], shape: shape, base: base)
        let tauF = zip(base, tau).map { Double(Float(Float($0 + $1) - Float($0))) }
        let expected = Self.reference(tauF, base: base, row: shape.last!)
        expectClose(merged, zip(base, expected).map { Double(Float($0) + Float($1)) }, tolerance: 1e-7)
        #expect(try mergeShaped(ArceeFusion(), [tau], shape: shape, base: base, threads: 1) == merged)
    }

    /// θ₀ ~ U(−0.05, 0.05) and τ of small changes with a few large ones among them (the outliers
    /// kept), Float values.
    static func inputs(_ n: Int, seed: UInt64) -> (base: [Double], tau: [Double]) {
        var rng = SplitMix64(seed: seed)
        let base = (0..<n).map { _ in Double(Float(rng.uniform() * 0.1 - 0.05)) }
        let tau = (0..<n).map { _ in Double(Float((rng.uniform() - 0.5) * (rng.uniform() < 0.03 ? 0.2 : 0.004))) }
        return (base, tau)
    }

    @Test("Divergences kept from the first pass give the bytes of computing them again in every pass",
          arguments: [[3, 20_000], [40, 1_500], [5_000], [7, 9, 13]])
    func keptDivergences(shape: [Int]) throws {
        let (base, tau) = Self.inputs(shape.reduce(1, *), seed: 31)
        let kept = try mergeShaped(ArceeFusion(), [tau], shape: shape, base: base)
        #expect(zip(kept, base).contains { $0 != $1 } && zip(kept, base).contains { $0 == $1 })
        #expect(try mergeShaped(ArceeFusion(keptRows: 0), [tau], shape: shape, base: base) == kept)
        #expect(try mergeShaped(ArceeFusion(keptRows: 0), [tau], shape: shape, base: base, threads: 1) == kept)
    }

    @Test("Computed in Double (F64 tensors): importances and threshold in Double, as the reference computes them",
          arguments: [[40, 1_500], [5_000]])
    func computedInDouble(shape: [Int]) throws {
        let (base, tau) = Self.inputs(shape.reduce(1, *), seed: 41)
        let merged = try mergeShaped(ArceeFusion(), [tau], shape: shape, base: base, dtype: .F64)
        let tauD = zip(base, tau).map { ($0 + $1) - $0 }
        let expected = Self.reference(tauD, base: base, row: shape.last!, rounding: { $0 })
        #expect(zip(merged, zip(base, expected)).allSatisfy { $0 == $1.0 + $1.1 })
        #expect(expected.contains { $0 != 0 } && expected.contains { $0 == 0 })
    }

    @Test("Only the outliers of importance are taken: Q₂ + 1.5·IQR")
    func outliers() throws {
        // One row, so importance ∝ |τ|: 0.001 … 0.015 and 0.5. Q₁, Q₂, Q₃ are the sorted values at
        // 3, 7, 11 (0.004, 0.008, 0.012), t = 0.008 + 1.5·0.008 = 0.02: only 0.5 passes.
        var tau = (0..<15).map { Double(Float(0.001 * Double($0 + 1))) }
        tau.append(0.5)
        let merged = try mergeShaped(ArceeFusion(), [tau], shape: [16])
        #expect(merged == [Double](repeating: 0, count: 15) + [0.5])
        #expect(throws: MergeKitError.self) { try ArceeFusion().validate(weights: [1, 1]) }
    }

    /// Arcee Fusion from the formula with a sort; `rounding` is the compute type's (Float's by default).
    static func reference(_ tau: [Double], base: [Double], row: Int, rounding: (Double) -> Double = { Double(Float($0)) }) -> [Double] {
        var importance = [Double](repeating: 0, count: tau.count)
        for start in stride(from: 0, to: tau.count, by: row) {
            let r = start..<(start + row)
            let theta = r.map { base[$0] + tau[$0] }, theta0 = r.map { base[$0] }
            func softmax(_ x: [Double]) -> [Double] {
                let m = x.max()!
                let e = x.map { exp($0 - m) }
                let s = e.reduce(0, +)
                return e.map { $0 / s + 1e-8 }
            }
            let p = softmax(theta), q = softmax(theta0)
            let kl = zip(p, q).reduce(0) { $0 + $1.0 * log($1.0 / $1.1) }
            for j in r { importance[j] = rounding(abs(tau[j]) * kl) }
        }
        let sorted = importance.sorted()
        let last = Double(tau.count - 1)
        let (q1, q2, q3) = (sorted[Int(0.25 * last)], sorted[Int(0.5 * last)], sorted[Int(0.75 * last)])
        let threshold = rounding(q2 + rounding(1.5 * rounding(q3 - q1)))
        return tau.indices.map { importance[$0] >= threshold ? tau[$0] : 0 }
    }
}

@Suite("Recipe notes for keys without effect")
struct RecipeNoteTests {
    @Test("int8_mask is accepted with a one-line note; a key mergekit does not know for the method stays an error")
    func int8Mask() throws {
        let dir = TestSupport.temporaryDirectory("note")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let f32 = TestSupport.fixture("f32")
        let text = "merge_method: della\nbase_model: \(f32)/base\nmodels:\n  - model: \(f32)/ft_a\n    parameters: {weight: 1, density: 0.5}\nparameters:\n  int8_mask: true\n  epsilon: 0.1\n"
        let run = try Recipe.parse(text, path: dir + "/r.yml").plan(output: dir + "/out")
        #expect(run.notes.count == 1)
        #expect(run.notes.first?.hasPrefix("line 7: int8_mask has no effect here") == true)
        let plain = try Recipe.parse(text.replacingOccurrences(of: "  int8_mask: true\n", with: ""), path: dir + "/r.yml").plan(output: dir + "/out")
        #expect(plain.notes.isEmpty)
        let bad = try Recipe.parse(text.replacingOccurrences(of: "int8_mask", with: "int8_mak"), path: dir + "/r.yml")
        #expect(throws: MergeKitError.self) { try bad.validateParameters() }
    }

    @Test("merge-cli run prints the note on stderr")
    func printed() throws {
        let dir = TestSupport.temporaryDirectory("note-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let f32 = TestSupport.fixture("f32")
        let recipe = dir + "/r.yml"
        try "merge_method: sce\nbase_model: \(f32)/base\nmodels:\n  - model: \(f32)/ft_a\n  - model: \(f32)/ft_b\nparameters:\n  int8_mask: true\n"
            .write(toFile: recipe, atomically: true, encoding: .utf8)
        let run = try CLI.run(["run", recipe, "-o", dir + "/out"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("note: line 7: int8_mask has no effect here"))
    }
}
