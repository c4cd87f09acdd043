import Foundation
import Testing
@testable import MergeKit

/// Headers with very many tensors: parsed member by member, reported piece by piece, with the
/// same results as building the whole JSON value.
@Suite("Large headers")
struct LargeHeaderTests {
    @Test("Member-by-member parsing hands on exactly the members, and fails exactly as the whole parse does")
    func streamingParse() throws {
        let texts = [
            #"{"a": 1, "b": {"c": [1, 2, {"d": null}]}, "__metadata__": {"x": "y"}}"#,
            #"  {}  "#, #"[1, 2]"#, #""text""#, #"3"#, #"null"#,
            #"{"a": 1, "a": 2}"#, #"{"a": {"b": 1, "b": 2}}"#, #"{"a": 1,}"#, #"{"a": 1} x"#, #"{"a": "\ud800"}"#,
            #"{"a": 1"#, #"{"a" 1}"#, "",
        ]
        for text in texts {
            let bytes = Array(text.utf8)
            let whole = Result { () throws(JSONError) in try JSONParser.parse(bytes) }
            var members: [JSONMember] = []
            let streamed = bytes.withUnsafeBytes { raw in
                Result { () throws(JSONError) in try JSONParser.parse(raw) { members.append(JSONMember($0, $1)) } }
            }
            switch (whole, streamed) {
            case (.success(.object(let expected)), .success(nil)):
                #expect(members == expected, "\(text)")
            case (.success(let expected), .success(let value?)):
                #expect(value == expected, "\(text)")
                #expect(members.isEmpty)
            case (.failure(let expected), .failure(let error)):
                #expect(error == expected, "\(text)")
            default:
                Issue.record("\(text): \(whole) but streamed \(streamed)")
            }
        }
    }

    @Test("UTF-8 validation without a copy agrees with the standard library")
    func utf8() {
        var random = SplitMix64(seed: 11)
        let samples: [[UInt8]] = [[], Array("plain ascii header text".utf8), Array("ünïcödé ✓ 𝄞".utf8),
                                  [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], Array(repeating: 0x41, count: 37) + [0xFF]]
        var cases = samples
        for _ in 0..<2000 {
            let count = random.next(in: 0...24)
            cases.append((0..<count).map { _ in random.next() % 3 == 0 ? UInt8(truncatingIfNeeded: random.next()) : UInt8(random.next(in: 0x20...0x7E)) })
        }
        for bytes in cases {
            let expected = String(validating: bytes, as: UTF8.self) != nil
            #expect(bytes.withUnsafeBytes { JSONParser.isValidUTF8($0) } == expected, "\(bytes)")
        }
    }

    @Test("Output headers serialised member by member are the JSON of the whole object")
    func layout() throws {
        let specs = [TensorSpec(name: "a\"quoted\\name", dtype: .F32, shape: [2, 3]), TensorSpec(name: "b", dtype: .BF16, shape: []),
                     TensorSpec(name: "c", dtype: .I64, shape: [0])]
        for metadata in [nil, ["format": "pt", "k\n": "v\u{1}"]] as [[String: String]?] {
            let layout = SafeTensorsLayout(specs: specs, metadata: metadata)
            var members: [JSONMember] = []
            if let metadata { members.append(JSONMember("__metadata__", .object(metadata.keys.sorted().map { JSONMember($0, .string(metadata[$0]!)) }))) }
            for (spec, info) in zip(specs, layout.tensors) {
                members.append(JSONMember(spec.name, .object([JSONMember("dtype", .string(spec.dtype.rawValue)),
                                                             JSONMember("shape", .array(spec.shape.map { .int($0) })),
                                                             JSONMember("data_offsets", .array([.int(info.begin), .int(info.end)]))])))
            }
            var json = Array(JSONValue.object(members).serialized().utf8)
            while json.count % 8 != 0 { json.append(0x20) }
            var expected: [UInt8] = []
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { expected.append(contentsOf: $0) }
            #expect(layout.prefix == expected + json)
            let header = try layout.prefix.withUnsafeBytes { raw in
                try SafeTensorsHeader.parse(headerBytes: UnsafeRawBufferPointer(rebasing: raw[8...]), headerSize: raw.count - 8,
                                            dataSize: layout.dataSize, file: "x")
            }
            #expect(header.tensors.map(\.name) == specs.map(\.name) && header.metadata == metadata)
        }
        let empty = SafeTensorsLayout(specs: [], metadata: nil)
        #expect(Array(empty.prefix[8...]) == Array("{}      ".utf8))
    }

    @Test("inspect's streamed reports are the whole reports, text and JSON")
    func streamedReports() throws {
        for path in ["bf16/base", "expected/f32/tv_a.safetensors"] {
            let summary = CheckpointSummary(try Checkpoint(path: TestSupport.fixture(path)))
            var text: [String] = []
            summary.writeText { text.append($0) }
            #expect(text.joined(separator: "\n") == summary.text)
            for extra in [[], [JSONMember("non_finite", .object([JSONMember("nan", .int(0))]))]] {
                var json = ""
                summary.writeJSON(adding: extra) { json += $0 }
                guard case .object(let members) = summary.json else { Issue.record("not an object"); continue }
                #expect(json == JSONValue.object(members + extra).serialized(indent: 2) + "\n")
            }
        }
        // No tensors at all.
        let root = TestSupport.temporaryDirectory("large-header")
        defer { try? FileManager.default.removeItem(atPath: root) }
        TestSupport.writeCheckpoint(root + "/empty.safetensors", [])
        let empty = CheckpointSummary(try Checkpoint(path: root + "/empty.safetensors"))
        var json = ""
        empty.writeJSON { json += $0 }
        #expect(json == empty.json.serialized(indent: 2) + "\n")
    }

    @Test("A 200,000-tensor checkpoint is inspected and verified without the whole header as JSON",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/time"), "needs GNU time to measure a child's peak memory"))
    func manyTensors() throws {
        let root = TestSupport.temporaryDirectory("large-header")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let count = 200_000
        let path = root + "/model.safetensors"
        let layout = SafeTensorsLayout(specs: (0..<count).map { TensorSpec(name: "model.layers.\($0).weight", dtype: .F32, shape: [1]) },
                                       metadata: ["format": "pt"])
        try Data(layout.prefix + [UInt8](repeating: 0, count: layout.dataSize)).write(to: URL(fileURLWithPath: path))
        let report = try CLI.runWatched(["inspect", "--json", path])
        #expect(report.status == 0, "\(report.stderr)")
        let json = try JSONParser.parse(Array(report.stdout.utf8))
        #expect(json["tensor_count"]?.nonNegativeInt == count)
        #expect(json["tensors"]?.arrayValue?.last?["name"]?.stringValue == "model.layers.\(count - 1).weight")
        // Measured before (the header as a JSON tree, the report as one value): 287 MB for
        // inspect --json, 245 MB for verify; after: 91 and 80 MB (release), 97 and 91 MB (debug).
        for arguments in [["inspect", "--json"], ["verify"]] {
            let peak = try #require(try Self.peakMB(arguments + [path]))
            #expect(peak < 170, "\(arguments[0]): peak \(peak) MB")
        }
    }

    /// Peak resident memory of `merge-cli ARGUMENTS` in MB, as GNU time reports its child's
    /// (inspect and verify do not report their own).
    static func peakMB(_ arguments: [String]) throws -> Double? {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("mergekit-rss-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/time")
        process.arguments = ["-f", "%M", "-o", out, CLI.executable] + arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let text = try String(contentsOfFile: out, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return Double(text.split(separator: "\n").last ?? "").map { $0 / 1000 }
    }
}
