import Foundation

extension MergeKitError {
    /// A phrase of a message that names something the caller controls — a setting ("the batch
    /// size"), an input of an operation ("eval's model"), or another operation to run ("task
    /// arithmetic of BASE and τ, written to MODEL"). The library says it in its own words; a front
    /// end may say it its own way (the command line names its flags), through `worded(by:)`.
    ///
    /// Messages record their terms when they interpolate them, `"\(term: .batchSize) must be at
    /// least 1"` (`Text`), so the words a front end replaces are exactly the words the library
    /// wrote.
    public struct Term: Hashable, Sendable {
        /// What the term names, e.g. "batch-size"; front ends key their wording on it.
        public let key: String
        /// Values the front end's wording needs (paths, counts), in order.
        public let arguments: [String]
        /// The library's words.
        public let words: String
        /// Whether the words begin a sentence (then so does the front end's wording).
        public let capitalized: Bool

        public init(_ key: String, _ words: String, arguments: [String] = []) {
            self.key = key
            self.words = words
            self.arguments = arguments
            capitalized = false
        }

        /// The term at the start of a sentence: its first letter capitalized.
        public var atStart: Term { Term(key, words.prefix(1).uppercased() + words.dropFirst(), arguments, capitalized: true) }

        private init(_ key: String, _ words: String, _ arguments: [String], capitalized: Bool) {
            (self.key, self.words, self.arguments, self.capitalized) = (key, words, arguments, capitalized)
        }
    }

    /// Message text that remembers the terms interpolated into it with `\(term:)`.
    public struct Text: ExpressibleByStringInterpolation, Sendable {
        public var text: String
        public var terms: [Term]

        public init(_ text: String) {
            self.text = text
            terms = []
        }

        public init(stringLiteral value: String) { self.init(value) }

        public init(stringInterpolation: StringInterpolation) {
            text = stringInterpolation.text
            terms = stringInterpolation.terms
        }

        public struct StringInterpolation: StringInterpolationProtocol {
            var text = "", terms: [Term] = []

            public init(literalCapacity: Int, interpolationCount: Int) { text.reserveCapacity(literalCapacity) }
            public mutating func appendLiteral(_ literal: String) { text += literal }
            /// Any value, as `String(describing:)` writes it (as in a `String` literal).
            public mutating func appendInterpolation<T>(_ value: T) { text += String(describing: value) }
            /// A term: its words, remembered for `worded(by:)`.
            public mutating func appendInterpolation(term: Term) {
                text += term.words
                terms.append(term)
            }
            /// Text with terms of its own (e.g. a fix built elsewhere).
            public mutating func appendInterpolation(_ other: Text) {
                text += other.text
                terms += other.terms
            }
        }
    }

    /// An error whose detail and fix remember the terms they name.
    public init(_ code: Code, file: String? = nil, tensor: String? = nil, _ detail: Text, fix: Text? = nil) {
        self.init(code, file: file, tensor: tensor, detail.text, fix: fix?.text)
        terms = detail.terms + (fix?.terms ?? [])
    }

    /// This error in a front end's words: every term `name` words its own way (nil: the library's
    /// words stay) is replaced in the detail and the fix, also of every problem.
    public func worded(by name: (Term) -> String?) -> MergeKitError {
        var copy = self
        // Longer phrases first, so that a term inside another is not replaced within it.
        for term in terms.sorted(by: { $0.words.count > $1.words.count }) {
            guard var words = name(term) else { continue }
            if term.capitalized { words = words.prefix(1).uppercased() + words.dropFirst() }
            copy.detail = copy.detail.replacingOccurrences(of: term.words, with: words)
            copy.fix = copy.fix?.replacingOccurrences(of: term.words, with: words)
        }
        copy.terms = []
        copy.problems = problems.map { $0.worded(by: name) }
        return copy
    }
}
