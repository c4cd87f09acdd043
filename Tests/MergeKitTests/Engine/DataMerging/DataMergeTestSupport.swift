import Foundation
import Testing
@testable import MergeKit

/// The fixtures of the merges that learn from data (Fixtures/datamerge, made by
/// make_datamerge_fixtures.py with FusionBench's implementations).
enum DataMergeFixtures {
    static func path(_ relative: String) -> String { TestSupport.fixture("datamerge/" + relative) }

    static let tasks = 3
    static var models: [String] { (0..<tasks).map { path("experts/task\($0)") } }
    static var data: [String] { (0..<tasks).map { path("task\($0)/data.safetensors") } }
    static var heads: [String] { (0..<tasks).map { path("task\($0)/head.safetensors") } }

    /// The checked inputs of the three fixture tasks, written to a fresh temporary output.
    static func inputs(heads: Bool = false, base: Bool = false) throws -> DataMergeInputs {
        try DataMergeInputs(models: models, data: data, heads: heads ? self.heads : [], base: base ? path("base") : nil,
                            output: TestSupport.temporaryDirectory("datamerge") + "/merged")
    }

    /// A golden merged model by name (`regmean`, `regmean_plusplus`, `fisher_fusionbench`, `fisher_labels`).
    static func golden(_ name: String) throws -> [String: [Double]] {
        TestSupport.values(try Checkpoint(path: path("golden/\(name).safetensors"))).mapValues(\.values)
    }

    /// The largest |merged − golden| of each tensor relative to the golden tensor's largest |value|.
    static func relativeErrors(_ merged: CLIPVisionParameters, _ golden: [String: [Double]]) -> [String: Double] {
        var errors: [String: Double] = [:]
        for tensor in merged.tensors {
            guard let expected = golden[tensor.name], let actual = merged.values(of: tensor.name) else {
                errors[tensor.name] = .infinity
                continue
            }
            let scale = expected.map(abs).max() ?? 0
            let worst = zip(actual, expected).map { abs(Double($0) - $1) }.max() ?? 0
            errors[tensor.name] = scale > 0 ? worst / scale : worst
        }
        return errors
    }
}
