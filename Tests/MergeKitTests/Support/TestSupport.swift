import Foundation
import Testing
@testable import MergeKit

/// Paths and helpers shared by the tests.
enum TestSupport {
    /// The package root (found from this file's path).
    static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url = url.deletingLastPathComponent()
        }
        return url
    }()

    static func fixture(_ relative: String) -> String {
        packageRoot.appendingPathComponent("Fixtures").appendingPathComponent(relative).path
    }

    /// A fresh empty directory under the system temporary directory.
    static func temporaryDirectory(_ label: String = "test") -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mergekit-\(label)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    /// Writes a safetensors file from (spec, Float values) pairs; values are stored in the spec's
    /// dtype (float dtypes) or as raw little-endian integers (I64/I32).
    static func writeCheckpoint(_ path: String, _ tensors: [(TensorSpec, [Double])], metadata: [String: String]? = ["format": "pt"]) {
        let layout = SafeTensorsLayout(specs: tensors.map(\.0), metadata: metadata)
        var bytes = layout.prefix
        for (spec, values) in tensors {
            precondition(values.count == spec.elementCount)
            var chunk = [UInt8](repeating: 0, count: spec.byteCount)
            chunk.withUnsafeMutableBytes { raw in
                switch spec.dtype {
                case .I64:
                    for (i, v) in values.enumerated() { raw.storeBytes(of: Int64(v).littleEndian, toByteOffset: 8 * i, as: Int64.self) }
                case .I32:
                    for (i, v) in values.enumerated() { raw.storeBytes(of: Int32(v).littleEndian, toByteOffset: 4 * i, as: Int32.self) }
                default:
                    values.withUnsafeBufferPointer { Double.store($0.baseAddress!, count: values.count, as: spec.dtype, into: raw.baseAddress!) }
                }
            }
            bytes += chunk
        }
        precondition(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
    }

    /// All tensors of a checkpoint decoded to Double, by name.
    static func values(_ checkpoint: Checkpoint) -> [String: (info: TensorInfo, values: [Double])] {
        var result: [String: (TensorInfo, [Double])] = [:]
        for entry in checkpoint.entries {
            let bytes = entry.file.bytes(of: entry.info)
            var values = [Double](repeating: 0, count: entry.info.elementCount)
            switch entry.info.dtype {
            case .I64:
                for i in values.indices { values[i] = Double(bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self).littleEndian) }
            case let d where d.isMergeable:
                values.withUnsafeMutableBufferPointer { Double.load(bytes.baseAddress!, dtype: d, count: $0.count, into: $0.baseAddress!) }
            default:
                break
            }
            result[entry.name] = (entry.info, values)
        }
        return result
    }

    /// Lists files (including hidden ones) in a directory.
    static func listing(_ directory: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: directory).sorted()) ?? []
    }
}

/// Sebastiano Vigna's SplitMix64: tiny, seeded, so test data and failures reproduce. Suites add the
/// distributions they need in extensions.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniformly random integer in `range`.
    mutating func next(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    /// Uniform in [0, 1), 53 random bits.
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
