/// The SVG text the plots are made of: a list of elements with every number printed at a fixed
/// precision and every text XML-escaped, so the same chart gives the same bytes on every run and
/// machine (no dates, no random ids, no locale).
struct SVGCanvas {
    private(set) var lines: [String] = []
    private var depth = 0

    /// A coordinate or length: rounded to 2 decimals, trailing zeros dropped, never "-0".
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let hundredths = (value * 100).rounded()
        if hundredths == 0 { return "0" }
        let sign = hundredths < 0 ? "-" : ""
        let magnitude = Int(min(abs(hundredths), 1e15))
        let whole = magnitude / 100, fraction = magnitude % 100
        if fraction == 0 { return "\(sign)\(whole)" }
        let digits = fraction % 10 == 0 ? String(fraction / 10) : (fraction < 10 ? "0\(fraction)" : String(fraction))
        return "\(sign)\(whole).\(digits)"
    }

    /// `text` escaped for XML content and attribute values; characters XML 1.0 does not allow
    /// (control characters other than tab and line breaks, which become spaces) become U+FFFD.
    static func escaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out += " "
            default:
                let v = scalar.value
                if v < 0x20 || (0x7F...0x9F).contains(v) || v == 0xFFFE || v == 0xFFFF {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// The width `text` takes at `size` in a sans-serif font, estimated without font metrics
    /// (DejaVu Sans, the widest common sans-serif, averages about 0.6 em for mixed text; wide
    /// and narrow letters are weighted; bold is about 12 % wider) — used to lay out legends and
    /// truncate labels.
    static func textWidth(_ text: String, size: Double, bold: Bool = false) -> Double {
        var em = 0.0
        for scalar in text.unicodeScalars {
            switch scalar {
            case "i", "j", "l", "I", "!", "|", ".", ",", ":", ";", "'", "(", ")", "[", "]", " ": em += 0.32
            case "m", "w", "M", "W", "@", "%": em += 0.9
            case "A"..."Z", "0"..."9", "_", "#", "&", "=", "+", "<", ">", "~", "−", "…": em += 0.68
            default: em += scalar.value > 0x2E7F ? 1.0 : 0.6
            }
        }
        return em * size * (bold ? 1.12 : 1)
    }

    /// `text` cut to fit `width` at `size`, ending in "…" when cut (whole characters kept).
    static func truncated(_ text: String, width: Double, size: Double, bold: Bool = false) -> String {
        guard textWidth(text, size: size, bold: bold) > width else { return text }
        var kept = ""
        let ellipsis = textWidth("…", size: size, bold: bold)
        for character in text {
            let next = kept + String(character)
            if textWidth(next, size: size, bold: bold) + ellipsis > width { break }
            kept = next
        }
        return kept.trimmingTrailingSpaces + "…"
    }

    // MARK: Elements

    mutating func raw(_ line: String) {
        lines.append(String(repeating: "  ", count: depth) + line)
    }

    /// Opens a group (`class` names the part of the chart, for tests and styling).
    mutating func open(_ part: String, transform: (x: Double, y: Double)? = nil, attributes: String = "") {
        var line = "<g class=\"\(part)\""
        if let transform { line += " transform=\"translate(\(Self.number(transform.x)),\(Self.number(transform.y)))\"" }
        if !attributes.isEmpty { line += " " + attributes }
        raw(line + ">")
        depth += 1
    }

    mutating func close() {
        depth -= 1
        raw("</g>")
    }

    mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String,
                       stroke: String? = nil, strokeWidth: Double = 1) {
        var line = "<rect x=\"\(Self.number(x))\" y=\"\(Self.number(y))\" width=\"\(Self.number(width))\" height=\"\(Self.number(height))\" fill=\"\(fill)\""
        if let stroke { line += " stroke=\"\(stroke)\" stroke-width=\"\(Self.number(strokeWidth))\"" }
        raw(line + "/>")
    }

    mutating func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String,
                       width: Double = 1, dash: String? = nil) {
        var line = "<line x1=\"\(Self.number(x1))\" y1=\"\(Self.number(y1))\" x2=\"\(Self.number(x2))\" y2=\"\(Self.number(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(Self.number(width))\""
        if let dash { line += " stroke-dasharray=\"\(dash)\"" }
        raw(line + "/>")
    }

    /// An open polyline through `points` (nothing for fewer than 2).
    mutating func polyline(_ points: [(x: Double, y: Double)], stroke: String, width: Double, dash: String? = nil) {
        guard points.count >= 2 else { return }
        let list = points.map { "\(Self.number($0.x)),\(Self.number($0.y))" }.joined(separator: " ")
        var line = "<polyline points=\"\(list)\" fill=\"none\" stroke=\"\(stroke)\" stroke-width=\"\(Self.number(width))\" stroke-linejoin=\"round\" stroke-linecap=\"round\""
        if let dash { line += " stroke-dasharray=\"\(dash)\"" }
        raw(line + "/>")
    }

    mutating func circle(x: Double, y: Double, radius: Double, fill: String, stroke: String? = nil, strokeWidth: Double = 1) {
        var line = "<circle cx=\"\(Self.number(x))\" cy=\"\(Self.number(y))\" r=\"\(Self.number(radius))\" fill=\"\(fill)\""
        if let stroke { line += " stroke=\"\(stroke)\" stroke-width=\"\(Self.number(strokeWidth))\"" }
        raw(line + "/>")
    }

    enum Anchor: String { case start, middle, end }

    /// A line of text at (x, y) (the baseline), escaped; `rotate` in degrees about (x, y); `halo`
    /// draws a white outline under the letters so they stay readable over lines.
    mutating func text(_ text: String, x: Double, y: Double, size: Double, anchor: Anchor = .start,
                       bold: Bool = false, fill: String = Palette.text, rotate: Double? = nil, halo: Bool = false) {
        var line = "<text x=\"\(Self.number(x))\" y=\"\(Self.number(y))\" font-size=\"\(Self.number(size))\""
        if anchor != .start { line += " text-anchor=\"\(anchor.rawValue)\"" }
        if bold { line += " font-weight=\"bold\"" }
        line += " fill=\"\(fill)\""
        if halo { line += " stroke=\"#ffffff\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\"" }
        if let rotate { line += " transform=\"rotate(\(Self.number(rotate)) \(Self.number(x)) \(Self.number(y)))\"" }
        raw(line + ">\(Self.escaped(text))</text>")
    }

    // MARK: The document

    /// The first bytes of every SVG MergeKit writes: how `PlotFile` recognises a plot of its own
    /// (one it may replace) among files that are there.
    static let signature = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- A plot written by MergeKit -->\n"

    /// The whole document: `width` × `height` user units (pixels at 96 dpi; rounded up to whole
    /// pixels, so a PNG of it is exactly that size), a white background, `title` as the
    /// document's title, and the elements drawn so far.
    func document(width: Double, height: Double, title: String) -> String {
        let w = Self.number(width.rounded(.up)), h = Self.number(height.rounded(.up))
        var out = Self.signature
        out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" viewBox=\"0 0 \(w) \(h)\" font-family=\"sans-serif\">\n"
        out += "  <title>\(Self.escaped(title))</title>\n"
        out += "  <rect width=\"\(w)\" height=\"\(h)\" fill=\"#ffffff\"/>\n"
        for line in lines { out += "  " + line + "\n" }
        out += "</svg>\n"
        return out
    }
}

extension String {
    fileprivate var trimmingTrailingSpaces: String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
