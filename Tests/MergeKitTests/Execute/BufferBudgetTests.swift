import Foundation
import Testing
@testable import MergeKit

/// Buffers scale with the largest tensor, not with inputs × workers or sweep points × workers:
/// the sizes `BufferBudget` computes, and the peak memory of merges with many inputs and many
/// sweep points (measured by the CLI with getrusage, in its own process).
@Suite("Memory budget")
struct BufferBudgetTests {
    let chunk = MergeExecutor.chunkElements

    @Test("Input staging: the full read size for few inputs, bounded in all for many")
    func staging() {
        for inputs in [1, 2, 3, 7, 15] { #expect(BufferBudget.readElements(inputs: inputs) == MergeExecutor.readElements, "\(inputs) inputs") }
        for inputs in [1, 3, 16, 40, 100, 500, 5000] {
            let span = BufferBudget.readElements(inputs: inputs)
            #expect(span >= chunk && span % chunk == 0 && span <= MergeExecutor.readElements)
            #expect((inputs + 1) * span * 8 <= max(BufferBudget.stagingBytes, (inputs + 1) * chunk * 8), "\(inputs) inputs")
        }
        #expect(BufferBudget.readElements(inputs: 500) == chunk)
        let buffers = WorkerBuffers<Float>(inputs: 500)
        #expect(buffers.readSpan == chunk && buffers.outputSpan == MergeExecutor.itemElements && !buffers.sharesOutputStaging)
    }

    @Test("Output staging: a work item for one merge, bounded in all for a sweep, one shared chunk for a huge sweep")
    func outputStaging() {
        #expect(BufferBudget.outputSpan(targets: 1) == MergeExecutor.itemElements)
        #expect(!BufferBudget.sharesOutputStaging(targets: 1))
        for targets in [2, 21, 100, 500, 1000, 1100, 10_000] {
            let span = BufferBudget.outputSpan(targets: targets)
            #expect(span >= chunk && span % chunk == 0 && span <= MergeExecutor.itemElements)
            let shared = BufferBudget.sharesOutputStaging(targets: targets)
            let staged = shared ? MergeExecutor.itemElements * 8 : targets * span * 8
            #expect(staged <= max(BufferBudget.outputStagingBytes, MergeExecutor.itemElements * 8), "\(targets) targets")
            #expect(shared == (span == chunk), "\(targets) targets")
        }
        #expect(BufferBudget.outputSpan(targets: 21) >= 32 * chunk, "a 21-point sweep still writes in large pieces")
        #expect(BufferBudget.sharesOutputStaging(targets: 1100))
        let buffers = WorkerBuffers<Float>(inputs: 3, targets: 1100)
        #expect(buffers.sharesOutputStaging && buffers.outputStaging(0) == buffers.outputStaging(1099))
    }

    @Test("Whole-model statistics: full-size brackets and samples for few inputs, bounded for many")
    func statistics() {
        #expect(BufferBudget.bracketBins(inputs: 3) == 1 << 18)
        #expect(BufferBudget.sampleTarget(inputs: 3) == 1 << 20)
        for inputs in [1, 3, 8, 9, 50, 500, 5000] {
            let bins = BufferBudget.bracketBins(inputs: inputs)
            #expect(bins.nonzeroBitCount == 1 && bins >= 1 << 12 && bins <= 1 << 18)
            #expect(inputs * bins * 8 <= max(BufferBudget.bracketBytes, inputs * (1 << 12) * 8), "\(inputs) inputs")
            let sample = BufferBudget.sampleTarget(inputs: inputs)
            #expect(inputs * sample * 4 <= max(BufferBudget.sampleBytes, inputs * (1 << 14) * 4), "\(inputs) inputs")
        }
        #expect(BufferBudget.counterBatch(selections: 3) == 3)
        let batch = BufferBudget.counterBatch(selections: 1000)
        #expect(batch >= 1 && batch * RadixSelection.bins * 8 <= BufferBudget.counterBytes)
    }

    /// base + `count` fine-tuned single-tensor checkpoints of `elements` BF16 values under `root`.
    static func writeInputs(_ root: String, count: Int, elements: Int) -> [String] {
        var random = SplitMix64(seed: 7)
        let spec = TensorSpec(name: "w", dtype: .BF16, shape: [elements])
        TestSupport.writeCheckpoint(root + "/base.safetensors", [(spec, (0..<elements).map { _ in random.uniform() - 0.5 })])
        var arguments = ["--base", root + "/base.safetensors"]
        for i in 0..<count {
            TestSupport.writeCheckpoint(root + "/ft_\(i).safetensors", [(spec, (0..<elements).map { _ in random.uniform() - 0.5 })])
            arguments += ["--model", root + "/ft_\(i).safetensors"]
        }
        return arguments
    }

    /// Runs a merge with --json and returns its peak resident memory in MB.
    static func peakMB(_ arguments: [String]) throws -> Double? {
        let run = try CLI.runWatched(arguments + ["--json", "--quiet", "--threads", "2"], ownPeakMemory: true)
        #expect(run.status == 0, "\(run.stderr)")
        guard let bytes = try? JSONParser.parse(Array(run.stdout.utf8))["peak_memory_bytes"]?.doubleValue else { return nil }
        return bytes / 1e6
    }

    @Test("TIES with 200 inputs: statistics take neither megabytes per input per worker nor all inputs' sorted keys")
    func manyInputs() throws {
        let root = TestSupport.temporaryDirectory("memory")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let inputs = Self.writeInputs(root, count: 200, elements: 100_000)
        // Measured before the budget (2 MB of bracket counters and up to 4 MB of sample per input
        // per worker): 514 MB; after: 166 MB.
        let global = try #require(try Self.peakMB(["ties", "--density", "0.2"] + inputs + ["-o", root + "/global.safetensors"]))
        #expect(global < 300, "peak \(global) MB")
        // Per-tensor trim: sorted keys one input at a time (before: all inputs' at once).
        // Measured before: 324 MB; after: 134 MB (an 80 MB tensor cache included).
        let perTensor = try #require(try Self.peakMB(["ties", "--trim-scope", "tensor", "--density", "0.2"] + inputs + ["-o", root + "/tensor.safetensors"]))
        #expect(perTensor < 220, "peak \(perTensor) MB")
    }

    @Test("A 200-point sweep does not stage a work item per point per worker")
    func manyPoints() throws {
        let root = TestSupport.temporaryDirectory("memory")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let inputs = Self.writeInputs(root, count: 2, elements: 1 << 20)
        // Measured before (2 MB staged per point per worker, 4 MB hash buffers): 454 MB; after: 71 MB,
        // the same as for 20 points.
        let peak = try #require(try Self.peakMB(["sweep", "--method", "task-arithmetic"] + inputs
                                                + ["--scale", "0.005:1:0.005", "-o", root + "/sweep"]))
        #expect(peak < 200, "peak \(peak) MB")
        #expect(TestSupport.listing(root + "/sweep").filter { $0.hasPrefix("point-") }.count == 200)
    }
}
