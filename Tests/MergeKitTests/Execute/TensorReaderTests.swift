import Foundation
import Testing
@testable import MergeKit

@Suite("TensorReader: reads by element or byte position inside a tensor")
struct TensorReaderTests {
    /// Every element range and byte range of every tensor reads exactly the bytes the tensor's
    /// slice of the (mapped) file holds: the offset of the tensor's data is the reader's business.
    @Test("Element and byte ranges of each tensor of a file with several tensors and dtypes")
    func rangesMatchTheStoredBytes() throws {
        let dir = TestSupport.temporaryDirectory("reader")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        let tensors: [(TensorSpec, [Double])] = [
            (TensorSpec(name: "a", dtype: .F32, shape: [3, 5]), (0..<15).map { Double($0) - 7.5 }),
            (TensorSpec(name: "b", dtype: .BF16, shape: [7]), (0..<7).map { Double($0) * 0.25 }),
            (TensorSpec(name: "c", dtype: .I64, shape: [4]), [1, -2, 3, -4]),
            (TensorSpec(name: "d", dtype: .F64, shape: [2, 3]), (0..<6).map { 1 / Double($0 + 1) }),
        ]
        TestSupport.writeCheckpoint(path, tensors)
        let checkpoint = try Checkpoint(path: path)
        for entry in checkpoint.entries {
            let stored = Array(entry.file.bytes(of: entry.info))
            let width = entry.info.dtype.byteWidth!
            let reader = TensorReader(entry)
            let n = entry.info.elementCount
            for lower in 0...n {
                for upper in lower...n {
                    var buffer = [UInt8](repeating: 0xAA, count: (upper - lower) * width)
                    try buffer.withUnsafeMutableBytes { raw in
                        if let address = raw.baseAddress { try reader.read(elements: lower..<upper, into: address) }
                    }
                    #expect(buffer == Array(stored[(lower * width)..<(upper * width)]), "\(entry.name) elements \(lower)..<\(upper)")
                }
            }
            for (lower, upper) in [(0, stored.count), (1, stored.count - 1), (3, 3), (stored.count - 2, stored.count)] {
                var buffer = [UInt8](repeating: 0xAA, count: upper - lower)
                try buffer.withUnsafeMutableBytes { raw in
                    if let address = raw.baseAddress { try reader.read(bytes: lower..<upper, into: address) }
                }
                #expect(buffer == Array(stored[lower..<upper]), "\(entry.name) bytes \(lower)..<\(upper)")
            }
        }
    }

    /// The shards of a directory checkpoint: each tensor is read from its own file.
    @Test("Tensors of a sharded checkpoint are read from their shard")
    func shardedCheckpoint() throws {
        let checkpoint = try Checkpoint(path: TestSupport.fixture("bf16/base"))
        #expect(checkpoint.files.count > 1)
        for entry in checkpoint.entries where entry.info.dtype.byteWidth != nil {
            let stored = Array(entry.file.bytes(of: entry.info))
            var buffer = [UInt8](repeating: 0, count: stored.count)
            try buffer.withUnsafeMutableBytes { raw in
                try TensorReader(entry).read(elements: 0..<entry.info.elementCount, into: raw.baseAddress!)
            }
            #expect(buffer == stored, "\(entry.name)")
        }
    }
}
