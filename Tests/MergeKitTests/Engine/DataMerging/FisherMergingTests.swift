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

@Suite("Fisher merging: behaviour")
struct FisherBehaviourTests {
    @Test("Both estimators give the same bits for 1, 2 and 3 threads", arguments: FisherEstimator.allCases)
    func threads(_ estimator: FisherEstimator) throws {
        let tasks = DataMergeSynthetic.tasks()
        defer { try? FileManager.default.removeItem(atPath: tasks.directory) }
        let options = FisherOptions(batchSize: 4, estimator: estimator, seed: 3)
        let reference = try FisherMerging.run(try tasks.inputs(heads: true), options: options, threads: 1)
        for threads in [2, 3] {
            let other = try FisherMerging.run(try tasks.inputs(heads: true), options: options, threads: threads)
            #expect(other.merged.flat == reference.merged.flat && other.fisherNorms == reference.fisherNorms, "\(threads) threads")
        }
    }

    @Test("Sampled labels: a seed reproduces the merge, another seed changes it; the batch size does not matter")
    func seeds() throws {
        let inputs = try DataMergeFixtures.inputs(heads: true)
        let a = try FisherMerging.run(inputs, options: FisherOptions(seed: 1), threads: 2)
        let b = try FisherMerging.run(inputs, options: FisherOptions(batchSize: 3, seed: 1), threads: 1)
        let c = try FisherMerging.run(inputs, options: FisherOptions(seed: 2), threads: 2)
        #expect(a.merged.flat == b.merged.flat)
        #expect(a.merged.flat != c.merged.flat)
    }

    @Test("Labels are drawn from p: frequencies over 40 000 images are within 1 % of p, and a one-hot p always gives its class")
    func labelDistribution() {
        let p = [0.2, 0.5, 0.0, 0.3]
        var counts = [0, 0, 0, 0]
        for image in 0..<40_000 { counts[FisherEstimateTestHook.label(p, seed: 11, task: 2, image: image)] += 1 }
        for k in 0..<4 { #expect(abs(Double(counts[k]) / 40_000 - p[k]) < 0.01, "class \(k): \(counts[k])") }
        #expect(counts[2] == 0)
        #expect((0..<100).allSatisfy { FisherEstimateTestHook.label([0, 0, 1], seed: 5, task: 0, image: $0) == 2 })
    }

    @Test("Models sharing a tensor keep it exactly; three copies of one model merge into it")
    func identical() throws {
        let w = TestSupport.fixture("wemoe") + "/"
        let inputs = try DataMergeInputs(models: Array(repeating: w + "experts/task2", count: 3),
                                         data: (0..<3).map { w + "task\($0)/data.safetensors" },
                                         heads: (0..<3).map { w + "task\($0)/head.safetensors" }, output: TestSupport.temporaryDirectory("fisher") + "/m")
        let result = try FisherMerging.run(inputs, options: FisherOptions(), threads: 2)
        #expect(result.merged.flat == (try CLIPVisionModel(path: w + "experts/task2").parameters.flat))
        #expect(result.identical.count == result.merged.tensors.count && result.fisherNorms.count == 3)
    }

    @Test("Without normalisation (weights Fₜ + ε alone) the merge matches FusionBench's with normalize_fisher_weight false")
    func unnormalised() throws {
        let inputs = try DataMergeFixtures.inputs(heads: true)
        let plain = try FisherMerging.run(inputs, options: FisherOptions(batchSize: 4, estimator: .fusionbench, normalize: false), threads: 2)
        let errors = DataMergeFixtures.relativeErrors(plain.merged, try DataMergeFixtures.golden("fisher_fusionbench_unnormalized"))
        let worst = errors.max { $0.value < $1.value }!
        #expect(worst.value < 5e-6, "\(worst.key): \(worst.value)")
        let normalised = try FisherMerging.run(inputs, options: FisherOptions(batchSize: 4, estimator: .fusionbench), threads: 2)
        #expect(plain.fisherNorms == normalised.fisherNorms && plain.merged.flat != normalised.merged.flat)
    }
}

/// The label sampler, for the distribution test.
enum FisherEstimateTestHook {
    static func label(_ p: [Double], seed: UInt64, task: Int, image: Int) -> Int {
        FisherLabelSampler.label(p, seed: seed, task: task, image: image)
    }
}
