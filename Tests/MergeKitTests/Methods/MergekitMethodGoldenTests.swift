import Foundation
import Testing
@testable import MergeKit

/// One case of Fixtures/mergekit_goldens/della_cases.json, made by
/// Fixtures/mergekit_goldens/make_della_goldens.py: a mergekit recipe and mergekit 0.1.5's
/// output on the fixtures (or, for DELLA's random drop, a numpy re-implementation with the
/// counter-based stream).
struct MergekitRecipeGolden: Sendable, CustomTestStringConvertible {
    let name: String
    let recipe: String
    let reference: String
    let file: String
    let tolerance: Double
    /// Entries that may differ (each then θ₀ in one output and θ₁ in the other): arcee_fusion's
    /// entries at the threshold, where mergekit's float32 KL divergences round differently.
    let mismatches: Int

    var testDescription: String { "\(name) (\(reference))" }

    static let manifest: [MergekitRecipeGolden] = {
        let json = try! JSONParser.parse(try! FileSystem.readFile(TestSupport.fixture("mergekit_goldens/della_cases.json")))
        return json.arrayValue!.map { c in
            MergekitRecipeGolden(name: c["name"]!.stringValue!, recipe: c["recipe"]!.stringValue!, reference: c["reference"]!.stringValue!,
                                 file: c["file"]!.stringValue!, tolerance: c["tolerance"]!.doubleValue!,
                                 mismatches: c["mismatches"]?.nonNegativeInt ?? 0)
        }
    }()

    static var recipes: [MergekitRecipeGolden] { manifest.filter { !$0.recipe.isEmpty } }
}

@Suite("mergekit recipes of della, sce, breadcrumbs_ties, nearswap, arcee_fusion, passthrough, model_stock filter_wise")
struct MergekitMethodGoldenTests {
    @Test("The recipe, planned and merged through the library, matches the golden", arguments: MergekitRecipeGolden.recipes)
    func matchesGolden(_ golden: MergekitRecipeGolden) throws {
        let dir = TestSupport.temporaryDirectory("mergekit-golden")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = try Recipe.load(path: TestSupport.fixture("mergekit_goldens/" + golden.recipe))
        let run = try recipe.plan(output: dir + "/out")
        try #require(run.plans.count == 1)
        _ = try MergeExecutor.run(run.plans[0])
        let actual = TestSupport.values(try Checkpoint(path: dir + "/out"))
        let expected = TestSupport.values(try Checkpoint(path: TestSupport.fixture("mergekit_goldens/" + golden.file)))
        #expect(expected.count == 21)
        let base = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/base")))
        var mismatches = 0
        for (name, reference) in expected {
            let mine = try #require(actual[name], "\(name) missing")
            #expect(mine.info.shape == reference.info.shape)
            for (j, (a, b)) in zip(mine.values, reference.values).enumerated() where abs(a - b) > golden.tolerance {
                mismatches += 1
                // Only an entry taken or not: one side is the base's value.
                #expect(golden.mismatches > 0 && (a == base[name]!.values[j] || b == base[name]!.values[j]), "\(name)[\(j)]: \(a) vs \(b)")
            }
        }
        #expect(mismatches <= golden.mismatches, "\(mismatches) entries differ")
    }

    /// The filter-wise golden is a real per-row case: mergekit's result, θ₀ + t_r·mean(τ) row by
    /// row, has a different t_r in different rows of a matrix (a per-tensor t would make them equal).
    @Test("model_stock filter_wise: mergekit's t differs from row to row")
    func filterWiseRows() throws {
        let golden = TestSupport.values(try Checkpoint(path: TestSupport.fixture("mergekit_goldens/della_model_stock_filter_wise.safetensors")))
        let base = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/base")))
        let models = try ["ft_a", "ft_b", "ft_c"].map { TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/" + $0))) }
        var checked = 0
        for (name, tensor) in golden where tensor.info.shape.count == 2 {
            let row = tensor.info.shape[1], b = base[name]!.values
            var ts: [Double] = []
            for r in 0..<tensor.info.shape[0] {
                var num = 0.0, den = 0.0
                for k in (r * row)..<((r + 1) * row) {
                    let mean = models.reduce(0.0) { $0 + Double($1[name]!.values[k] - b[k]) } / 3
                    num += Double(tensor.values[k] - b[k]) * mean
                    den += mean * mean
                }
                if den > 0 { ts.append(num / den) }
            }
            #expect(ts.max()! - ts.min()! > 1e-3, "\(name): t from \(ts.min()!) to \(ts.max()!)")
            checked += 1
        }
        #expect(checked > 5)
    }

    @Test("The goldens cover every method, mergekit's and numpy's references")
    func coverage() throws {
        let methods = try Set(MergekitRecipeGolden.recipes.map { try Recipe.load(path: TestSupport.fixture("mergekit_goldens/" + $0.recipe)).method })
        #expect(methods == ["della", "della_linear", "sce", "breadcrumbs_ties", "nearswap", "arcee_fusion", "passthrough", "model_stock"])
        #expect(Set(MergekitRecipeGolden.manifest.map(\.reference)) == ["mergekit", "numpy", "mergekit-probabilities"])
    }

    @Test("DELLA's keep probabilities are mergekit's (della_magprune with the draw replaced by the identity gives τ·p)")
    func dellaProbabilities() throws {
        let golden = try #require(MergekitRecipeGolden.manifest.first { $0.reference == "mergekit-probabilities" })
        let expected = TestSupport.values(try Checkpoint(path: TestSupport.fixture("mergekit_goldens/" + golden.file)))
        let base = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/base")))
        let model = TestSupport.values(try Checkpoint(path: TestSupport.fixture("f32/ft_a")))
        #expect(expected.count == 21)
        for (name, reference) in expected {
            let tau = zip(model[name]!.values, base[name]!.values).map { Float($0) - Float($1) }
            let p = MagnitudeDropMasks.keepProbabilities(tau, shape: reference.info.shape, density: 0.5, epsilon: 0.2)
            #expect(p.allSatisfy { $0 >= 0.3 - 1e-12 && $0 <= 0.7 + 1e-12 })
            let worst = zip(zip(p, tau), reference.values).map { abs($0.0 * Double($0.1) - $1) }.max() ?? 0
            #expect(worst <= golden.tolerance, "\(name): max |Δ(τ·p)| = \(worst)")
        }
    }
}
