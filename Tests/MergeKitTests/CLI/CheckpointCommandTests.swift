import Foundation
import Testing
@testable import MergeKit

/// What merge-cli verify and inspect --check-finite add to `CheckpointVerifier`'s report (tested
/// in Faults/VerifyTests): the verdict, exit statuses and the JSON documents.
@Suite("merge-cli verify and inspect --check-finite")
struct CheckpointCommandTests {
    @Test("merge-cli verify: exit 0 on a valid checkpoint, 1 naming the first non-finite tensor, JSON summary")
    func verify() throws {
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

        // (Without --check-finite NaN is legal data: `CheckpointVerifier()` passes it, VerifyTests.counts.)
        let path = dir + "/nonfinite.safetensors"
        VerifyTests.writeNonFinite(path)
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

    @Test("inspect --check-finite adds the counts to the JSON report, exit 0; without it there are none")
    func inspect() throws {
        let dir = TestSupport.temporaryDirectory("verify-inspect")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/nonfinite.safetensors"
        VerifyTests.writeNonFinite(path)
        // (The text lines are the report's `nonFiniteText`: VerifyTests.reportOutput.)
        let json = try CLI.run(["inspect", "--check-finite", "--json", path])
        #expect(json.status == 0, "\(json.stderr)")
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
