import Foundation
import Testing
@testable import MergeKit

/// `CheckpointVerifier` (merge-cli verify and inspect --check-finite: CLI/CheckpointCommandTests).
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

    @Test("The report's text and JSON: totals, each tensor with NaN/Inf and where it starts, the first as an error")
    func reportOutput() throws {
        let dir = TestSupport.temporaryDirectory("verify-report")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A clean checkpoint: every float tensor checked, nothing found.
        let ok = try CheckpointVerifier(checkFinite: true).verify(path: TestSupport.fixture("f16/base"))
        #expect(ok.passed && ok.nonFiniteError == nil && ok.tensorCount == 22)
        #expect(ok.nonFiniteJSON["checked"] == .bool(true) && ok.nonFiniteJSON["float_tensors_checked"]?.nonNegativeInt == 21)
        let sharded = try CheckpointVerifier().verify(path: TestSupport.fixture("bf16/base"))
        #expect(sharded.summary.contains("3 shards") && sharded.summary.contains("22 tensors"), "\(sharded.summary)")

        let path = dir + "/nonfinite.safetensors"
        Self.writeNonFinite(path)
        let report = try CheckpointVerifier(checkFinite: true).verify(path: path)
        let error = try #require(report.nonFiniteError)
        #expect(error.description.hasPrefix("\(path): tensor 'f16.weight': holds 2 NaN, 1 +Inf values"), "\(error)")
        let text = report.nonFiniteText.joined(separator: "\n")
        #expect(text.contains("non-finite values: 3 NaN, 2 +Inf, 3 -Inf in 4 of 5 float tensors"), "\(text)")
        #expect(text.contains("  f16.weight: 2 NaN, 1 +Inf (first at element 1)") && text.contains("  f64.weight: 1 +Inf, 1 -Inf (first at element 0)"))
        #expect(text.contains("bf16.weight: 2 -Inf") && !text.contains("  clean.weight:"), "\(text)")
        let finite = report.nonFiniteJSON
        #expect(finite["nan"]?.nonNegativeInt == 3 && finite["positive_infinity"]?.nonNegativeInt == 2
                && finite["negative_infinity"]?.nonNegativeInt == 3)
        let tensors = try #require(finite["tensors"]?.arrayValue)
        #expect(tensors.map { $0["name"]?.stringValue } == ["f16.weight", "bf16.weight", "f32.weight", "f64.weight"])
        // The summary's JSON with the counts added, as inspect --check-finite --json writes it.
        var json = ""
        CheckpointSummary(try Checkpoint(path: path)).writeJSON(adding: [JSONMember("non_finite", finite)]) { json += $0 }
        let summary = try JSONParser.parse(Array(json.utf8))
        #expect(summary["tensor_count"]?.nonNegativeInt == 6 && summary["non_finite"] == finite)
    }
}
