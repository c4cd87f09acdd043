import ArgumentParser
import Foundation
import MergeKit

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "One output per grid point over λ, density or other parameters, reading every input once.",
        discussion: """
            Example (the task-arithmetic paper's 21-point λ grid, task vectors only):
              merge-cli sweep --method task-arithmetic --base B --model A --model C \\
                --scale 0:1:0.05 --emit task-vector -o sweep/
            Writes sweep/point-000 … point-020 and sweep/manifest.json (each point's parameters, \
            files, sizes and SHA-256); point names are zero-padded to the width of the point count \
            (point-0000 … from 1001 points), so they sort. With --eval HEAD=DATA (CLIP image encoders), \
            every point is scored on every task before any is kept: the points are built in memory when \
            they fit (else written and read back), the --select rule chooses one, --keep says which are \
            written (each with its scores in its model card), and the manifest gets every point's \
            scores, scores-NAME.svg plots each task's accuracy and the average against each swept \
            parameter with the chosen point marked. Example:
              merge-cli sweep --method task_arithmetic --base B --model A --model C --scale 0:1:0.1 \\
                --eval heads/a.safetensors=val/a.safetensors --eval heads/c.safetensors=val/c.safetensors -o best/
            Grids are start:stop:step (inclusive) or \
            comma lists; --grid NAME=GRID sweeps any parameter of the method (recipe names: lambda, \
            density, ...). Every parameter takes one grid or one --param value; a grid may not repeat \
            a point (nor have a step so small that points round together), and a sweep writes at \
            most \(SweepGrid.maximumPoints) points (the product of its grids).
            The method has its recipe semantics and defaults, as in `merge-cli run`: each name follows \
            the preset it selects (mergekit's for mergekit's names, so that mergekit configs port), \
            which may differ from the command of the same name: \(MethodHelp.recipePresets).
            """)

    @Option(help: ArgumentHelp("The method, by recipe name (task_arithmetic, ties, dare_ties, breadcrumbs, linear, …).", valueName: "name"))
    var method: String

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var partitioning: PartitionOptions
    @OptionGroup(title: "Scoring the points (CLIP image encoders)") var scoring: EvaluationOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("Grid of λ (the recipe's lambda), e.g. 0:1:0.05.", valueName: "grid"))
    var scale: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Grid of densities, e.g. 0.1,0.2,0.3.", valueName: "grid"))
    var density: String?

    @Option(parsing: .unconditionalSingleValue, help: ArgumentHelp("Any parameter's grid, NAME=GRID (repeatable).", valueName: "name=grid"))
    var grid: [String] = []

    @Option(parsing: .unconditionalSingleValue, help: ArgumentHelp("A fixed parameter, NAME=VALUE (repeatable): a number, true/false or a word, e.g. trim_scope=global.", valueName: "name=value"))
    var param: [String] = []

    @Option(parsing: .unconditional, help: "Seed for DARE's random masks.")
    var seed: UInt64?

    /// The sweep as values: its axes and fixed parameters, each with the flag that gave it (for
    /// messages). Nothing is parsed as YAML: a value is one number (grids) or one scalar (--param).
    struct Plan {
        var axes: [(name: String, flag: String, values: [Double])] = []
        var fixed: [(name: String, flag: String, value: ParameterSetting)] = []
    }

    /// The flags read into a `Plan`, every range and name checked (ValidationError: exit 64).
    func sweepPlan() throws -> Plan {
        guard let description = MethodRegistry.recipeMethod(named: method)?.description else {
            throw ValidationError("--method \(method) is not a merge method; use one of \(MethodRegistry.recipeNames.joined(separator: ", "))")
        }
        let names = description.recipeKeys
        if scale == nil && density == nil && grid.isEmpty {
            throw ValidationError("Give at least one grid: --scale, --density or --grid NAME=GRID.")
        }
        func split(_ entry: String, _ flag: String) throws -> (name: String, value: String) {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                throw ValidationError("\(flag) \(entry) is not NAME=VALUE")
            }
            return (String(entry[..<equals]), String(entry[entry.index(after: equals)...]))
        }
        func values(_ text: String, _ flag: String) throws -> [Double] {
            switch SweepGrid.values(text) {
            case .success(let values): return values
            case .failure(let failure): throw ValidationError("\(flag): \(failure.reason)")
            }
        }
        var plan = Plan()
        if let scale { plan.axes.append(("lambda", "--scale", try values(scale, "--scale"))) }
        if let density { plan.axes.append(("density", "--density", try values(density, "--density"))) }
        for entry in grid {
            let (name, text) = try split(entry, "--grid")
            plan.axes.append((name, "--grid \(name)", try values(text, "--grid \(name)")))
        }
        for entry in param {
            let (name, text) = try split(entry, "--param")
            plan.fixed.append((name, "--param \(name)", ParameterSetting(scalarText: text)))
        }
        // Each parameter once, and one the method has.
        var given: [String: String] = [:]
        for (name, flag) in plan.axes.map({ ($0.name, $0.flag) }) + plan.fixed.map({ ($0.name, $0.flag) }) {
            guard names.contains(name) || name == "seed" else {
                throw ValidationError("\(flag): \(method) has no parameter \(name); its parameters: \(names.joined(separator: ", "))")
            }
            if let first = given[name] {
                throw ValidationError("\(flag) gives \(name) again (\(first) gave it): each parameter takes one grid or one value")
            }
            given[name] = flag
        }
        // Values: each by its parameter's rule (the method's; `seed` is every method's), worded
        // with the flag that gave it.
        func rule(_ name: String) -> MethodParameter? { name == "seed" ? .seed : description.parameter(name)?.rule }
        for axis in plan.axes {
            guard let rule = rule(axis.name) else { continue }
            for value in axis.values { try ArgumentCheck.value(value, rule, flag: axis.flag) }
        }
        for fixed in plan.fixed {
            guard let rule = rule(fixed.name) else { continue }
            guard let value = fixed.value.number else {
                throw ValidationError("\(fixed.flag) must be a number, not \(fixed.value.quoted) (\(rule.meaning))")
            }
            try ArgumentCheck.value(value, rule, flag: fixed.flag)
        }
        let points = plan.axes.reduce(1.0) { $0 * Double($1.values.count) }
        if points > Double(SweepGrid.maximumPoints) {
            throw ValidationError("The grids make \(Int(points)) points; a sweep writes at most \(SweepGrid.maximumPoints)")
        }
        return plan
    }

    /// The command line as a recipe value, validated and planned like a recipe file.
    func recipe(_ plan: Plan) -> Recipe {
        let paths = inputs.models.map { (Recipe.Input.Kind.model, $0) } + inputs.taskVectors.map { (.taskVector, $0) }
            + inputs.loras.map { (.lora, $0) }
        let models = paths.enumerated().map { i, input in
            Recipe.Input(kind: input.0, path: input.1,
                         parameters: inputs.weights.count == paths.count ? ["weight": .number(inputs.weights[i])] : [:])
        }
        return Recipe(method: method, baseModel: inputs.base, inputs: models,
                      parameters: Dictionary(uniqueKeysWithValues: plan.fixed.map { ($0.name, $0.value) }),
                      sweep: plan.axes.map { ($0.name, $0.values.map { ParameterSetting.number($0) }) }, path: "merge-cli sweep")
    }

    /// The flags' ranges and names, then what the method refuses at any point (e.g. --param
    /// vote=x): all before any file is opened.
    func validate() throws {
        let recipe = recipe(try sweepPlan())
        do throws(MergeKitError) {
            try recipe.validateParameters()
        } catch {
            throw ValidationError(error.description)
        }
        try partitioning.validate(output: outputOptions.output)
        _ = try scoring.evaluation(output: outputOptions, partitioned: partitioning.partition != nil)
    }

    func run() throws {
        let recipe = recipe(try sweepPlan())
        // A method --partition refuses (whole-model statistics) is known once the points are
        // planned; it is an argument error here (exit 64), as on the method commands.
        try runRecipe(recipe, outputOptions, seed: seed, compute: compute.computeDType,
                      command: PartitionOptions.recordedCommand(), hub: inputs.paths.hub, partition: partitioning,
                      refusalStatus: 64, evaluation: try scoring.evaluation(output: outputOptions, partitioned: partitioning.partition != nil))
    }
}
