/// A tensor to be written: name, dtype and shape (its bytes come later).
public struct TensorSpec: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]

    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Byte size; traps for sub-byte tensors that do not pack evenly (the planner never makes those).
    public var byteCount: Int { dtype.byteCount(elements: elementCount)! }
}

/// The complete layout of a safetensors file, computed from shapes and dtypes alone before any
/// data exists: the header bytes (padded with spaces to a multiple of 8, as the reference writer
/// does) and every tensor's offsets. Writers use it to place each tensor's bytes with `pwrite` in
/// any order.
public struct SafeTensorsLayout: Sendable {
    /// Tensors with their data offsets, in file order.
    public let tensors: [TensorInfo]
    /// The 8-byte length prefix followed by the padded JSON header.
    public let prefix: [UInt8]

    /// Byte offset of the data buffer in the file.
    public var dataStart: Int { prefix.count }
    /// Total bytes of tensor data.
    public var dataSize: Int { tensors.last?.end ?? 0 }
    /// Total file size.
    public var fileSize: Int { dataStart + dataSize }

    /// Lays out `specs` in the order given, with `metadata` as `__metadata__` (keys sorted).
    /// The header is the compact JSON of an object with those members, serialised member by
    /// member (a million-tensor header is not first built as one `JSONValue`).
    public init(specs: [TensorSpec], metadata: [String: String]?) {
        // The JSON goes straight into the prefix, after 8 bytes for its length.
        var prefix = [UInt8](repeating: 0, count: 8)
        prefix.append(UInt8(ascii: "{"))
        func append(_ key: String, _ value: JSONValue) {
            if prefix.count > 9 { prefix.append(UInt8(ascii: ",")) }
            prefix.append(contentsOf: JSONValue.object([JSONMember(key, value)]).serialized().utf8.dropFirst().dropLast())
        }
        if let metadata {
            let sorted = metadata.keys.sorted().map { JSONMember($0, .string(metadata[$0]!)) }
            append(SafeTensorsHeader.metadataKey, .object(sorted))
        }
        var infos: [TensorInfo] = []
        infos.reserveCapacity(specs.count)
        var offset = 0
        for spec in specs {
            let size = spec.byteCount
            infos.append(TensorInfo(name: spec.name, dtype: spec.dtype, shape: spec.shape, begin: offset, end: offset + size))
            append(spec.name, .object([
                JSONMember("dtype", .string(spec.dtype.rawValue)),
                JSONMember("shape", .array(spec.shape.map { .int($0) })),
                JSONMember("data_offsets", .array([.int(offset), .int(offset + size)])),
            ]))
            offset += size
        }
        prefix.append(UInt8(ascii: "}"))
        while prefix.count % 8 != 0 { prefix.append(0x20) }
        withUnsafeBytes(of: UInt64(prefix.count - 8).littleEndian) { prefix.replaceSubrange(0..<8, with: $0) }
        self.tensors = infos
        self.prefix = prefix
    }
}
