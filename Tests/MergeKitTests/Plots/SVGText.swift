import Foundation

/// Reading the SVG the plots write, in tests: it is one element per line, groups indented, so
/// a part of a chart is the lines between `<g class="PART"` and its `</g>`.
enum SVGText {
    /// The lines of every group of class `part` (without the group's own lines).
    static func parts(_ svg: String, _ part: String) -> [[String]] {
        let lines = svg.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var result: [[String]] = []
        var i = 0
        while i < lines.count {
            let line = lines[i]
            let indent = line.prefix { $0 == " " }.count
            if line.dropFirst(indent).hasPrefix("<g class=\"\(part)\"") {
                var body: [String] = []
                i += 1
                while i < lines.count, !(lines[i].prefix { $0 == " " }.count == indent && lines[i].dropFirst(indent) == "</g>") {
                    body.append(lines[i])
                    i += 1
                }
                result.append(body)
            }
            i += 1
        }
        return result
    }

    /// The one group of class `part`.
    static func part(_ svg: String, _ part: String) -> [String] {
        parts(svg, part).first ?? []
    }

    /// `svg` without its groups of class `part` (a picture missing that part, for the rendering
    /// tests' regressions), or only without the group whose first line contains `matching`.
    static func removing(_ part: String, matching: String? = nil, from svg: String) -> String {
        let lines = svg.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var out: [String] = []
        var i = 0
        while i < lines.count {
            let line = lines[i]
            let indent = line.prefix { $0 == " " }.count
            if line.dropFirst(indent).hasPrefix("<g class=\"\(part)\""), matching.map({ line.contains($0) }) ?? true {
                while i < lines.count, !(lines[i].prefix { $0 == " " }.count == indent && lines[i].dropFirst(indent) == "</g>") { i += 1 }
                i += 1
                continue
            }
            out.append(line)
            i += 1
        }
        return out.joined(separator: "\n")
    }

    /// `svg` without the `element` lines inside its groups of class `part` (a heat map without
    /// its printed values).
    static func removing(_ element: String, in part: String, from svg: String) -> String {
        var inside: Int?
        return svg.split(separator: "\n", omittingEmptySubsequences: false).compactMap { line -> String? in
            let indent = line.prefix { $0 == " " }.count
            if let depth = inside {
                if indent == depth && line.dropFirst(indent) == "</g>" { inside = nil }
                return line.dropFirst(indent).hasPrefix("<\(element) ") ? nil : String(line)
            }
            if line.dropFirst(indent).hasPrefix("<g class=\"\(part)\"") { inside = indent }
            return String(line)
        }.joined(separator: "\n")
    }

    /// The text content of each `<text>` element among `lines` (entities left escaped).
    static func texts(_ lines: [String]) -> [String] {
        lines.compactMap { line in
            guard line.contains("<text"), let open = line.firstIndex(of: ">"), let close = line.range(of: "</text>") else { return nil }
            return String(line[line.index(after: open)..<close.lowerBound])
        }
    }

    /// The value of `name` in an element's line.
    static func attribute(_ name: String, _ line: String) -> String? {
        guard let start = line.range(of: " \(name)=\"") else { return nil }
        let rest = line[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    static func number(_ name: String, _ line: String) -> Double? {
        attribute(name, line).flatMap(Double.init)
    }

    /// The elements named `element` among `lines`.
    static func elements(_ element: String, _ lines: [String]) -> [String] {
        lines.filter { $0.trimmingCharacters(in: .whitespaces).hasPrefix("<\(element) ") }
    }
}
