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

// MARK: - Thread list

extension PythonRegex {
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
