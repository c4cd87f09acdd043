/// One tensor entry of a safetensors header, validated.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Product of `shape` (1 for a scalar, 0 when a dimension is 0).
    public let elementCount: Int
    /// Byte range relative to the start of the data buffer (after the 8 + N header bytes).
    public let begin: Int
    public let end: Int

    public var byteCount: Int { end - begin }

    public init(name: String, dtype: DType, shape: [Int], begin: Int, end: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.elementCount = shape.reduce(1, *)
        self.begin = begin
        self.end = end
    }
}

/// A parsed and fully validated safetensors header.
///
/// Validation follows huggingface/safetensors `tensor.rs` (docs/METHODS.md §1), checks in a
/// fixed order, every number taken from the file overflow-checked, so that once a header has been
/// accepted every tensor's bytes lie inside the file and access cannot fail.
public struct SafeTensorsHeader: Sendable, Equatable {
    /// Headers longer than this are rejected before anything is read (the reference's limit).
    public static let maximumHeaderSize = 100_000_000
    /// The 8-byte little-endian header length that starts every file.
    public static let lengthPrefixSize = 8
    /// The reserved key holding the string-to-string metadata map.
    public static let metadataKey = "__metadata__"

    /// The `__metadata__` map (nil when the file has none).
    public let metadata: [String: String]?
    /// Tensors in data order (ascending offsets).
    public let tensors: [TensorInfo]
    /// N, the JSON header's byte length.
    public let headerSize: Int

    /// Offset of the data buffer from the start of the file (0 for the tensors of a PyTorch
    /// archive, whose offsets are the file's own: `init(absolute:)`).
    public let dataStart: Int

    init(metadata: [String: String]?, tensors: [TensorInfo], headerSize: Int) {
        self.metadata = metadata
        self.tensors = tensors
        self.headerSize = headerSize
        dataStart = SafeTensorsHeader.lengthPrefixSize + headerSize
    }

    /// Tensors whose `begin`/`end` are offsets in the file itself (a PyTorch archive's stored
    /// storages, `PyTorchCheckpointFile`): no header, the data buffer is the whole file, and
    /// tensors may share bytes (tied weights viewing one storage).
    init(absolute tensors: [TensorInfo]) {
        metadata = nil
        self.tensors = tensors
        headerSize = 0
        dataStart = 0
    }

    /// Validates a whole file's bytes and returns its header. `file` names it in errors.
    public static func parse(fileBytes bytes: UnsafeRawBufferPointer, file: String) throws(MergeKitError) -> SafeTensorsHeader {
        guard bytes.count >= lengthPrefixSize else {
            throw MergeKitError(.fileTooSmall, file: file,
                "is \(bytes.count) bytes long, shorter than the 8-byte header length of a safetensors file",
                fix: "Check that the download finished and that this is a .safetensors file")
        }
        let n = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard n <= UInt64(maximumHeaderSize) else {
            throw MergeKitError(.headerTooLarge, file: file,
                "declares a \(n)-byte header, above the 100,000,000-byte limit of the safetensors format",
                fix: "The file is corrupt or not a safetensors file; download it again")
        }
        let headerSize = Int(n)
        guard lengthPrefixSize + headerSize <= bytes.count else {
            throw MergeKitError(.headerPastEndOfFile, file: file,
                "declares a \(headerSize)-byte header but the file has only \(bytes.count - lengthPrefixSize) bytes after the length",
                fix: "The file is truncated; download it again")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[lengthPrefixSize..<(lengthPrefixSize + headerSize)])
        let dataSize = bytes.count - lengthPrefixSize - headerSize
        return try parse(headerBytes: headerBytes, headerSize: headerSize, dataSize: dataSize, file: file)
    }

    /// Validates the JSON header bytes against a data buffer of `dataSize` bytes.
    ///
    /// The header is parsed member by member (`JSONParser.parse(_:eachMember:)`), each entry
    /// becoming a `TensorInfo` at once, so a header of a million tensors is never also held as
    /// JSON. Checks keep their order: the JSON as a whole first, then the entries in file order
    /// (the first bad one is reported), then the offsets.
    static func parse(headerBytes: UnsafeRawBufferPointer, headerSize: Int, dataSize: Int, file: String) throws(MergeKitError) -> SafeTensorsHeader {
        var metadata: [String: String]?
        var tensors: [TensorInfo] = []
        // About 64 header bytes per entry; the array grows if there are more.
        tensors.reserveCapacity(min(headerSize / 64, 1 << 20))
        var entryError: MergeKitError?
        // Tensors of one shape share one array (most of a model's tensors have one of a few shapes).
        var shapes: [[Int]: [Int]] = [:]
        let topLevel: JSONValue?
        do {
            topLevel = try JSONParser.parse(headerBytes) { key, value in
                guard entryError == nil else { return }
                do throws(MergeKitError) {
                    if key == metadataKey {
                        metadata = try parseMetadata(value, file: file)
                    } else {
                        var entry = try parseEntry(name: key, value, file: file)
                        if let shared = shapes[entry.shape] {
                            entry = TensorInfo(name: entry.name, dtype: entry.dtype, shape: shared, begin: entry.begin, end: entry.end)
                        } else {
                            shapes[entry.shape] = entry.shape
                        }
                        tensors.append(entry)
                    }
                } catch {
                    entryError = error
                }
            }
        } catch {
            switch error.reason {
            case .invalidUTF8:
                throw MergeKitError(.headerNotUTF8, file: file, "header is not valid UTF-8",
                    fix: "The file is corrupt or not a safetensors file; download it again")
            case .duplicateKey(let name) where error.depth == 1 && name == metadataKey:
                throw MergeKitError(.metadataInvalid, file: file, "__metadata__ appears twice in the header",
                    fix: "The file is malformed; re-export it with a safetensors writer")
            case .duplicateKey(let name) where error.depth == 1:
                throw MergeKitError(.duplicateTensor, file: file, tensor: name,
                    "appears twice in the header", fix: "The file is malformed; re-export it with a safetensors writer")
            default:
                throw MergeKitError(.headerInvalidJSON, file: file, "header is not valid JSON (\(error.description))",
                    fix: "The file is corrupt or not a safetensors file; download it again")
            }
        }
        if let json = topLevel {
            throw MergeKitError(.headerNotObject, file: file, "header is \(json.kindName), not a JSON object",
                fix: "The file is corrupt or not a safetensors file; download it again")
        }
        if let entryError { throw entryError }

        tensors.sort { a, b in
            if a.begin != b.begin { return a.begin < b.begin }
            if a.end != b.end { return a.end < b.end }
            return a.name < b.name
        }
        var expectedBegin = 0
        for tensor in tensors {
            if tensor.begin < expectedBegin {
                throw MergeKitError(.offsetsOverlap, file: file, tensor: tensor.name,
                    "data_offsets [\(tensor.begin), \(tensor.end)] overlap the previous tensor, which ends at \(expectedBegin)",
                    fix: "The file is malformed; re-export it with a safetensors writer")
            }
            if tensor.begin > expectedBegin {
                throw MergeKitError(.offsetsGap, file: file, tensor: tensor.name,
                    "data_offsets [\(tensor.begin), \(tensor.end)] leave a gap: the previous tensor ends at \(expectedBegin)",
                    fix: "The file is malformed; re-export it with a safetensors writer")
            }
            guard let size = tensor.dtype.byteCount(elements: tensor.elementCount) else {
                throw MergeKitError(.invalidShape, file: file, tensor: tensor.name,
                    "\(tensor.elementCount) elements of \(tensor.dtype.rawValue) do not fill a whole number of bytes",
                    fix: "The file is malformed; re-export it with a safetensors writer")
            }
            if size != tensor.byteCount {
                throw MergeKitError(.byteSizeMismatch, file: file, tensor: tensor.name,
                    "shape \(tensor.shape) of \(tensor.dtype.rawValue) needs \(size) bytes but data_offsets [\(tensor.begin), \(tensor.end)] give \(tensor.byteCount)",
                    fix: "The file is malformed; re-export it with a safetensors writer")
            }
            expectedBegin = tensor.end
        }
        if expectedBegin > dataSize {
            throw MergeKitError(.dataPastEndOfFile, file: file, tensor: tensors.last?.name,
                "data ends at byte \(expectedBegin) of the data buffer but the file holds only \(dataSize) bytes of data",
                fix: "The file is truncated; download it again")
        }
        if expectedBegin < dataSize {
            throw MergeKitError(.trailingBytes, file: file,
                "has \(dataSize - expectedBegin) bytes after the last tensor's data",
                fix: "The file is malformed or was appended to; re-export it with a safetensors writer")
        }
        return SafeTensorsHeader(metadata: metadata, tensors: tensors, headerSize: headerSize)
    }

    private static func parseMetadata(_ value: JSONValue, file: String) throws(MergeKitError) -> [String: String]? {
        if value == .null { return nil }
        guard case .object(let members) = value else {
            throw MergeKitError(.metadataInvalid, file: file,
                "__metadata__ is \(value.kindName), not an object of strings",
                fix: "The file is malformed; re-export it with a safetensors writer")
        }
        var result: [String: String] = [:]
        for member in members {
            guard case .string(let s) = member.value else {
                throw MergeKitError(.metadataInvalid, file: file,
                    "__metadata__ value for \"\(member.key)\" is \(member.value.kindName); the format allows only strings",
                    fix: "The file is malformed; re-export it with a safetensors writer")
            }
            result[member.key] = s
        }
        return result
    }

    private static func parseEntry(name: String, _ value: JSONValue, file: String) throws(MergeKitError) -> TensorInfo {
        let fix = "The file is malformed; re-export it with a safetensors writer"
        guard case .object = value else {
            throw MergeKitError(.tensorEntryInvalid, file: file, tensor: name,
                "header entry is \(value.kindName), not an object with dtype, shape and data_offsets", fix: fix)
        }
        guard let dtypeValue = value["dtype"], let shapeValue = value["shape"], let offsetsValue = value["data_offsets"] else {
            throw MergeKitError(.tensorEntryInvalid, file: file, tensor: name,
                "header entry lacks one of dtype, shape, data_offsets", fix: fix)
        }
        guard case .string(let dtypeName) = dtypeValue else {
            throw MergeKitError(.unknownDType, file: file, tensor: name, "dtype is \(dtypeValue.kindName), not a string", fix: fix)
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw MergeKitError(.unknownDType, file: file, tensor: name,
                "unknown dtype \"\(dtypeName)\" (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))",
                fix: "The file may come from a newer safetensors version or be corrupt")
        }
        guard case .array(let dims) = shapeValue else {
            throw MergeKitError(.invalidShape, file: file, tensor: name, "shape is \(shapeValue.kindName), not an array", fix: fix)
        }
        var shape: [Int] = []
        shape.reserveCapacity(dims.count)
        var elementCount = 1
        for dim in dims {
            guard let d = dim.nonNegativeInt else {
                let text: String
                if case .number(let t) = dim { text = t } else { text = dim.kindName }
                throw MergeKitError(.invalidShape, file: file, tensor: name,
                    "shape entry \(text) is not a non-negative integer that fits in 64 bits", fix: fix)
            }
            shape.append(d)
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: d)
            if overflow {
                throw MergeKitError(.elementCountOverflow, file: file, tensor: name,
                    "shape \(dims.map { $0.nonNegativeInt.map(String.init) ?? "?" }) has more elements than a 64-bit count holds", fix: fix)
            }
            elementCount = product
        }
        if dtype.byteCount(elements: elementCount) == nil && elementCount.multipliedReportingOverflow(by: dtype.bitWidth).overflow {
            throw MergeKitError(.elementCountOverflow, file: file, tensor: name,
                "shape \(shape) of \(dtype.rawValue) is larger than a 64-bit byte count holds", fix: fix)
        }
        guard case .array(let offsets) = offsetsValue, offsets.count == 2,
              let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt else {
            throw MergeKitError(.invalidOffsets, file: file, tensor: name,
                "data_offsets must be two non-negative integers [BEGIN, END]", fix: fix)
        }
        guard end >= begin else {
            throw MergeKitError(.offsetsReversed, file: file, tensor: name,
                "data_offsets [\(begin), \(end)] end before they begin", fix: fix)
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }
}
