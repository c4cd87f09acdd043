import Foundation

/// Byte counts as people write and read them, one rule for every command and variable.
public enum ByteCount {
    /// A size with an optional suffix: K/M/G/T (or KB/MB/GB/TB) are powers of 1000, as
    /// transformers' "5GB"; KiB/MiB/GiB/TiB are powers of 1024; B or none is bytes. Nil when
    /// malformed, negative or beyond 9·10¹⁸.
    public static func parse(_ argument: String) -> Int? {
        let text = argument.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [
            ("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824), ("TIB", 1_099_511_627_776),
            ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
            ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("B", 1),
        ]
        var multiplier = 1.0
        var number = Substring(text)
        for (suffix, factor) in units where text.uppercased().hasSuffix(suffix) {
            multiplier = factor
            number = text.dropLast(suffix.count)
            break
        }
        guard let value = Double(number.trimmingCharacters(in: .whitespaces)), value.isFinite, value >= 0,
              value * multiplier < 9e18 else { return nil }
        return Int((value * multiplier).rounded())
    }

    /// Bytes in decimal units (kB, MB, GB, TB, PB), as file sizes are shown: "41 GB", "1.5 MB",
    /// "12 bytes".
    public static func describe(_ bytes: Int) -> String {
        let units: [(Double, String)] = [(1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")]
        for (scale, unit) in units where Double(bytes) >= scale {
            let value = Double(bytes) / scale
            return String(format: value < 10 ? "%.1f %@" : "%.0f %@", value, unit)
        }
        return "\(bytes) bytes"
    }
}
