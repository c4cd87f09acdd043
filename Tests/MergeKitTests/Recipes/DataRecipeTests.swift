import Foundation
import Testing
@testable import MergeKit

/// Recipes that merge from data (`DataRecipe`): which recipes are ones, what is read from them,
/// and every schema problem reported at once with its line.
@Suite("Data recipes: schema")
struct DataRecipeTests {
    static func write(_ text: String) -> String {
        let path = TestSupport.temporaryDirectory("data-recipe") + "/recipe.yml"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test("A data method or a data: section makes a data recipe; a task-vector recipe is not one")
    func applies() {
        #expect(DataRecipe.applies(path: Self.write("merge_method: fisher\nmodels:\n  - model: a\n")))
        #expect(DataRecipe.applies(path: Self.write("merge_method: regmean_plusplus\nmodels: []\n")))
        #expect(DataRecipe.applies(path: Self.write("merge_method: ties\ndata: {samples: 4}\nmodels: []\n")))
        #expect(!DataRecipe.applies(path: Self.write("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n")))
        #expect(!DataRecipe.applies(path: Self.write("merge_method: [regmean]\nmodels: []\n")))
        #expect(!DataRecipe.applies(path: Self.write(": : not yaml [")))
        #expect(!DataRecipe.applies(path: "/nonexistent/recipe.yml"))
    }

    @Test("Models with their data and heads, settings in file order with their sections and lines")
    func reads() throws {
        let path = Self.write("""
            merge_method: regmean_plusplus
            base_model: pre
            models:
              - model: ft_a
                data: a.safetensors
                head: head_a.safetensors
              - {model: ft_b, data: b.safetensors}
            data:
              samples: 16
              batch_size: 4
            parameters:
              alpha: 0.9
              plusplus: true
              others: average
              quoted: "true"
            """)
        let recipe = try DataRecipe.load(path: path)
        #expect(recipe.method == "regmean_plusplus" && recipe.command == "regmean")
        #expect(recipe.base == "pre" && recipe.baseLine == 2)
        #expect(recipe.tasks.map(\.model) == ["ft_a", "ft_b"])
        #expect(recipe.tasks.map(\.data) == ["a.safetensors", "b.safetensors"])
        #expect(recipe.tasks.map(\.head) == ["head_a.safetensors", nil])
        #expect(recipe.settings.map(\.name) == ["samples", "batch_size", "alpha", "plusplus", "others", "quoted"])
        #expect(recipe.settings.map(\.section) == ["data", "data", "parameters", "parameters", "parameters", "parameters"])
        #expect(recipe.settings.map(\.line) == [9, 10, 12, 13, 14, 15])
        #expect(recipe.settings.map(\.value) == [.text("16"), .text("4"), .text("0.9"), .flag(true), .text("average"), .text("true")])
    }

    @Test("Every schema problem at once, each with its line")
    func problems() {
        let path = Self.write("""
            merge_method: regmean
            models:
              - model: ft_a
                data: a.safetensors
                weight: 1
              - data: b.safetensors
              - [ft_c]
            data:
              samples: [1, 2]
            sweep: {alpha: [0.5, 1]}
            parameters: 3
            """)
        #expect {
            try DataRecipe.load(path: path)
        } throws: { error in
            guard let error = error as? MergeKitError else { return false }
            let text = error.description
            return error.problems.count == 6
                && text.contains("line 5: unknown key \"weight\" in a models entry")
                && text.contains("line 6: a models entry needs model: PATH")
                && text.contains("line 7: each models entry must be a mapping")
                && text.contains("line 9: data.samples must be a single value")
                && text.contains("line 10: unknown key \"sweep\"")
                && text.contains("line 11: parameters must map setting names to values")
        }
    }

    @Test("A method that does not learn from data beside a data: section, or none, is named with the fix")
    func methods() {
        let wrong = Self.write("merge_method: ties\ndata: {samples: 4}\nmodels:\n  - model: a\n")
        #expect {
            try DataRecipe.load(path: wrong)
        } throws: { error in
            let text = (error as? MergeKitError)?.description ?? ""
            return text.contains("line 1: merge_method of a recipe with a data: section must be one of regmean, regmean_plusplus, fisher, adamerging, atlas, not \"ties\"")
        }
        let missing = Self.write("data: {samples: 4}\n")
        #expect {
            try DataRecipe.load(path: missing)
        } throws: { error in
            let text = (error as? MergeKitError)?.description ?? ""
            return text.contains("merge_method is missing") && text.contains("models is missing")
        }
        let several = Self.write("merge_method: fisher\nmodels: [{model: a}]\n---\nmerge_method: fisher\nmodels: [{model: b}]\n")
        #expect {
            try DataRecipe.load(path: several)
        } throws: { error in
            ((error as? MergeKitError)?.description ?? "").contains("holds several YAML documents")
        }
    }
}
