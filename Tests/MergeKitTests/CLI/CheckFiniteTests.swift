import Foundation
import Testing
@testable import MergeKit

@Suite("NaN and Inf in inputs")
struct CheckFiniteTests {
    @Test("A merge fails on NaN or Inf, naming the file, tensor and element, with or without --check-finite; nothing is written")
    func checkFinite() throws {
        let dir = TestSupport.temporaryDirectory("finite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = TensorSpec(name: "a.weight", dtype: .F32, shape: [4]), b = TensorSpec(name: "b.weight", dtype: .BF16, shape: [2])
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [(a, [1, 2, 3, 4]), (b, [1, 1])])
        TestSupport.writeCheckpoint(dir + "/ft.safetensors", [(a, [1, .nan, 3, .infinity]), (b, [2, 2])])
        for flags in [[], ["--check-finite"]] {
            let run = try CLI.run(["task-arithmetic", "--base", dir + "/base.safetensors", "--model", dir + "/ft.safetensors",
                                   "--scale", "0.5", "-o", dir + "/merged.safetensors"] + flags)
            #expect(run.status == 1, "\(flags)")
            #expect(run.stderr.contains(dir + "/ft.safetensors") && run.stderr.contains("'a.weight'"), "\(run.stderr)")
            #expect(run.stderr.contains("element [1] (flat index 1) is NaN"), "\(run.stderr)")
            #expect(flags.isEmpty ? run.stderr.contains("merge-cli inspect --check-finite") : true, "the fix in merge-cli's words: \(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/merged.safetensors"))
        }
    }

    @Test("A result that overflows the output dtype exits 1, naming the tensor and the --dtype that fits; nothing is written")
    func outputOverflow() throws {
        let dir = TestSupport.temporaryDirectory("finite-overflow")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = TensorSpec(name: "a.weight", dtype: .F32, shape: [2])
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [(a, [60000, 1])])
        TestSupport.writeCheckpoint(dir + "/ft.safetensors", [(a, [100000, 1])])
        let run = try CLI.run(["task-arithmetic", "--base", dir + "/base.safetensors", "--model", dir + "/ft.safetensors", "--dtype", "F16",
                               "-o", dir + "/merged.safetensors"])
        #expect(run.status == 1, "\(run.stderr)")
        #expect(run.stderr.contains("'a.weight'") && run.stderr.contains("beyond F16's largest finite value 65504"), "\(run.stderr)")
        #expect(run.stderr.contains("--dtype F32 or BF16"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/merged.safetensors"))
    }
}
