import Testing
@testable import MergeKit

@Suite("Recipe problem order")
struct RecipeProblemOrderTests {
    @Test("Unknown parameters on one line are reported by name, the same in every run (not in hash order)")
    func unknownKeysOnOneLine() throws {
        let names = ["zeta", "alpha", "mu", "kappa", "beta", "omega", "delta", "sigma"]
        let recipe = try Recipe.parse("""
            merge_method: ties
            base_model: base
            models:
              - model: a
            parameters: {\(names.map { "\($0): 1" }.joined(separator: ", "))}
            """, path: "order.yml")
        do {
            try recipe.validateParameters()
            Issue.record("unknown parameters accepted")
        } catch {
            let reported = error.problems.compactMap { problem in names.first { problem.description.contains("no parameter \"\($0)\"") } }
            #expect(reported == names.sorted(), "\(error)")
        }
    }
}
