import Foundation
import Testing
@testable import MergeKit

/// A `models:` entry naming the base_model, as mergekit's examples write it (arcee_fusion.yml
/// lists `model_a` among the models and as the base): mergekit merges each distinct model once,
/// the base as the base, so for every method that merges against a base the entry is the base
/// itself, not another model with τ = 0.
@Suite("Recipes: the base listed among the models")
struct BaseListedAmongModelsTests {
    static let fixtures = TestSupport.fixture("").replacingOccurrences(of: "/$", with: "", options: .regularExpression)

    /// Every recipe method that merges against a base (averages — linear, passthrough — take
    /// every listed model as an input), with the parameters it needs and how many models it takes.
    static let methods: [(name: String, parameters: String, models: [String])] = MethodRegistry.recipeNames.compactMap { name in
        guard let (description, _) = MethodRegistry.recipeMethod(named: name) else { return nil }
        let kind = description.kind
        if kind.contains(.baseOptional) && !kind.contains(.baseAmongModels) { return nil }
        switch name {
        case "slerp": return (name, "parameters: {t: 0.3}\n", ["ft_a"])
        case "nearswap": return (name, "parameters: {t: 0.001}\n", ["ft_a"])
        case "arcee_fusion", "arcee-fusion": return (name, "", ["ft_a"])
        default:
            // A seeded method draws one stream per input: the same inputs give the same draws.
            let seeded = description.parameters.contains { $0.key == "seed" }
            return (name, seeded ? "parameters: {seed: 3}\n" : "", ["ft_a", "ft_b"])
        }
    }

    /// The recipe of `method` on the f32 fixtures, the base listed first among the models or not.
    static func recipe(_ method: (name: String, parameters: String, models: [String]), listed: Bool, baseEntry: String = "") -> String {
        var text = "merge_method: \(method.name)\nbase_model: \(fixtures)/f32/base\nmodels:\n"
        if listed { text += "  - model: \(fixtures)/f32/base\n\(baseEntry)" }
        for model in method.models { text += "  - model: \(fixtures)/f32/\(model)\n" }
        return text + method.parameters
    }

    static func merged(_ text: String) throws -> [String: (info: TensorInfo, values: [Double])] {
        let dir = TestSupport.temporaryDirectory("base-listed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (_, output) = try runRecipe(text, in: dir)
        return TestSupport.values(try Checkpoint(path: output))
    }

    static func expectSame(_ a: [String: (info: TensorInfo, values: [Double])], _ b: [String: (info: TensorInfo, values: [Double])],
                           _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.keys.sorted() == b.keys.sorted(), "\(label)", sourceLocation: sourceLocation)
        let differing = a.filter { name, x in !(x.info == b[name]?.info && x.values == b[name]?.values) }.keys.sorted()
        #expect(differing.isEmpty, "\(label): \(differing.count) tensors differ, \(differing.first ?? "")", sourceLocation: sourceLocation)
    }

    @Test("Every method merging against a base gives the same output whether the recipe lists the base among the models or not")
    func listedIsTheBase() throws {
        #expect(Self.methods.contains { $0.name == "arcee_fusion" } && Self.methods.contains { $0.name == "ties" })
        for method in Self.methods {
            do {
                let listed = try Self.merged(Self.recipe(method, listed: true))
                let unlisted = try Self.merged(Self.recipe(method, listed: false))
                Self.expectSame(listed, unlisted, method.name)
            } catch {
                Issue.record("\(method.name): \(error)")
            }
        }
    }

    @Test("task_arithmetic with normalize: the base's entry, weight and all, is not among the weights divided by (as in mergekit)")
    func normalizeLeavesTheBaseOut() throws {
        let method = (name: "task_arithmetic", parameters: "parameters: {normalize: true}\n", models: ["ft_a", "ft_b"])
        let listed = try Self.merged(Self.recipe(method, listed: true, baseEntry: "    parameters: {weight: 3.0}\n"))
        let unlisted = try Self.merged(Self.recipe(method, listed: false))
        Self.expectSame(listed, unlisted, "task_arithmetic")
    }

    @Test("A recipe whose only models entry is the base writes the base, as mergekit writes a task-vector merge with no other model")
    func onlyTheBase() throws {
        let base = TestSupport.values(try Checkpoint(path: "\(Self.fixtures)/f32/base"))
        for name in ["task_arithmetic", "ties", "dare_ties", "della", "breadcrumbs_ties"] {
            let method = try #require(Self.methods.first { $0.name == name })
            let merged = try Self.merged(Self.recipe((method.name, method.parameters, []), listed: true))
            Self.expectSame(merged.filter { base[$0.key]?.info.dtype == .F32 }, base.filter { $0.value.info.dtype == .F32 }, name)
        }
    }

    @Test("linear takes a listed base as one of the models it averages")
    func linearAveragesTheListedBase() throws {
        let method = (name: "linear", parameters: "", models: ["ft_a"])
        let listed = try Self.merged(Self.recipe(method, listed: true))
        let base = TestSupport.values(try Checkpoint(path: "\(Self.fixtures)/f32/base"))
        let tuned = TestSupport.values(try Checkpoint(path: "\(Self.fixtures)/f32/ft_a"))
        let name = "model.layers.0.mlp.up_proj.weight"
        let merged = try #require(listed[name]).values
        for i in merged.indices {
            #expect(abs(merged[i] - (base[name]!.values[i] + tuned[name]!.values[i]) / 2) <= 1e-7, "\(name)[\(i)]")
        }
    }
}
