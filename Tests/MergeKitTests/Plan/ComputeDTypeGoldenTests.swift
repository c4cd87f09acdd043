import Foundation
import Testing
@testable import MergeKit

/// One case of Fixtures/mergekit_goldens/precision_cases.json
/// (Fixtures/mergekit_goldens/make_precision_goldens.py): a recipe computing in float16 or
/// bfloat16 and mergekit 0.1.5's output for it.
struct PrecisionGoldenCase: Sendable, CustomTestStringConvertible {
    let name: String
    let method: String
    let recipe: String
    let file: String
    /// The float64 result from the same inputs (F32), for the cases that have one.
    let exact: String?
    /// U8 masks of the elements whose top-k / rank-window membership depends on how equal
    /// magnitudes are ordered (mergekit's CPU sorts are unstable), for the cases that have any.
    let ties: String?

    var testDescription: String { name }

    /// The recipe with the Fixtures path in place of `{F}`.
    var text: String {
        recipe.replacingOccurrences(of: "{F}", with: TestSupport.fixture("").replacingOccurrences(of: "/$", with: "", options: .regularExpression))
    }

    static let all: [PrecisionGoldenCase] = {
        let json = try! JSONParser.parse(try! FileSystem.readFile(TestSupport.fixture("mergekit_goldens/precision_cases.json")))
        return json.arrayValue!.map { c in
            PrecisionGoldenCase(name: c["name"]!.stringValue!, method: c["method"]!.stringValue!, recipe: c["recipe"]!.stringValue!,
                                file: c["file"]!.stringValue!, exact: c["exact"]?.stringValue, ties: c["ties"]?.stringValue)
        }
    }()

    /// Runs the recipe in `compute` (nil: the recipe's dtype decides) with output dtype `dtype`
    /// (nil: the recipe's) into a new directory; returns the output's tensors and the directory.
    func run(compute: ComputeDType? = nil, dtype: DType? = nil, threads: Int = 2) throws -> (values: [String: (info: TensorInfo, values: [Double])], bytes: [UInt8]) {
        let dir = TestSupport.temporaryDirectory("precision-golden")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/recipe.yml"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        let output = dir + "/out.safetensors"
        let run = try Recipe.load(path: path).plan(output: output, dtype: dtype, compute: compute)
        _ = try MergeExecutor.run(run.plans[0], threads: threads)
        return (TestSupport.values(try Checkpoint(path: output)), try FileSystem.readFile(output))
    }

    /// Per tensor, the element indices where `mine` and `golden` differ (bit patterns of the
    /// stored values: ±0 told apart).
    static func differences(_ mine: [String: (info: TensorInfo, values: [Double])],
                            _ golden: [String: (info: TensorInfo, values: [Double])]) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for (name, reference) in golden {
            guard let actual = mine[name] else {
                out[name] = [-1]
                continue
            }
            let indices = zip(actual.values, reference.values).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }.map(\.offset)
            if !indices.isEmpty { out[name] = indices }
        }
        return out
    }
}

@Suite("Compute dtype: mergekit 0.1.5 goldens in float16 and bfloat16")
struct ComputeDTypeGoldenTests {
    static let fixtureCases = PrecisionGoldenCase.all
    static let exactCases = fixtureCases.filter { $0.exact != nil }

    @Test("By default a float16 / bfloat16 recipe gives mergekit's output bit for bit (top-k ties and slerp's float32 internals aside)",
          arguments: fixtureCases)
    func matchesMergekit(_ golden: PrecisionGoldenCase) throws {
        let (mine, _) = try golden.run()
        let expected = TestSupport.values(try Checkpoint(path: TestSupport.fixture(golden.file)))
        #expect(expected.count == 21)
        for (name, reference) in expected {
            let actual = try #require(mine[name], "\(name) missing")
            #expect(actual.info.dtype == reference.info.dtype && actual.info.shape == reference.info.shape)
        }
        let differing = PrecisionGoldenCase.differences(mine, expected)
        let count = differing.values.reduce(0) { $0 + $1.count }
        print("\(golden.name): \(count) elements differ from mergekit")
        if let ties = golden.ties {
            // Only where mergekit's unstable sort decides among equal magnitudes at the boundary.
            let masks = try Checkpoint(path: TestSupport.fixture(ties))
            for (name, indices) in differing {
                let entry = try #require(masks.entry(named: name))
                #expect(entry.info.dtype == .U8)
                let mask = Array(entry.file.bytes(of: entry.info))
                let unexplained = indices.filter { mask[$0] == 0 }
                #expect(unexplained.isEmpty, "\(name): elements \(unexplained.prefix(10)) differ from mergekit without a tie at the boundary")
            }
        } else if golden.method == "slerp" {
            // mergekit's float32 norms, angle and coefficients are not ours bit for bit: a θ
            // within a float32 rounding of a 16-bit rounding boundary may round the other way.
            let total = expected.values.reduce(0) { $0 + $1.values.count }
            #expect(count * 200 <= total, "\(count) of \(total) elements differ")
            for (name, indices) in differing {
                let dtype = expected[name]!.info.dtype
                for k in indices {
                    let (x, y) = (mine[name]!.values[k], expected[name]!.values[k])
                    #expect(abs(x - y) <= TestSupport.ulp(y, dtype), "\(name)[\(k)]: \(x) vs \(y)")
                }
            }
        } else {
            #expect(count == 0, "\(count) elements differ from mergekit: \(differing.mapValues { $0.prefix(5) })")
        }
    }

    @Test("Float32 compute is within float32 rounding of the float64 result, and differs from mergekit's on a counted fraction",
          arguments: exactCases)
    func float32Compute(_ golden: PrecisionGoldenCase) throws {
        let exact = TestSupport.values(try Checkpoint(path: TestSupport.fixture(golden.exact!)))
        let (wide, _) = try golden.run(compute: .float32, dtype: .F32)
        for (name, reference) in exact {
            let actual = try #require(wide[name])
            let largest = reference.values.map(abs).max() ?? 0
            let tolerance = 8 * Double(Float(largest).ulp)
            let worst = zip(actual.values, reference.values).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= tolerance, "\(name): \(worst) > \(tolerance)")
        }
        // Rounded once to the recipe's dtype at the end, against mergekit's rounding at each step.
        let (narrow, _) = try golden.run(compute: .float32)
        let mergekit = TestSupport.values(try Checkpoint(path: TestSupport.fixture(golden.file)))
        let count = PrecisionGoldenCase.differences(narrow, mergekit).values.reduce(0) { $0 + $1.count }
        let total = mergekit.values.reduce(0) { $0 + $1.values.count }
        if golden.method == "slerp" {
            // mergekit's slerp itself computes in float32 and rounds θ once.
            #expect(count * 1000 <= total, "float32 compute: \(count) of \(total) elements differ from mergekit")
        } else {
            #expect(count > 0 && count * 2 < total, "float32 compute: \(count) of \(total) elements differ from mergekit")
        }
        print("\(golden.name): float32 compute differs from mergekit on \(count) of \(total) elements")
    }

    @Test("The same bytes for any thread count, in both modes", arguments: [ComputeDType.float32, nil])
    func threads(_ compute: ComputeDType?) throws {
        for golden in Self.fixtureCases where ["ties_f16", "dare_ties_bf16", "task_arithmetic_f16", "slerp_f16"].contains(golden.name) {
            let one = try golden.run(compute: compute, threads: 1).bytes
            let four = try golden.run(compute: compute, threads: 4).bytes
            #expect(one == four, "\(golden.name)")
        }
    }

    @Test("The goldens cover the task-arithmetic family, linear, slerp and passthrough in both 16-bit dtypes")
    func coverage() {
        let names = Set(Self.fixtureCases.map(\.name))
        #expect(names.isSuperset(of: ["task_arithmetic_f16", "task_arithmetic_bf16", "linear_f16", "linear_f32_to_bf16", "ties_f16",
                                      "ties_bf16", "dare_ties_f16", "dare_ties_bf16", "breadcrumbs_ties_f16", "slerp_f16", "slerp_bf16"]))
        #expect(Set(Self.exactCases.map(\.method)).isSuperset(of: ["task_arithmetic", "linear", "ties", "dare_ties", "breadcrumbs_ties", "slerp"]))
    }
}
