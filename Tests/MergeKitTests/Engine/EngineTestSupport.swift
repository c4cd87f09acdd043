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

/// max |actual − expected| / max |expected|: the error relative to the tensor's scale (elements
/// near zero would make an element-wise relative error meaningless).
func normwiseError(_ actual: [Float], _ expected: [Double]) -> Double {
    precondition(actual.count == expected.count)
    var worst = 0.0, scale = 0.0
    for (a, e) in zip(actual, expected) {
        let d = abs(Double(a) - e)
        worst = d.isNaN ? .infinity : max(worst, d)
        scale = max(scale, abs(e))
    }
    return scale == 0 ? worst : worst / scale
}

/// Checks the count first, then the normwise error; returns the error for reporting.
@discardableResult
func expectClose(_ actual: [Float], _ expected: [Double]?, tolerance: Double, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) -> Double {
    guard let expected else {
        Issue.record("\(what): no reference", sourceLocation: sourceLocation)
        return .infinity
    }
    #expect(actual.count == expected.count, "\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
    guard actual.count == expected.count else { return .infinity }
    let error = normwiseError(actual, expected)
    #expect(error <= tolerance, "\(what): relative error \(error) > \(tolerance)", sourceLocation: sourceLocation)
    return error
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
