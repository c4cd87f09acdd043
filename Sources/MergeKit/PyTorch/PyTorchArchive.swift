/// A PyTorch checkpoint written by `torch.save` (`pytorch_model.bin`, `.pt`, `.pth`, `.ckpt`),
/// read from the file's bytes without running its pickle: which tensors it holds, and where each
/// one's bytes are in the file.
///
/// The file is a ZIP archive (`ZipArchive`) of records under one directory: `data.pkl`, the
/// pickled object; `data/<key>`, one stored record per storage; `byteorder` (`little`, or absent
/// in files of older versions). The pickle is read by `RestrictedUnpickler`, which builds values
/// and calls nothing. The object must be a state dict — a dict (or OrderedDict) of tensors by
/// name — or hold one under `state_dict` or `model` (training checkpoints, nested up to
/// `maximumNesting` deep, `state_dict` first).
///
/// A tensor is a view of a storage: an element offset, a size and a stride. Each view is checked
/// against its storage (it may not reach past the storage's end; the storage's record must hold
/// exactly the bytes the pickle says), and the storage's record must be stored, so the tensor's
/// bytes are read in place. A view whose elements are consecutive in row-major order (the usual
/// case, also a slice along its first dimension) is one byte range of the file (`byteRange`);
/// tensors viewing one storage — tied weights — name the same bytes, nothing is copied. Other
/// views (a transpose, a strided slice, an expanded dimension) are `isContiguous == false` and
/// must be gathered (`PyTorchCheckpointFile`).
///
/// Files in the format before PyTorch 1.6 (`_use_new_zipfile_serialization=False`: a sequence of
/// pickles with storages appended), the tar format before that, and bare pickles are refused
/// with how to re-save them.
public struct PyTorchArchive: Sendable {
    /// One tensor of the state dict.
    public struct Tensor: Sendable, Equatable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// In elements, as torch gives it.
        public let stride: [Int]
        /// The storage's key (its record is `data/<key>`).
        public let storage: String
        /// Where the storage's bytes are in the file.
        public let storageRange: Range<Int>
        /// The view's first element, in elements from the storage's start.
        public let storageOffset: Int
        /// Whether the view's elements are consecutive (row-major) in the storage.
        public let isContiguous: Bool

        public var elementCount: Int { shape.reduce(1, *) }
        public var byteCount: Int { elementCount * dtype.byteWidth! }
        /// The tensor's bytes in the file, for a contiguous view.
        public var byteRange: Range<Int>? {
            guard isContiguous else { return nil }
            let begin = storageRange.lowerBound + storageOffset * dtype.byteWidth!
            return begin..<(begin + byteCount)
        }
    }

    /// The state dict's tensors, in its order.
    public let tensors: [Tensor]

    /// The keys a training checkpoint keeps its state dict under, in the order they are tried.
    static let nestingKeys = ["state_dict", "model"]
    static let maximumNesting = 4
    /// The pickle of a checkpoint with millions of tensors is a few hundred megabytes.
    static let maximumPickleSize = 1 << 30

    /// The legacy format's first bytes: PROTO 2, then LONG1 of torch's magic number 0x1950a86a20f9469cfc6c.
    static let legacyMagic: [UInt8] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]

    /// Whether `bytes` starts like a file `torch.save` wrote (a ZIP archive, or one of the
    /// refused older formats or a bare pickle, so that those get their own message).
    public static func looksLikePyTorch(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // A safetensors file: a header length, then the header's "{" (its length's low byte may
        // well be 0x80, as a pickle's first is).
        if bytes.count >= 9 && bytes[8] == UInt8(ascii: "{")
            && bytes.loadUnaligned(as: UInt64.self).littleEndian <= UInt64(SafeTensorsHeader.maximumHeaderSize) {
            return false
        }
        return ZipArchive.looksLikeZip(bytes) || (bytes.count >= 2 && bytes[0] == 0x80 && bytes[1] <= 5) || isTar(bytes)
    }

    private static func isTar(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 262 && Array(bytes[257..<262]) == Array("ustar".utf8)
    }

    /// Reads the checkpoint whose whole content is `bytes`; `file` names it in errors.
    /// `readHeader` reads the archive's local headers instead of `bytes` (`ZipArchive`).
    static func parse(fileBytes bytes: UnsafeRawBufferPointer, file: String,
                      readHeader: ZipArchive.HeaderReader?) throws(MergeKitError) -> PyTorchArchive {
        let resave = "Re-save it in the current format in Python: torch.save(torch.load(PATH, weights_only=True), NEW_PATH), or convert it to safetensors"
        guard ZipArchive.looksLikeZip(bytes) else {
            if bytes.count >= legacyMagic.count && Array(bytes[0..<legacyMagic.count]) == legacyMagic {
                throw MergeKitError(.legacyCheckpointFormat, file: file,
                    "is in the legacy torch.save format (before PyTorch 1.6, or _use_new_zipfile_serialization=False), whose storages follow the pickle unindexed",
                    fix: resave)
            }
            if isTar(bytes) {
                throw MergeKitError(.legacyCheckpointFormat, file: file, "is in the tar format of PyTorch before 0.4", fix: resave)
            }
            if bytes.count >= 2 && bytes[0] == 0x80 {
                throw MergeKitError(.legacyCheckpointFormat, file: file,
                    "is a bare pickle, not the zip archive torch.save writes", fix: resave)
            }
            throw MergeKitError(.notACheckpoint, file: file, "is neither a zip archive torch.save writes nor a safetensors file",
                fix: "Check that the download finished; a PyTorch checkpoint starts with the bytes PK")
        }
        let archive = try ZipArchive(bytes, file: file, readHeader: readHeader)
        let pickles = archive.entries.filter { entry in
            entry.name.hasSuffix("/data.pkl") && entry.name.utf8.filter { $0 == UInt8(ascii: "/") }.count == 1
        }
        guard pickles.count == 1 else {
            let torchScript = archive.entries.contains { $0.name.hasSuffix("/constants.pkl") || $0.name.contains("/code/") }
            throw MergeKitError(.archiveInvalid, file: file,
                pickles.isEmpty
                    ? (torchScript ? "is a TorchScript archive (torch.jit.save), not a state dict torch.save wrote"
                                   : "holds no DIRECTORY/data.pkl record, so it is not an archive torch.save wrote")
                    : "holds \(pickles.count) data.pkl records (\(pickles.map(\.name).joined(separator: ", "))); torch.save writes one",
                fix: torchScript ? "Save the model's state dict with torch.save(model.state_dict(), PATH)" : "Re-save the state dict with torch.save")
        }
        let prefix = String(pickles[0].name.dropLast("data.pkl".count))
        if let order = archive.entry(named: prefix + "byteorder") {
            let text = try ZipArchive.contents(of: order, in: bytes, limit: 64, file: file)
            guard text == Array("little".utf8) else {
                throw MergeKitError(.archiveInvalid, file: file,
                    "stores its tensors in \(String(decoding: text, as: UTF8.self).prefix(16)) byte order; only little-endian checkpoints are read",
                    fix: "Re-save it with torch.save on a little-endian machine (x86, ARM)")
            }
        }
        let pickle = try ZipArchive.contents(of: pickles[0], in: bytes, limit: maximumPickleSize, file: file)
        var unpickler = RestrictedUnpickler(file: file, record: pickles[0].name)
        let loaded = pickle.withUnsafeBytes { raw in Result { () throws(MergeKitError) in try unpickler.load(raw) } }
        let root = try loaded.get()
        let arena = unpickler.arena
        let stateDict = try findStateDict(root, arena: arena, file: file)

        var tensors: [Tensor] = []
        tensors.reserveCapacity(stateDict.count)
        for (key, value) in zip(stateDict.keys, stateDict.values) {
            guard case .string(let name) = key else {
                throw MergeKitError(.stateDictInvalid, file: file,
                    "has a state dict key that is \(key.kindName(in: arena)), not a tensor name",
                    fix: "Save a state dict whose keys are parameter names: torch.save(model.state_dict(), PATH)")
            }
            guard case .object(let index) = value, case .tensor(let tensor) = arena.objects[index] else {
                throw MergeKitError(.stateDictInvalid, file: file, tensor: name,
                    "is \(value.kindName(in: arena)), not a tensor; a state dict holds only tensors",
                    fix: "Save the model's state dict alone: torch.save(model.state_dict(), PATH)")
            }
            guard case .storage(let storage) = arena.objects[tensor.storage] else { preconditionFailure("a tensor's storage is a storage") }
            tensors.append(try place(tensor, storage: storage, name: name, prefix: prefix, archive: archive, file: file))
        }
        return PyTorchArchive(tensors: tensors)
    }

    /// Reads the checkpoint whose whole content is `bytes` (in memory); `file` names it in errors.
    public static func parse(fileBytes bytes: UnsafeRawBufferPointer, file: String) throws(MergeKitError) -> PyTorchArchive {
        try parse(fileBytes: bytes, file: file, readHeader: nil)
    }

    /// The state dict in `root`: `root` itself, or the dict under `state_dict` or `model`.
    private static func findStateDict(_ root: PickleValue, arena: PickleArena, file: String) throws(MergeKitError) -> PickleDictionary {
        var value = root
        var path: [String] = []
        for _ in 0...maximumNesting {
            guard case .object(let index) = value, case .dict(let dictionary) = arena.objects[index] else { break }
            guard let key = nestingKeys.first(where: { key in
                guard case .object(let inner)? = dictionary.value(forString: key), case .dict = arena.objects[inner] else { return false }
                return true
            }) else {
                return dictionary
            }
            path.append(key)
            value = dictionary.value(forString: key)!
        }
        let where_ = path.isEmpty ? "holds" : "holds under " + path.map { "[\"\($0)\"]" }.joined()
        throw MergeKitError(.stateDictInvalid, file: file,
            "\(where_) \(value.kindName(in: arena)), not a state dict (a dict of tensors, possibly under \"state_dict\" or \"model\")",
            fix: "Save the model's state dict: torch.save(model.state_dict(), PATH)")
    }

    /// Checks `tensor`'s view against its storage's record and says where its bytes are.
    private static func place(_ tensor: PickleTensor, storage: PickleStorage, name: String, prefix: String,
                              archive: ZipArchive, file: String) throws(MergeKitError) -> Tensor {
        func outOfRange(_ detail: String) -> MergeKitError {
            MergeKitError(.storageInvalid, file: file, tensor: name, detail,
                fix: "The checkpoint is corrupt or not one torch.save wrote; download it again or re-save it")
        }
        guard let width = tensor.dtype.byteWidth else { preconditionFailure("pickled dtypes are whole bytes") }
        let recordName = prefix + "data/" + storage.key
        guard let record = archive.entry(named: recordName) else {
            throw outOfRange("views storage \(storage.key), but the archive has no record \(recordName)")
        }
        guard record.isStored else {
            throw MergeKitError(.storageInvalid, file: file, tensor: name,
                "views storage \(storage.key), whose record is compressed; storages are read in place, and torch.save stores them uncompressed",
                fix: "Re-save the checkpoint with torch.save (do not re-zip it)")
        }
        guard record.uncompressedSize == storage.byteCount else {
            throw outOfRange("views storage \(storage.key), which the pickle says holds \(storage.byteCount) bytes but whose record holds \(record.uncompressedSize)")
        }
        guard storage.byteCount % width == 0 else {
            throw outOfRange("is \(tensor.dtype.rawValue) but its storage \(storage.key) of \(storage.byteCount) bytes is not a whole number of \(width)-byte elements")
        }
        let storageElements = storage.byteCount / width
        // The view's elements: 0 when a dimension is 0; otherwise it reaches offset + Σ (size − 1)·stride.
        var elementCount = 1
        var last = tensor.offset
        for (size, stride) in zip(tensor.shape, tensor.stride) {
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: size)
            guard !overflow, product.multipliedReportingOverflow(by: width).overflow == false else {
                throw outOfRange("has a size \(tensor.shape) with more elements than a 64-bit count holds")
            }
            elementCount = product
            if size > 0 {
                let (reach, o1) = (size - 1).multipliedReportingOverflow(by: stride)
                let (sum, o2) = last.addingReportingOverflow(reach)
                guard !o1 && !o2 else { throw outOfRange("has a stride \(tensor.stride) reaching past any storage") }
                last = sum
            }
        }
        if elementCount > 0 && last >= storageElements {
            throw outOfRange("views elements up to \(last) (offset \(tensor.offset), size \(tensor.shape), stride \(tensor.stride)) of storage \(storage.key), which holds \(storageElements)")
        }
        var contiguous = true
        var expected = 1
        for (size, stride) in zip(tensor.shape, tensor.stride).reversed() where size != 1 {
            if stride != expected { contiguous = false }
            expected = expected &* size
        }
        return Tensor(name: name, dtype: tensor.dtype, shape: tensor.shape, stride: tensor.stride, storage: storage.key,
                      storageRange: record.dataOffset..<record.dataEnd, storageOffset: tensor.offset,
                      isContiguous: contiguous || elementCount == 0)
    }
}
