import Foundation
import Testing
@testable import MergeKit

/// `CheckpointVerifier`, `merge-cli verify` and `merge-cli inspect --check-finite`.
@Suite("Verify")
struct VerifyTests {
    /// A checkpoint with one tensor per float dtype holding known non-finite values, a finite one,
    /// and an integer buffer (never checked).
    static func writeNonFinite(_ path: String) {
        let nan = Double.nan, inf = Double.infinity
        TestSupport.writeCheckpoint(path, [
            (TensorSpec(name: "clean.weight", dtype: .F32, shape: [4]), [1, -2, 0, -0.0]),
            (TensorSpec(name: "f16.weight", dtype: .F16, shape: [2, 3]), [1, nan, 3, inf, 5, nan]),
            (TensorSpec(name: "bf16.weight", dtype: .BF16, shape: [3]), [-inf, 0, -inf]),
            (TensorSpec(name: "f32.weight", dtype: .F32, shape: [5]), [0, 0, 0, 0, nan]),
            (TensorSpec(name: "f64.weight", dtype: .F64, shape: [2]), [inf, -inf]),
            (TensorSpec(name: "ids", dtype: .I64, shape: [2]), [-1, 0x7FF0_0000]),
        ])
    }

    @Test("Counts NaN, +Inf and -Inf per float tensor for every float dtype")
    func counts() throws {
        let dir = TestSupport.temporaryDirectory("verify")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/nonfinite.safetensors"
        Self.writeNonFinite(path)
        let report = try CheckpointVerifier(checkFinite: true).verify(path: path)
        #expect(report.tensorCount == 6)
        #expect(report.floatTensorsChecked == 5)
        #expect(report.bytesRead == 16 + 12 + 6 + 20 + 16 + 16)
        #expect(!report.passed)
        let byName = Dictionary(uniqueKeysWithValues: report.nonFinite.map { ($0.tensor, $0) })
        #expect(report.nonFinite.map(\.tensor) == ["f16.weight", "bf16.weight", "f32.weight", "f64.weight"])
        #expect(byName["f16.weight"].map { [$0.nan, $0.positiveInfinity, $0.negativeInfinity, $0.firstIndex] } == [2, 1, 0, 1])
        #expect(byName["bf16.weight"].map { [$0.nan, $0.positiveInfinity, $0.negativeInfinity, $0.firstIndex] } == [0, 0, 2, 0])
        #expect(byName["f32.weight"].map { [$0.nan, $0.positiveInfinity, $0.negativeInfinity, $0.firstIndex] } == [1, 0, 0, 4])
        #expect(byName["f64.weight"].map { [$0.nan, $0.positiveInfinity, $0.negativeInfinity, $0.firstIndex] } == [0, 1, 1, 0])
        #expect(report.nanCount == 3 && report.positiveInfinityCount == 2 && report.negativeInfinityCount == 3)

        let error = try #require(report.nonFiniteError)
        #expect(error.code == .nonFiniteValue && error.file == path && error.tensor == "f16.weight")
        #expect(error.description.contains(path) && error.description.contains("'f16.weight'"))
        #expect(error.description.contains("2 NaN, 1 +Inf") && error.description.contains("3 more tensors"))

        // Without the finite check, the same file verifies (the values are legal data).
        let plain = try CheckpointVerifier().verify(path: path)
        #expect(plain.passed && plain.floatTensorsChecked == 0 && plain.bytesRead == report.bytesRead)
    }

    @Test("Counts are exact across read-buffer boundaries")
    func smallBuffer() throws {
        let dir = TestSupport.temporaryDirectory("verify")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/long.safetensors"
        var values = [Double](repeating: 0.5, count: 1001)
        for i in stride(from: 7, to: 1001, by: 97) { values[i] = i % 2 == 0 ? .nan : -.infinity }
        TestSupport.writeCheckpoint(path, [
            (TensorSpec(name: "a", dtype: .BF16, shape: [1001]), values),
            (TensorSpec(name: "b", dtype: .F64, shape: [1001]), values),
            (TensorSpec(name: "q", dtype: .I32, shape: [13]), [Double](repeating: 1, count: 13)),
        ])
        let expectedNaN = values.filter(\.isNaN).count, expectedInf = values.filter(\.isInfinite).count
        for bufferBytes in [8, 24, 100, 4096, CheckpointVerifier.defaultBufferBytes] {
            let report = try CheckpointVerifier(checkFinite: true, bufferBytes: bufferBytes).verify(path: path)
            #expect(report.nonFinite.map(\.nan) == [expectedNaN, expectedNaN], "buffer \(bufferBytes)")
            #expect(report.nonFinite.map(\.negativeInfinity) == [expectedInf, expectedInf], "buffer \(bufferBytes)")
            #expect(report.nonFinite.map(\.firstIndex) == [7, 7])
            #expect(report.bytesRead == 2002 + 8008 + 52)
        }
    }

    @Test("Fixtures verify cleanly, sharded and single-file")
    func fixtures() throws {
        for path in ["bf16/base", "f16/ft_a", "f32/base/model.safetensors", "expected/f32/tv_a.safetensors"] {
            let checkpoint = try Checkpoint(path: TestSupport.fixture(path))
            let report = try CheckpointVerifier(checkFinite: true).verify(checkpoint)
            #expect(report.passed, "\(path)")
            #expect(report.bytesRead == checkpoint.dataBytes)
            #expect(report.files.count == checkpoint.files.count)
            #expect(report.summary.hasSuffix("; \(checkpoint.entries.count) tensors, \(grouped(checkpoint.dataBytes)) bytes read"), "\(report.summary)")
        }
        let sharded = try CheckpointVerifier().verify(try Checkpoint(path: TestSupport.fixture("bf16/base")))
        #expect(sharded.layoutDescription == "sharded directory, 3 shards (model.safetensors.index.json)")
        #expect(try CheckpointVerifier().verify(try Checkpoint(path: TestSupport.fixture("f32/base/model.safetensors"))).layoutDescription == "single file")
    }

    @Test("A file truncated after it was opened fails with fileUnreadable naming it")
    func truncatedAfterOpen() throws {
        let dir = TestSupport.temporaryDirectory("verify")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        TestSupport.writeCheckpoint(path, [(TensorSpec(name: "w", dtype: .F32, shape: [1024]), [Double](repeating: 1, count: 1024))])
        let checkpoint = try Checkpoint(path: path)
        #expect(truncate(path, 2000) == 0)
        let error = try #require(throws: MergeKitError.self) { try CheckpointVerifier().verify(checkpoint) }
        #expect(error.code == .fileUnreadable && error.file == path && error.description.contains("truncated"))
    }

    @Test("merge-cli verify: exit 0 on a valid checkpoint, 1 naming the first non-finite tensor, JSON summary")
    func cli() throws {
        let dir = TestSupport.temporaryDirectory("verify-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ok = try CLI.run(["verify", "bf16/base"], in: TestSupport.fixture(""))
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("bf16/base: OK") && ok.stdout.contains("3 shards") && ok.stdout.contains("22 tensors"))

        let okJSON = try CLI.run(["verify", "--check-finite", "--json", "f16/base"], in: TestSupport.fixture(""))
        #expect(okJSON.status == 0)
        let summary = try JSONParser.parse(Array(okJSON.stdout.utf8))
        #expect(summary["valid"] == .bool(true) && summary["error"] == .null)
        #expect(summary["non_finite"]?["checked"] == .bool(true))
        #expect(summary["non_finite"]?["float_tensors_checked"]?.nonNegativeInt == 21)
        #expect(summary["tensor_count"]?.nonNegativeInt == 22)

        let path = dir + "/nonfinite.safetensors"
        Self.writeNonFinite(path)
        let plain = try CLI.run(["verify", path])
        #expect(plain.status == 0, "NaN is legal data unless --check-finite is given")

        let failed = try CLI.run(["verify", "--check-finite", path])
        #expect(failed.status == 1)
        #expect(failed.stderr.hasPrefix("error: \(path): tensor 'f16.weight': holds 2 NaN, 1 +Inf values"), "\(failed.stderr)")
        #expect(failed.stdout.contains("FAILED") && failed.stdout.contains("bf16.weight: 2 -Inf"))

        let failedJSON = try CLI.run(["verify", "--check-finite", "--json", path])
        #expect(failedJSON.status == 1)
        let report = try JSONParser.parse(Array(failedJSON.stdout.utf8))
        #expect(report["valid"] == .bool(false))
        #expect(report["error"]?["code"]?.stringValue == "nonFiniteValue")
        #expect(report["error"]?["tensor"]?.stringValue == "f16.weight")
        #expect(report["non_finite"]?["nan"]?.nonNegativeInt == 3)
        #expect(report["non_finite"]?["tensors"]?.arrayValue?.count == 4)

        let missing = try CLI.run(["verify", dir + "/absent"])
        #expect(missing.status == 1 && missing.stderr.contains(dir + "/absent"))
    }

    @Test("inspect --check-finite lists the tensors holding NaN/Inf and the totals, exit 0")
    func inspect() throws {
        let dir = TestSupport.temporaryDirectory("verify-inspect")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/nonfinite.safetensors"
        Self.writeNonFinite(path)
        let text = try CLI.run(["inspect", "--check-finite", path])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("non-finite values: 3 NaN, 2 +Inf, 3 -Inf in 4 of 5 float tensors"))
        #expect(text.stdout.contains("  f16.weight: 2 NaN, 1 +Inf (first at element 1)"))
        #expect(text.stdout.contains("  f64.weight: 1 +Inf, 1 -Inf (first at element 0)"))
        #expect(!text.stdout.contains("  clean.weight:"))

        let json = try CLI.run(["inspect", "--check-finite", "--json", path])
        #expect(json.status == 0)
        let report = try JSONParser.parse(Array(json.stdout.utf8))
        #expect(report["tensor_count"]?.nonNegativeInt == 6)
        let finite = try #require(report["non_finite"])
        #expect(finite["nan"]?.nonNegativeInt == 3 && finite["positive_infinity"]?.nonNegativeInt == 2
                && finite["negative_infinity"]?.nonNegativeInt == 3)
        let tensors = try #require(finite["tensors"]?.arrayValue)
        #expect(tensors.map { $0["name"]?.stringValue } == ["f16.weight", "bf16.weight", "f32.weight", "f64.weight"])

        let without = try CLI.run(["inspect", "--json", path])
        #expect(try JSONParser.parse(Array(without.stdout.utf8))["non_finite"] == nil, "counting is opt-in")
    }
}
