import Foundation
import Testing
@testable import MergeKit

/// Every malformed file of the corpus is rejected when opened from disk, with its specific error
/// code, a message naming the file (and the tensor), and without crashing, also by verification;
/// `merge-cli verify`, `inspect` and a merge reject them with exit status 1 and the file named on stderr.
@Suite("Hostile files")
struct HostileCorpusTests {
    @Test("The corpus covers every failure the issue lists, once each")
    func coverage() {
        #expect(HostileCorpus.cases.count >= 20)
        #expect(Set(HostileCorpus.cases.map(\.name)).count == HostileCorpus.cases.count)
        let codes = Set(HostileCorpus.cases.map(\.code))
        let required: [MergeKitError.Code] = [
            .headerPastEndOfFile, .headerTooLarge, .headerNotUTF8, .headerInvalidJSON, .headerNotObject,
            .metadataInvalid, .unknownDType, .invalidShape, .elementCountOverflow, .offsetsOverlap, .offsetsGap,
            .offsetsReversed, .dataPastEndOfFile, .trailingBytes, .byteSizeMismatch, .duplicateTensor,
            .shardMissing, .tensorInTwoShards, .tensorMissingFromShard,
        ]
        for code in required { #expect(codes.contains(code), "no corpus file for \(code)") }
    }

    @Test("Opening each corpus file fails with its code, naming the file and the tensor",
          arguments: HostileCorpus.cases.map(\.name))
    func rejected(name: String) throws {
        let c = try #require(HostileCorpus.cases.first { $0.name == name })
        let dir = TestSupport.temporaryDirectory("hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + c.name
        try c.make(path)
        let error = try #require(throws: MergeKitError.self) { try Checkpoint(path: path) }
        let file = c.expectedFile(at: path)
        #expect(error.code == c.code, "\(error)")
        #expect(error.file == file, "\(error)")
        #expect(error.description.contains(file), "\(error)")
        #expect(error.fix != nil, "every rejection says what to do: \(error)")
        if let tensor = c.tensor {
            #expect(error.tensor == tensor, "\(error)")
            #expect(error.description.contains("tensor '\(tensor)'"), "\(error)")
        }
        if let extra = c.mentioning {
            #expect(error.description.contains(extra), "\(error)")
        }
    }

    @Test("A file whose entries are listed out of data order, but chain from byte 0, is accepted")
    func outOfKeyOrderAccepted() throws {
        let dir = TestSupport.temporaryDirectory("hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/reordered.safetensors"
        let header = #"""
        {"c": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
         "__metadata__": {"format": "pt"},
         "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
        """#
        try Data(HostileCorpus.file(header, dataCount: 12)).write(to: URL(fileURLWithPath: path))
        let checkpoint = try Checkpoint(path: path)
        #expect(checkpoint.tensorNames == ["a", "b", "c"])
        #expect(checkpoint.metadata == ["format": "pt"])
    }

    @Test("Verification rejects every corpus file naming it (and the tensor); merge-cli verify, inspect and a merge exit 1 naming it")
    func verifierRejectsCorpus() throws {
        let dir = TestSupport.temporaryDirectory("hostile-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let written = try HostileCorpus.write(into: dir)
        for (c, path) in written {
            // What merge-cli verify runs.
            let error = try #require(throws: MergeKitError.self, "\(c.name)") { try CheckpointVerifier().verify(path: path) }
            #expect(error.code == c.code && error.description.hasPrefix(c.expectedFile(at: path)), "\(c.name): \(error)")
            if let tensor = c.tensor { #expect(error.description.contains("'\(tensor)'"), "\(c.name): \(error)") }
        }
        // The command line (a sample: one header case, one index case): exit 1, "error: " and the file.
        for name in ["offsets-out-of-order.safetensors", "index-missing-shard"] {
            let (c, path) = try #require(written.first { $0.0.name == name })
            let verify = try CLI.run(["verify", path])
            #expect(verify.status == 1 && verify.stderr.hasPrefix("error: " + c.expectedFile(at: path)), "\(c.name): \(verify.stderr)")
            if let tensor = c.tensor { #expect(verify.stderr.contains("'\(tensor)'"), "\(c.name): \(verify.stderr)") }
            let inspect = try CLI.run(["inspect", path])
            #expect(inspect.status == 1 && inspect.stderr.contains(c.expectedFile(at: path)), "\(inspect.stderr)")
            let merge = try CLI.run(["task-arithmetic", "--base", path, "--model", path, "-o", dir + "/out.safetensors"])
            #expect(merge.status == 1 && merge.stderr.contains(c.expectedFile(at: path)), "\(merge.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.safetensors"))
        #expect(TestSupport.listing(dir).allSatisfy { !$0.contains("mergekit-tmp") })
    }

    @Test("verify --json reports the error code, file and tensor")
    func verifyJSONOnHostileFile() throws {
        let dir = TestSupport.temporaryDirectory("hostile-json")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try #require(HostileCorpus.cases.first { $0.name == "byte-size-mismatch.safetensors" })
        let path = dir + "/" + c.name
        try c.make(path)
        let result = try CLI.run(["verify", "--json", path])
        #expect(result.status == 1)
        let json = try JSONParser.parse(Array(result.stdout.utf8))
        #expect(json["valid"] == .bool(false))
        #expect(json["error"]?["code"]?.stringValue == "byteSizeMismatch")
        #expect(json["error"]?["file"]?.stringValue == path)
        #expect(json["error"]?["tensor"]?.stringValue == "a")
    }
}
