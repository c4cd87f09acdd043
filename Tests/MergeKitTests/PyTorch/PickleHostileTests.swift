import Foundation
import FuzzSupport
import Testing
@testable import MergeKit

/// The PyTorch half of the hostile corpus (`PickleHostileCorpus`, replayed with the rest by
/// `HostileCorpusTests`), the unpickler's edge cases, and the command line on hostile files.
@Suite("Hostile PyTorch checkpoints")
struct PickleHostileTests {
    @Test("The corpus has a case for every PyTorch failure the issue lists")
    func coverage() {
        let codes = Set(PickleHostileCorpus.cases.map(\.code))
        let required: [MergeKitError.Code] = [.legacyCheckpointFormat, .archiveInvalid, .archiveTooLarge, .pickleInvalid,
                                              .pickleForbidden, .pickleTooLarge, .stateDictInvalid, .storageInvalid]
        for code in required { #expect(codes.contains(code), "no corpus file for \(code)") }
        let names = Set(PickleHostileCorpus.cases.map(\.name))
        for name in ["global-os-system.pt", "global-builtins-eval.pt", "reduce-on-dict.pt", "memo-huge-index.pt", "deep-tuples.pt",
                     "deep-marks.pt", "storage-out-of-range.pt", "zip-truncated.pt", "zip-bomb-deflate.pt", "zip-overlapping-entries.pt",
                     "legacy-format.pt"] {
            #expect(names.contains(name), "\(name)")
        }
    }

    static func open(_ bytes: [UInt8]) -> Result<PyTorchArchive, MergeKitError> {
        bytes.withUnsafeBytes { raw in Result { () throws(MergeKitError) in try PyTorchArchive.parse(fileBytes: raw, file: "x.pt") } }
    }

    @Test("The corpus's well-formed base archive is accepted (each case breaks one thing)")
    func baseArchiveIsValid() throws {
        let archive = try Self.open(PickleHostileCorpus.archive(PickleHostileCorpus.validPickle)).get()
        #expect(archive.tensors.map(\.name) == ["w"] && archive.tensors[0].shape == [2, 2] && archive.tensors[0].isContiguous)
    }

    @Test("A key set twice keeps its last value (Python's dict), and memo entries may be overwritten")
    func dictionarySemantics() throws {
        var p = PickleBuilder()
        p.op(0x7d, 0x71, 0x00)  // EMPTY_DICT, BINPUT 0
        p.string("w")
        p.tensor(key: "0", numel: 4, size: [4], stride: [1])
        p.op(0x73)  // SETITEM
        p.string("w")
        p.tensor(key: "0", numel: 4, offset: 1, size: [3], stride: [1])
        p.op(0x73, 0x71, 0x00)  // SETITEM, BINPUT 0 again (overwrites)
        p.stop()
        let archive = try Self.open(PickleHostileCorpus.archive(p.bytes)).get()
        #expect(archive.tensors.count == 1 && archive.tensors[0].shape == [3] && archive.tensors[0].storageOffset == 1)
    }

    @Test("Integers of every encoding: LONG1 negatives, LONG4, BININT's sign, text INT; a 9-byte integer is no size")
    func integers() throws {
        func size(_ encode: (inout PickleBuilder) -> Void) -> Result<PyTorchArchive, MergeKitError> {
            var p = PickleBuilder()
            p.op(0x7d); p.string("w")
            p.global("torch._utils", "_rebuild_tensor_v2")
            p.mark(); p.mark(); p.string("storage"); p.global("torch", "FloatStorage"); p.string("0"); p.string("cpu"); p.int(4)
            p.op(0x74, 0x51); p.int(0)
            p.mark(); encode(&p); p.op(0x74)  // the size, one dimension
            p.tuple([1]); p.op(0x89, 0x7d, 0x74, 0x52, 0x73); p.stop()
            return Self.open(PickleHostileCorpus.archive(p.bytes))
        }
        #expect(try size { $0.op(0x8a, 0x01, 0x03) }.get().tensors[0].shape == [3])  // LONG1 3
        #expect(try size { $0.op(0x8b, 0x02, 0, 0, 0, 0x04, 0x00) }.get().tensors[0].shape == [4])  // LONG4 4
        #expect(try size { $0.op(0x49); $0.op(Array("2\n".utf8)) }.get().tensors[0].shape == [2])  // INT "2"
        #expect((try? size { $0.op(0x8a, 0x01, 0xff) }.get()) == nil)  // LONG1 −1: not a size
        #expect((try? size { $0.op(0x4a, 0xff, 0xff, 0xff, 0xff) }.get()) == nil)  // BININT −1
        #expect((try? size { $0.op(0x8a, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 1) }.get()) == nil)  // 2^64 + 1
    }

    @Test("A tensor whose view reaches exactly the storage's last element is accepted; one more is refused")
    func viewBounds() throws {
        let exact = PickleBuilder.stateDict([("w", { $0.tensor(key: "0", numel: 4, offset: 1, size: [3], stride: [1]) })])
        #expect(try Self.open(PickleHostileCorpus.archive(exact)).get().tensors[0].byteRange?.count == 12)
        let over = PickleBuilder.stateDict([("w", { $0.tensor(key: "0", numel: 4, offset: 2, size: [3], stride: [1]) })])
        guard case .failure(let error) = Self.open(PickleHostileCorpus.archive(over)) else { Issue.record("accepted"); return }
        #expect(error.code == .storageInvalid && error.tensor == "w")
        // An expanded (stride 0) view of one element reads that element again and again.
        let expanded = PickleBuilder.stateDict([("w", { $0.tensor(key: "0", numel: 4, offset: 3, size: [1000], stride: [0]) })])
        #expect(try Self.open(PickleHostileCorpus.archive(expanded)).get().tensors[0].isContiguous == false)
    }

    @Test("A sharded directory with a hostile shard names the shard")
    func hostileShard() throws {
        let dir = TestSupport.temporaryDirectory("hostile-shard")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: TestSupport.fixture("pytorch/sharded"), toPath: dir + "/model")
        let shard = dir + "/model/pytorch_model-00002-of-00002.bin"
        try FileManager.default.removeItem(atPath: shard)
        let hostile = try #require(PickleHostileCorpus.cases.first { $0.name == "global-os-system.pt" })
        try hostile.make(shard)
        let error = try #require(throws: MergeKitError.self) { try Checkpoint(path: dir + "/model") }
        #expect(error.code == .pickleForbidden && error.file == shard && error.description.contains("os.system"))
    }

    @Test("merge-cli inspect, verify, convert and a merge exit 1 on a hostile pickle, naming the file and the global; --json reports the code")
    func commandLine() throws {
        let dir = TestSupport.temporaryDirectory("hostile-pickle-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let hostile = try #require(PickleHostileCorpus.cases.first { $0.name == "global-os-system.pt" })
        let path = dir + "/" + hostile.name
        try hostile.make(path)
        for arguments in [["inspect", path], ["verify", path], ["convert", path, "-o", dir + "/out.safetensors"],
                          ["ties", "--base", path, "--model", path, "--model", path, "-o", dir + "/out.safetensors"]] {
            let result = try CLI.run(arguments)
            #expect(result.status == 1, "\(arguments[0]): \(result.stderr)")
            #expect(result.stderr.hasPrefix("error: " + path) && result.stderr.contains("os.system"), "\(arguments[0]): \(result.stderr)")
        }
        let json = try CLI.run(["convert", "--json", path, "-o", dir + "/out.safetensors"])
        let document = try JSONParser.parse(Array(json.stdout.utf8))
        #expect(json.status == 1 && document["error"]?["code"]?.stringValue == "pickleForbidden")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.safetensors"))
    }
}
