import Foundation
import Testing
@testable import MergeKit

/// Runs `method` on task vectors given as plain numbers: the base is zero (or `base`), each
/// fine-tuned model is base + τᵢ, all in one F32 tensor "w" (plus "v" when `second` is given, to
/// give whole-model statistics more than one tensor). Returns the merged values of "w" (and "v").
func mergeKnown(_ method: any MergeMethod, _ taus: [[Double]], base: [Double]? = nil, weights: [Double]? = nil,
                second: [[Double]]? = nil, threads: Int = 2, dtype: DType = .F32) throws -> (w: [Double], v: [Double]) {
    let dir = TestSupport.temporaryDirectory("known")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let n = taus[0].count
    let base = base ?? [Double](repeating: 0, count: n)
    func specs(_ w: [Double], _ v: [Double]?) -> [(TensorSpec, [Double])] {
        var s = [(TensorSpec(name: "w", dtype: dtype, shape: [w.count]), w)]
        if let v { s.append((TensorSpec(name: "v", dtype: dtype, shape: [v.count]), v)) }
        return s
    }
    let baseSecond = second.map { [Double](repeating: 0, count: $0[0].count) }
    TestSupport.writeCheckpoint(dir + "/base.safetensors", specs(base, baseSecond))
    var inputs: [MergeInput] = []
    for (i, tau) in taus.enumerated() {
        let path = dir + "/ft\(i).safetensors"
        TestSupport.writeCheckpoint(path, specs(zip(base, tau).map { $0 + $1 }, second?[i]))
        inputs.append(MergeInput(kind: .model, checkpoint: try Checkpoint(path: path), weight: weights?[i] ?? 1))
    }
    let plan = try MergePlan(base: try Checkpoint(path: dir + "/base.safetensors"), inputs: inputs, method: method,
                             output: OutputSpec(path: dir + "/out.safetensors"))
    _ = try MergeExecutor.run(plan, threads: threads)
    let values = TestSupport.values(try Checkpoint(path: dir + "/out.safetensors"))
    return (values["w"]!.values, values["v"]?.values ?? [])
}

/// Float32-rounded copy of a value list, for exact expectations computed from F32 inputs.
func f32(_ values: [Double]) -> [Double] { values.map { Double(Float($0)) } }

@Suite("TIES known answers (docs/METHODS.md §3)")
struct TIESKnownAnswerTests {
    static let taus: [[Double]] = [
        [0.50, -0.10, 0.30, -0.70, 0.05, 0.00, 0.20, -0.40, 0.90, -0.02],
        [-0.60, 0.20, 0.10, 0.80, -0.05, 0.30, -0.25, 0.35, -0.10, 0.01],
        [0.40, -0.30, -0.20, 0.10, 0.60, -0.50, 0.15, 0.05, 0.70, 0.00],
    ]

    @Test("Paper TIES (global trim, K = 20 %) gives the reference's mean, sum and max")
    func referenceExample() throws {
        let mean = try mergeKnown(try TIES(density: 0.2, merge: .mean), Self.taus).w
        expectClose(mean, f32([-0.6, 0, 0, 0.8, 0.6, -0.5, 0, 0.35, 0.8, 0]))
        let sum = try mergeKnown(try TIES(density: 0.2, merge: .sum), Self.taus).w
        expectClose(sum, f32([-0.6, 0, 0, 0.8, 0.6, -0.5, 0, 0.35, 1.6, 0]), tolerance: 2.4e-7)  // 0.9 + 0.7 in float32
        let max = try mergeKnown(try TIES(density: 0.2, merge: .max), Self.taus).w
        expectClose(max, f32([-0.6, 0, 0, 0.8, 0.6, -0.5, 0, 0.35, 0.9, 0]))
    }

    @Test("λ scales the merged vector and θ₀ is added back")
    func scaleAndBase() throws {
        let base = [Double](repeating: 1, count: 10)
        let merged = try mergeKnown(try TIES(density: 0.2, merge: .mean, scale: 0.5), Self.taus, base: base).w
        let expected: [Double] = [-0.6, 0, 0, 0.8, 0.6, -0.5, 0, 0.35, 0.8, 0].map { 1 + 0.5 * Double(Float($0)) }
        expectClose(merged, expected, tolerance: 2e-7)
    }

    @Test("The global threshold spans tensors: trimming a 2-tensor model equals trimming it flattened")
    func globalAcrossTensors() throws {
        // Split the reference example over two tensors: the result must not change.
        let w = Self.taus.map { Array($0[0..<6]) }
        let v = Self.taus.map { Array($0[6...]) }
        let merged = try mergeKnown(try TIES(density: 0.2, merge: .mean), w, second: v)
        expectClose(merged.w + merged.v, f32([-0.6, 0, 0, 0.8, 0.6, -0.5, 0, 0.35, 0.8, 0]))
    }

    @Test("Per-tensor trim keeps exactly ⌊density·n⌋ entries, ties broken by position (mergekit semantics)")
    func tensorTrimExactCount() throws {
        // density 0.2 of 10 → 2 entries per task (the paper's rule keeps 3).
        let tied: [[Double]] = [[1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]]
        let merged = try mergeKnown(try TIES.mergekit(density: 0.2), tied).w
        #expect(merged == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        let reference = try mergeKnown(try TIES.mergekit(density: 0.2), Self.taus).w
        // Per task the two largest: {0.9, -0.7}, {0.8, -0.6}, {0.7, 0.6}.
        // Weighted vote (zero → +), ÷ the number of agreeing unit weights.
        expectClose(reference, f32([-0.6, 0, 0, 0.8, 0.6, 0, 0, 0, 0.8, 0]))
    }

    @Test("Exact vote ties take the model-wide majority sign (negative, positive and zero majorities)")
    func majoritySign() throws {
        // Element 0 cancels exactly (0.5 − 0.5); the other elements decide the majority.
        let negative: [[Double]] = [[0.5, 0.3, -0.2, -0.3], [-0.5, -0.4, -0.1, 0.1]]
        let n = try mergeKnown(try TIES(density: 1, merge: .mean), negative).w
        expectClose(n, f32([-0.5, -0.4, -0.15, -0.3]))
        let positive = negative.map { $0.enumerated().map { $0.offset == 0 ? $0.element : -$0.element } }
        let p = try mergeKnown(try TIES(density: 1, merge: .mean), positive).w
        expectClose(p, f32([0.5, 0.4, 0.15, 0.3]))
        // Zero majority: votes −1 and +1 cancel. The reference keeps negative entries for
        // mean/sum and gives 0 for max (0 · max|τ|).
        let zero: [[Double]] = [[0.5, 0.3, -0.2], [-0.5, -0.4, 0.4]]
        expectClose(try mergeKnown(try TIES(density: 1, merge: .mean), zero).w, f32([-0.5, -0.4, 0.4]))
        expectClose(try mergeKnown(try TIES(density: 1, merge: .max), zero).w, f32([0, -0.4, 0.4]))
        // mergekit's weighted vote takes + for an exact 0.
        expectClose(try mergeKnown(try TIES(density: 1, vote: .weighted, merge: .normalized), negative).w, f32([0.5, -0.4, -0.15, -0.3]))
    }

    @Test("Zeros, all-zero task vectors and a single model")
    func degenerateInputs() throws {
        let zeros = [[Double]](repeating: [Double](repeating: 0, count: 10), count: 3)
        let base = (0..<10).map { Double($0) / 8 }
        #expect(try mergeKnown(try TIES(), zeros, base: base).w == base)
        #expect(try mergeKnown(try TIES.mergekit(density: 0.5), zeros, base: base).w == base)
        let single = try mergeKnown(try TIES(density: 0.2), [Self.taus[0]]).w
        expectClose(single, f32([0.5, 0, 0, -0.7, 0, 0, 0, 0, 0.9, 0]))
    }

    @Test("Weighted votes use wᵢτᵢ and normalise by the agreeing weights")
    func weightedVote() throws {
        let taus: [[Double]] = [[1, 1], [-1, 1]]
        // d = (0.75, 0.75), (−0.25, 0.25): votes +, +. Element 0: 0.75 / 0.75; element 1: 1.0 / 1.0.
        let merged = try mergeKnown(try TIES(density: 1, trimScope: .tensor, vote: .weighted, merge: .normalized), taus,
                                    weights: [0.75, 0.25]).w
        expectClose(merged, [1, 1])
    }

    @Test("Invalid parameters are rejected with the value named")
    func invalidParameters() throws {
        let zero = try #require(throws: MergeKitError.self) { try TIES(density: 0) }
        #expect(zero.code == .invalidArgument && zero.description == "density must be in (0, 1], not 0 (the fraction of τ entries kept, e.g. 0.2)")
        let big = try #require(throws: MergeKitError.self) { try TIES(density: 1.5) }
        #expect(big.description.contains("1.5") && big.description.contains("(0, 1]"))
        let noVote = try #require(throws: MergeKitError.self) { try TIES(vote: .none) }
        #expect(noVote.code == .invalidArgument)
    }
}
