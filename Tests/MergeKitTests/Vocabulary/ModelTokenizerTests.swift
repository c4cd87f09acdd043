import Foundation
import Testing
@testable import MergeKit

/// Reading a model's tokenizer.json (`ModelTokenizer`).
@Suite("Vocabularies: tokenizer files")
struct ModelTokenizerTests {
    static let models = TestSupport.fixture("mergekit_goldens/vocab/models")

    @Test("A tokenizer.json with the bytes of one already read is that tokenizer under its own path; other bytes are parsed")
    func reuse() throws {
        let base = try #require(try ModelTokenizer.read(try Checkpoint(path: Self.models + "/base")))
        let tied = try #require(try ModelTokenizer.read(try Checkpoint(path: Self.models + "/tied_base"), known: [base]))
        #expect(tied.path == Self.models + "/tied_base/tokenizer.json" && base.path == Self.models + "/base/tokenizer.json")
        #expect(tied.vocabulary == base.vocabulary && tied.addedTokens == base.addedTokens && tied.bytes == base.bytes)
        let chat = try #require(try ModelTokenizer.read(try Checkpoint(path: Self.models + "/chat"), known: [base]))
        #expect(chat.vocabulary["<|im_start|>"] == 40 && base.vocabulary["<|im_start|>"] == nil)
        #expect(try ModelTokenizer.read(try Checkpoint(path: Self.models + "/notok"), known: [base]) == nil)
    }
}
