import Foundation

/// The methods a recipe can name: mergekit's names (with mergekit's semantics and defaults, so
/// that existing configs port) and MergeKit's own.
struct RecipeMethod: Sendable {
    let names: [String]
    /// Parameters given per model (or once for all models under `parameters`).
    let perModel: [String]
    /// Parameters given once, under `parameters`.
    let global: [String]
    /// Builds the method for one tensor from its resolved parameters.
    let build: @Sendable (RecipeValues) throws(MergeKitError) -> any MergeMethod

    var allowed: [String] { perModel + global }

    static let all: [RecipeMethod] = [
        RecipeMethod(names: ["task_arithmetic", "task-arithmetic"], perModel: ["weight"], global: ["lambda", "normalize"]) { v throws(MergeKitError) in
            try TaskArithmetic(scale: v.number("lambda", 1), normalize: v.bool("normalize", false))
        },
        RecipeMethod(names: ["ties"], perModel: ["weight", "density"],
                     global: ["lambda", "normalize", "trim_scope", "vote", "merge", "int8_mask"]) { v throws(MergeKitError) in
            // mergekit's ties: per-tensor trim, weighted vote, normalised; density defaults to 1 there.
            let scope = try v.choice("trim_scope", TIES.TrimScope.tensor)
            let merge = try v.choice("merge", v.bool("normalize", true) ? TaskVectorMerge.Aggregation.normalized : .sum)
            return try TIES(density: v.perModel("density", 1), trimScope: scope, vote: try v.choice("vote", TaskVectorMerge.Consensus.weighted),
                            merge: merge, scale: v.number("lambda", 1))
        },
        RecipeMethod(names: ["dare_ties", "dare_linear", "dare"], perModel: ["weight", "density", "drop_rate"],
                     global: ["lambda", "normalize", "rescale", "seed", "vote", "merge", "combine", "int8_mask"]) { v throws(MergeKitError) in
            let name = v.method
            // density (mergekit) is the kept fraction; drop_rate (MergeKit's dare) is p = 1 − density.
            let drop = v.has("drop_rate") ? v.perModel("drop_rate", 0) : TaskVectorMerge.PerInput(v.perModel("density", name == "dare" ? 0.1 : 1).values.map { 1 - $0 })
            let rescale: TaskVectorMerge.Rescale
            switch v.setting("rescale") {
            case .bool(let b)?: rescale = b ? .l1 : .none
            case .string(let s)?:
                guard let r = TaskVectorMerge.Rescale(rawValue: s) else { throw v.invalid("rescale", String(reflecting: s), TaskVectorMerge.Rescale.allCases.map(\.rawValue)) }
                rescale = r
            default: rescale = name == "dare" ? .inverse : .l1
            }
            let combination: DARE.Combination = name == "dare_ties" ? .ties : (name == "dare_linear" ? .taskArithmetic
                : try v.choice("combine", DARE.Combination.taskArithmetic))
            let merge = try v.choice("merge", name == "dare" ? TaskVectorMerge.Aggregation.mean
                                                 : (v.bool("normalize", false) ? .normalized : .sum))
            if combination == .taskArithmetic && merge == .normalized {
                return try DARE(dropRate: drop, seed: v.seed, rescale: rescale, combination: .taskArithmetic, scale: v.number("lambda", 1),
                                normalize: true)
            }
            return try DARE(dropRate: drop, seed: v.seed, rescale: rescale, combination: combination,
                            vote: try v.choice("vote", name == "dare" ? TaskVectorMerge.Consensus.mass : .weighted),
                            merge: merge, scale: v.number("lambda", 1))
        },
        RecipeMethod(names: ["breadcrumbs", "breadcrumbs_ties"], perModel: ["weight", "density", "gamma"],
                     global: ["lambda", "normalize", "vote", "merge"]) { v throws(MergeKitError) in
            let ties = v.method == "breadcrumbs_ties"
            let merge = try v.choice("merge", v.bool("normalize", false) ? TaskVectorMerge.Aggregation.normalized : .sum)
            return try Breadcrumbs(density: v.perModel("density", 0.1), gamma: v.perModel("gamma", 0.01), scale: v.number("lambda", 1),
                                   vote: try v.choice("vote", ties ? TaskVectorMerge.Consensus.weighted : .none), merge: merge)
        },
        RecipeMethod(names: ["linear"], perModel: ["weight"], global: ["normalize"]) { v throws(MergeKitError) in
            Linear(normalize: v.bool("normalize", true))
        },
        RecipeMethod(names: ["model_stock", "model-stock"], perModel: [], global: ["filter_wise"]) { v throws(MergeKitError) in
            if v.bool("filter_wise", false) {
                throw MergeKitError(.invalidArgument, "filter_wise: true (per-row Model Stock) is not supported", fix: "Remove filter_wise")
            }
            return ModelStock()
        },
        RecipeMethod(names: ["metagpt"], perModel: [], global: []) { _ throws(MergeKitError) in MetaGPT() },
        RecipeMethod(names: ["magmax"], perModel: [], global: ["lambda"]) { v throws(MergeKitError) in try MagMax(scale: v.number("lambda", 1)) },
        RecipeMethod(names: ["tsv_m", "tsv-m"], perModel: [], global: ["lambda", "null_space"]) { v throws(MergeKitError) in
            try TSVM(scale: v.number("lambda", 1), nullSpace: try v.choice("null_space", SVDNullSpace.drop))
        },
        RecipeMethod(names: ["iso_c", "iso-c"], perModel: [], global: ["lambda", "null_space"]) { v throws(MergeKitError) in
            try IsoC(scale: v.number("lambda", 1), nullSpace: try v.choice("null_space", SVDNullSpace.drop))
        },
    ]

    static func named(_ name: String) -> RecipeMethod? { all.first { $0.names.contains(name) } }

    /// The rule of each numeric recipe parameter (the same key means the same thing in every
    /// method: `density` is always the kept fraction, for DARE too, where p = 1 − density).
    static let rules: [String: MethodParameter] = [
        "weight": .weight, "density": .density, "gamma": .gamma, "drop_rate": .dropRate, "lambda": .scale, "seed": .seed,
    ]
}

extension Recipe {
    /// Every merge_method name a recipe accepts.
    public static var methodNames: [String] { RecipeMethod.all.flatMap(\.names) }

    /// The parameters `method` takes (per model first), nil for an unknown method. `seed` is
    /// accepted by every method.
    public static func parameterNames(of method: String) -> (perModel: [String], all: [String])? {
        RecipeMethod.named(method).map { ($0.perModel, $0.allowed) }
    }

    /// The rule of a numeric recipe parameter (nil for non-numeric ones such as `vote`).
    public static func rule(forParameter name: String) -> MethodParameter? {
        RecipeMethod.rules[name]
    }
}

/// The parameters of one tensor, resolved from a recipe (model parameters override the
/// recipe's `parameters`, filters and gradients evaluated for the tensor).
struct RecipeValues {
    let method: String
    let global: [String: ParameterSetting]
    let models: [[String: ParameterSetting]]
    let tensor: String
    let t: Double
    let seed: UInt64

    func setting(_ name: String, model: Int? = nil) -> ParameterSetting? {
        if let model, let s = models[model][name]?.value(for: tensor, t: t) { return s }
        return global[name]?.value(for: tensor, t: t)
    }

    func has(_ name: String) -> Bool { global[name] != nil || models.contains { $0[name] != nil } }

    func number(_ name: String, _ fallback: Double, model: Int? = nil) -> Double {
        if case .number(let v)? = setting(name, model: model) { return v }
        if case .bool(let b)? = setting(name, model: model) { return b ? 1 : 0 }
        return fallback
    }

    func bool(_ name: String, _ fallback: Bool) -> Bool {
        switch setting(name) {
        case .bool(let b)?: return b
        case .number(let v)?: return v != 0
        default: return fallback
        }
    }

    func perModel(_ name: String, _ fallback: Double) -> TaskVectorMerge.PerInput {
        .init(models.indices.map { number(name, fallback, model: $0) })
    }

    func weights() -> [Double] { models.indices.map { number("weight", 1, model: $0) } }

    func choice<E: RawRepresentable & CaseIterable>(_ name: String, _ fallback: E) throws(MergeKitError) -> E where E.RawValue == String {
        guard let s = setting(name) else { return fallback }
        let text: String
        switch s {
        case .string(let v): text = v
        default: throw invalid(name, s.description, E.allCases.map(\.rawValue))
        }
        guard let value = E(rawValue: text) ?? E(rawValue: text.replacingOccurrences(of: "_", with: "-")) else {
            throw invalid(name, String(reflecting: text), E.allCases.map(\.rawValue))
        }
        return value
    }

    func invalid(_ name: String, _ value: String, _ allowed: [String]) -> MergeKitError {
        MergeKitError(.invalidArgument, "\(name) = \(value) is not one of \(allowed.joined(separator: ", "))",
                      fix: "Use one of \(allowed.joined(separator: ", "))")
    }
}

/// A recipe turned into plans: one, or one per sweep point.
public struct RecipeRun: Sendable {
    public let plans: [MergePlan]
    /// The sweep values of each plan (empty without a sweep).
    public let points: [[(name: String, value: ParameterSetting)]]
}

extension Recipe {
    /// Validates the recipe against the method and the checkpoints and plans the merge (or the
    /// sweep: one output per point, `output/point-NNN`, zero-padded to sort). Every problem is
    /// reported together, with the recipe line where it has one: unknown keys and parameters,
    /// every value outside its parameter's range, repeated sweep axes and points, then what
    /// opening the checkpoints finds.
    public func plan(output: String, overwrite: Bool = false, emit: EmitKind = .model, seed: UInt64? = nil,
                     maxShardSize: Int? = nil, dtype overrideDType: DType? = nil) throws(MergeKitError) -> RecipeRun {
        var problems = ProblemList()
        parameterProblems(into: &problems)
        func add(_ line: Int, _ error: MergeKitError) { self.add(line, error, to: &problems) }
        let spec = RecipeMethod.named(method)
        // Checkpoints.
        let directory = FileSystem.parentDirectory(of: path)
        func resolve(_ p: String) -> String {
            if p.hasPrefix("/") || FileSystem.exists(p) { return p }
            let beside = FileSystem.join(directory, p)
            return FileSystem.exists(beside) ? beside : p
        }
        var base: Checkpoint?
        var opened: [MergeInput] = []
        if let baseModel {
            do throws(MergeKitError) { base = try Checkpoint(path: resolve(baseModel)) } catch { add(baseLine, error) }
        } else if !["linear"].contains(method) {
            add(0, MergeKitError(.invalidArgument, file: path, "\(method) needs a base_model", fix: "Add base_model: PATH"))
        }
        for input in inputs {
            do throws(MergeKitError) {
                switch input.kind {
                case .lora: opened.append(MergeInput(lora: try LoRAAdapter(path: resolve(input.path))))
                case .model, .taskVector:
                    opened.append(MergeInput(kind: input.kind == .model ? .model : .taskVector, checkpoint: try Checkpoint(path: resolve(input.path))))
                }
            } catch {
                add(input.line, error)
            }
        }
        if base == nil, baseModel == nil, let first = opened.first, opened.allSatisfy({ $0.kind == .model }) {
            base = first.checkpoint  // linear without a base: the first model anchors the task vectors
        }
        try problems.throwIfAny()
        guard let base, let spec else { throw MergeKitError(.invalidArgument, file: path, "no base model could be opened") }

        let points = sweepPoints
        let layers = (base.tensorNames.compactMap(LayerPosition.index(of:)).max() ?? -1) + 1
        let outDType = overrideDType ?? outDType ?? dtype
        let models = inputs.map(\.parameters)
        let seedValue = seed ?? recipeSeed

        // A sweep's directory is one output (written whole by `SweepOutput`), checked here once;
        // the recipe file is an input like the checkpoints.
        if !sweep.isEmpty {
            OutputGuard.check(output: output, isDirectory: true, overwrite: overwrite,
                              inputs: [path, base.path] + opened.flatMap { [$0.path, $0.checkpoint.path] }, into: &problems)
            if OutputGuard.isFileOutput(output) {
                problems.add(MergeKitError(.invalidArgument, file: output, "a sweep writes one output per point into a directory",
                                           fix: "Give an output directory"))
            }
            try problems.throwIfAny()
        }

        var plans: [MergePlan] = []
        for (index, point) in points.enumerated() {
            var global = parameters
            for (name, value) in point { global[name] = value }
            let methodName = method
            let pointGlobal = global
            let resolver: @Sendable (String) throws(MergeKitError) -> TensorParameters = { tensor throws(MergeKitError) in
                let values = RecipeValues(method: methodName, global: pointGlobal, models: models, tensor: tensor,
                                          t: LayerPosition.t(of: tensor, layers: layers), seed: seedValue)
                return TensorParameters(method: try spec.build(values), weights: values.weights())
            }
            let representative: TensorParameters
            do throws(MergeKitError) {
                representative = try resolver("")
            } catch {
                add(methodLine, error)
                continue
            }
            let pointOutput = sweep.isEmpty ? output : FileSystem.join(output, OutputEntries.pointName(index, of: points.count))
            var spec = OutputSpec(path: pointOutput, dtype: outDType, maxShardSize: maxShardSize, emit: emit, overwrite: overwrite, inputs: [path])
            spec.isSweepPoint = !sweep.isEmpty
            let weighted = zip(opened, representative.weights).map { $0.weighted($1) }
            do throws(MergeKitError) {
                var plan = try MergePlan(base: base, inputs: weighted, method: representative.method, output: spec, parameters: resolver)
                if spec.isDirectory {
                    plan.generatedFiles["recipe.yml"] = Array(text.utf8)
                    plan.generatedFiles["README.md"] = Array(ModelCard.text(plan: plan, recipe: text, sweepPoint: point.map { ($0.name, $0.value.description) }).utf8)
                }
                plans.append(plan)
            } catch {
                problems.add(error)
            }
        }
        try problems.throwIfAny()
        return RecipeRun(plans: plans, points: points.count == 1 && sweep.isEmpty ? [[]] : points)
    }

    /// Every problem found without opening a file, added to `problems`: the schema's, unknown
    /// method and parameter names, every value outside its parameter's range (each at its own
    /// line), repeated or oversized sweep axes, and what each point's method refuses when built
    /// (for a tensor outside the layers, as the plan's representative is).
    func parameterProblems(into problems: inout ProblemList) {
        func add(_ line: Int, _ error: MergeKitError) { self.add(line, error, to: &problems) }
        schemaProblems.forEach { problems.add($0) }
        let spec = RecipeMethod.named(method)
        if spec == nil && !method.isEmpty {
            let names = RecipeMethod.all.flatMap(\.names)
            let near = names.min { editDistance(method, $0) < editDistance(method, $1) }.map { " (did you mean \"\($0)\"?)" } ?? ""
            add(methodLine, MergeKitError(.invalidArgument, file: path, "unknown merge_method \"\(method)\"\(near)",
                                          fix: "Supported: " + names.joined(separator: ", ")))
        }
        let allowed = spec?.allowed ?? Array(parameterLines.keys), perModel = spec?.perModel ?? ["weight", "density", "gamma", "drop_rate"]
        // Parameter names.
        func near(_ name: String, _ candidates: [String]) -> String {
            candidates.min { editDistance(name, $0) < editDistance(name, $1) }
                .flatMap { editDistance(name, $0) <= 3 ? " (did you mean \"\($0)\"?)" : nil } ?? ""
        }
        for (name, line) in parameterLines.sorted(by: { $0.value < $1.value }) where !allowed.contains(name) && name != "seed" {
            add(line, MergeKitError(.invalidArgument, file: path, "\(method) has no parameter \"\(name)\"\(near(name, allowed))",
                                    fix: "Parameters of \(method): " + (allowed.isEmpty ? "none" : allowed.joined(separator: ", "))))
        }
        for input in inputs {
            for name in input.parameters.keys.sorted() where !perModel.contains(name) {
                add(input.line, MergeKitError(.invalidArgument, file: path, "\(method.isEmpty ? "the method" : method) takes no per-model parameter \"\(name)\"\(near(name, perModel))",
                                              fix: perModel.isEmpty ? "Remove it" : "Per-model parameters: " + perModel.joined(separator: ", ")))
            }
        }
        for axis in sweep where spec != nil && !allowed.contains(axis.name) {
            add(0, MergeKitError(.invalidArgument, file: path, "cannot sweep \"\(axis.name)\": \(method) has no such parameter",
                                 fix: "Sweepable: " + allowed.joined(separator: ", ")))
        }
        // Values: each against its parameter's rule, at its own line.
        let found = problems.items.count
        for site in sites {
            guard let rule = RecipeMethod.rules[site.parameter],
                  site.parameter == "seed" || (site.perModel ? perModel : allowed).contains(site.parameter) else { continue }
            let problem: String?
            if case .number(let value) = site.value {
                problem = rule.problem(value, label: site.parameter)
            } else {
                problem = "\(site.parameter) must be a number, not \(site.value.quoted) (\(rule.meaning))"
            }
            if let problem { add(site.line, MergeKitError(.invalidArgument, file: path, problem)) }
        }
        // Sweep axes: each parameter swept once and not also fixed, no point twice, not too many points.
        var swept = Set<String>()
        for axis in sweep {
            if !swept.insert(axis.name).inserted {
                add(0, MergeKitError(.invalidArgument, file: path, "\(axis.name) is swept twice", fix: "Give each parameter one grid"))
            }
            if let line = parameterLines[axis.name] {
                add(line, MergeKitError(.invalidArgument, file: path, "\(axis.name) is both fixed under parameters and swept",
                                        fix: "Remove it from parameters, or from sweep"))
            }
            var seen = Set<String>()
            for value in axis.values where !seen.insert(value.description).inserted {
                add(0, MergeKitError(.invalidArgument, file: path, "sweep \(axis.name): \(value) appears twice",
                                     fix: "Each point is one output; list each value once"))
            }
        }
        let pointCount = sweep.reduce(1.0) { $0 * Double($1.values.count) }
        if pointCount > Double(SweepGrid.maximumPoints) {
            add(0, MergeKitError(.invalidArgument, file: path,
                "the sweep has \(MethodParameter.format(pointCount)) points (the product of its axes); a sweep writes at most \(SweepGrid.maximumPoints)",
                fix: "Sweep fewer values, or split the sweep"))
        }
        // Methods are built only from values in range (a method would refuse a bad one again, without its line).
        guard let spec, pointCount <= Double(SweepGrid.maximumPoints), problems.items.count == found else { return }
        let models = inputs.map(\.parameters)
        for point in sweepPoints {
            var global = parameters
            for (name, value) in point { global[name] = value }
            do throws(MergeKitError) {
                let values = RecipeValues(method: method, global: global, models: models, tensor: "", t: 0, seed: recipeSeed)
                try spec.build(values).validate(weights: values.weights())
            } catch {
                add(methodLine, error)
            }
        }
    }

    /// Checks everything that needs no file (see `parameterProblems`) and throws every problem
    /// found; `plan` checks the same first. The `sweep` command calls it before opening anything.
    public func validateParameters() throws(MergeKitError) {
        var problems = ProblemList()
        parameterProblems(into: &problems)
        try problems.throwIfAny()
    }

    /// Adds `error` with its recipe line (0: none).
    func add(_ line: Int, _ error: MergeKitError, to problems: inout ProblemList) {
        var e = error
        if line > 0 { e.detail = (e.file == path ? "line \(line): " : "line \(line) of \(path): ") + e.detail }
        problems.add(e)
    }

    /// The sweep's points: the cartesian product of its axes (one empty point without a sweep).
    var sweepPoints: [[(name: String, value: ParameterSetting)]] {
        var points: [[(name: String, value: ParameterSetting)]] = [[]]
        for axis in sweep {
            points = points.flatMap { point in axis.values.map { point + [(axis.name, $0)] } }
        }
        return points
    }

    /// The recipe's `seed` parameter (0 when absent or out of range, which is reported).
    var recipeSeed: UInt64 {
        guard let value = parameters["seed"]?.number, MethodParameter.seed.accepts(value) else { return 0 }
        return UInt64(value)
    }
}
