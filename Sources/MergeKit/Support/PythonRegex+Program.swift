extension PythonRegex {
    /// One instruction of the program a pattern compiles to (`Compiler`), run by the Pike VM.
    enum Instruction: Sendable {
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

    enum Assertion: Sendable {
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
    struct CharacterClass: Sendable {
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
}

extension PythonRegex.CharacterClass {
    init(categories: [(category: Category, negated: Bool)]) {
        self.init()
        self.categories = categories
    }
}
