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
