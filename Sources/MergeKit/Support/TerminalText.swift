/// Text from files (tensor names, metadata, paths) made safe to print on a terminal.
///
/// A name is data, not layout: a tensor named "x\nerror: …" must not forge a line of output, and
/// one holding ESC must not drive the terminal. Control characters (C0, DEL, C1) and the Unicode
/// bidirectional overrides are replaced by visible escapes — `\n`, `\r`, `\t`, else `\u{1B}` —
/// and a backslash stays a backslash (names rarely hold one; the escapes are for reading, not
/// for parsing back). JSON output needs none of this: the serialiser escapes strings itself.
public enum TerminalText {
    /// `text` with every control character replaced by a visible escape (newlines too: call it
    /// on one line at a time, or on the names put into a line).
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else { out.unicodeScalars.append(scalar); continue }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }

    /// C0 controls, DEL, C1 controls, and the bidirectional embeddings, overrides and isolates.
    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return v < 0x20 || (0x7F...0x9F).contains(v) || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
    }

    /// Lines joined with newlines, each escaped: text whose only line breaks are its own.
    static func lines(_ lines: [String]) -> String {
        lines.map(escaped).joined(separator: "\n")
    }
}
