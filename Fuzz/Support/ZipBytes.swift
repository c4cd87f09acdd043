/// Writes ZIP archives in memory as `torch.save` lays them out (stored entries, data 64-byte
/// aligned by padding the local header's extra field), with knobs to make them wrong: the fuzz
/// target wraps its input as a checkpoint's pickle with it, and the hostile corpus builds broken
/// archives with it (a declared size that overlaps the next entry, a deflated record, an
/// encryption flag, a truncation).
public enum ZipBytes {
    public struct Entry {
        public var name: String
        /// The bytes written after the local header (already compressed for `method` 8).
        public var data: [UInt8]
        /// 0 = stored, 8 = deflate.
        public var method: UInt16
        /// The content's size as declared (nil = `data.count`, right for stored entries).
        public var uncompressedSize: Int?
        /// The stored size as declared (nil = `data.count`).
        public var compressedSize: Int?
        /// The CRC-32 as declared (nil = computed from `data`, right for stored entries).
        public var crc32: UInt32?
        public var flags: UInt16

        public init(_ name: String, _ data: [UInt8], method: UInt16 = 0, uncompressedSize: Int? = nil, compressedSize: Int? = nil,
                    crc32: UInt32? = nil, flags: UInt16 = 0) {
            self.name = name
            self.data = data
            self.method = method
            self.uncompressedSize = uncompressedSize
            self.compressedSize = compressedSize
            self.crc32 = crc32
            self.flags = flags
        }
    }

    /// The archive holding `entries` in order; `declaredEntries` overrides the end record's count.
    public static func archive(_ entries: [Entry], declaredEntries: Int? = nil) -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        for entry in entries {
            let name = Array(entry.name.utf8)
            let offset = out.count
            // Pad the extra field so the data starts 64-byte aligned, as torch does.
            var extra = 0
            while (offset + 30 + name.count + extra) % 64 != 0 { extra += 1 }
            if extra > 0 && extra < 4 { extra += 64 }
            let crc = entry.crc32 ?? crc32(entry.data)
            let compressed = UInt32(truncatingIfNeeded: entry.compressedSize ?? entry.data.count)
            let uncompressed = UInt32(truncatingIfNeeded: entry.uncompressedSize ?? entry.data.count)
            out += le32(0x0403_4b50) + le16(20) + le16(entry.flags) + le16(entry.method) + le16(0) + le16(0x21)
            out += le32(crc) + le32(compressed) + le32(uncompressed) + le16(UInt16(name.count)) + le16(UInt16(extra))
            out += name
            if extra > 0 { out += le16(0xAAAA) + le16(UInt16(extra - 4)) + [UInt8](repeating: 0, count: extra - 4) }
            out += entry.data
            central += le32(0x0201_4b50) + le16(20) + le16(20) + le16(entry.flags) + le16(entry.method) + le16(0) + le16(0x21)
            central += le32(crc) + le32(compressed) + le32(uncompressed) + le16(UInt16(name.count)) + le16(0) + le16(0)
            central += le16(0) + le16(0) + le32(0) + le32(UInt32(offset)) + name
        }
        let directoryOffset = out.count
        out += central
        let count = UInt16(truncatingIfNeeded: declaredEntries ?? entries.count)
        out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(count) + le16(count)
        out += le32(UInt32(central.count)) + le32(UInt32(directoryOffset)) + le16(0)
        return out
    }

    /// An archive as `torch.save` writes one: `prefix/data.pkl` holding `pickle`, `prefix/byteorder`,
    /// and `prefix/data/<key>` for each storage.
    public static func torchArchive(pickle: [UInt8], storages: [(key: String, bytes: [UInt8])], prefix: String = "archive",
                                    byteOrder: String = "little") -> [UInt8] {
        var entries = [Entry(prefix + "/data.pkl", pickle), Entry(prefix + "/byteorder", Array(byteOrder.utf8))]
        for storage in storages { entries.append(Entry(prefix + "/data/" + storage.key, storage.bytes)) }
        entries.append(Entry(prefix + "/version", Array("3\n".utf8)))
        return archive(entries)
    }

    /// The CRC-32 (ISO 3309, as ZIP uses) of `bytes`.
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
}
