#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Opens a PyTorch checkpoint file (`PyTorchArchive`) as what a `Checkpoint` reads tensors from:
/// `SafeTensorsFile`s and one entry per tensor, in the state dict's order.
///
/// The archive itself is one file (`SafeTensorsFile(adopting:…)`) whose tensors are byte ranges
/// of its stored storages, read in place with `pread` like a safetensors file's; tensors sharing
/// a storage share its bytes. Views that are not one byte range (a transpose, a strided slice)
/// are gathered once, at open, into an unlinked scratch file in the temporary directory (a
/// second `SafeTensorsFile`, in row-major order, its descriptor kept open), in blocks through the
/// archive's mapping, whose pages are dropped after each tensor: memory stays flat, and the
/// scratch file costs disk space only for such views, which `torch.save` of a model's
/// `state_dict()` rarely holds.
enum PyTorchCheckpointFile {
    /// Whether the regular file at `path` starts like a file `torch.save` wrote (nil when it
    /// cannot be opened: the safetensors reader then reports why).
    static func looksLikePyTorch(_ path: String) -> Bool? {
        guard let (fd, _) = try? FileSystem.openRegularFile(path) else { return nil }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 512)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 512, 0) }
        guard n >= 0 else { return nil }
        return head.withUnsafeBytes { PyTorchArchive.looksLikePyTorch(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }

    /// Opens and validates the checkpoint at `path`.
    static func open(_ path: String) throws(MergeKitError) -> (files: [SafeTensorsFile], entries: [Checkpoint.Entry]) {
        let (fd, st) = try FileSystem.openRegularFile(path)
        var handedOver = false
        defer { if !handedOver { close(fd) } }
        let size = Int(st.st_size)
        guard size > 0 else {
            throw MergeKitError(.fileTooSmall, file: path, "is empty", fix: "Check that the download finished")
        }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), mapping != MAP_FAILED else {
            throw MergeKitError(.fileUnreadable, file: path, "cannot be memory-mapped (\(String(cString: strerror(errno))))")
        }
        var mapped = true
        defer { if mapped { munmap(mapping, size) } }
        let bytes = UnsafeRawBufferPointer(start: mapping, count: size)
        let archive = try PyTorchArchive.parse(fileBytes: bytes, file: path) { (offset, count) throws(MergeKitError) in
            var header = [UInt8](repeating: 0, count: count)
            let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
            guard n == count else {
                throw MergeKitError(.fileUnreadable, file: path, "cannot be read at byte \(offset) (\(n < 0 ? String(cString: strerror(errno)) : "it ended"))",
                    fix: "Check the disk; the file may have been changed or removed while it was opened")
            }
            return header
        }
        // The directory and pickle pages were read once, to parse them: out of the resident set.
        _ = madvise(mapping, size / FileSystem.pageSize * FileSystem.pageSize, MADV_DONTNEED)

        var inPlace: [TensorInfo] = []
        var gathered: [PyTorchArchive.Tensor] = []
        var placeOf: [(scratch: Bool, index: Int)] = []
        for tensor in archive.tensors {
            if let range = tensor.byteRange {
                placeOf.append((false, inPlace.count))
                inPlace.append(TensorInfo(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, begin: range.lowerBound, end: range.upperBound))
            } else {
                placeOf.append((true, gathered.count))
                gathered.append(tensor)
            }
        }
        let scratch = gathered.isEmpty ? nil : try gather(gathered, from: bytes, path: path)
        let file = SafeTensorsFile(adopting: fd, status: st, mapping: mapping, path: path, tensors: inPlace, pinned: false)
        handedOver = true
        mapped = false
        let entries = placeOf.map { place in
            place.scratch ? Checkpoint.Entry(file: scratch!, info: scratch!.tensors[place.index])
                          : Checkpoint.Entry(file: file, info: inPlace[place.index])
        }
        return ([file] + (scratch.map { [$0] } ?? []), entries)
    }

    /// The directory scratch files go in: `$TMPDIR`, or /tmp.
    static var scratchDirectory: String {
        if let value = getenv("TMPDIR"), let text = String(validatingCString: value), !text.isEmpty { return text }
        return "/tmp"
    }

    /// Copies `tensors` (non-contiguous views of storages in `bytes`) into an unlinked scratch
    /// file, each in row-major order, and opens it.
    private static func gather(_ tensors: [PyTorchArchive.Tensor], from bytes: UnsafeRawBufferPointer,
                               path: String) throws(MergeKitError) -> SafeTensorsFile {
        var template = Array((FileSystem.join(scratchDirectory, "mergekit-views-XXXXXX")).utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw MergeKitError(.writeFailed, file: path,
                "has \(tensors.count) tensor(s) that are strided views, to be gathered into a scratch file in \(scratchDirectory), which cannot be created (\(String(cString: strerror(errno))))",
                fix: "Set TMPDIR to a writable directory with room for them, or re-save the checkpoint with contiguous tensors")
        }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        var keep = false
        defer { if !keep { close(fd) } }
        var infos: [TensorInfo] = []
        var offset = 0
        for tensor in tensors {
            infos.append(TensorInfo(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, begin: offset, end: offset + tensor.byteCount))
            offset += tensor.byteCount
        }
        let scratchError = { (code: Int32) in
            MergeKitError(.writeFailed, file: path,
                "has strided views (\(tensors[0].name) first) to be gathered into a scratch file in \(scratchDirectory), which cannot be written (\(String(cString: strerror(code))))",
                fix: "Set TMPDIR to a directory with room for them, or re-save the checkpoint with contiguous tensors")
        }
        guard ftruncate(fd, off_t(offset)) == 0 else { throw scratchError(errno) }
        let blockSize = 1 << 20
        let block = UnsafeMutableRawPointer.allocate(byteCount: blockSize, alignment: 64)
        defer { block.deallocate() }
        var filled = 0, written = 0
        func flush() throws(MergeKitError) {
            do {
                try FileSystem.pwriteAll(fd, UnsafeRawBufferPointer(start: block, count: filled), at: written, file: path)
            } catch {
                throw scratchError(EIO)
            }
            written += filled
            filled = 0
        }
        for tensor in tensors {
            let width = tensor.dtype.byteWidth!
            let source = bytes.baseAddress! + tensor.storageRange.lowerBound
            let rank = tensor.shape.count
            let inner = tensor.shape[rank - 1], innerStride = tensor.stride[rank - 1]
            var index = [Int](repeating: 0, count: rank - 1)
            var rowStart = tensor.storageOffset
            let rows = tensor.shape.dropLast().reduce(1, *)
            for _ in 0..<rows {
                var element = rowStart
                for _ in 0..<inner {
                    if filled + width > blockSize { try flush() }
                    memcpy(block + filled, source + element * width, width)
                    filled += width
                    element += innerStride
                }
                // The next row: advance the outer index like an odometer.
                var d = rank - 2
                while d >= 0 {
                    index[d] += 1
                    rowStart += tensor.stride[d]
                    if index[d] < tensor.shape[d] { break }
                    rowStart -= tensor.stride[d] * index[d]
                    index[d] = 0
                    d -= 1
                }
            }
            let page = FileSystem.pageSize
            let lower = tensor.storageRange.lowerBound / page * page
            _ = madvise(UnsafeMutableRawPointer(mutating: bytes.baseAddress! + lower), tensor.storageRange.upperBound - lower, MADV_DONTNEED)
        }
        try flush()
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw scratchError(errno) }
        guard let mapping = mmap(nil, offset, PROT_READ, MAP_SHARED, fd, 0), mapping != MAP_FAILED else { throw scratchError(errno) }
        keep = true
        return SafeTensorsFile(adopting: fd, status: st, mapping: mapping, path: path, tensors: infos, pinned: true)
    }
}
