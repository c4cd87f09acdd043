import ZIPFoundation
import Foundation

/// The directory of a ZIP archive (the container `torch.save` writes), read strictly from the
/// file's bytes: every entry's name, method, sizes and where its data starts, so that stored
/// (uncompressed) entries — torch writes every storage stored, 64-byte aligned — are read in place
/// with `pread` like a safetensors file's tensors.
///
/// The structure follows PKWARE's APPNOTE: the end-of-central-directory record (searched only in
/// the last 22 + 65,535 bytes, where the format puts it), the ZIP64 locator and record when
/// present, the central directory, and each entry's local header (its name and extra field fix
/// where the data starts). ZIPFoundation's reader offers no public data offset and scans the
/// whole file backwards for a record, so the directory is read here; ZIPFoundation inflates the
/// few small deflated records (`contents(of:)`).
///
/// Everything is bounded before it is used: the entry count (`maximumEntries`), the central
/// directory's size, each name's length; every offset and size is checked against the file and
/// against the central directory's start; entries may not overlap one another (overlapping
/// entries are how a small archive claims terabytes), a stored entry's sizes must agree, and an
/// entry is neither encrypted, split over disks nor compressed by anything but deflate.
struct ZipArchive {
    struct Entry: Equatable {
        let name: String
        /// 0 = stored, 8 = deflate.
        let method: UInt16
        let crc32: UInt32
        let compressedSize: Int
        let uncompressedSize: Int
        let localHeaderOffset: Int
        /// Where the entry's (possibly compressed) bytes start in the file.
        let dataOffset: Int

        var isStored: Bool { method == ZipArchive.stored }
        var dataEnd: Int { dataOffset + compressedSize }
    }

    static let stored: UInt16 = 0
    static let deflated: UInt16 = 8
    /// More entries than any checkpoint has (one per storage, plus a handful of records).
    static let maximumEntries = 1 << 22
    /// A deflated record may grow at most this much (zlib's own best ratio is about 1032).
    static let maximumCompressionRatio = 1100

    /// Entries in central-directory order.
    let entries: [Entry]
    private let byName: [String: Int]

    func entry(named name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// Whether `bytes` starts like a ZIP archive (a local file header, or an empty archive's
    /// end record).
    static func looksLikeZip(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && (u32(bytes, 0) == 0x0403_4b50 || u32(bytes, 0) == 0x0605_4b50)
    }

    /// Reads `count` bytes of the archive at `offset` (both inside it), for a local header.
    typealias HeaderReader = (_ offset: Int, _ count: Int) throws(MergeKitError) -> [UInt8]

    /// Reads the directory of the archive whose whole content is `bytes`; `file` names it in errors.
    ///
    /// The local headers are scattered over the whole archive, one before each record. They are
    /// read from `bytes` unless `readHeader` is given: a caller whose `bytes` map a file passes a
    /// reader that copies them with `pread`, because touching a mapping maps the page-cache folio
    /// around the byte (up to megabytes with large folios), and one per storage would make
    /// resident memory grow with the checkpoint's size.
    init(_ bytes: UnsafeRawBufferPointer, file: String, readHeader: HeaderReader? = nil) throws(MergeKitError) {
        func invalid(_ detail: String) -> MergeKitError {
            MergeKitError(.archiveInvalid, file: file, detail,
                fix: "The archive is truncated or corrupt; download it again or re-save it with torch.save")
        }
        let size = bytes.count
        // The end record: 22 bytes, then a comment whose length it states, ending the file.
        var end: Int?
        var position = size - 22
        while position >= max(0, size - 22 - 0xFFFF) {
            if u32(bytes, position) == 0x0605_4b50 && position + 22 + Int(u16(bytes, position + 20)) == size {
                end = position
                break
            }
            position -= 1
        }
        guard let end else {
            throw invalid("has no ZIP end-of-central-directory record in its last 65,557 bytes (\(size) bytes in all)")
        }
        guard u16(bytes, end + 4) == 0 && u16(bytes, end + 6) == 0 && u16(bytes, end + 8) == u16(bytes, end + 10) else {
            throw invalid("is a multi-disk (split) ZIP archive")
        }
        var count = Int(u16(bytes, end + 10))
        var directorySize = Int(u32(bytes, end + 12))
        var directoryOffset = Int(u32(bytes, end + 16))
        var directoryEnd = end
        // ZIP64: a locator right before the end record points at the ZIP64 end record.
        if end >= 20 && u32(bytes, end - 20) == 0x0706_4b50 {
            let recordOffset = u64(bytes, end - 20 + 8)
            guard end >= 20 + 56, recordOffset <= UInt64(end - 20 - 56), u32(bytes, Int(recordOffset)) == 0x0606_4b50 else {
                throw invalid("has a ZIP64 locator pointing at byte \(recordOffset), where there is no ZIP64 end record")
            }
            let record = Int(recordOffset)
            guard u32(bytes, record + 16) == 0 && u32(bytes, record + 20) == 0 && u64(bytes, record + 24) == u64(bytes, record + 32) else {
                throw invalid("is a multi-disk (split) ZIP archive")
            }
            let entries64 = u64(bytes, record + 32), size64 = u64(bytes, record + 40), offset64 = u64(bytes, record + 48)
            guard entries64 <= UInt64(Self.maximumEntries), size64 <= UInt64(size), offset64 <= UInt64(size) else {
                throw MergeKitError(.archiveTooLarge, file: file,
                    "declares \(entries64) entries and a \(size64)-byte central directory, beyond the \(Self.maximumEntries)-entry limit or the file's \(size) bytes",
                    fix: "This is not a checkpoint torch.save wrote; re-save the state dict with torch.save")
            }
            count = Int(entries64)
            directorySize = Int(size64)
            directoryOffset = Int(offset64)
            directoryEnd = record
        }
        guard count <= Self.maximumEntries else {
            throw MergeKitError(.archiveTooLarge, file: file, "declares \(count) entries, above the limit of \(Self.maximumEntries)",
                fix: "This is not a checkpoint torch.save wrote; re-save the state dict with torch.save")
        }
        guard directoryOffset <= directoryEnd, directorySize <= directoryEnd - directoryOffset else {
            throw invalid("declares a central directory of \(directorySize) bytes at byte \(directoryOffset), past its end records at byte \(directoryEnd)")
        }
        guard directorySize >= 46 * count else {
            throw invalid("declares \(count) entries in a central directory of only \(directorySize) bytes")
        }

        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var byName: [String: Int] = [:]
        var cursor = directoryOffset
        let directoryLimit = directoryOffset + directorySize
        for index in 0..<count {
            guard cursor + 46 <= directoryLimit, u32(bytes, cursor) == 0x0201_4b50 else {
                throw invalid("central directory entry \(index) of \(count) is missing or malformed at byte \(cursor)")
            }
            let flags = u16(bytes, cursor + 8)
            let method = u16(bytes, cursor + 10)
            let crc = u32(bytes, cursor + 16)
            var compressed = UInt64(u32(bytes, cursor + 20))
            var uncompressed = UInt64(u32(bytes, cursor + 24))
            let nameLength = Int(u16(bytes, cursor + 28))
            let extraLength = Int(u16(bytes, cursor + 30))
            let commentLength = Int(u16(bytes, cursor + 32))
            let diskStart = u16(bytes, cursor + 34)
            var localOffset = UInt64(u32(bytes, cursor + 42))
            let next = cursor + 46 + nameLength + extraLength + commentLength
            guard next <= directoryLimit else {
                throw invalid("central directory entry \(index) runs past the directory's end")
            }
            let nameBytes = UnsafeRawBufferPointer(rebasing: bytes[(cursor + 46)..<(cursor + 46 + nameLength)])
            guard let name = String(validating: nameBytes, as: UTF8.self), !name.isEmpty, !name.contains("\0") else {
                throw invalid("central directory entry \(index) has an empty or non-UTF-8 name")
            }
            // The ZIP64 extra field holds, in order, the fields the header set to all ones.
            var extra = cursor + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = u16(bytes, extra), length = Int(u16(bytes, extra + 2))
                guard extra + 4 + length <= extraEnd else { throw invalid("entry \(name) has a malformed extra field") }
                if id == 0x0001 {
                    var field = extra + 4
                    func next64() throws(MergeKitError) -> UInt64 {
                        guard field + 8 <= extra + 4 + length else { throw invalid("entry \(name) has a truncated ZIP64 extra field") }
                        defer { field += 8 }
                        return u64(bytes, field)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next64() }
                    if compressed == 0xFFFF_FFFF { compressed = try next64() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try next64() }
                }
                extra += 4 + length
            }
            guard flags & 0x0001 == 0 else { throw invalid("entry \(name) is encrypted") }
            guard diskStart == 0 else { throw invalid("entry \(name) starts on another disk of a split archive") }
            guard method == Self.stored || method == Self.deflated else {
                throw invalid("entry \(name) uses compression method \(method); only stored and deflate entries are read")
            }
            guard compressed <= UInt64(size), uncompressed <= UInt64(Int.max / 2), localOffset <= UInt64(directoryOffset) else {
                throw invalid("entry \(name) declares sizes (\(compressed), \(uncompressed)) or an offset (\(localOffset)) beyond the file's \(size) bytes")
            }
            if method == Self.stored && compressed != uncompressed {
                throw invalid("stored entry \(name) declares \(compressed) bytes stored but \(uncompressed) bytes of content")
            }
            let local = Int(localOffset)
            guard local + 30 <= directoryOffset else {
                throw invalid("entry \(name)'s local header at byte \(local) is missing")
            }
            // The fixed fields and the name (as much of it as lies before the central directory).
            let headerCount = min(30 + nameLength, directoryOffset - local)
            let header: [UInt8]
            if let readHeader { header = try readHeader(local, headerCount) } else { header = Array(bytes[local..<(local + headerCount)]) }
            guard header[0..<4].elementsEqual([0x50, 0x4b, 0x03, 0x04]) else {
                throw invalid("entry \(name)'s local header at byte \(local) is missing")
            }
            let localNameLength = Int(header[26]) | Int(header[27]) << 8
            let dataOffset = local + 30 + localNameLength + (Int(header[28]) | Int(header[29]) << 8)
            guard localNameLength == nameLength,
                  dataOffset <= directoryOffset,
                  header.count == 30 + nameLength,
                  header[30...].elementsEqual(nameBytes) else {
                throw invalid("entry \(name)'s local header does not match its central directory entry")
            }
            guard Int(compressed) <= directoryOffset - dataOffset else {
                throw invalid("entry \(name)'s \(compressed) bytes at byte \(dataOffset) run past the central directory at byte \(directoryOffset) (a truncated archive)")
            }
            guard byName[name] == nil else { throw invalid("holds two entries named \(name)") }
            byName[name] = entries.count
            entries.append(Entry(name: name, method: method, crc32: crc, compressedSize: Int(compressed),
                                 uncompressedSize: Int(uncompressed), localHeaderOffset: local, dataOffset: dataOffset))
            cursor = next
        }
        // No two entries may share bytes: a small archive claiming terabytes does it by pointing
        // many entries at the same compressed data.
        let ordered = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (a, b) in zip(ordered, ordered.dropFirst()) where a.dataEnd > b.localHeaderOffset {
            throw MergeKitError(.archiveTooLarge, file: file,
                "entries \(a.name) and \(b.name) overlap (bytes \(a.localHeaderOffset)–\(a.dataEnd) and \(b.localHeaderOffset)–\(b.dataEnd)), as in a zip bomb",
                fix: "This is not a checkpoint torch.save wrote; re-save the state dict with torch.save")
        }
        self.entries = entries
        self.byName = byName
    }

    /// The content of `entry` (a small record: the pickle, the byte order), at most `limit`
    /// bytes: stored bytes are copied, deflated ones inflated (ZIPFoundation) under the limit and
    /// `maximumCompressionRatio`, and checked against the entry's size and CRC-32.
    static func contents(of entry: Entry, in bytes: UnsafeRawBufferPointer, limit: Int, file: String) throws(MergeKitError) -> [UInt8] {
        guard entry.uncompressedSize <= limit else {
            throw MergeKitError(.archiveTooLarge, file: file,
                "record \(entry.name) holds \(entry.uncompressedSize) bytes, above the \(limit)-byte limit for it",
                fix: "This is not a checkpoint torch.save wrote; re-save the state dict with torch.save")
        }
        let source = UnsafeRawBufferPointer(rebasing: bytes[entry.dataOffset..<entry.dataEnd])
        var output: [UInt8]
        if entry.isStored {
            output = Array(source)
        } else {
            let bound = min(limit, entry.uncompressedSize, max(entry.compressedSize, 1) &* maximumCompressionRatio)
            do throws(InflateFailure) {
                output = try inflate(source, bound: bound, expected: entry.uncompressedSize)
            } catch .tooLarge {
                throw MergeKitError(.archiveTooLarge, file: file,
                    "record \(entry.name) inflates past \(bound) bytes (it declares \(entry.uncompressedSize) from \(entry.compressedSize) compressed), as a zip bomb does",
                    fix: "This is not a checkpoint torch.save wrote; re-save the state dict with torch.save")
            } catch {
                throw MergeKitError(.archiveInvalid, file: file, "record \(entry.name) is not a valid deflate stream (\(error.reason))",
                    fix: "The archive is truncated or corrupt; download it again or re-save it with torch.save")
            }
        }
        guard output.count == entry.uncompressedSize else {
            throw MergeKitError(.archiveInvalid, file: file,
                "record \(entry.name) holds \(output.count) bytes but its directory entry says \(entry.uncompressedSize)",
                fix: "The archive is truncated or corrupt; download it again or re-save it with torch.save")
        }
        let crc = output.withUnsafeBytes { Data($0).crc32(checksum: 0) }
        guard crc == entry.crc32 else {
            throw MergeKitError(.archiveInvalid, file: file,
                "record \(entry.name) fails its CRC-32 check (\(crc) instead of \(entry.crc32))",
                fix: "The archive is corrupt; download it again or re-save it with torch.save")
        }
        return output
    }
}

extension ZipArchive {
    enum InflateFailure: Error {
        case tooLarge, truncated, invalid(String)

        var reason: String {
            switch self {
            case .tooLarge: "it inflates past its limit"
            case .truncated: "it is truncated"
            case .invalid(let what): what
            }
        }
    }

    /// Inflates the raw deflate stream `source` (ZIPFoundation over zlib) into at most `bound`
    /// bytes (`expected`: the size to reserve). Never waits on a stream that does not end.
    static func inflate(_ source: UnsafeRawBufferPointer, bound: Int, expected: Int = 0) throws(InflateFailure) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(min(max(0, expected), bound, 1 << 26))
        do {
            _ = try Data.decompress(size: Int64(source.count), bufferSize: 1 << 16, skipCRC32: true,
                provider: { position, size in
                    // Asked past the end: the stream never ended (zlib would wait forever).
                    guard Int(position) < source.count else { throw InflateFailure.truncated }
                    // Always `size` bytes, zeros past the end: the decoder hands zlib a full
                    // buffer's length whatever the chunk holds, and a stream that does not end
                    // must not make it read past the chunk (zeros are an invalid stored block).
                    let start = Int(position)
                    var chunk = Data(UnsafeRawBufferPointer(rebasing: source[start..<min(source.count, start + size)]))
                    if chunk.count < size { chunk.append(Data(count: size - chunk.count)) }
                    return chunk
                },
                consumer: { chunk in
                    guard output.count + chunk.count <= bound else { throw InflateFailure.tooLarge }
                    output.append(contentsOf: chunk)
                })
        } catch let failure as InflateFailure {
            throw failure
        } catch {
            throw .invalid("\(error)")
        }
        return output
    }
}

private func u16(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
    guard offset >= 0, offset + 2 <= bytes.count else { return 0 }
    return bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian
}

private func u32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
    guard offset >= 0, offset + 4 <= bytes.count else { return 0 }
    return bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
}

private func u64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
    guard offset >= 0, offset + 8 <= bytes.count else { return 0 }
    return bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian
}
