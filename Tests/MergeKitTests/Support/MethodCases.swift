import Testing
@testable import MergeKit

/// One merge per method and variant (every method in `MethodRegistry`, both TIES trim scopes,
/// DARE with task arithmetic and TIES, negation, a λ sweep), made through the library as the
/// merge-cli command in `label` makes it, for tests that must hold for every method.
struct MethodCase: CustomStringConvertible, Sendable {
    /// How the merge is made.
    enum Form: Sendable {
        /// A merge subcommand: the method built from these command-line values (by recipe key).
        case command([String: ParameterSetting])
        /// `negate --scale λ`: task arithmetic of the one input with weight −1.
        case negate(scale: Double)
        /// `sweep --method NAME`: a recipe method with grids (recipe names), one directory of points.
        case sweep(method: String, grids: [Grid])
    }

    struct Grid: Sendable {
        let name: String
        let values: [Double]
    }

    /// The registry name of the method.
    let method: String
    /// The command line it stands for.
    let label: String
    let form: Form
    /// The method merges one model (nearswap, passthrough, arcee-fusion): the last of `models` is given.
    var singleInput = false

    var description: String { label }

    /// A sweep writes a directory of points.
    var isSweep: Bool {
        if case .sweep = form { return true }
        return false
    }

    /// The output path to give: a file, or a directory for a sweep.
    func output(_ stem: String) -> String { stem + (isSweep ? "" : ".safetensors") }

    /// Merges `base` and `models` (negation takes the last model) into `output`; returns the
    /// checkpoints written (a sweep's points).
    @discardableResult
    func merge(base: String, models: [String], output: String, dtype: DType? = nil, emit: EmitKind = .model,
               checkFinite: Bool = false) throws(MergeKitError) -> [String] {
        let spec = OutputSpec(path: output, dtype: dtype, emit: emit)
        let outcome: MergeRun.Outcome
        switch form {
        case .command(let values):
            outcome = try LibraryMerge.run(try LibraryMerge.method(method, values),
                                           LibraryMerge.Inputs(base: base, models: singleInput ? Array(models.suffix(1)) : models),
                                           output: spec, checkFinite: checkFinite)
        case .negate(let scale):
            outcome = try LibraryMerge.run(try TaskArithmetic(scale: scale),
                                           LibraryMerge.Inputs(base: base, models: Array(models.suffix(1)), weights: [-1]),
                                           output: spec, checkFinite: checkFinite)
        case .sweep(let name, let grids):
            let recipe = LibraryMerge.sweep(name, LibraryMerge.Inputs(base: base, models: models), grids: grids.map { ($0.name, $0.values) })
            outcome = try LibraryMerge.run(recipe, output: output, emit: emit, dtype: dtype, checkFinite: checkFinite)
        }
        return LibraryMerge.outputs(outcome)
    }

    static let all: [MethodCase] = [
        MethodCase(method: "task-arithmetic", label: "task-arithmetic", form: .command(["lambda": .number(0.5)])),
        MethodCase(method: "task-arithmetic", label: "negate", form: .negate(scale: 0.5)),
        MethodCase(method: "ties", label: "ties (global trim)", form: .command(["density": .number(0.5)])),
        MethodCase(method: "ties", label: "ties (per-tensor trim)",
                   form: .command(["trim_scope": .string("tensor"), "vote": .string("weighted"), "merge": .string("normalized"), "density": .number(0.5)])),
        MethodCase(method: "dare", label: "dare", form: .command(["drop_rate": .number(0.3)])),
        MethodCase(method: "dare", label: "dare-ties (l1)",
                   form: .command(["combine": .string("ties"), "vote": .string("weighted"), "merge": .string("sum"), "rescale": .string("l1"),
                                   "drop_rate": .number(0.3)])),
        MethodCase(method: "linear", label: "linear", form: .command([:])),
        MethodCase(method: "linear", label: "linear (no-normalize)", form: .command(["normalize": .bool(false)])),
        MethodCase(method: "breadcrumbs", label: "breadcrumbs", form: .command(["density": .number(0.5), "gamma": .number(0.1)])),
        MethodCase(method: "model-stock", label: "model-stock", form: .command([:])),
        MethodCase(method: "metagpt", label: "metagpt", form: .command([:])),
        MethodCase(method: "magmax", label: "magmax", form: .command([:])),
        MethodCase(method: "tsv-m", label: "tsv-m", form: .command([:])),
        MethodCase(method: "iso-c", label: "iso-c", form: .command([:])),
        MethodCase(method: "della", label: "della", form: .command(["density": .number(0.5), "epsilon": .number(0.2)])),
        MethodCase(method: "della", label: "della (linear, inverse)",
                   form: .command(["combine": .string("task-arithmetic"), "rescale": .string("inverse"), "density": .number(0.7),
                                   "epsilon": .number(0.1)])),
        MethodCase(method: "sce", label: "sce", form: .command([:])),
        MethodCase(method: "nearswap", label: "nearswap", form: .command(["t": .number(100000)]), singleInput: true),
        MethodCase(method: "passthrough", label: "passthrough", form: .command(["scale": .number(1.5)]), singleInput: true),
        MethodCase(method: "arcee-fusion", label: "arcee-fusion", form: .command([:]), singleInput: true),
        MethodCase(method: "slerp", label: "slerp", form: .command(["t": .number(0.3)]), singleInput: true),
        MethodCase(method: "nuslerp", label: "nuslerp", form: .command([:])),
        MethodCase(method: "nuslerp", label: "nuslerp (rows)", form: .command(["nuslerp_flatten": .bool(false)])),
        MethodCase(method: "multislerp", label: "multislerp", form: .command([:])),
        MethodCase(method: "karcher", label: "karcher", form: .command([:])),
        MethodCase(method: "task-arithmetic", label: "sweep (task arithmetic, λ grid)",
                   form: .sweep(method: "task_arithmetic", grids: [Grid(name: "lambda", values: [0.5, 1])])),
        MethodCase(method: "ties", label: "sweep (ties, λ grid)",
                   form: .sweep(method: "ties", grids: [Grid(name: "lambda", values: [0.5, 1]), Grid(name: "density", values: [0.5])])),
    ]
}

@Suite("Method cases")
struct MethodCaseTests {
    @Test("The per-method test cases cover every method in the registry")
    func coverRegistry() {
        let covered = Set(MethodCase.all.map(\.method))
        for info in MethodRegistry.all {
            #expect(covered.contains(info.name), "\(info.name) has no case in MethodCase.all")
        }
    }

    @Test("Each command case's values are the keys of command-line parameters of its method")
    func commandKeys() {
        for line in MethodCase.all {
            guard case .command(let values) = line.form else { continue }
            let description = MethodRegistry.descriptions.first { $0.info.name == line.method }
            let keys = Set(description?.commandLineParameters.map(\.key) ?? [])
            #expect(Set(values.keys).isSubset(of: keys), "\(line.label): \(values.keys.sorted()) not all in \(keys.sorted())")
        }
    }
}
