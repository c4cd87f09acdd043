import Testing
@testable import MergeKit

/// Parses `text` (as UTF-8) and returns the value or the error.
private func parseJSON(_ text: String) -> Result<JSONValue, JSONError> {
    parseJSON(Array(text.utf8))
}

private func parseJSON(_ bytes: [UInt8]) -> Result<JSONValue, JSONError> {
    do throws(JSONError) {
        return .success(try JSONParser.parse(bytes))
    } catch {
        return .failure(error)
    }
}

/// The reason `text` is rejected (nil, recorded as a failure, when it is accepted).
private func rejectionReason(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> JSONError.Reason? {
    rejection(Array(text.utf8), sourceLocation: sourceLocation)?.reason
}

private func rejection(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> JSONError? {
    switch parseJSON(bytes) {
    case .success(let value):
        Issue.record("accepted \(bytes) as \(value)", sourceLocation: sourceLocation)
        return nil
    case .failure(let error):
        return error
    }
}

/// The string a JSON string literal decodes to.
private func decodedString(_ literal: String) throws -> String {
    let value = try parseJSON(literal).get()
    return try #require(value.stringValue)
}

@Suite("JSON parser and serializer")
struct JSONTests {
    // MARK: Strings

    @Test("String escapes decode to their characters")
    func escapes() throws {
        #expect(try decodedString(#""a\"b\\c\/d\be\ff\ng\rh\ti""#) == "a\"b\\c/d\u{08}e\u{0C}f\ng\rh\ti")
        #expect(try decodedString(#""\u0041\u00e9\u00E9\u4e2d""#) == "Aéé中")
        #expect(try decodedString("\"caf\u{E9} \u{1F600}\"") == "café 😀")
        #expect(try decodedString(#""""#) == "")
    }

    @Test("Surrogate pairs decode to one scalar")
    func surrogatePairs() throws {
        #expect(try decodedString(#""\ud83d\ude00""#) == "😀")
        #expect(try decodedString(#""x\uD834\uDD1Ey""#) == "x𝄞y")
        #expect(try decodedString(#""\udbff\udfff""#).unicodeScalars.map(\.value) == [0x10FFFF])
    }

    @Test("Lone and malformed surrogates are rejected")
    func loneSurrogates() {
        for text in [#""\ud800""#, #""\udc00""#, #""\ud800\u0041""#, #""\ud800x""#, #""\ud83d\ud83d""#, #""\ude00\ud83d""#] {
            #expect(rejectionReason(text) == .invalidUnicodeEscape, "\(text)")
        }
    }

    @Test("Unknown escapes and bad hex digits are rejected")
    func badEscapes() {
        #expect(rejectionReason(#""\x41""#) == .invalidEscape)
        #expect(rejectionReason(#""\u12G4""#) == .invalidEscape)
        #expect(rejectionReason(#""\u12"#) == .unexpectedEnd)
        #expect(rejectionReason(#""abc"#) == .unexpectedEnd)
    }

    @Test("Unescaped control characters in strings are rejected")
    func controlCharacters() throws {
        for byte: UInt8 in [0x00, 0x01, 0x09, 0x0A, 0x0D, 0x1F] {
            let bytes: [UInt8] = [0x22, 0x61, byte, 0x62, 0x22]
            let error = rejection(bytes)
            #expect(error?.reason == .controlCharacterInString, "0x\(String(byte, radix: 16))")
            #expect(error?.offset == 2)
        }
        // DEL (0x7F) is not a control character in JSON's sense.
        #expect(try decodedString("\"a\u{7F}b\"") == "a\u{7F}b")
    }

    @Test("Input that is not UTF-8 is rejected")
    func invalidUTF8() {
        #expect(rejection([0x22, 0xC3, 0x28, 0x22])?.reason == .invalidUTF8)
        #expect(rejection([0x22, 0xED, 0xA0, 0x80, 0x22])?.reason == .invalidUTF8)  // encoded surrogate
    }

    // MARK: Objects, arrays, structure

    @Test("Duplicate keys are rejected, naming the key and its offset")
    func duplicateKeys() throws {
        let error = rejection(Array(#"{"a": 1, "b": 2, "a": 3}"#.utf8))
        #expect(error?.reason == .duplicateKey("a"))
        #expect(error?.offset == 17)
        #expect(rejectionReason(#"{"x": {"k": 1, "k": 1}}"#) == .duplicateKey("k"))
        // The same key in different objects is fine, and member order is kept.
        let value = try parseJSON(#"{"b": {"b": 1}, "a": [{"b": 2}]}"#).get()
        #expect(value.objectMembers?.map(\.key) == ["b", "a"])
        #expect(value["b"]?["b"] == .number("1"))
    }

    @Test("Nesting deeper than the limit is rejected")
    func depthLimit() throws {
        let limit = JSONParser.maximumDepth
        let deepest = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        var value = try parseJSON(deepest).get()
        var depth = 0
        while case .array(let inner) = value {
            depth += 1
            guard let first = inner.first else { break }
            value = first
        }
        #expect(depth == limit)

        let tooDeep = String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)
        let error = rejection(Array(tooDeep.utf8))
        #expect(error?.reason == .tooDeep)
        #expect(error?.offset == limit)
        let mixed = String(repeating: #"{"k":["#, count: limit / 2 + 1) + String(repeating: "]}", count: limit / 2 + 1)
        #expect(rejectionReason(mixed) == .tooDeep)
    }

    @Test("Content after the value is rejected; surrounding whitespace is not")
    func trailingContent() throws {
        let error = rejection(Array("{} x".utf8))
        #expect(error?.reason == .trailingContent)
        #expect(error?.offset == 3)
        #expect(rejectionReason("[1]]") == .trailingContent)
        #expect(rejectionReason("1 2") == .trailingContent)
        #expect(rejectionReason(#""a""b""#) == .trailingContent)
        #expect(try parseJSON(" \t\r\n[1] \n").get() == .array([.number("1")]))
    }

    @Test("Malformed structure is rejected with the offending byte")
    func malformedStructure() {
        #expect(rejectionReason("") == .unexpectedEnd)
        #expect(rejectionReason("   ") == .unexpectedEnd)
        #expect(rejectionReason("[1, 2") == .unexpectedEnd)
        #expect(rejectionReason(#"{"a" 1}"#) == .unexpectedByte(UInt8(ascii: "1")))
        #expect(rejectionReason(#"{"a": 1,}"#) == .unexpectedByte(UInt8(ascii: "}")))
        #expect(rejectionReason("[1,]") == .unexpectedByte(UInt8(ascii: "]")))
        #expect(rejectionReason("{a: 1}") == .unexpectedByte(UInt8(ascii: "a")))
        #expect(rejectionReason("tru") == .unexpectedEnd)
        #expect(rejectionReason("nulL") == .unexpectedByte(UInt8(ascii: "L")))
        let error = rejection(Array("[1, x]".utf8))
        #expect(error?.reason == .unexpectedByte(UInt8(ascii: "x")))
        #expect(error?.offset == 4)
    }

    @Test("Literals parse to their values")
    func literals() throws {
        #expect(try parseJSON(#"[true, false, null]"#).get() == .array([.bool(true), .bool(false), .null]))
    }

    // MARK: Numbers

    @Test("Valid numbers keep their exact text")
    func numbersKeepText() throws {
        for text in ["0", "-0", "7", "-12", "0.5", "1.0", "-12.5e+3", "1E-7", "2e10", "123456789012345678901234567890",
                     "9007199254740993", "18446744073709551617"] {
            #expect(try parseJSON(text).get() == .number(text))
            #expect(try parseJSON("[\(text)]").get() == .array([.number(text)]))
        }
    }

    @Test("Malformed numbers are rejected")
    func malformedNumbers() {
        #expect(rejectionReason("01") == .trailingContent)
        #expect(rejectionReason("[01]") == .unexpectedByte(UInt8(ascii: "1")))
        #expect(rejectionReason("-01") == .trailingContent)
        for text in ["-", "1.", "1e", "1e+", "1E-", "1.e5", "-a", "[-]", "[1.]", "[1e]"] {
            #expect(rejectionReason(text) == .invalidNumber, "\(text)")
        }
        for text in ["+1", ".5", "[.5]"] {
            guard case .unexpectedByte? = rejectionReason(text) else {
                Issue.record("\(text) was not rejected as an unexpected byte")
                continue
            }
        }
        #expect(rejectionReason("12abc") == .trailingContent)
    }

    @Test("Integers convert exactly, without rounding through Double")
    func exactIntegers() throws {
        #expect(try parseJSON("9007199254740993").get().nonNegativeInt == 9_007_199_254_740_993)
        #expect(try parseJSON("9223372036854775807").get().nonNegativeInt == Int.max)
        #expect(try parseJSON("9223372036854775808").get().nonNegativeInt == nil)
        #expect(try parseJSON("0").get().nonNegativeInt == 0)
        for text in ["-1", "-0", "1.0", "1e3", #""12""#] {
            #expect(try parseJSON(text).get().nonNegativeInt == nil, "\(text)")
        }
        #expect(try parseJSON("2.5e-1").get().doubleValue == 0.25)
    }

    // MARK: Serialization

    static let sample: JSONValue = .object([
        JSONMember("name", .string("quote \" backslash \\ slash / newline \n tab \t cr \r bs \u{08} ff \u{0C}")),
        JSONMember("controls", .string("\u{00}\u{01}\u{1F}\u{7F}")),
        JSONMember("unicode", .string("café 中文 😀 𝄞 \u{2028}")),
        JSONMember("", .string("")),
        JSONMember("numbers", .array([.number("0"), .number("-12.5e+3"), .number("123456789012345678901234567890"),
                                      .int(-7), .double(0.1), .double(3)])),
        JSONMember("literals", .array([.bool(true), .bool(false), .null])),
        JSONMember("empty", .object([JSONMember("array", .array([])), JSONMember("object", .object([]))])),
        JSONMember("nested", .array([.array([.object([JSONMember("z", .number("1")), JSONMember("a", .number("2"))])])])),
    ])

    @Test("parse(serialized(x)) == x, compact and indented", arguments: [0, 2, 4])
    func roundTrip(indent: Int) throws {
        let text = Self.sample.serialized(indent: indent)
        #expect(try parseJSON(text).get() == Self.sample)
        #expect(text.contains("\n") == (indent > 0))
    }

    @Test("DEL and C1 controls (such as CSI, U+009B) are escaped too, and parse back unchanged")
    func controlEscapes() throws {
        let value: JSONValue = .string("a\u{7F}b\u{9B}2Jc\u{A0}")
        #expect(value.serialized() == #""a\u007fb\u009b2Jc\#u{A0}""#)
        #expect(try parseJSON(value.serialized()).get() == value)
    }

    @Test("Serialization follows the compact form and Python's indent layout")
    func serializedLayout() {
        let value: JSONValue = .object([
            JSONMember("a", .array([.number("1"), .number("2")])),
            JSONMember("b", .object([])),
            JSONMember("c", .object([JSONMember("d", .string("x\u{01}"))])),
        ])
        #expect(value.serialized() == #"{"a":[1,2],"b":{},"c":{"d":"x\u0001"}}"#)
        #expect(value.serialized(indent: 2) == """
            {
              "a": [
                1,
                2
              ],
              "b": {},
              "c": {
                "d": "x\\u0001"
              }
            }
            """)
    }
}
