/// Why a JSON text was rejected, and the byte offset (from the start of the text) where.
public struct JSONError: Error, Equatable, Sendable {
    public enum Reason: Equatable, Sendable {
        case invalidUTF8
        case unexpectedEnd
        case unexpectedByte(UInt8)
        case invalidNumber
        case invalidEscape
        case invalidUnicodeEscape
        case controlCharacterInString
        case duplicateKey(String)
        case tooDeep
        case trailingContent
    }
    public var reason: Reason
    public var offset: Int
    /// Object nesting depth where the error happened (1 = the top-level object).
    public var depth: Int = 0

    public var description: String {
        switch reason {
        case .invalidUTF8: return "not valid UTF-8"
        case .unexpectedEnd: return "unexpected end of JSON at byte \(offset)"
        case .unexpectedByte(let b):
            let shown = (0x21...0x7E).contains(b) ? "'\(Character(Unicode.Scalar(b)))'" : "0x" + String(b, radix: 16)
            return "unexpected \(shown) at byte \(offset)"
        case .invalidNumber: return "malformed number at byte \(offset)"
        case .invalidEscape: return "invalid escape sequence at byte \(offset)"
        case .invalidUnicodeEscape: return "invalid \\u escape (lone surrogate) at byte \(offset)"
        case .controlCharacterInString: return "unescaped control character in a string at byte \(offset)"
        case .duplicateKey(let key): return "duplicate key \"\(key)\" at byte \(offset)"
        case .tooDeep: return "nesting deeper than \(JSONParser.maximumDepth) levels at byte \(offset)"
        case .trailingContent: return "unexpected content after the JSON value at byte \(offset)"
        }
    }
}

/// Parses one JSON text (surrounding whitespace allowed) into a `JSONValue`.
public struct JSONParser {
    /// Deeper nesting than this is rejected (safetensors headers need 3 levels).
    public static let maximumDepth = 64

    private let bytes: UnsafeRawBufferPointer
    private var index = 0

    private init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Parses `bytes`, which must be UTF-8.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONError) -> JSONValue {
        try parse(bytes, eachMember: nil)!
    }

    /// Parses `bytes` as `parse` does, but when the top level is an object hands its members to
    /// `member` one at a time, in file order, and returns nil: the object is never held whole (a
    /// safetensors header of a million tensors would take gigabytes as `JSONValue`s). Any other
    /// top-level value is returned. Errors are exactly `parse`'s; members before an error have
    /// been handed on, so callers defer their own checks until the parse has succeeded.
    public static func parse(_ bytes: UnsafeRawBufferPointer, eachMember member: ((String, JSONValue) -> Void)?) throws(JSONError) -> JSONValue? {
        guard isValidUTF8(bytes) else {
            throw JSONError(reason: .invalidUTF8, offset: 0)
        }
        var parser = JSONParser(bytes)
        parser.skipWhitespace()
        let value: JSONValue?
        if let member, !parser.atEnd && bytes[parser.index] == UInt8(ascii: "{") {
            _ = try parser.parseObject(depth: 1, eachMember: member)
            value = nil
        } else {
            value = try parser.parseValue(depth: 0)
        }
        parser.skipWhitespace()
        if parser.index != bytes.count {
            throw JSONError(reason: .trailingContent, offset: parser.index)
        }
        return value
    }

    /// Whether `bytes` is well-formed UTF-8, without copying it (ASCII, what headers nearly
    /// always are, is checked eight bytes at a time).
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var ascii = 0
        while ascii + 8 <= bytes.count && bytes.loadUnaligned(fromByteOffset: ascii, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 { ascii += 8 }
        var iterator = UnsafeRawBufferPointer(rebasing: bytes[ascii...]).makeIterator()
        var decoder = Unicode.UTF8.ForwardParser()
        while true {
            switch decoder.parseScalar(from: &iterator) {
            case .valid: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONError) -> JSONValue {
        var result: Result<JSONValue, JSONError> = .failure(JSONError(reason: .unexpectedEnd, offset: 0))
        bytes.withUnsafeBytes { raw in
            result = Result { () throws(JSONError) -> JSONValue in try parse(raw) }
        }
        return try result.get()
    }

    private func fail(_ reason: JSONError.Reason) -> JSONError {
        JSONError(reason: reason, offset: index)
    }

    private var atEnd: Bool { index >= bytes.count }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func expect(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw fail(.unexpectedEnd) }
        let p = literal.utf8Start
        for i in 0..<count where bytes[index + i] != p[i] {
            index += i
            throw fail(.unexpectedByte(bytes[index]))
        }
        index += count
    }

    private mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
        guard !atEnd else { throw fail(.unexpectedEnd) }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1, eachMember: nil)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw fail(.unexpectedByte(bytes[index]))
        }
    }

    /// An object; with `member`, its members go there instead of into the value (which is empty).
    private mutating func parseObject(depth: Int, eachMember member: ((String, JSONValue) -> Void)?) throws(JSONError) -> JSONValue {
        guard depth <= JSONParser.maximumDepth else { throw fail(.tooDeep) }
        index += 1  // {
        var members: [JSONMember] = []
        var seen = Set<String>()
        skipWhitespace()
        if !atEnd && bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard !atEnd else { throw fail(.unexpectedEnd) }
            guard bytes[index] == UInt8(ascii: "\"") else { throw fail(.unexpectedByte(bytes[index])) }
            let keyOffset = index
            let key = try parseString()
            guard seen.insert(key).inserted else {
                var error = JSONError(reason: .duplicateKey(key), offset: keyOffset)
                error.depth = depth
                throw error
            }
            skipWhitespace()
            guard !atEnd else { throw fail(.unexpectedEnd) }
            guard bytes[index] == UInt8(ascii: ":") else { throw fail(.unexpectedByte(bytes[index])) }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            if let member { member(key, value) } else { members.append(JSONMember(key, value)) }
            skipWhitespace()
            guard !atEnd else { throw fail(.unexpectedEnd) }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            throw fail(.unexpectedByte(bytes[index]))
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONError) -> JSONValue {
        guard depth <= JSONParser.maximumDepth else { throw fail(.tooDeep) }
        index += 1  // [
        var values: [JSONValue] = []
        skipWhitespace()
        if !atEnd && bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(values)
        }
        while true {
            skipWhitespace()
            values.append(try parseValue(depth: depth))
            skipWhitespace()
            guard !atEnd else { throw fail(.unexpectedEnd) }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(values)
            }
            throw fail(.unexpectedByte(bytes[index]))
        }
    }

    private mutating func parseNumber() throws(JSONError) -> String {
        let start = index
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard !atEnd else { throw fail(.invalidNumber) }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if isDigit(bytes[index]) {
            while !atEnd && isDigit(bytes[index]) { index += 1 }
        } else {
            throw fail(.invalidNumber)
        }
        if !atEnd && bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard !atEnd && isDigit(bytes[index]) else { throw fail(.invalidNumber) }
            while !atEnd && isDigit(bytes[index]) { index += 1 }
        }
        if !atEnd && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            index += 1
            if !atEnd && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) { index += 1 }
            guard !atEnd && isDigit(bytes[index]) else { throw fail(.invalidNumber) }
            while !atEnd && isDigit(bytes[index]) { index += 1 }
        }
        // A number glued to a letter ("12abc") is caught by the caller as an unexpected byte.
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    private mutating func parseHex4() throws(JSONError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail(.unexpectedEnd) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[index]
            let digit: UInt32
            switch b {
            case 0x30...0x39: digit = UInt32(b - 0x30)
            case 0x41...0x46: digit = UInt32(b - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(b - 0x61 + 10)
            default: throw fail(.invalidEscape)
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private mutating func parseString() throws(JSONError) -> String {
        index += 1  // opening quote
        var out: [UInt8] = []
        var runStart = index
        while true {
            guard !atEnd else { throw fail(.unexpectedEnd) }
            let b = bytes[index]
            if b == UInt8(ascii: "\"") {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                index += 1
                return String(decoding: out, as: UTF8.self)
            }
            if b < 0x20 { throw fail(.controlCharacterInString) }
            if b != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
            index += 1
            guard !atEnd else { throw fail(.unexpectedEnd) }
            let escaped = bytes[index]
            index += 1
            switch escaped {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try parseHex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"),
                          bytes[index + 1] == UInt8(ascii: "u") else { throw fail(.invalidUnicodeEscape) }
                    index += 2
                    let low = try parseHex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw fail(.invalidUnicodeEscape) }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw fail(.invalidUnicodeEscape)
                }
                guard let unicode = Unicode.Scalar(scalar) else { throw fail(.invalidUnicodeEscape) }
                out.append(contentsOf: Array(String(Character(unicode)).utf8))
            default:
                index -= 1
                throw fail(.invalidEscape)
            }
            runStart = index
        }
    }
}
