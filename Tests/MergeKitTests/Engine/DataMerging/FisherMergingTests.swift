import Foundation
import Testing
@testable import MergeKit

@Suite("Fisher merging")
struct FisherMergingTests {
    @Test("The FusionBench estimator matches FusionBench's FisherMergingForCLIPVisionModel (batches of 4, normalised, ε 1e-6)")
    func goldenFusionBench() throws {
        let options = FisherOptions(batchSize: 4, estimator: .fusionbench)
        let result = try FisherMerging.run(try DataMergeFixtures.inputs(heads: true), options: options, threads: 2)
        let errors = DataMergeFixtures.relativeErrors(result.merged, try DataMergeFixtures.golden("fisher_fusionbench"))
        let worst = errors.max { $0.value < $1.value }!
        #expect(worst.value < 5e-6, "\(worst.key): \(worst.value)")
        #expect(result.samples == [10, 10, 10] && result.identical.isEmpty)
    }

    @Test("Per-sample squared gradients of log p(y|x) match the PyTorch reference (labels from the data)")
    func goldenPerSample() throws {
        var options = FisherOptions(batchSize: 4)
        options.givenLabels = try DataMergeFixtures.data.map { try ImageDataset(path: $0).labels }
        let result = try FisherMerging.run(try DataMergeFixtures.inputs(heads: true), options: options, threads: 2)
        let errors = DataMergeFixtures.relativeErrors(result.merged, try DataMergeFixtures.golden("fisher_labels"))
        let worst = errors.max { $0.value < $1.value }!
        #expect(worst.value < 5e-6, "\(worst.key): \(worst.value)")
    }
}
