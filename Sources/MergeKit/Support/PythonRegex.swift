/// A regular expression in the subset of Python's `re` syntax that PEFT's module patterns use,
/// matched in time linear in the subject's length.
///
/// PEFT matches module names with patterns taken from `adapter_config.json` (`target_modules` as a
/// string, `exclude_modules`, `layers_pattern`, the keys of `rank_pattern` / `alpha_pattern`).
/// Python's backtracking `re` needs exponential time for some of them — `((a|b|_|\.|[0-9])+)+Q`
/// on a long name that does not end in Q — so MergeKit never backtracks: the pattern is compiled
/// to a Thompson NFA and run as a Pike VM, which keeps at most one thread per instruction and so
/// does O(subject length × program size) work on any input. Programs are bounded
/// (`maximumPatternLength` characters, `maximumProgramSize` instructions), so every match ends
/// within a fixed budget.
///
/// **Semantics** are Python 3's `re` on `str` patterns without flags, code point by code point:
/// literals and escapes (`\.`, `\n`, `\t`, `\xhh`, `\uhhhh`, `\Uhhhhhhhh`, octal `\0…`), `.` (any
/// character but `\n`), classes (`[a-z_]`, `[^.]`, `\d \w \s \D \W \S` with Unicode meaning),
/// groups `( )`, `(?: )`, `(?P<name> )`, comments `(?# )`, alternation `|`, the quantifiers
/// `* + ? {m} {m,} {,n} {m,n}` and their lazy forms, and the anchors `^ \A $ \Z \b \B` (`$` also
/// matches before a final `\n`). A `{` that does not start a valid quantifier is a literal.
/// `fullMatch` is `re.fullmatch`; `match` is `re.match` (anchored at the start) and reports the
/// groups of the match Python's backtracking would find first (the Pike VM keeps threads in
/// backtracking priority order). Like Python, a repetition stops after an iteration that matched
/// the empty string. One difference remains, in groups only: when such an empty iteration runs
/// through instructions that an earlier iteration already passed at the same position, the Pike VM
/// keeps the earlier thread, so a group inside the repetition reports the earlier iteration's text
/// (`(a|)*b` on "aab": group 1 is "a" here, "" in Python). Whether a pattern matches never differs.
///
/// **Refused** with a `SyntaxError`: everything Python refuses (unbalanced parentheses, nothing to
/// repeat, multiple repeat, bad escapes and ranges, duplicate group names), and the valid syntax
/// that needs backtracking or is not implemented — backreferences (`\1`, `(?P=name)`),
/// lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`), atomic groups and possessive quantifiers, conditionals,
/// inline flags (`(?i)`), `\N{…}`.
struct PythonRegex: Sendable {
    /// Why a pattern was refused, and the character position (0-based) where.
    struct SyntaxError: Error, Sendable, CustomStringConvertible {
        let message: String
        let position: Int
        var description: String { "\(message) at position \(position)" }
    }

    /// Longest pattern accepted, in characters (PEFT's patterns are module names or short
    /// alternations; a longer one is refused rather than compiled).
    static let maximumPatternLength = 16_384
    /// Most NFA instructions a pattern may compile to (counted repetitions expand: `(ab){100}`
    /// is 100 copies). Each character of a subject costs at most this many steps.
    static let maximumProgramSize = 100_000
    /// Bound on capture slots × instructions: the memory `match` may need for its threads.
    static let maximumCaptureCells = 1 << 22

    /// The pattern as given.
    let pattern: String
    private let program: [Instruction]
    private let classes: [CharacterClass]
    /// Capture slots: 2 per group, group 0 (the whole match) included, then the optional
    /// repetitions' iteration starts.
    private let slotCount: Int
    private let groupNames: [String: Int]

    /// One match of `match(_:)`: the subject and the spans of its groups.
    struct Match: Sendable {
        let subject: [Unicode.Scalar]
        let slots: [Int]
        private let names: [String: Int]

        fileprivate init(subject: [Unicode.Scalar], slots: [Int], names: [String: Int]) {
            self.subject = subject
            self.slots = slots
            self.names = names
        }

        /// Group `index` (0: the whole match) as matched, nil when it did not take part.
        func group(_ index: Int) -> String? {
            guard index >= 0, 2 * index + 1 < slots.count, slots[2 * index] >= 0, slots[2 * index + 1] >= 0 else { return nil }
            var text = String.UnicodeScalarView()
            text.append(contentsOf: subject[slots[2 * index]..<slots[2 * index + 1]])
            return String(text)
        }

        /// The group named `name` (`(?P<name>…)`), nil when there is none or it did not take part.
        func group(named name: String) -> String? {
            names[name].flatMap(group)
        }
    }

    /// Compiles `pattern`; throws when Python would refuse it or when it uses syntax this
    /// matcher does not implement (see the type's documentation).
    init(_ pattern: String) throws(SyntaxError) {
        self.pattern = pattern
        let scalars = Array(pattern.unicodeScalars)
        guard scalars.count <= Self.maximumPatternLength else {
            throw SyntaxError(message: "the pattern is \(scalars.count) characters long; at most \(Self.maximumPatternLength) are accepted", position: Self.maximumPatternLength)
        }
        var parser = Parser(scalars)
        let tree = try parser.parseWhole()
        let groupSlots = 2 * (parser.groupCount + 1)
        var compiler = Compiler(classes: parser.classes, loopSlots: groupSlots)
        compiler.emit(.save(0))
        try compiler.compile(tree, position: 0)
        compiler.emit(.save(1))
        compiler.emit(.match)
        program = compiler.program
        classes = parser.classes
        slotCount = groupSlots + parser.loopCount
        guard slotCount * program.count <= Self.maximumCaptureCells else {
            throw SyntaxError(message: "the pattern is too complex (\(parser.groupCount) groups and \(parser.loopCount) repetitions in \(program.count) instructions)", position: 0)
        }
        groupNames = parser.groupNames
    }

    /// The number of the group named `name`, if the pattern has one.
    func groupIndex(named name: String) -> Int? { groupNames[name] }

    /// Python's `re.fullmatch(pattern, subject) is not None`.
    func fullMatch(_ subject: String) -> Bool {
        run(Array(subject.unicodeScalars), wholeSubject: true, captures: false) != nil
    }

    /// Python's `re.match(pattern, subject) is not None` (a match starting at the subject's start).
    func matchesStart(_ subject: String) -> Bool {
        run(Array(subject.unicodeScalars), wholeSubject: false, captures: false) != nil
    }

    /// Python's `re.match(pattern, subject)`: the first match starting at the subject's start,
    /// with its groups.
    func match(_ subject: String) -> Match? {
        let scalars = Array(subject.unicodeScalars)
        return run(scalars, wholeSubject: false, captures: true).map { Match(subject: scalars, slots: $0, names: groupNames) }
    }

    // MARK: Pike VM

    /// The capture slots of the highest-priority match anchored at the start (and, with
    /// `wholeSubject`, ending at the end), or nil. Without `captures` no slots are kept (the
    /// result is empty when there is a match): whether a match exists does not depend on them.
    private func run(_ subject: [Unicode.Scalar], wholeSubject: Bool, captures: Bool) -> [Int]? {
        let n = subject.count
        let slots = captures ? slotCount : 0
        var current = ThreadList(capacity: program.count, slots: slots)
        var next = ThreadList(capacity: program.count, slots: slots)
        var scratch = [Int](repeating: -1, count: slots)
        var stack: [(pc: Int, slot: Int, value: Int)] = []
        var best: [Int]?
        addThread(&current, pc: 0, position: 0, subject: subject, captures: &scratch, stack: &stack)
        var position = 0
        while true {
            guard current.count > 0 else { break }
            next.clear()
            var index = 0
            threads: while index < current.count {
                let pc = current.pcs[index]
                switch program[pc] {
                case .match:
                    if !wholeSubject || position == n {
                        best = current.captures(of: index)
                        // Lower-priority threads can no longer win.
                        break threads
                    }
                case .scalar(let c):
                    if position < n && subject[position] == c { advance(index, to: pc + 1) }
                case .any:
                    if position < n && subject[position] != "\n" { advance(index, to: pc + 1) }
                case .set(let k):
                    if position < n && classes[k].contains(subject[position]) { advance(index, to: pc + 1) }
                case .split, .jump, .save, .assert, .loopCheck:
                    break // followed when the thread was added
                }
                index += 1
            }
            if position == n { break }
            position += 1
            swap(&current, &next)
        }
        return best

        func advance(_ index: Int, to pc: Int) {
            current.copyCaptures(of: index, into: &scratch)
            addThread(&next, pc: pc, position: position + 1, subject: subject, captures: &scratch, stack: &stack)
        }
    }

    /// Adds the thread at `pc` and every thread reachable from it without consuming a character
    /// (splits, jumps, saves, assertions that hold at `position`), in priority order. Iterative,
    /// so deep programs cannot exhaust the stack.
    private func addThread(_ list: inout ThreadList, pc start: Int, position: Int, subject: [Unicode.Scalar],
                           captures: inout [Int], stack: inout [(pc: Int, slot: Int, value: Int)]) {
        stack.removeAll(keepingCapacity: true)
        stack.append((start, -1, 0))
        while let top = stack.popLast() {
            if top.slot >= 0 {
                // Restore a capture changed on the path below this entry.
                captures[top.slot] = top.value
                if top.pc < 0 { continue }
            }
            var pc = top.pc
            while true {
                guard list.visit(pc) else { break }
                switch program[pc] {
                case .jump(let target):
                    pc = target
                    continue
                case .split(let first, let second):
                    stack.append((second, -1, 0))
                    pc = first
                    continue
                case .save(let slot):
                    if !captures.isEmpty {
                        stack.append((-1, slot, captures[slot]))
                        captures[slot] = position
                    }
                    pc += 1
                    continue
                case .assert(let assertion):
                    guard assertion.holds(at: position, in: subject) else { break }
                    pc += 1
                    continue
                case .loopCheck(let slot, let again, let exit):
                    // Without slots, `again` (whose split also reaches `exit`) keeps every path.
                    pc = !captures.isEmpty && captures[slot] == position ? exit : again
                    continue
                case .scalar, .any, .set, .match:
                    list.append(pc, captures: captures)
                }
                break
            }
        }
    }
}

// MARK: - Program

extension PythonRegex {
    fileprivate enum Instruction: Sendable {
        case scalar(Unicode.Scalar)
        /// `.`: any character but `\n`.
        case any
        case set(Int)
        /// Try `first`, then `second` (backtracking priority).
        case split(Int, Int)
        case jump(Int)
        case save(Int)
        case assert(Assertion)
        /// The end of an optional iteration whose start position is in `slot`: an iteration that
        /// matched the empty string leaves the loop (`exit`), as Python's `re` does; any other
        /// goes on at `again`.
        case loopCheck(slot: Int, again: Int, exit: Int)
        case match
    }

    fileprivate enum Assertion: Sendable {
        case start, endOrFinalNewline, end, wordBoundary, notWordBoundary

        func holds(at position: Int, in subject: [Unicode.Scalar]) -> Bool {
            let n = subject.count
            switch self {
            case .start: return position == 0
            case .end: return position == n
            case .endOrFinalNewline: return position == n || (position == n - 1 && subject[position] == "\n")
            case .wordBoundary, .notWordBoundary:
                // Python's \B does not match in an empty string (\b neither).
                if n == 0 { return false }
                let before = position > 0 && CharacterClass.isWord(subject[position - 1])
                let after = position < n && CharacterClass.isWord(subject[position])
                return (before != after) == (self == .wordBoundary)
            }
        }
    }

    /// A bracketed class or a class escape: ranges of code points and Unicode categories.
    fileprivate struct CharacterClass: Sendable {
        enum Category: Sendable { case digit, word, space }
        var ranges: [ClosedRange<UInt32>] = []
        var categories: [(category: Category, negated: Bool)] = []
        var negated = false

        func contains(_ c: Unicode.Scalar) -> Bool {
            var found = ranges.contains { $0.contains(c.value) }
            if !found {
                found = categories.contains { Self.isIn($0.category, c) != $0.negated }
            }
            return found != negated
        }

        static func isIn(_ category: Category, _ c: Unicode.Scalar) -> Bool {
            switch category {
            case .digit: return c.properties.generalCategory == .decimalNumber
            case .word: return isWord(c)
            case .space: return isSpace(c)
            }
        }

        /// Python's `\w` on str: `str.isalnum()` (letters, and characters with a numeric value) or `_`.
        static func isWord(_ c: Unicode.Scalar) -> Bool {
            if c.isASCII {
                let v = c.value
                return (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) || v == 0x5F
            }
            switch c.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
            default: return c.properties.numericType != nil
            }
        }

        /// Python's `\s` on str: `str.isspace()` (ASCII \t\n\v\f\r, \x1c–\x1f and space; the
        /// Unicode White_Space characters above).
        static func isSpace(_ c: Unicode.Scalar) -> Bool {
            if c.isASCII {
                let v = c.value
                return (v >= 0x09 && v <= 0x0D) || (v >= 0x1C && v <= 0x20)
            }
            return c.properties.isWhitespace
        }
    }

    /// The threads of one step: instruction indices in priority order, each with its captures,
    /// and a sparse set of the instructions visited in this step, so that each is followed once.
    fileprivate struct ThreadList {
        private(set) var pcs: [Int]
        private(set) var count = 0
        private var dense: [Int]
        private var sparse: [Int]
        private var members = 0
        private var slots: [Int]
        private let slotCount: Int

        init(capacity: Int, slots slotCount: Int) {
            pcs = [Int](repeating: 0, count: capacity)
            dense = [Int](repeating: 0, count: capacity)
            sparse = [Int](repeating: 0, count: capacity)
            slots = [Int](repeating: -1, count: capacity * slotCount)
            self.slotCount = slotCount
        }

        mutating func clear() {
            count = 0
            members = 0
        }

        /// Marks `pc` as visited in this step; false when it already was.
        mutating func visit(_ pc: Int) -> Bool {
            let i = sparse[pc]
            if i < members && dense[i] == pc { return false }
            sparse[pc] = members
            dense[members] = pc
            members += 1
            return true
        }

        /// Appends a thread at `pc` (a character test or the match) with `captures`.
        mutating func append(_ pc: Int, captures: [Int]) {
            pcs[count] = pc
            for k in 0..<slotCount { slots[count * slotCount + k] = captures[k] }
            count += 1
        }

        func captures(of index: Int) -> [Int] {
            Array(slots[(index * slotCount)..<((index + 1) * slotCount)])
        }

        func copyCaptures(of index: Int, into buffer: inout [Int]) {
            for k in 0..<slotCount { buffer[k] = slots[index * slotCount + k] }
        }
    }
}

// MARK: - Parser

extension PythonRegex {
    fileprivate indirect enum Node {
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
    fileprivate struct Parser {
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

extension PythonRegex.CharacterClass {
    fileprivate init(categories: [(category: Category, negated: Bool)]) {
        self.init()
        self.categories = categories
    }
}

// MARK: - Compiler

extension PythonRegex {
    /// Thompson's construction, with splits ordered for backtracking priority.
    fileprivate struct Compiler {
        var program: [Instruction] = []
        let classes: [CharacterClass]
        /// The first slot after the groups': repetition `k` records its iteration's start in slot
        /// `loopSlots + k` (copies of one repetition run one after another, so they share it).
        let loopSlots: Int

        init(classes: [CharacterClass], loopSlots: Int) {
            self.classes = classes
            self.loopSlots = loopSlots
        }

        mutating func emit(_ instruction: Instruction) {
            program.append(instruction)
        }

        private mutating func checkSize(_ position: Int) throws(SyntaxError) {
            if program.count > PythonRegex.maximumProgramSize {
                throw SyntaxError(message: "the pattern is too complex (it compiles to more than \(PythonRegex.maximumProgramSize) instructions; counted repetitions such as {1000} multiply)", position: position)
            }
        }

        mutating func compile(_ node: Node, position: Int) throws(SyntaxError) {
            try checkSize(position)
            switch node {
            case .empty:
                break
            case .scalar(let c):
                emit(.scalar(c))
            case .any:
                emit(.any)
            case .set(let k):
                emit(.set(k))
            case .assertion(let a):
                emit(.assert(a))
            case .group(let body, let capture):
                if let capture { emit(.save(2 * capture)) }
                try compile(body, position: position)
                if let capture { emit(.save(2 * capture + 1)) }
            case .concatenation(let items):
                for item in items { try compile(item, position: position) }
            case .alternation(let branches):
                // split L1, next; L1: branch1; jump end; next: split L2, … ; last branch
                var jumps: [Int] = []
                for (k, branch) in branches.enumerated() {
                    if k < branches.count - 1 {
                        let split = program.count
                        emit(.split(split + 1, -1))
                        try compile(branch, position: position)
                        jumps.append(program.count)
                        emit(.jump(-1))
                        program[split] = .split(split + 1, program.count)
                    } else {
                        try compile(branch, position: position)
                    }
                }
                for j in jumps { program[j] = .jump(program.count) }
            case .repetition(let body, let min, let max, let greedy, let loop):
                // A body that compiles to nothing repeats to nothing.
                if body.isVoid { return }
                for _ in 0..<min {
                    try compile(body, position: position)
                    try checkSize(position)
                }
                // Each optional iteration records where it started (`slot`) and ends in a loop check.
                let slot = loopSlots + loop
                if let max {
                    // Optional copies nested as (e(e(e)?)?)?: skipping one, or an empty one, skips the rest.
                    var splits: [Int] = [], checks: [Int] = []
                    for _ in min..<max {
                        splits.append(program.count)
                        emit(.split(-1, -1))
                        emit(.save(slot))
                        try compile(body, position: position)
                        checks.append(program.count)
                        emit(.loopCheck(slot: slot, again: -1, exit: -1))
                        try checkSize(position)
                    }
                    let end = program.count
                    for s in splits { program[s] = greedy ? .split(s + 1, end) : .split(end, s + 1) }
                    for c in checks { program[c] = .loopCheck(slot: slot, again: c + 1, exit: end) }
                } else {
                    // L: split body, end; save; body; loop check → L or end
                    let loop = program.count
                    emit(.split(-1, -1))
                    emit(.save(slot))
                    try compile(body, position: position)
                    let check = program.count
                    emit(.loopCheck(slot: slot, again: loop, exit: -1))
                    let end = program.count
                    program[loop] = greedy ? .split(loop + 1, end) : .split(end, loop + 1)
                    program[check] = .loopCheck(slot: slot, again: loop, exit: end)
                }
            }
            try checkSize(position)
        }
    }
}
