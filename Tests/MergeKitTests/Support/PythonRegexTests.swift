import Foundation
import Testing
@testable import MergeKit

/// PythonRegex against Python's `re` (Fixtures/python_regex/cases.json, made by
/// Fixtures/python_regex/make_python_regex_cases.py).
@Suite("Python regular expressions in linear time")
struct PythonRegexTests {
    static let table: JSONValue = try! JSONParser.parse(try! FileSystem.readFile(TestSupport.fixture("python_regex/cases.json")))

    /// "numbered" groups (group 0 first) and "named" groups of a `re.match`, as the script wrote them.
    static func expectGroups(_ match: PythonRegex.Match?, _ expected: JSONValue, _ context: String) {
        guard expected != .null else {
            #expect(match == nil, "\(context): Python finds no match")
            return
        }
        guard let match else {
            Issue.record("\(context): Python matches, PythonRegex does not")
            return
        }
        for (index, value) in expected["numbered"]!.arrayValue!.enumerated() {
            #expect(match.group(index) == value.stringValue, "\(context): group \(index)")
        }
        for member in expected["named"]!.objectMembers! {
            #expect(match.group(named: member.key) == member.value.stringValue, "\(context): group \(member.key)")
        }
    }

    /// Patterns whose last loop iteration matches the empty string after a path through the same
    /// instructions consumed text: Python reports the empty iteration's group, the Pike VM (one
    /// thread per instruction) the earlier one. Whether they match never differs, and PEFT reads
    /// only the `idx` group, which is outside every repetition.
    static let emptyIterationGroups: Set<String> = ["(a|)*b", "(a*)*b"]

    @Test("Every case gives Python's answers: fullmatch, match and its groups; what Python refuses is refused")
    func knownAnswers() throws {
        let cases = try #require(Self.table["cases"]?.arrayValue)
        #expect(cases.count > 100)
        var compared = 0
        for c in cases {
            let pattern = c["pattern"]!.stringValue!
            if let error = c["python_error"]?.stringValue {
                #expect(throws: PythonRegex.SyntaxError.self, "\(pattern): Python refuses it (\(error))") { try PythonRegex(pattern) }
                continue
            }
            let regex: PythonRegex
            do {
                regex = try PythonRegex(pattern)
            } catch {
                Issue.record("\(pattern): refused (\(error)) but Python accepts it")
                continue
            }
            for result in c["results"]!.arrayValue! {
                let subject = result["subject"]!.stringValue!
                let context = "\(pattern) on \(subject.debugDescription)"
                #expect(regex.fullMatch(subject) == (result["fullmatch"] == .bool(true)), "\(context): fullmatch")
                #expect(regex.matchesStart(subject) == (result["match"] == .bool(true)), "\(context): match")
                if Self.emptyIterationGroups.contains(pattern) {
                    #expect((regex.match(subject) == nil) == (result["groups"] == .null), "\(context): match")
                } else {
                    Self.expectGroups(regex.match(subject), result["groups"]!, context)
                }
                compared += 1
            }
        }
        #expect(compared > 300)
    }

    @Test("Backreferences, lookaround, atomic groups, possessive quantifiers, conditionals and flags are refused with a reason")
    func unsupported() throws {
        let cases = try #require(Self.table["unsupported"]?.arrayValue)
        #expect(cases.count >= 10)
        for c in cases {
            let pattern = c["pattern"]!.stringValue!
            do {
                _ = try PythonRegex(pattern)
                Issue.record("\(pattern) was accepted")
            } catch {
                #expect(error.message.contains("not supported"), "\(pattern): \(error)")
            }
        }
    }

    @Test("Nested quantifiers that make Python backtrack for minutes give its answers on long module names")
    func hostilePatterns() throws {
        let cases = try #require(Self.table["hostile"]?.arrayValue)
        #expect(!cases.isEmpty)
        for c in cases {
            let regex = try PythonRegex(c["pattern"]!.stringValue!)
            for result in c["results"]!.arrayValue! {
                let subject = result["subject"]!.stringValue!
                #expect(regex.fullMatch(subject) == (result["fullmatch"] == .bool(true)), "\(regex.pattern) on \(subject)")
                #expect(regex.matchesStart(subject) == (result["match"] == .bool(true)), "\(regex.pattern) on \(subject)")
            }
        }
        // The trial's pattern, spliced as PEFT's get_pattern_key does, on a 4 kB module name.
        let key = "((a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s|t|u|v|w|x|y|z|_|\\.|[0-9])+)+Q"
        let spliced = try PythonRegex("(.*\\.)?(\(key))$")
        let name = String(repeating: "model.layers.12.self_attn.q_proj.", count: 128) + "weight"
        #expect(!spliced.matchesStart(name))
        #expect(spliced.matchesStart(name + "Q"))
        #expect(spliced.match(name + "Q")?.group(2) == "weightQ")
    }

    @Test("Patterns longer than the bound, or that compile to too many instructions, are refused")
    func bounds() throws {
        let long = String(repeating: "a", count: PythonRegex.maximumPatternLength + 1)
        #expect(throws: PythonRegex.SyntaxError.self) { try PythonRegex(long) }
        #expect((try? PythonRegex(String(repeating: "a", count: PythonRegex.maximumPatternLength))) != nil)
        // Counted repetitions multiply: 1000 × 1000 copies.
        do {
            _ = try PythonRegex("((a{1000}){1000}){1000}")
            Issue.record("accepted a pattern of 10⁹ instructions")
        } catch {
            #expect(error.message.contains("too complex"))
        }
        // An empty body repeats to nothing, however large the count.
        #expect(try PythonRegex("(?:){4294967294}x").fullMatch("x"))
        // Deep nesting compiles without recursion trouble in matching.
        let deep = String(repeating: "(", count: 500) + "a" + String(repeating: ")*", count: 500)
        #expect(try PythonRegex(deep).fullMatch(String(repeating: "a", count: 300)))
    }
}
