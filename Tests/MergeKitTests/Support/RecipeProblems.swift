import Foundation
import Testing
@testable import MergeKit

/// Recipes planned for the problems they report before any work (the error suites of recipes).
enum RecipeProblems {
    /// Plans `text` (as recipe.yml in `dir`, a fresh directory when nil) and returns every
    /// problem's message; planning without an error, or leaving an output, is an issue.
    static func of(_ text: String, in dir: String? = nil, emit: EmitKind = .model, sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
        let fresh = dir == nil
        let dir = dir ?? TestSupport.temporaryDirectory("recipe-errors")
        defer { try? FileManager.default.removeItem(atPath: fresh ? dir : dir + "/out") }
        do {
            let recipe = try Recipe.parse(text, path: dir + "/recipe.yml")
            _ = try recipe.plan(output: dir + "/out", emit: emit)
            Issue.record("planned without an error", sourceLocation: sourceLocation)
            return []
        } catch {
            #expect(!FileManager.default.fileExists(atPath: dir + "/out"), sourceLocation: sourceLocation)
            return error.problems.isEmpty ? [error.description] : error.problems.map(\.description)
        }
    }

    /// Expects exactly the problems matching `expected` (each a list of fragments of one message).
    static func expect(_ text: String, in dir: String? = nil, _ expected: [[String]], emit: EmitKind = .model,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let found = of(text, in: dir, emit: emit, sourceLocation: sourceLocation)
        #expect(found.count == expected.count, "\(found)", sourceLocation: sourceLocation)
        for fragments in expected {
            #expect(found.contains { message in fragments.allSatisfy(message.contains) }, "missing \(fragments) in \(found)",
                    sourceLocation: sourceLocation)
        }
    }
}
