import Foundation
import FuzzSupport
import ZIPFoundation
@testable import MergeKit

/// Assembles pickles opcode by opcode (the pickle protocol's binary opcodes), as `torch.save`
/// writes them or as an attacker would.
struct PickleBuilder {
    private(set) var bytes: [UInt8]

    init(protocol version: UInt8 = 2) { bytes = [0x80, version] }

    mutating func op(_ codes: UInt8...) { bytes += codes }
    mutating func op(_ codes: [UInt8]) { bytes += codes }
    mutating func global(_ module: String, _ name: String) { bytes += [0x63] + Array("\(module)\n\(name)\n".utf8) }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        bytes += [0x58] + le32(UInt32(utf8.count)) + utf8
    }
    mutating func int(_ n: Int) {
        if n >= 0 && n < 256 { bytes += [0x4b, UInt8(n)] } else { bytes += [0x4a] + le32(UInt32(truncatingIfNeeded: n)) }
    }
    mutating func tuple(_ items: [Int]) {
        op(0x28)
        for item in items { int(item) }
        op(0x74)
    }
    mutating func mark() { op(0x28) }
    mutating func stop() { op(0x2e) }

    /// A tensor as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`
    /// rebuilds it, on the storage `key` of `numel` elements of `storageType`.
    mutating func tensor(key: String, storageType: String = "FloatStorage", numel: Int, offset: Int = 0, size: [Int], stride: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        mark()
        string("storage")
        global("torch", storageType)
        string(key)
        string("cpu")
        int(numel)
        op(0x74, 0x51)  // TUPLE, BINPERSID
        int(offset)
        tuple(size)
        tuple(stride)
        op(0x89)  // NEWFALSE
        global("collections", "OrderedDict")
        op(0x29, 0x52)  // EMPTY_TUPLE, REDUCE
        op(0x74, 0x52)  // TUPLE, REDUCE
    }

    /// A state dict pickle: an OrderedDict of `tensors`, each written by `body`.
    static func stateDict(_ tensors: [(name: String, body: (inout PickleBuilder) -> Void)]) -> [UInt8] {
        var p = PickleBuilder()
        p.global("collections", "OrderedDict")
        p.op(0x29, 0x52)
        p.mark()
        for (name, body) in tensors {
            p.string(name)
            body(&p)
        }
        p.op(0x75)  // SETITEMS
        p.stop()
        return p.bytes
    }

    private func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
}

/// The PyTorch part of the hostile corpus (`HostileCorpus.cases`): archives and pickles a reader
/// must refuse with a named error, never a crash, never by running anything.
enum PickleHostileCorpus {
    typealias Case = HostileCorpus.Case

    /// Four F32 values: the storage of a [2, 2] tensor.
    static let storage: [UInt8] = (0..<16).map { UInt8($0) }
    /// A valid state dict {"w": [2, 2] F32 on storage 0}.
    static let validPickle = PickleBuilder.stateDict([("w", { $0.tensor(key: "0", numel: 4, size: [2, 2], stride: [2, 1]) })])

    static func archive(_ pickle: [UInt8], storages: [(key: String, bytes: [UInt8])] = [("0", storage)], byteOrder: String = "little") -> [UInt8] {
        ZipBytes.torchArchive(pickle: pickle, storages: storages, byteOrder: byteOrder)
    }

    /// `pickle` made by `body` after PROTO 2.
    static func pickle(_ body: (inout PickleBuilder) -> Void) -> [UInt8] {
        var p = PickleBuilder()
        body(&p)
        return p.bytes
    }

    /// A raw-deflated `bytes` (ZIPFoundation's encoder).
    static func deflated(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        _ = try? Data.compress(size: Int64(bytes.count), bufferSize: 1 << 16, provider: { position, size in
            Data(bytes[Int(position)..<min(bytes.count, Int(position) + size)])
        }, consumer: { out += $0 })
        return out
    }

    static let cases: [Case] = [
        // Code in the pickle: refused by name before anything could run.
        Case("global-os-system.pt", .pickleForbidden, mentioning: "os.system", bytes: archive(pickle { p in
            p.global("os", "system"); p.string("echo pwned"); p.op(0x85, 0x52); p.stop()
        })),
        Case("global-builtins-eval.pt", .pickleForbidden, mentioning: "builtins.eval", bytes: archive(pickle { p in
            // STACK_GLOBAL (protocol 4), as a newer pickler would name it.
            p.string("builtins"); p.string("eval"); p.op(0x93); p.string("__import__('os')"); p.op(0x85, 0x52); p.stop()
        })),
        Case("global-torch-load.pt", .pickleForbidden, mentioning: "torch.load", bytes: archive(pickle { p in
            p.global("torch", "load"); p.string("/etc/passwd"); p.op(0x85, 0x52); p.stop()
        })),
        Case("reduce-on-dtype.pt", .pickleForbidden, mentioning: "calls torch.float32", bytes: archive(pickle { p in
            p.global("torch", "float32"); p.op(0x29, 0x52); p.stop()
        })),
        Case("reduce-on-dict.pt", .pickleForbidden, mentioning: "calls a dict", bytes: archive(pickle { p in
            p.op(0x7d, 0x29, 0x52); p.stop()
        })),
        Case("rebuild-tensor-on-string.pt", .pickleForbidden, mentioning: "not a storage", bytes: archive(pickle { p in
            p.global("torch._utils", "_rebuild_tensor_v2"); p.mark(); p.string("storage"); p.int(0); p.tuple([2]); p.tuple([1])
            p.op(0x89, 0x7d, 0x74, 0x52); p.stop()
        })),
        Case("newobj.pt", .pickleForbidden, mentioning: "instance", bytes: archive(pickle { p in
            p.global("collections", "OrderedDict"); p.op(0x29, 0x81); p.stop()
        })),
        Case("extension-registry.pt", .pickleForbidden, mentioning: "extension registry", bytes: archive(pickle { p in
            p.op(0x82, 0x01); p.stop()
        })),
        Case("persistent-id-not-storage.pt", .pickleForbidden, mentioning: "persistent id", bytes: archive(pickle { p in
            p.string("/etc/passwd"); p.op(0x51); p.stop()
        })),
        // Malformed and oversized pickles.
        Case("memo-huge-index.pt", .pickleTooLarge, mentioning: "memo entry 4294967295", bytes: archive(pickle { p in
            p.op(0x7d, 0x72, 0xff, 0xff, 0xff, 0xff); p.stop()
        })),
        Case("memo-never-stored.pt", .pickleInvalid, mentioning: "memo entry 7", bytes: archive(pickle { p in
            p.op(0x68, 0x07); p.stop()
        })),
        Case("deep-marks.pt", .pickleTooLarge, mentioning: "MARKs deeper", bytes: archive(pickle { p in
            for _ in 0..<5000 { p.mark() }
            p.stop()
        })),
        Case("deep-tuples.pt", .pickleTooLarge, mentioning: "nests containers", bytes: archive(pickle { p in
            p.op(0x29)
            for _ in 0..<5000 { p.op(0x85) }
            p.stop()
        })),
        Case("stack-underflow.pt", .pickleInvalid, mentioning: "REDUCE", bytes: archive(pickle { p in p.op(0x52); p.stop() })),
        Case("pickle-truncated.pt", .pickleInvalid, mentioning: "truncated", bytes: archive(Array(validPickle.prefix(validPickle.count / 2)))),
        Case("pickle-bad-opcode.pt", .pickleInvalid, mentioning: "0xff", bytes: archive(pickle { p in p.op(0xff) })),
        Case("pickle-string-past-end.pt", .pickleInvalid, mentioning: "remain", bytes: archive(pickle { p in
            p.op(0x58, 0xff, 0xff, 0xff, 0x7f); p.op(0x41)
        })),
        // Not a state dict.
        Case("not-a-state-dict.pt", .stateDictInvalid, mentioning: "a list", bytes: archive(pickle { p in p.op(0x5d); p.stop() })),
        Case("state-dict-non-tensor.pt", .stateDictInvalid, tensor: "epoch", bytes: archive(pickle { p in
            p.op(0x7d); p.string("epoch"); p.int(3); p.op(0x73); p.stop()
        })),
        // Storages.
        Case("storage-out-of-range.pt", .storageInvalid, tensor: "w", mentioning: "holds 4", bytes: archive(
            PickleBuilder.stateDict([("w", { $0.tensor(key: "0", numel: 4, offset: 2, size: [2, 2], stride: [2, 1]) })]))),
        Case("storage-stride-past-end.pt", .storageInvalid, tensor: "w", bytes: archive(
            PickleBuilder.stateDict([("w", { $0.tensor(key: "0", numel: 4, size: [2, 2], stride: [1, 4]) })]))),
        Case("storage-size-mismatch.pt", .storageInvalid, tensor: "w", mentioning: "32 bytes", bytes: archive(
            PickleBuilder.stateDict([("w", { $0.tensor(key: "0", numel: 8, size: [2, 2], stride: [2, 1]) })]))),
        Case("storage-missing-record.pt", .storageInvalid, tensor: "w", mentioning: "archive/data/9", bytes: archive(
            PickleBuilder.stateDict([("w", { $0.tensor(key: "9", numel: 4, size: [2, 2], stride: [2, 1]) })]))),
        Case("storage-huge-numel.pt", .pickleTooLarge, mentioning: "64-bit", bytes: archive(pickle { p in
            p.mark(); p.string("storage"); p.global("torch", "DoubleStorage"); p.string("0"); p.string("cpu")
            p.op(0x8a, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f)  // LONG1: 2^62 − 1 elements of 8 bytes
            p.op(0x74, 0x51); p.stop()
        })),
        Case("storage-compressed.pt", .storageInvalid, tensor: "w", mentioning: "compressed", bytes: ZipBytes.archive([
            ZipBytes.Entry("archive/data.pkl", validPickle),
            ZipBytes.Entry("archive/data/0", deflated(storage), method: 8, uncompressedSize: 16, crc32: ZipBytes.crc32(storage)),
        ])),
        // Archives.
        Case("zip-truncated.pt", .archiveInvalid, mentioning: "end-of-central-directory",
             bytes: Array(archive(validPickle).prefix(archive(validPickle).count - 40))),
        Case("zip-entry-past-directory.pt", .archiveInvalid, mentioning: "beyond the file", bytes: ZipBytes.archive([
            ZipBytes.Entry("archive/data.pkl", validPickle), ZipBytes.Entry("archive/data/0", storage, uncompressedSize: 1 << 20, compressedSize: 1 << 20),
        ])),
        Case("zip-overlapping-entries.pt", .archiveTooLarge, mentioning: "overlap", bytes: ZipBytes.archive([
            // data.pkl's declared size covers the storage's record too: two entries share bytes.
            ZipBytes.Entry("archive/data.pkl", validPickle, uncompressedSize: validPickle.count + 20, compressedSize: validPickle.count + 20),
            ZipBytes.Entry("archive/data/0", storage),
        ])),
        Case("zip-bomb-deflate.pt", .archiveTooLarge, mentioning: "zip bomb", bytes: ZipBytes.archive([
            // 16 MB of zeros deflate to about 16 KB; the entry declares 100 bytes.
            ZipBytes.Entry("archive/data.pkl", deflated([UInt8](repeating: 0, count: 16 << 20)), method: 8, uncompressedSize: 100, crc32: 0),
            ZipBytes.Entry("archive/data/0", storage),
        ])),
        Case("zip-many-entries.pt", .archiveInvalid, mentioning: "65535 entries", bytes: ZipBytes.archive(
            [ZipBytes.Entry("archive/data.pkl", validPickle), ZipBytes.Entry("archive/data/0", storage)], declaredEntries: 65535)),
        Case("zip-encrypted.pt", .archiveInvalid, mentioning: "encrypted", bytes: ZipBytes.archive([
            ZipBytes.Entry("archive/data.pkl", validPickle, flags: 1), ZipBytes.Entry("archive/data/0", storage),
        ])),
        Case("zip-no-pickle.pt", .archiveInvalid, mentioning: "data.pkl", bytes: ZipBytes.archive([ZipBytes.Entry("archive/data/0", storage)])),
        Case("zip-pickle-crc.pt", .archiveInvalid, mentioning: "CRC-32", bytes: ZipBytes.archive([
            ZipBytes.Entry("archive/data.pkl", deflated(validPickle), method: 8, uncompressedSize: validPickle.count, crc32: 12345),
            ZipBytes.Entry("archive/data/0", storage),
        ])),
        Case("zip-deflate-truncated.pt", .archiveInvalid, mentioning: "archive/data.pkl", bytes: ZipBytes.archive([
            ZipBytes.Entry("archive/data.pkl", Array(deflated(validPickle).prefix(40)), method: 8, uncompressedSize: validPickle.count,
                           crc32: ZipBytes.crc32(validPickle)),
            ZipBytes.Entry("archive/data/0", storage),
        ])),
        // A ZIP64 locator too near the start for its record (a subtraction that must not go negative).
        Case("zip64-locator-at-start.pt", .archiveInvalid, mentioning: "ZIP64", bytes:
            [0x50, 0x4b, 0x03, 0x04] + [0x50, 0x4b, 0x06, 0x07] + [UInt8](repeating: 0, count: 16)
            + [0x50, 0x4b, 0x05, 0x06] + [UInt8](repeating: 0, count: 18)),
        Case("big-endian.pt", .archiveInvalid, mentioning: "byte order", bytes: archive(validPickle, byteOrder: "big")),
        // Older formats.
        Case("legacy-format.pt", .legacyCheckpointFormat, mentioning: "torch.save(torch.load(",
             bytes: PyTorchArchive.legacyMagic + [0x2e]),
        Case("bare-pickle.pt", .legacyCheckpointFormat, mentioning: "bare pickle", bytes: validPickle),
    ]
}
