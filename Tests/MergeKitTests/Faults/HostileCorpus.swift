import Foundation
@testable import MergeKit

/// A corpus of malformed checkpoints, one per failure the reader must name, generated on disk by
/// `write(into:)`. Single files exercise the header checks through the real open path (open,
/// fstat, mmap, parse); directories exercise the index/shard consistency checks.
enum HostileCorpus {
    struct Case: Sendable {
        /// File (or directory) name inside the corpus directory.
        let name: String
        let code: MergeKitError.Code
        /// The tensor the error must name, if any.
        let tensor: String?
        /// The file the error must name, relative to the case's path ("" = the case itself).
        let reportedFile: String
        /// Text the message must contain besides the file and tensor.
        let mentioning: String?
        let make: @Sendable (String) throws -> Void

        init(_ name: String, _ code: MergeKitError.Code, tensor: String? = nil, reportedFile: String = "",
             mentioning: String? = nil, bytes: [UInt8]) {
            self.name = name
            self.code = code
            self.tensor = tensor
            self.reportedFile = reportedFile
            self.mentioning = mentioning
            make = { path in try Data(bytes).write(to: URL(fileURLWithPath: path)) }
        }

        init(directory name: String, _ code: MergeKitError.Code, tensor: String? = nil, reportedFile: String,
             mentioning: String? = nil, make: @escaping @Sendable (String) throws -> Void) {
            self.name = name
            self.code = code
            self.tensor = tensor
            self.reportedFile = reportedFile
            self.mentioning = mentioning
            self.make = { path in
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                try make(path)
            }
        }

        /// The path the error must name, for a case written at `path`.
        func expectedFile(at path: String) -> String {
            reportedFile.isEmpty ? path : path + "/" + reportedFile
        }
    }

    /// The 8-byte little-endian length `declared` (default: the real one), the header, then `data`.
    static func file(_ header: [UInt8], declared: UInt64? = nil, data: [UInt8] = []) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: (declared ?? UInt64(header.count)).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes + header + data
    }

    static func file(_ header: String, dataCount: Int = 0) -> [UInt8] {
        file(Array(header.utf8), data: (0..<dataCount).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 3) })
    }

    private static let shard1 = "model-00001-of-00002.safetensors"
    private static let shard2 = "model-00002-of-00002.safetensors"

    /// A shard holding F32 tensors of shape [2] with these names.
    private static func writeShard(_ path: String, _ tensors: [String]) throws {
        let layout = SafeTensorsLayout(specs: tensors.map { TensorSpec(name: $0, dtype: .F32, shape: [2]) }, metadata: ["format": "pt"])
        try Data(layout.prefix + [UInt8](repeating: 0, count: layout.dataSize)).write(to: URL(fileURLWithPath: path))
    }

    private static func writeIndex(_ path: String, _ weightMap: String) throws {
        let text = #"{"metadata": {"total_size": 16}, "weight_map": {\#(weightMap)}}"#
        try Data(text.utf8).write(to: URL(fileURLWithPath: path + "/" + Checkpoint.indexFileName))
    }

    /// Every case: the safetensors ones, then PyTorch's (`PickleHostileCorpus`).
    static let cases: [Case] = safetensorsCases + PickleHostileCorpus.cases

    static let safetensorsCases: [Case] = [
        // Length prefix and header framing
        Case("empty-file.safetensors", .fileTooSmall, mentioning: "0 bytes", bytes: []),
        Case("shorter-than-prefix.safetensors", .fileTooSmall, bytes: [0x02, 0, 0, 0]),
        Case("header-length-past-eof.safetensors", .headerPastEndOfFile,
             bytes: file(Array(#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#.utf8), declared: 4096)),
        Case("header-over-100mb.safetensors", .headerTooLarge, mentioning: "100000001",
             bytes: file(Array("{}".utf8), declared: 100_000_001)),
        Case("header-length-u64-max.safetensors", .headerTooLarge, bytes: file(Array("{}".utf8), declared: UInt64.max)),
        Case("header-not-utf8.safetensors", .headerNotUTF8,
             bytes: file(Array(#"{"w"#.utf8) + [0xC3, 0x28] + Array(#"": {}}"#.utf8))),
        Case("header-invalid-json.safetensors", .headerInvalidJSON,
             bytes: file(#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}"#, dataCount: 4)),
        Case("header-nul-byte.safetensors", .headerInvalidJSON, bytes: file(Array("{}".utf8) + [0])),
        Case("header-too-deep.safetensors", .headerInvalidJSON, mentioning: "nesting",
             bytes: file(String(repeating: "[", count: 200) + String(repeating: "]", count: 200))),
        Case("header-not-object.safetensors", .headerNotObject, mentioning: "an array", bytes: file(#"[{"w": 1}]"#)),
        Case("header-string.safetensors", .headerNotObject, bytes: file(#""safetensors""#)),
        // __metadata__
        Case("metadata-non-string.safetensors", .metadataInvalid, mentioning: "\"epoch\"",
             bytes: file(#"{"__metadata__": {"format": "pt", "epoch": 3}}"#)),
        Case("metadata-nested.safetensors", .metadataInvalid, bytes: file(#"{"__metadata__": {"format": {"pt": "1"}}}"#)),
        // Entries
        Case("entry-not-object.safetensors", .tensorEntryInvalid, tensor: "w", bytes: file(#"{"w": "F32"}"#)),
        Case("unknown-dtype.safetensors", .unknownDType, tensor: "w", mentioning: "Q8_0",
             bytes: file(#"{"w": {"dtype": "Q8_0", "shape": [4], "data_offsets": [0, 4]}}"#, dataCount: 4)),
        Case("dtype-lowercase.safetensors", .unknownDType, tensor: "w", mentioning: "f32",
             bytes: file(#"{"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}}"#, dataCount: 4)),
        Case("shape-negative.safetensors", .invalidShape, tensor: "w", mentioning: "-4",
             bytes: file(#"{"w": {"dtype": "U8", "shape": [-4], "data_offsets": [0, 4]}}"#, dataCount: 4)),
        Case("shape-huge.safetensors", .invalidShape, tensor: "w", mentioning: "99999999999999999999",
             bytes: file(#"{"w": {"dtype": "U8", "shape": [99999999999999999999], "data_offsets": [0, 4]}}"#, dataCount: 4)),
        Case("shape-float.safetensors", .invalidShape, tensor: "w", mentioning: "1.5",
             bytes: file(#"{"w": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 2]}}"#, dataCount: 2)),
        Case("shape-integral-float.safetensors", .invalidShape, tensor: "w", mentioning: "4.0",
             bytes: file(#"{"w": {"dtype": "U8", "shape": [4.0], "data_offsets": [0, 4]}}"#, dataCount: 4)),
        Case("shape-exponent.safetensors", .invalidShape, tensor: "w", mentioning: "4e0",
             bytes: file(#"{"w": {"dtype": "U8", "shape": [4e0], "data_offsets": [0, 4]}}"#, dataCount: 4)),
        Case("shape-string.safetensors", .invalidShape, tensor: "w",
             bytes: file(#"{"w": {"dtype": "U8", "shape": ["4"], "data_offsets": [0, 4]}}"#, dataCount: 4)),
        Case("element-count-overflow.safetensors", .elementCountOverflow, tensor: "w",
             bytes: file(#"{"w": {"dtype": "F16", "shape": [65536, 65536, 65536, 65536], "data_offsets": [0, 2]}}"#, dataCount: 2)),
        Case("byte-count-overflow.safetensors", .elementCountOverflow, tensor: "w",
             bytes: file(#"{"w": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 8]}}"#, dataCount: 8)),
        // Offsets
        Case("offsets-not-a-pair.safetensors", .invalidOffsets, tensor: "w",
             bytes: file(#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}"#, dataCount: 4)),
        // Listed out of data order (legal), but in data order the first tensor starts at 4, not 0:
        // the offsets do not chain from the start of the data buffer.
        Case("offsets-out-of-order.safetensors", .offsetsGap, tensor: "b", mentioning: "[4, 8]",
             bytes: file(#"""
             {"c": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
              "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
             """#, dataCount: 12)),
        // Listed out of order, and in data order the second tensor starts inside the first.
        Case("offsets-out-of-order-interleaved.safetensors", .offsetsOverlap, tensor: "z",
             bytes: file(#"""
             {"z": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
              "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
             """#, dataCount: 12)),
        Case("offsets-overlap.safetensors", .offsetsOverlap, tensor: "b",
             bytes: file(#"""
             {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
              "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}
             """#, dataCount: 6)),
        Case("offsets-same-range.safetensors", .offsetsOverlap, tensor: "b",
             bytes: file(#"""
             {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
              "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}
             """#, dataCount: 4)),
        Case("offsets-gap.safetensors", .offsetsGap, tensor: "b",
             bytes: file(#"""
             {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
              "b": {"dtype": "U8", "shape": [4], "data_offsets": [5, 9]}}
             """#, dataCount: 9)),
        Case("offsets-end-before-begin.safetensors", .offsetsReversed, tensor: "w",
             bytes: file(#"{"w": {"dtype": "U8", "shape": [0], "data_offsets": [8, 4]}}"#, dataCount: 8)),
        Case("data-past-eof.safetensors", .dataPastEndOfFile, tensor: "b", mentioning: "truncated",
             bytes: file(#"""
             {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [4, 20]}}
             """#, dataCount: 12)),
        Case("trailing-bytes.safetensors", .trailingBytes, mentioning: "3 bytes",
             bytes: file(#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, dataCount: 7)),
        Case("byte-size-mismatch.safetensors", .byteSizeMismatch, tensor: "a", mentioning: "24",
             bytes: file(#"{"a": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, 48]}}"#, dataCount: 48)),
        Case("duplicate-name.safetensors", .duplicateTensor, tensor: "a",
             bytes: file(#"""
             {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
              "a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}
             """#, dataCount: 4)),

        // Sharded directories: the index and the shards must agree exactly.
        Case(directory: "index-missing-shard", .shardMissing, tensor: "b", reportedFile: Checkpoint.indexFileName,
             mentioning: shard2) { dir in
            try writeShard(dir + "/" + shard1, ["a"])
            try writeIndex(dir, #""a": "\#(shard1)", "b": "\#(shard2)""#)
        },
        Case(directory: "tensor-in-two-shards", .tensorInTwoShards, tensor: "a", reportedFile: shard2, mentioning: shard1) { dir in
            try writeShard(dir + "/" + shard1, ["a", "b"])
            try writeShard(dir + "/" + shard2, ["a", "c"])
            try writeIndex(dir, #""a": "\#(shard1)", "b": "\#(shard1)", "c": "\#(shard2)""#)
        },
        Case(directory: "index-maps-tensor-twice", .indexInvalid, reportedFile: Checkpoint.indexFileName,
             mentioning: #"duplicate key "a""#) { dir in
            try writeShard(dir + "/" + shard1, ["a"])
            try writeShard(dir + "/" + shard2, ["a"])
            try writeIndex(dir, #""a": "\#(shard1)", "a": "\#(shard2)""#)
        },
        Case(directory: "index-names-absent-tensor", .tensorMissingFromShard, tensor: "ghost", reportedFile: shard1) { dir in
            try writeShard(dir + "/" + shard1, ["a"])
            try writeShard(dir + "/" + shard2, ["b"])
            try writeIndex(dir, #""a": "\#(shard1)", "ghost": "\#(shard1)", "b": "\#(shard2)""#)
        },
        Case(directory: "shard-tensor-not-in-index", .tensorNotInIndex, tensor: "stray", reportedFile: shard2) { dir in
            try writeShard(dir + "/" + shard1, ["a"])
            try writeShard(dir + "/" + shard2, ["b", "stray"])
            try writeIndex(dir, #""a": "\#(shard1)", "b": "\#(shard2)""#)
        },
        Case(directory: "index-shard-escapes", .shardPathUnsafe, tensor: "b", reportedFile: Checkpoint.indexFileName,
             mentioning: "/etc") { dir in
            try writeShard(dir + "/" + shard1, ["a"])
            try writeIndex(dir, #""a": "\#(shard1)", "b": "/etc/passwd""#)
        },
        Case(directory: "malformed-shard", .headerNotObject, reportedFile: shard2) { dir in
            try writeShard(dir + "/" + shard1, ["a"])
            try Data(file("[]")).write(to: URL(fileURLWithPath: dir + "/" + shard2))
            try writeIndex(dir, #""a": "\#(shard1)", "b": "\#(shard2)""#)
        },
    ]

    /// Writes every case into `directory`; returns (case, path) pairs.
    static func write(into directory: String) throws -> [(Case, String)] {
        try cases.map { c in
            let path = directory + "/" + c.name
            try c.make(path)
            return (c, path)
        }
    }
}
