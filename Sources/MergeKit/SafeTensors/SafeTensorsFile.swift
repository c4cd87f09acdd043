import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A safetensors file opened for reading: validated once at open, then memory-mapped read-only.
/// (A PyTorch checkpoint's archive is opened as one too, its stored storages standing for the
/// data buffer: `init(adopting:…)`, `PyTorchCheckpointFile`.)
///
/// After `open` succeeds, every tensor's bytes are known to lie inside the mapping, so `bytes(of:)`
/// cannot fail. Element data is read with unaligned loads (offsets need not be aligned).
///
/// Merges stream through files with `read(into:count:at:)` (pread into reusable buffers) rather
/// than through the mapping: mapped pages would count in the process's resident memory and cost a
/// page fault each, while pread copies from the page cache at memory speed. The descriptor for
/// that is kept in `DescriptorCache.inputs`, which bounds how many input files are open at once:
/// it may close it between reads and reopen the path, checking it is still this file.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The path as the user named it (used in messages).
    public let path: String
    public let header: SafeTensorsHeader
    /// The file's size in bytes.
    public let fileSize: Int
    /// The device and inode, to recognise the same file under two names.
    public let identity: FileIdentity
    /// A file a plan will write, not on disk yet (`init(planned:path:)`): its header is known,
    /// its bytes are not.
    public let isPlanned: Bool

    private let mapping: UnsafeMutableRawPointer?
    /// What owns the memory a file built in memory is read from (`MemoryOutput`): kept alive
    /// with the file; `mapping` then points into it and is not unmapped here.
    private let memoryOwner: AnyObject?
    /// The descriptor of a file that cannot be reopened by its path (the unlinked scratch file of
    /// a PyTorch checkpoint's gathered views), kept open for the file's life instead of in
    /// `DescriptorCache`.
    private let pinned: Int32?
    /// Tensor indices by name, built on first use: checkpoints keep their own index, so files
    /// opened through one (a million-tensor shard, say) never build this.
    private let byName = Mutex<[String: Int]?>(nil)

    /// Opens and validates `path`. Throws a `MergeKitError` naming the file on any problem.
    public init(path: String) throws(MergeKitError) {
        self.path = path
        let fd: Int32
        let st: stat
        do {
            (fd, st) = try FileSystem.openRegularFile(path)
        } catch where error.code == .isDirectory {
            throw MergeKitError(.isDirectory, file: path, "is a directory, not a .safetensors file",
                fix: "Pass the directory as a checkpoint, or name the .safetensors file inside it")
        }
        var keepOpen = false
        defer { if !keepOpen { close(fd) } }
        let size = Int(st.st_size)
        fileSize = size
        identity = FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        if size == 0 {
            mapping = nil
            _ = try SafeTensorsHeader.parse(fileBytes: UnsafeRawBufferPointer(start: nil, count: 0), file: path)
            preconditionFailure("an empty file cannot hold a valid header")
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw MergeKitError(.fileUnreadable, file: path, "cannot be memory-mapped (\(String(cString: strerror(errno))))")
        }
        mapping = p
        memoryOwner = nil
        do {
            header = try SafeTensorsHeader.parse(fileBytes: UnsafeRawBufferPointer(start: p, count: size), file: path)
        } catch {
            munmap(p, size)
            throw error
        }
        // The header's pages were read once, to parse it (up to 100 MB): out of the resident set.
        _ = madvise(p, min(size, header.dataStart) / FileSystem.pageSize * FileSystem.pageSize, MADV_DONTNEED)
        keepOpen = true
        isPlanned = false
        pinned = nil
        DescriptorCache.inputs.adopt(fd, for: self)
    }

    /// A file another format's reader opened (with `FileSystem.openRegularFile`), mapped whole
    /// (`mapping`, nil when empty) and validated: its `tensors` are at offsets in the file itself
    /// (`SafeTensorsHeader.init(absolute:)`). The descriptor is handed over: to
    /// `DescriptorCache` (reopened by `path` when needed), or kept (`pinned`) for a file that has
    /// no path any more.
    init(adopting fd: Int32, status st: stat, mapping: UnsafeMutableRawPointer?, path: String, tensors: [TensorInfo], pinned: Bool) {
        self.path = path
        header = SafeTensorsHeader(absolute: tensors)
        fileSize = Int(st.st_size)
        identity = FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        isPlanned = false
        self.mapping = mapping
        memoryOwner = nil
        self.pinned = pinned ? fd : nil
        if !pinned { DescriptorCache.inputs.adopt(fd, for: self) }
    }

    /// The file `layout` describes, before it is written: the header it will have (parsed from
    /// the layout's own bytes, as opening the written file will parse it), so that planning what
    /// reads it — a later stage of a multi-document recipe — checks names, shapes, dtypes and
    /// metadata before any work. Nothing is opened; its bytes cannot be read (`bytes(of:)` and
    /// `read` must not be called) and its identity is a placeholder, so checks that need values
    /// skip it (they run again on the written file).
    ///
    /// With `memory` (the file's bytes, built in memory by `owner`: `MemoryOutput`), the same
    /// file readable: `bytes(of:)` and `read` serve it from memory.
    init(planned layout: SafeTensorsLayout, path: String,
         memory: (owner: AnyObject, bytes: UnsafeRawBufferPointer)? = nil) throws(MergeKitError) {
        self.path = path
        var parsed: Result<SafeTensorsHeader, MergeKitError>!
        layout.prefix.withUnsafeBytes { raw in
            let headerBytes = UnsafeRawBufferPointer(rebasing: raw[SafeTensorsHeader.lengthPrefixSize...])
            parsed = Result { () throws(MergeKitError) -> SafeTensorsHeader in
                try SafeTensorsHeader.parse(headerBytes: headerBytes, headerSize: headerBytes.count, dataSize: layout.dataSize, file: path)
            }
        }
        header = try parsed.get()
        fileSize = layout.fileSize
        pinned = nil
        if let memory {
            precondition(memory.bytes.count == layout.fileSize)
            // A distinct identity per buffer: no file on disk has device .max.
            identity = FileIdentity(device: .max, inode: UInt64(UInt(bitPattern: memory.bytes.baseAddress)))
            mapping = UnsafeMutableRawPointer(mutating: memory.bytes.baseAddress)
            memoryOwner = memory.owner
            isPlanned = false
        } else {
            identity = FileIdentity(device: .max, inode: .max)
            mapping = nil
            memoryOwner = nil
            isPlanned = true
        }
    }

    deinit {
        if memoryOwner != nil { return }
        if let mapping { munmap(mapping, fileSize) }
        if let pinned { close(pinned) } else { DescriptorCache.inputs.remove(self) }
    }

    /// Opens the path again for `DescriptorCache`, refusing a file that is no longer this one.
    private func reopen() throws(MergeKitError) -> Int32 {
        precondition(!isPlanned, "\(path) is planned, not written: it cannot be read")
        let (fd, st) = try FileSystem.openRegularFile(path)
        guard UInt64(st.st_dev) == identity.device && UInt64(st.st_ino) == identity.inode && Int(st.st_size) == fileSize else {
            close(fd)
            throw MergeKitError(.fileUnreadable, file: path, "was replaced or changed since it was opened",
                fix: "Do not modify inputs while merging")
        }
        return fd
    }

    /// Tensors in data order.
    public var tensors: [TensorInfo] { header.tensors }
    public var metadata: [String: String]? { header.metadata }

    public func tensor(named name: String) -> TensorInfo? {
        let index = byName.withLock { byName in
            if byName == nil {
                var index: [String: Int] = [:]
                index.reserveCapacity(header.tensors.count)
                for (i, t) in header.tensors.enumerated() { index[t.name] = i }
                byName = index
            }
            return byName![name]
        }
        return index.map { header.tensors[$0] }
    }

    /// The raw little-endian bytes of `tensor` (which must come from this file).
    public func bytes(of tensor: TensorInfo) -> UnsafeRawBufferPointer {
        precondition(!isPlanned, "\(path) is planned, not written: its bytes cannot be read")
        let start = header.dataStart + tensor.begin
        precondition(start + tensor.byteCount <= fileSize)
        return UnsafeRawBufferPointer(start: mapping.map { $0 + start }, count: tensor.byteCount)
    }

    /// Absolute file offset of byte 0 of `tensor`'s data.
    public func fileOffset(of tensor: TensorInfo) -> Int { header.dataStart + tensor.begin }

    /// Reads `count` bytes at absolute file offset `offset` into `buffer` (pread, retried on short
    /// reads). Fails only if the file changed underneath (truncated) or the device failed.
    public func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws(MergeKitError) {
        if memoryOwner != nil, let mapping {
            precondition(offset >= 0 && offset + count <= fileSize)
            return buffer.copyMemory(from: mapping + offset, byteCount: count)
        }
        if let pinned { return try read(pinned, into: buffer, count: count, at: offset) }
        try DescriptorCache.inputs.withDescriptor(for: self, open: reopen) { fd throws(MergeKitError) in
            try read(fd, into: buffer, count: count, at: offset)
        }
    }

    private func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws(MergeKitError) {
        var done = 0
        while done < count {
            let n = pread(fd, buffer + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw MergeKitError(.fileUnreadable, file: path, "cannot be read at byte \(offset + done) (\(String(cString: strerror(errno))))",
                    fix: "Check the disk; the file may have been changed or removed during the merge")
            }
            if n == 0 {
                throw MergeKitError(.fileUnreadable, file: path, "ended at byte \(offset + done), before the data its header describes",
                    fix: "The file was truncated during the merge; do not modify inputs while merging")
            }
            done += n
        }
    }

    /// Drops the mapped pages wholly inside `range` (absolute file offsets) from this process's
    /// resident set. The page cache keeps them; a later access faults them back in unchanged.
    public func release(_ range: Range<Int>) {
        // (Memory a file was built in is its only copy: never dropped.)
        guard let mapping, memoryOwner == nil else { return }
        let page = FileSystem.pageSize
        let lower = (range.lowerBound + page - 1) / page * page
        let upper = min(range.upperBound, fileSize) / page * page
        guard upper > lower else { return }
        _ = madvise(mapping + lower, upper - lower, MADV_DONTNEED)
    }
}

/// A file's device and inode: two paths name the same file exactly when these are equal.
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64
}
