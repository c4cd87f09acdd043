import Foundation
import Testing
@testable import MergeKit

/// Merges through the library the way merge-cli's commands do — open the base and the inputs
/// (headers only), plan, run (`MergeRun`) — for tests of library behaviour, which assert on the
/// results and on the `MergeKitError` thrown (its code, file, tensor and message in the library's
/// words) instead of on exit statuses and stderr. The command line's own part (parsing, exit
/// statuses, printed output, the flags' words) is tested in Tests/MergeKitTests/CLI.
///
/// Paths not starting with "/" are fixtures (`TestSupport.fixture`).
enum LibraryMerge {
    /// A merge's inputs in merge-cli's order: every model, then every task vector, then every
    /// LoRA adapter, with one weight each or none (all 1).
    struct Inputs {
        var base: String
        var models: [String] = []
        var taskVectors: [String] = []
        var loras: [String] = []
        var weights: [Double] = []
    }

    /// The inputs a command line's --base, --model, --task-vector and --lora give (for reference
    /// cases written as command lines).
    static func inputs(commandLine arguments: [String]) throws -> Inputs {
        var inputs = Inputs(base: "")
        for i in stride(from: 0, to: arguments.count, by: 2) {
            guard i + 1 < arguments.count else { throw UnknownFlag(description: "\(arguments[i]) has no value") }
            let value = arguments[i + 1]
            switch arguments[i] {
            case "--base": inputs.base = value
            case "--model": inputs.models.append(value)
            case "--task-vector": inputs.taskVectors.append(value)
            case "--lora": inputs.loras.append(value)
            default: throw UnknownFlag(description: "\(arguments[i]) is not an input flag")
            }
        }
        return inputs
    }

    static func path(_ path: String) -> String { path.hasPrefix("/") ? path : TestSupport.fixture(path) }

    /// Opens the base and the inputs, as `merge-cli`'s input options do.
    static func open(_ inputs: Inputs) throws(MergeKitError) -> (base: Checkpoint, inputs: [MergeInput]) {
        let base = try Checkpoint(path: path(inputs.base))
        let paths = inputs.models.map { (MergeInput.Kind.model, $0) } + inputs.taskVectors.map { (MergeInput.Kind.taskVector, $0) }
        var opened: [MergeInput] = []
        for (i, (kind, file)) in paths.enumerated() {
            opened.append(MergeInput(kind: kind, checkpoint: try Checkpoint(path: path(file)), weight: inputs.weights.isEmpty ? 1 : inputs.weights[i]))
        }
        for (i, adapter) in inputs.loras.enumerated() {
            opened.append(MergeInput(lora: try LoRAAdapter(path: path(adapter)), weight: inputs.weights.isEmpty ? 1 : inputs.weights[paths.count + i]))
        }
        return (base, opened)
    }

    /// The method a merge subcommand builds: `values` by recipe key as its flags give them, the
    /// subcommand's preset for the rest.
    static func method(_ name: String, _ values: [String: ParameterSetting] = [:], seed: UInt64 = 0) throws(MergeKitError) -> any MergeMethod {
        guard let description = MethodRegistry.descriptions.first(where: { $0.info.name == name }) else {
            preconditionFailure("no method \(name)")
        }
        return try description.build(commandLine: values, seed: seed)
    }

    /// A flag `method(_:flags:)` does not know.
    struct UnknownFlag: Error, CustomStringConvertible {
        let description: String
    }

    /// The method and the input weights a merge subcommand's method flags stand for (e.g.
    /// `--density 0.2 --vote mass --no-normalize --weight 0.5`): each flag of one of the
    /// description's command-line parameters gives its key's value. For reference cases written as
    /// command lines.
    static func method(_ name: String, flags: [String]) throws -> (method: any MergeMethod, weights: [Double]) {
        guard let description = MethodRegistry.descriptions.first(where: { $0.info.name == name }) else { throw UnknownFlag(description: "no method \(name)") }
        var values: [String: ParameterSetting] = [:], weights: [Double] = [], seed: UInt64 = 0
        var i = 0
        func value() throws -> String {
            guard i + 1 < flags.count else { throw UnknownFlag(description: "\(flags[i]) has no value") }
            i += 1
            return flags[i]
        }
        while i < flags.count {
            let flag = flags[i]
            if flag == "--weight" {
                guard let weight = Double(try value()) else { throw UnknownFlag(description: "--weight \(flags[i])") }
                weights.append(weight)
            } else if let parameter = description.commandLineParameters.first(where: { "--no-" + $0.flag! == flag }), case .flag = parameter.type {
                values[parameter.key] = .bool(false)
            } else if let parameter = description.commandLineParameters.first(where: { "--" + $0.flag! == flag }) {
                switch parameter.type {
                case .flag: values[parameter.key] = .bool(true)
                case .choice: values[parameter.key] = .string(try value())
                case .number:
                    guard let number = Double(try value()) else { throw UnknownFlag(description: "\(flag) \(flags[i])") }
                    values[parameter.key] = .number(number)
                case .seed:
                    guard let number = UInt64(try value()) else { throw UnknownFlag(description: "\(flag) \(flags[i])") }
                    seed = number
                    values[parameter.key] = .number(Double(number))
                }
            } else {
                throw UnknownFlag(description: "\(name) has no flag \(flag)")
            }
            i += 1
        }
        return (try method(name, values, seed: seed), weights)
    }

    /// The plan of merging `inputs` with `method` into `output`.
    static func plan(_ method: any MergeMethod, _ inputs: Inputs, output: OutputSpec) throws(MergeKitError) -> MergePlan {
        let (base, opened) = try open(inputs)
        return try MergePlan(base: base, inputs: opened, method: method, output: output)
    }

    /// Merges `inputs` with `method` into `output` (with `checkFinite`, after scanning the inputs
    /// as `--check-finite` does; with `command`, a directory output gets the model card merge-cli
    /// writes for that command line).
    @discardableResult
    static func run(_ method: any MergeMethod, _ inputs: Inputs, output: OutputSpec, threads: Int? = nil, summarize: Bool = false,
                    checkFinite: Bool = false, command: String? = nil) throws(MergeKitError) -> MergeRun.Outcome {
        let plan = try plan(method, inputs, output: output)
        if checkFinite { try MergeExecutor.checkInputsFinite(plan, threads: threads) }
        let plans = command.map { MergeRun.withModelCards([plan], command: $0) } ?? [plan]
        return try MergeRun.run(plans, threads: threads, summarize: summarize)
    }

    /// `merge-cli task-vector`: τ = θ − θ₀ of `finetuned` as a task-vector file.
    @discardableResult
    static func taskVector(base: String, finetuned: String, output: String) throws(MergeKitError) -> MergeRun.Outcome {
        try run(try TaskArithmetic(scale: 1), Inputs(base: base, models: [finetuned]), output: OutputSpec(path: output, emit: .taskVector))
    }

    /// The recipe `merge-cli sweep` makes of its flags: `grids` and `fixed` by recipe name.
    static func sweep(_ method: String, _ inputs: Inputs, grids: [(name: String, values: [Double])],
                      fixed: [String: ParameterSetting] = [:]) -> Recipe {
        let paths = inputs.models.map { (Recipe.Input.Kind.model, $0) } + inputs.taskVectors.map { (.taskVector, $0) } + inputs.loras.map { (.lora, $0) }
        let models = paths.enumerated().map { i, input in
            Recipe.Input(kind: input.0, path: path(input.1), parameters: inputs.weights.isEmpty ? [:] : ["weight": .number(inputs.weights[i])])
        }
        return Recipe(method: method, baseModel: path(inputs.base), inputs: models, parameters: fixed,
                      sweep: grids.map { ($0.name, $0.values.map { ParameterSetting.number($0) }) }, path: "merge-cli sweep")
    }

    /// Plans and runs a recipe as `merge-cli run` and `sweep` do: a recipe with a sweep writes one
    /// directory `output` of points and a manifest.
    @discardableResult
    static func run(_ recipe: Recipe, output: String, emit: EmitKind = .model, dtype: DType? = nil, seed: UInt64? = nil,
                    overwrite: Bool = false, threads: Int? = nil, checksums: Bool = false, summarize: Bool = false,
                    checkFinite: Bool = false) throws(MergeKitError) -> MergeRun.Outcome {
        let run = try recipe.plan(output: output, overwrite: overwrite, emit: emit, seed: seed, dtype: dtype)
        if checkFinite { try MergeExecutor.checkInputsFinite(run.plans[0], threads: threads) }
        let points = run.points.map { $0.map { (name: $0.name, value: $0.value.description) } }
        return try MergeRun.run(run.plans, threads: threads, points: recipe.sweep.isEmpty ? [] : points,
                                sweepDirectory: recipe.sweep.isEmpty ? nil : output, overwrite: overwrite, summarize: summarize,
                                checksums: checksums)
    }

    /// The output paths of an outcome: each plan's output (a sweep's points).
    static func outputs(_ outcome: MergeRun.Outcome) -> [String] { outcome.results.map(\.outputPath) }
}

extension MergeKitError {
    /// Whether the message (or one of its problems) uses `term`, in any capitalization: what a
    /// front end words its own way (merge-cli's words are tested in CLI/CLIWordingTests).
    func uses(_ term: Term) -> Bool {
        terms.contains { $0.key == term.key && $0.arguments == term.arguments } || problems.contains { $0.uses(term) }
    }
}
