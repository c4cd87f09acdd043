import Testing
@testable import MergeKit

/// Builds safetensors file bytes in memory: the 8-byte little-endian header length (`declaredLength`,
/// default the real one), the header bytes, then `data`.
private func safetensorsBytes(headerBytes: [UInt8], declaredLength: UInt64? = nil, data: [UInt8] = []) -> [UInt8] {
    let length = declaredLength ?? UInt64(headerBytes.count)
    var bytes: [UInt8] = []
    withUnsafeBytes(of: length.littleEndian) { bytes.append(contentsOf: $0) }
    return bytes + headerBytes + data
}

private func safetensorsBytes(header: String, data: [UInt8] = []) -> [UInt8] {
    safetensorsBytes(headerBytes: Array(header.utf8), data: data)
}

private func safetensorsBytes(header: String, dataCount: Int) -> [UInt8] {
    safetensorsBytes(header: header, data: (0..<dataCount).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
}

/// Runs the reader on `bytes` and returns its result or the error it threw.
private func parse(_ bytes: [UInt8], file: String) -> Result<SafeTensorsHeader, MergeKitError> {
    bytes.withUnsafeBytes { raw in
        do throws(MergeKitError) {
            return .success(try SafeTensorsHeader.parse(fileBytes: raw, file: file))
        } catch {
            return .failure(error)
        }
    }
}

/// The error the reader throws for `bytes`, or nil (recorded as a failure) when it accepts them.
private func rejection(_ bytes: [UInt8], file: String, sourceLocation: SourceLocation = #_sourceLocation) -> MergeKitError? {
    switch parse(bytes, file: file) {
    case .success(let header):
        Issue.record("accepted a malformed file: \(header)", sourceLocation: sourceLocation)
        return nil
    case .failure(let error):
        return error
    }
}

/// Asserts that the reader rejects `bytes` with `code`, naming the file (and `tensor`, when given).
private func expectRejection(_ bytes: [UInt8], _ code: MergeKitError.Code, tensor: String? = nil,
                             mentioning extra: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    let file = "weights/case-\(code.rawValue).safetensors"
    guard let error = rejection(bytes, file: file, sourceLocation: sourceLocation) else { return }
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    #expect(error.file == file, sourceLocation: sourceLocation)
    #expect(error.description.contains(file), "\(error)", sourceLocation: sourceLocation)
    if let tensor {
        #expect(error.tensor == tensor, "\(error)", sourceLocation: sourceLocation)
        #expect(error.description.contains("'\(tensor)'"), "\(error)", sourceLocation: sourceLocation)
    }
    if let extra {
        #expect(error.description.contains(extra), "\(error)", sourceLocation: sourceLocation)
    }
}

/// Parses bytes the reader must accept.
private func accepted(_ bytes: [UInt8]) throws -> SafeTensorsHeader {
    try parse(bytes, file: "ok.safetensors").get()
}

@Suite("safetensors header: rejected files")
struct SafeTensorsHeaderRejectionTests {
    @Test("A file shorter than the 8-byte length prefix")
    func fileTooSmall() {
        expectRejection([0x10, 0, 0, 0, 0, 0, 0], .fileTooSmall, mentioning: "7 bytes")
        expectRejection([], .fileTooSmall, mentioning: "0 bytes")
    }

    @Test("A header length running past the end of the file")
    func headerPastEnd() {
        let header = Array(#"{}"#.utf8)
        expectRejection(safetensorsBytes(headerBytes: header, declaredLength: 3), .headerPastEndOfFile)
    }

    @Test("A header length above 100,000,000 bytes")
    func headerTooLarge() {
        expectRejection(safetensorsBytes(headerBytes: Array("{}".utf8), declaredLength: 100_000_001),
                        .headerTooLarge, mentioning: "100000001")
        expectRejection(safetensorsBytes(headerBytes: Array("{}".utf8), declaredLength: UInt64.max), .headerTooLarge)
    }

    @Test("A header that is not UTF-8")
    func notUTF8() {
        let header: [UInt8] = Array(#"{"a"#.utf8) + [0xFF] + Array(#"": {}}"#.utf8)
        expectRejection(safetensorsBytes(headerBytes: header), .headerNotUTF8)
    }

    @Test("A header that is not valid JSON")
    func invalidJSON() {
        expectRejection(safetensorsBytes(header: #"{"a": {"dtype": "F32",}}"#), .headerInvalidJSON)
    }

    @Test("A header that is a JSON array, not an object")
    func notAnObject() {
        expectRejection(safetensorsBytes(header: "[]"), .headerNotObject, mentioning: "an array")
    }

    @Test("__metadata__ that is not an object")
    func metadataNotObject() {
        expectRejection(safetensorsBytes(header: #"{"__metadata__": ["format", "pt"]}"#), .metadataInvalid)
    }

    @Test("A non-string __metadata__ value")
    func metadataNonString() {
        expectRejection(safetensorsBytes(header: #"{"__metadata__": {"format": "pt", "step": 100}}"#),
                        .metadataInvalid, mentioning: "\"step\"")
    }

    @Test("A tensor entry that is not an object")
    func entryNotObject() {
        expectRejection(safetensorsBytes(header: #"{"w": ["F32", [1], [0, 4]]}"#), .tensorEntryInvalid, tensor: "w")
    }

    @Test("A tensor entry without data_offsets")
    func missingOffsets() {
        expectRejection(safetensorsBytes(header: #"{"w": {"dtype": "F32", "shape": [1]}}"#, dataCount: 4),
                        .tensorEntryInvalid, tensor: "w")
    }

    @Test("An unknown dtype")
    func unknownDType() {
        expectRejection(safetensorsBytes(header: #"{"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}"#, dataCount: 16),
                        .unknownDType, tensor: "w", mentioning: "F128")
    }

    @Test("A negative shape entry")
    func negativeShape() {
        expectRejection(safetensorsBytes(header: #"{"w": {"dtype": "U8", "shape": [-2], "data_offsets": [0, 2]}}"#, dataCount: 2),
                        .invalidShape, tensor: "w", mentioning: "-2")
    }

    @Test("A fractional shape entry")
    func fractionalShape() {
        expectRejection(safetensorsBytes(header: #"{"w": {"dtype": "U8", "shape": [2.5], "data_offsets": [0, 2]}}"#, dataCount: 2),
                        .invalidShape, tensor: "w", mentioning: "2.5")
    }

    @Test("A shape entry too large for 64 bits")
    func hugeShape() {
        let header = #"{"w": {"dtype": "U8", "shape": [18446744073709551616], "data_offsets": [0, 2]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 2), .invalidShape, tensor: "w")
    }

    @Test("A shape whose element count overflows 64 bits")
    func elementCountOverflow() {
        let header = #"{"w": {"dtype": "U8", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 2]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 2), .elementCountOverflow, tensor: "w")
    }

    @Test("A shape whose byte count overflows 64 bits")
    func byteCountOverflow() {
        // 2^62 elements fit in an Int, but 2^62 × 4 bytes do not.
        let header = #"{"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 4), .elementCountOverflow, tensor: "w")
    }

    @Test("data_offsets that are not two non-negative integers")
    func offsetsNotTwoInts() {
        for offsets in ["[0]", "[0, 4, 8]", "[0, 4.0]", "[-1, 3]", #"["0", "4"]"#, "4"] {
            let header = #"{"w": {"dtype": "F32", "shape": [1], "data_offsets": \#(offsets)}}"#
            expectRejection(safetensorsBytes(header: header, dataCount: 4), .invalidOffsets, tensor: "w")
        }
    }

    @Test("data_offsets whose END is before BEGIN")
    func offsetsReversed() {
        let header = #"{"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 4), .offsetsReversed, tensor: "w")
    }

    @Test("Overlapping tensors")
    func overlap() {
        let header = #"""
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
        """#
        expectRejection(safetensorsBytes(header: header, dataCount: 12), .offsetsOverlap, tensor: "b")
    }

    @Test("A gap between tensors")
    func gapBetween() {
        let header = #"""
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
         "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}
        """#
        expectRejection(safetensorsBytes(header: header, dataCount: 12), .offsetsGap, tensor: "b")
    }

    @Test("A first tensor that does not start at byte 0")
    func gapAtStart() {
        let header = #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 8), .offsetsGap, tensor: "a")
    }

    @Test("Tensor data running past the end of the file")
    func dataPastEnd() {
        let header = #"""
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
        """#
        expectRejection(safetensorsBytes(header: header, dataCount: 11), .dataPastEndOfFile, tensor: "b")
    }

    @Test("Bytes after the last tensor's data")
    func trailingBytes() {
        let header = #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 5), .trailingBytes, mentioning: "1 bytes")
    }

    @Test("A byte size that does not match shape × dtype")
    func byteSizeMismatch() {
        let header = #"{"a": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 24]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 24), .byteSizeMismatch, tensor: "a", mentioning: "12")
    }

    @Test("A tensor name that appears twice")
    func duplicateName() {
        let header = #"""
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
         "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
        """#
        expectRejection(safetensorsBytes(header: header, dataCount: 8), .duplicateTensor, tensor: "a")
    }

    @Test("A key repeated inside an entry or the metadata is malformed JSON, not a duplicate tensor")
    func nestedDuplicateKey() {
        let entry = #"{"w": {"dtype": "F32", "dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#
        expectRejection(safetensorsBytes(header: entry, dataCount: 4), .headerInvalidJSON, mentioning: "duplicate key \"dtype\"")
        let metadata = #"{"__metadata__": {"k": "a", "k": "b"}}"#
        expectRejection(safetensorsBytes(header: metadata), .headerInvalidJSON, mentioning: "duplicate key \"k\"")
        let twice = #"{"__metadata__": {}, "__metadata__": {}}"#
        expectRejection(safetensorsBytes(header: twice), .metadataInvalid, mentioning: "twice")
    }

    @Test("A 4-bit tensor with an odd element count")
    func oddSubByteCount() {
        let header = #"{"q": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 2), .invalidShape, tensor: "q")
    }

    @Test("Offsets above 2^53 are kept exact and rejected as past the end, not rounded")
    func offsetsAbove2to53() {
        // 2^53 + 1 is not a Double; a reader rounding through Double would see a byte-size mismatch.
        let big = "9007199254740993"
        let header = #"{"w": {"dtype": "U8", "shape": [\#(big)], "data_offsets": [0, \#(big)]}}"#
        expectRejection(safetensorsBytes(header: header, dataCount: 8), .dataPastEndOfFile, tensor: "w", mentioning: big)
    }
}

@Suite("safetensors header: accepted files")
struct SafeTensorsHeaderAcceptanceTests {
    /// Bits per element of every dtype, as the safetensors specification defines them.
    static let specBits: [String: Int] = [
        "BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "I32": 32, "U32": 32, "I64": 64, "U64": 64,
        "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "C64": 64,
        "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
        "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4,
    ]

    @Test("Every dtype name parses, with its byte size from the specification")
    func everyDType() throws {
        #expect(Set(Self.specBits.keys) == Set(DType.allCases.map(\.rawValue)))
        for dtype in DType.allCases {
            let name = dtype.rawValue
            let bits = try #require(Self.specBits[name])
            // 8 elements pack evenly for every width (4 × 8 / 8 = 4 bytes for F4, 6 for F6).
            let bytes = 8 * bits / 8
            let header = #"{"t": {"dtype": "\#(name)", "shape": [2, 4], "data_offsets": [0, \#(bytes)]}}"#
            let parsed = try accepted(safetensorsBytes(header: header, dataCount: bytes))
            let tensor = try #require(parsed.tensors.first)
            #expect(tensor.dtype == dtype)
            #expect(tensor.elementCount == 8)
            #expect(tensor.byteCount == bytes, "\(name)")
            #expect(dtype.byteCount(elements: 8) == bytes, "\(name)")
        }
    }

    @Test("Sub-byte dtypes accept element counts that pack into whole bytes")
    func subBytePacking() throws {
        let cases: [(dtype: String, shape: String, bytes: Int)] = [("F4", "[2]", 1), ("F4", "[3, 6]", 9), ("F6_E2M3", "[4]", 3), ("F6_E3M2", "[12]", 9)]
        for c in cases {
            let header = #"{"t": {"dtype": "\#(c.dtype)", "shape": \#(c.shape), "data_offsets": [0, \#(c.bytes)]}}"#
            let parsed = try accepted(safetensorsBytes(header: header, dataCount: c.bytes))
            #expect(parsed.tensors.map(\.byteCount) == [c.bytes], "\(c.dtype) \(c.shape)")
        }
    }

    @Test("Shape [] is a scalar with one element")
    func scalar() throws {
        let header = #"{"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}}"#
        let parsed = try accepted(safetensorsBytes(header: header, dataCount: 8))
        let s = try #require(parsed.tensors.first)
        #expect(s.shape == [])
        #expect(s.elementCount == 1)
        #expect(s.byteCount == 8)
    }

    @Test("Zero-size tensors between other tensors take no bytes")
    func zeroSizeInTheMiddle() throws {
        let header = #"""
        {"c": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
         "empty": {"dtype": "F32", "shape": [0, 4], "data_offsets": [8, 8]},
         "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "tail": {"dtype": "I64", "shape": [3, 0], "data_offsets": [16, 16]}}
        """#
        let parsed = try accepted(safetensorsBytes(header: header, dataCount: 16))
        #expect(parsed.tensors.map(\.name) == ["a", "empty", "c", "tail"])
        #expect(parsed.tensors.map(\.elementCount) == [2, 0, 2, 0])
        #expect(parsed.tensors.map(\.byteCount) == [8, 0, 8, 0])
        #expect(parsed.tensors[1].shape == [0, 4])
    }

    @Test("Whitespace around the header JSON is accepted")
    func surroundingWhitespace() throws {
        let header = " \n\t{\"w\": {\"dtype\": \"U8\", \"shape\": [3], \"data_offsets\": [0, 3]}}\r\n     "
        let bytes = safetensorsBytes(header: header, dataCount: 3)
        let parsed = try accepted(bytes)
        #expect(parsed.headerSize == header.utf8.count)
        #expect(parsed.dataStart == bytes.count - 3)
        #expect(parsed.tensors.map(\.name) == ["w"])
    }

    @Test("A header with no tensors and no data")
    func empty() throws {
        let parsed = try accepted(safetensorsBytes(header: "{}"))
        #expect(parsed.tensors.isEmpty)
        #expect(parsed.metadata == nil)
        #expect(parsed.headerSize == 2)

        let withMetadata = try accepted(safetensorsBytes(header: #"{"__metadata__": {}}"#))
        #expect(withMetadata.tensors.isEmpty)
        #expect(withMetadata.metadata == [:])
    }

    @Test("__metadata__ is parsed into the dictionary")
    func metadata() throws {
        let header = #"""
        {"__metadata__": {"format": "pt", "note": "caf\u00e9 \"q\""},
         "w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}
        """#
        let parsed = try accepted(safetensorsBytes(header: header, dataCount: 4))
        #expect(parsed.metadata == ["format": "pt", "note": "café \"q\""])
        #expect(parsed.tensors.map(\.name) == ["w"])
    }
}
