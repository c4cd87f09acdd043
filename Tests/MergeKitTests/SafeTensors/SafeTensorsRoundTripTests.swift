import Foundation
import Testing
@testable import MergeKit

/// A written file, removed when the test ends.
private struct WrittenFile {
    let path: String
    let layout: SafeTensorsLayout
    /// Each tensor's data bytes, by name.
    let data: [String: [UInt8]]
    let bytes: [UInt8]

    /// Lays out `specs`, fills each tensor with random bytes and writes prefix + data to a fresh temp file.
    init(specs: [TensorSpec], metadata: [String: String]?) throws {
        layout = SafeTensorsLayout(specs: specs, metadata: metadata)
        var data: [String: [UInt8]] = [:]
        var bytes = layout.prefix
        var rng = SystemRandomNumberGenerator()
        for spec in specs {
            let chunk = (0..<spec.byteCount).map { _ in UInt8.random(in: 0...255, using: &rng) }
            data[spec.name] = chunk
            bytes += chunk
        }
        self.data = data
        self.bytes = bytes
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("mergekit-roundtrip-\(UUID().uuidString).safetensors").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

@Suite("safetensors layout → file → reader round trip")
struct SafeTensorsRoundTripTests {
    /// A few tensors of `dtype`: a scalar, a matrix, an empty tensor and a vector. Sub-byte dtypes
    /// get no scalar (one 4- or 6-bit element cannot fill a byte) and element counts that pack evenly;
    /// their 3-byte and 9-byte tensors also leave later tensors at odd offsets.
    static func specs(_ dtype: DType) -> [TensorSpec] {
        if dtype.byteWidth != nil {
            return [
                TensorSpec(name: "model.scalar", dtype: dtype, shape: []),
                TensorSpec(name: "model.matrix", dtype: dtype, shape: [2, 3]),
                TensorSpec(name: "model.empty", dtype: dtype, shape: [0, 4]),
                TensorSpec(name: "model.vector", dtype: dtype, shape: [5]),
            ]
        }
        return [
            TensorSpec(name: "model.block", dtype: dtype, shape: [4]),
            TensorSpec(name: "model.matrix", dtype: dtype, shape: [3, 4]),
            TensorSpec(name: "model.empty", dtype: dtype, shape: [0, 3]),
            TensorSpec(name: "model.vector", dtype: dtype, shape: [8]),
        ]
    }

    static let metadata = ["format": "pt", "source": "round \"trip\" ✓", "a": ""]

    @Test("Every dtype round-trips: header, offsets, metadata and bytes", arguments: DType.allCases)
    func roundTrip(dtype: DType) throws {
        let specs = Self.specs(dtype)
        let written = try WrittenFile(specs: specs, metadata: Self.metadata)
        defer { written.remove() }

        let file = try SafeTensorsFile(path: written.path)
        #expect(file.path == written.path)
        #expect(file.fileSize == written.bytes.count)
        #expect(file.fileSize == written.layout.fileSize)
        #expect(file.header.headerSize + 8 == written.layout.prefix.count)
        #expect(file.header.dataStart == written.layout.dataStart)
        #expect(file.metadata == Self.metadata)

        // Tensors come back in layout order with contiguous offsets and the spec's names, dtypes, shapes.
        #expect(file.tensors == written.layout.tensors)
        #expect(file.tensors.map(\.name) == specs.map(\.name))
        #expect(file.tensors.map(\.shape) == specs.map(\.shape))
        #expect(file.tensors.allSatisfy { $0.dtype == dtype })
        var offset = 0
        for (tensor, spec) in zip(file.tensors, specs) {
            let expectedBytes = spec.elementCount * dtype.bitWidth / 8
            #expect(tensor.begin == offset, "\(tensor.name)")
            #expect(tensor.byteCount == expectedBytes, "\(tensor.name)")
            #expect(tensor.elementCount == spec.shape.reduce(1, *), "\(tensor.name)")
            offset += expectedBytes
        }
        #expect(offset == written.layout.dataSize)
        #expect(file.tensors.contains { $0.byteCount == 0 })

        // Every tensor's bytes are exactly those written, at the offset the header gives.
        for tensor in file.tensors {
            #expect(file.tensor(named: tensor.name) == tensor)
            let fileOffset = file.fileOffset(of: tensor)
            #expect(fileOffset == written.layout.dataStart + tensor.begin)
            let expected = try #require(written.data[tensor.name])
            #expect(Array(file.bytes(of: tensor)) == expected, "\(tensor.name)")
            #expect(Array(written.bytes[fileOffset..<(fileOffset + tensor.byteCount)]) == expected)
        }
        #expect(file.tensor(named: "missing") == nil)
    }

    @Test("The header JSON is padded with spaces to a multiple of 8", arguments: [0, 1, 2, 3, 4, 5, 6, 7])
    func headerPadding(nameLength: Int) throws {
        // Names of every length mod 8 so that every amount of padding (0–7) is exercised.
        let name = String(repeating: "w", count: nameLength + 1)
        let layout = SafeTensorsLayout(specs: [TensorSpec(name: name, dtype: .F32, shape: [2])], metadata: nil)
        let prefix = layout.prefix
        let declared = prefix[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        #expect(Int(declared) == prefix.count - 8)
        #expect(declared % 8 == 0)

        let json = Array(prefix[8...])
        #expect(json.first == UInt8(ascii: "{"))
        let close = try #require(json.lastIndex(of: UInt8(ascii: "}")))
        let padding = json[(close + 1)...]
        #expect(padding.allSatisfy { $0 == 0x20 })
        #expect(padding.count < 8)
        let unpadded = JSONValue.object([JSONMember(name, .object([
            JSONMember("dtype", .string("F32")),
            JSONMember("shape", .array([.number("2")])),
            JSONMember("data_offsets", .array([.number("0"), .number("8")])),
        ]))]).serialized()
        #expect(close + 1 == unpadded.utf8.count)
        #expect(padding.count == (8 - unpadded.utf8.count % 8) % 8)
    }

    @Test("A file without metadata reads back with nil metadata")
    func noMetadata() throws {
        let written = try WrittenFile(specs: Self.specs(.F32), metadata: nil)
        defer { written.remove() }
        let file = try SafeTensorsFile(path: written.path)
        #expect(file.metadata == nil)
        #expect(!String(decoding: written.layout.prefix, as: UTF8.self).contains(SafeTensorsHeader.metadataKey))
        #expect(file.tensors == written.layout.tensors)
    }

    @Test("A layout with no tensors is a valid file with no data")
    func noTensors() throws {
        let written = try WrittenFile(specs: [], metadata: ["format": "pt"])
        defer { written.remove() }
        let file = try SafeTensorsFile(path: written.path)
        #expect(file.tensors.isEmpty)
        #expect(file.fileSize == written.layout.prefix.count)
        #expect(file.metadata == ["format": "pt"])
    }
}
