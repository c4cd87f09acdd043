import Foundation
import Testing
@testable import MergeKit

@Suite("NaN and Inf in inputs")
struct CheckFiniteTests {
    @Test("Merged as the arithmetic says by default; --check-finite fails first, naming the file and tensor")
    func checkFinite() throws {
        let dir = TestSupport.temporaryDirectory("finite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = TensorSpec(name: "a.weight", dtype: .F32, shape: [4]), b = TensorSpec(name: "b.weight", dtype: .BF16, shape: [2])
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [(a, [1, 2, 3, 4]), (b, [1, 1])])
        TestSupport.writeCheckpoint(dir + "/ft.safetensors", [(a, [1, .nan, 3, .infinity]), (b, [2, 2])])
        let plain = try CLI.run(["task-arithmetic", "--base", dir + "/base.safetensors", "--model", dir + "/ft.safetensors",
                                 "--scale", "0.5", "-o", dir + "/merged.safetensors"])
        #expect(plain.status == 0, "\(plain.stderr)")
        let merged = TestSupport.values(try Checkpoint(path: dir + "/merged.safetensors"))
        let values = try #require(merged["a.weight"]?.values)
        #expect(values[0] == 1 && values[1].isNaN && values[2] == 3 && values[3] == .infinity)
        #expect(merged["b.weight"]?.values == [1.5, 1.5])

        let checked = try CLI.run(["task-arithmetic", "--base", dir + "/base.safetensors", "--model", dir + "/ft.safetensors",
                                   "--check-finite", "-o", dir + "/checked.safetensors"])
        #expect(checked.status == 1)
        #expect(checked.stderr.contains(dir + "/ft.safetensors") && checked.stderr.contains("'a.weight'"))
        #expect(checked.stderr.contains("NaN") && checked.stderr.contains("element 1"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/checked.safetensors"))
    }
}
