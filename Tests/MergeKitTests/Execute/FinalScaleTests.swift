import Foundation
import Testing
@testable import MergeKit

/// λ is applied once, by the executor, as the last product before θ₀ is added: a merge with λ
/// writes exactly fl(λ·u) where u is the same merge at λ = 1. Checked on F32 task-vector outputs
/// (no base added, no rounding to a narrower dtype), where every rounding shows.
@Suite("The final scale λ: one product, applied last")
struct FinalScaleTests {
    /// Task-vector outputs in F32, by tensor name.
    private func taskVector(_ method: any MergeMethod, dtype: String = "f32") throws -> [String: [Float]] {
        let dir = TestSupport.temporaryDirectory("scale")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = try Checkpoint(path: TestSupport.fixture("\(dtype)/base"))
        let inputs = try ["ft_a", "ft_b", "ft_c"].map { MergeInput(kind: .model, checkpoint: try Checkpoint(path: TestSupport.fixture("\(dtype)/\($0)"))) }
        let plan = try MergePlan(base: base, inputs: inputs, method: method,
                                 output: OutputSpec(path: dir + "/tv.safetensors", dtype: .F32, emit: .taskVector))
        _ = try MergeExecutor.run(plan, threads: 2)
        let result = try Checkpoint(path: dir + "/tv.safetensors")
        var values: [String: [Float]] = [:]
        for entry in result.entries {
            let bytes = entry.file.bytes(of: entry.info)
            values[entry.name] = (0..<entry.info.elementCount).map { bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        }
        return values
    }

    static let scales = [0.37, -1.25, 3.0]

    @Test("Chunked methods with a final scale (task arithmetic, TIES, DARE, Breadcrumbs)", arguments: scales)
    func chunkedMethods(lambda: Double) throws {
        let methods: [(Double) throws -> any MergeMethod] = [
            { try TaskArithmetic(scale: $0) },
            { try TIES(density: 0.4, scale: $0) },
            { try TIES(density: 0.5, trimScope: .tensor, vote: .weighted, merge: .normalized, scale: $0) },
            { try DARE(dropRate: 0.5, seed: 7, rescale: .l1, scale: $0) },
            { try Breadcrumbs(density: 0.5, gamma: 0.05, scale: $0) },
        ]
        for make in methods {
            let unscaled = try taskVector(try make(1)), scaled = try taskVector(try make(lambda))
            let name = try make(1).info.name
            #expect(Set(unscaled.keys) == Set(scaled.keys))
            for (tensor, u) in unscaled {
                let expected = u.map { Float(lambda) * $0 }
                #expect(scaled[tensor]!.map(\.bitPattern) == expected.map(\.bitPattern), "\(name) \(tensor) at λ = \(lambda)")
            }
        }
    }

    @Test("Methods merging matrices whole (TSV-M, Iso-C): α·τ₁", arguments: scales)
    func wholeTensorMethods(alpha: Double) throws {
        let methods: [(Double) throws -> any MergeMethod] = [{ try TSVM(scale: $0) }, { try IsoC(scale: $0) }]
        for make in methods {
            let unscaled = try taskVector(try make(1)), scaled = try taskVector(try make(alpha))
            let method = try make(1) as! any WholeTensorMergeMethod
            let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
            // (Tensors the method does not merge whole go through its chunked `combine`.)
            let whole = base.entries.filter { $0.info.dtype.isMergeable && method.mergesWhole(shape: $0.info.shape) }
            #expect(!whole.isEmpty)
            for entry in whole {
                let u = try #require(unscaled[entry.name])
                #expect(scaled[entry.name]!.map(\.bitPattern) == u.map { (Float(alpha) * $0).bitPattern }, "\(method.info.name) \(entry.name) at α = \(alpha)")
            }
        }
    }
}
