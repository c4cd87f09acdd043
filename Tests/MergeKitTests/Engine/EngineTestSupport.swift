import Foundation
import Testing
@testable import MergeKit

/// Fixtures and comparisons shared by the engine's tests.
enum EngineFixtures {
    static func path(_ relative: String) -> String { TestSupport.fixture("clip/" + relative) }

    /// A fixture model by directory (`quick/base`, `quick/finetuned`, `gelu/model`).
    static func model(_ relative: String, threads: Int? = nil) throws -> CLIPVisionModel {
        try CLIPVisionModel(path: path(relative), threads: threads)
    }

    /// Every tensor of a fixture safetensors file, as Double, by name.
    static func tensors(_ relative: String) throws -> [String: [Double]] {
        TestSupport.values(try Checkpoint(path: path(relative))).mapValues(\.values)
    }

    static func dataset(_ folder: String) throws -> ImageDataset { try ImageDataset(path: path(folder + "/data.safetensors")) }
}

/// The engine tests' generator: SplitMix64 with normal samples by Box–Muller.
typealias TestRandom = SplitMix64

extension SplitMix64 {
    mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * .pi * u2)
    }

    mutating func normals(_ n: Int, scale: Double = 1) -> [Float] { (0..<n).map { _ in Float(scale * normal()) } }
}
