extension PythonRegex {
    /// A parsed pattern: what `Parser` builds and `Compiler` compiles.
    indirect enum Node {
        case empty
        case scalar(Unicode.Scalar)
        case any
        case set(Int)
        case assertion(Assertion)
        /// A group; `capture` is its number (nil for `(?:…)`).
        case group(Node, capture: Int?)
        case concatenation([Node])
        case alternation([Node])
        /// `max` nil: unbounded. `loop` numbers the repetition (its iteration-start slot).
        case repetition(Node, min: Int, max: Int?, greedy: Bool, loop: Int)

        /// Whether the node compiles to no instructions at all.
        var isVoid: Bool {
            switch self {
            case .empty: return true
            case .group(let body, let capture): return capture == nil && body.isVoid
            case .concatenation(let items): return items.allSatisfy(\.isVoid)
            case .repetition(let body, _, _, _, _): return body.isVoid
            default: return false
            }
        }
    }

    /// Recursive descent over the pattern's code points, following `sre_parse`.
    struct Parser {
        let p: [Unicode.Scalar]
        var i = 0
        var classes: [CharacterClass] = []
        var groupCount = 0
        var groupNames: [String: Int] = [:]
        var loopCount = 0
        /// Python's MAXREPEAT: repeat counts must be below it.
        static let maximumRepeat = 4_294_967_295

        init(_ pattern: [Unicode.Scalar]) { p = pattern }

        private func fail(_ message: String, at position: Int? = nil) -> SyntaxError {
            SyntaxError(message: message, position: position ?? i)
        }

        private var atEnd: Bool { i >= p.count }
        private func peek(_ offset: Int = 0) -> Unicode.Scalar? { i + offset < p.count ? p[i + offset] : nil }

        mutating func parseWhole() throws(SyntaxError) -> Node {
            let node = try parseAlternation()
            if !atEnd {
                // Only an unmatched ')' stops the top level.
                throw fail("unbalanced parenthesis")
            }
            return node
        }

        private mutating func parseAlternation() throws(SyntaxError) -> Node {
            var branches = [try parseConcatenation()]
            while peek() == "|" {
                i += 1
                branches.append(try parseConcatenation())
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        private mutating func parseConcatenation() throws(SyntaxError) -> Node {
            var items: [Node] = []
            while let c = peek(), c != "|", c != ")" {
                let start = i
                guard let atom = try parseAtom() else { continue }
                items.append(try parseQuantifiers(atom, start: start))
            }
            return items.isEmpty ? .empty : items.count == 1 ? items[0] : .concatenation(items)
        }

        /// The quantifiers after an atom (at most one; a second is "multiple repeat").
        private mutating func parseQuantifiers(_ atom: Node, start: Int) throws(SyntaxError) -> Node {
            guard let (min, max, at) = try parseQuantifier() else { return atom }
            if case .assertion = atom { throw fail("nothing to repeat", at: at) }
            var greedy = true
            if peek() == "?" {
                greedy = false
                i += 1
            } else if peek() == "+" {
                throw fail("possessive quantifiers are not supported (they need backtracking)")
            }
            if let (_, _, again) = try parseQuantifier() {
                throw fail("multiple repeat", at: again)
            }
            loopCount += 1
            return .repetition(atom, min: min, max: max, greedy: greedy, loop: loopCount - 1)
        }

        /// `* + ? {m} {m,} {,n} {m,n}` at the cursor (consumed), or nil (nothing consumed; a
        /// `{` that is not a valid quantifier stays a literal).
        private mutating func parseQuantifier() throws(SyntaxError) -> (Int, Int?, Int)? {
            let at = i
            switch peek() {
            case "*": i += 1; return (0, nil, at)
            case "+": i += 1; return (1, nil, at)
            case "?": i += 1; return (0, 1, at)
            case "{":
                // {m}, {m,}, {,n}, {m,n}, {,}: decimal digits (ASCII) around an optional comma.
                var j = i + 1
                func digits() -> (value: Int?, overflow: Bool) {
                    var value = 0, any = false, overflow = false
                    while j < p.count, p[j].value >= 0x30, p[j].value <= 0x39 {
                        any = true
                        if value > Self.maximumRepeat { overflow = true } else { value = value * 10 + Int(p[j].value - 0x30) }
                        j += 1
                    }
                    return (any ? value : nil, overflow)
                }
                let low = digits()
                var high = low
                let comma = j < p.count && p[j] == ","
                if comma {
                    j += 1
                    high = digits()
                } else if low.value == nil {
                    return nil
                }
                guard j < p.count && p[j] == "}" else { return nil }
                i = j + 1
                let min = low.value ?? 0
                if low.overflow || high.overflow || min >= Self.maximumRepeat || (high.value ?? 0) >= Self.maximumRepeat {
                    throw fail("the repetition number is too large", at: at + 1)
                }
                let max: Int? = comma ? high.value : low.value
                if let max, max < min { throw fail("min repeat greater than max repeat", at: at + 1) }
                return (min, max, at)
            default:
                return nil
            }
        }

        /// One atom, or nil for something that matches nothing and is skipped (a comment).
        private mutating func parseAtom() throws(SyntaxError) -> Node? {
            let c = p[i]
            switch c {
            case "*", "+", "?":
                throw fail("nothing to repeat")
            case "{":
                // A valid quantifier here has nothing to repeat; otherwise '{' is a literal.
                let save = i
                if (try parseQuantifier()) != nil { throw fail("nothing to repeat", at: save) }
                i = save + 1
                return .scalar(c)
            case ".":
                i += 1
                return .any
            case "^":
                i += 1
                return .assertion(.start)
            case "$":
                i += 1
                return .assertion(.endOrFinalNewline)
            case "[":
                return try parseClass()
            case "(":
                return try parseGroup()
            case "\\":
                return try parseEscape()
            default:
                i += 1
                return .scalar(c)
            }
        }

        private mutating func parseGroup() throws(SyntaxError) -> Node? {
            let open = i
            i += 1
            var capture: Int? = nil
            if peek() == "?" {
                i += 1
                guard let kind = peek() else { throw fail("unexpected end of pattern") }
                switch kind {
                case ":":
                    i += 1
                case "P":
                    i += 1
                    if peek() == "<" {
                        i += 1
                        let nameStart = i
                        while let ch = peek(), ch != ">" { i += 1 }
                        guard !atEnd else { throw fail("missing >, unterminated name", at: nameStart) }
                        var name = String.UnicodeScalarView()
                        name.append(contentsOf: p[nameStart..<i])
                        let text = String(name)
                        i += 1
                        guard Self.isIdentifier(p[nameStart..<(i - 1)]) else {
                            throw fail(text.isEmpty ? "missing group name" : "bad character in group name '\(text)'", at: nameStart)
                        }
                        guard groupNames[text] == nil else { throw fail("redefinition of group name '\(text)'", at: nameStart) }
                        groupCount += 1
                        capture = groupCount
                        groupNames[text] = groupCount
                    } else if peek() == "=" {
                        throw fail("backreferences ((?P=name)) are not supported (they need backtracking)")
                    } else {
                        throw fail("unknown extension ?P\(peek().map { String(Character($0)) } ?? "")")
                    }
                case "#":
                    while let ch = peek(), ch != ")" { i += 1 }
                    guard !atEnd else { throw fail("missing ), unterminated comment", at: open) }
                    i += 1
                    return nil
                case "=", "!":
                    throw fail("lookahead assertions are not supported (they need backtracking)")
                case "<":
                    if peek(1) == "=" || peek(1) == "!" {
                        throw fail("lookbehind assertions are not supported (they need backtracking)")
                    }
                    throw fail("unknown extension ?<")
                case ">":
                    throw fail("atomic groups are not supported (they need backtracking)")
                case "(":
                    throw fail("conditional groups are not supported (they need backtracking)")
                default:
                    if "aiLmsux-".unicodeScalars.contains(kind) {
                        throw fail("inline flags such as (?i) are not supported")
                    }
                    throw fail("unknown extension ?\(Character(kind))")
                }
            } else {
                groupCount += 1
                capture = groupCount
            }
            let body = try parseAlternation()
            guard peek() == ")" else { throw fail("missing ), unterminated subpattern", at: open) }
            i += 1
            return .group(body, capture: capture)
        }

        private static func isIdentifier(_ name: ArraySlice<Unicode.Scalar>) -> Bool {
            guard let first = name.first, first == "_" || first.properties.isXIDStart else { return false }
            return name.dropFirst().allSatisfy { $0.properties.isXIDContinue }
        }

        /// An escape outside a class.
        private mutating func parseEscape() throws(SyntaxError) -> Node {
            let start = i
            i += 1
            guard let c = peek() else { throw fail("bad escape (end of pattern)", at: start) }
            switch c {
            case "A": i += 1; return .assertion(.start)
            case "Z": i += 1; return .assertion(.end)
            case "b": i += 1; return .assertion(.wordBoundary)
            case "B": i += 1; return .assertion(.notWordBoundary)
            case "d", "D", "w", "W", "s", "S":
                i += 1
                return .set(addClass(CharacterClass(categories: [Self.category(c)])))
            case "1"..."9":
                // Three octal digits make an octal escape; anything else is a group reference.
                if let d1 = peek(1), let d2 = peek(2), Self.isOctal(c), Self.isOctal(d1), Self.isOctal(d2) {
                    let value = Self.octal([c, d1, d2])
                    guard value <= 0o377 else { throw fail("octal escape value \\\(c)\(d1)\(d2) outside of range 0-0o377", at: start) }
                    i += 3
                    return .scalar(Unicode.Scalar(value)!)
                }
                throw fail("backreferences (\\\(Character(c))) are not supported (they need backtracking)", at: start)
            default:
                return .scalar(try parseCommonEscape(start: start))
            }
        }

        private static func category(_ c: Unicode.Scalar) -> (category: CharacterClass.Category, negated: Bool) {
            switch c {
            case "d": return (.digit, false)
            case "D": return (.digit, true)
            case "w": return (.word, false)
            case "W": return (.word, true)
            case "s": return (.space, false)
            default: return (.space, true)
            }
        }

        private static func isOctal(_ c: Unicode.Scalar) -> Bool { c.value >= 0x30 && c.value <= 0x37 }
        private static func octal(_ digits: [Unicode.Scalar]) -> UInt32 { digits.reduce(0) { $0 * 8 + ($1.value - 0x30) } }

        /// Escapes that mean one character, in and out of classes; the cursor is on the
        /// character after the backslash.
        private mutating func parseCommonEscape(start: Int) throws(SyntaxError) -> Unicode.Scalar {
            let c = p[i]
            i += 1
            switch c {
            case "n": return "\n"
            case "t": return "\t"
            case "r": return "\r"
            case "f": return "\u{0C}"
            case "v": return "\u{0B}"
            case "a": return "\u{07}"
            case "x", "u", "U":
                let width = c == "x" ? 2 : c == "u" ? 4 : 8
                guard i + width <= p.count, p[i..<(i + width)].allSatisfy({ $0.properties.isASCIIHexDigit }) else {
                    throw fail("incomplete escape \\\(Character(c))", at: start)
                }
                var value: UInt32 = 0
                for h in p[i..<(i + width)] { value = value * 16 + UInt32(Int(String(Character(h)), radix: 16)!) }
                i += width
                guard let scalar = Unicode.Scalar(value) else { throw fail("bad escape \\\(Character(c))", at: start) }
                return scalar
            case "0":
                var digits: [Unicode.Scalar] = [c]
                while digits.count < 3, let d = peek(), Self.isOctal(d) {
                    digits.append(d)
                    i += 1
                }
                return Unicode.Scalar(Self.octal(digits))!
            case "N":
                throw fail("named character escapes (\\N{…}) are not supported", at: start)
            default:
                if c.isASCII && (c.properties.isAlphabetic || (c.value >= 0x30 && c.value <= 0x39)) {
                    throw fail("bad escape \\\(Character(c))", at: start)
                }
                return c
            }
        }

        private mutating func addClass(_ cls: CharacterClass) -> Int {
            classes.append(cls)
            return classes.count - 1
        }

        private enum ClassItem {
            case scalar(Unicode.Scalar)
            case category((category: CharacterClass.Category, negated: Bool))
        }

        /// One item of a class at the cursor: a character (escapes decoded: `\b` is backspace, `\1`–`\7`
        /// start octal) or a class escape (`\d \w \s` and their negations).
        private mutating func parseClassItem(open: Int) throws(SyntaxError) -> ClassItem {
            let start = i
            guard let c = peek() else { throw fail("unterminated character set", at: open) }
            i += 1
            guard c == "\\" else { return .scalar(c) }
            guard let e = peek() else { throw fail("unterminated character set", at: open) }
            switch e {
            case "d", "D", "w", "W", "s", "S":
                i += 1
                return .category(Self.category(e))
            case "b":
                i += 1
                return .scalar("\u{08}")
            case "1"..."7":
                var digits: [Unicode.Scalar] = []
                while digits.count < 3, let d = peek(), Self.isOctal(d) {
                    digits.append(d)
                    i += 1
                }
                let value = Self.octal(digits)
                guard value <= 0o377 else { throw fail("octal escape value outside of range 0-0o377", at: start) }
                return .scalar(Unicode.Scalar(value)!)
            case "8", "9", "A", "Z", "B":
                throw fail("bad escape \\\(Character(e))", at: start)
            default:
                return .scalar(try parseCommonEscape(start: start))
            }
        }

        /// `[…]`: the cursor is on '['.
        private mutating func parseClass() throws(SyntaxError) -> Node {
            let open = i
            i += 1
            var cls = CharacterClass()
            if peek() == "^" {
                cls.negated = true
                i += 1
            }
            var first = true
            while true {
                guard let c = peek() else { throw fail("unterminated character set", at: open) }
                if c == "]" && !first { i += 1; break }
                first = false
                let itemStart = i
                // One item: a character, or a class escape such as \d.
                let low: Unicode.Scalar
                switch try parseClassItem(open: open) {
                case .category(let category):
                    cls.categories.append(category)
                    if peek() == "-" && peek(1) != nil && peek(1) != "]" {
                        throw fail("bad character range", at: itemStart)
                    }
                    continue
                case .scalar(let c):
                    low = c
                }
                // A range low-high (a '-' before ']' is a literal).
                if peek() == "-", let after = peek(1), after != "]" {
                    i += 1
                    guard case .scalar(let high) = try parseClassItem(open: open) else { throw fail("bad character range", at: itemStart) }
                    guard low.value <= high.value else { throw fail("bad character range", at: itemStart) }
                    cls.ranges.append(low.value...high.value)
                } else {
                    cls.ranges.append(low.value...low.value)
                }
            }
            return .set(addClass(cls))
        }
    }
}
