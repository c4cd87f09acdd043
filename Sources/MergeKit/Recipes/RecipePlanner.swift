import Foundation

/// A recipe turned into plans: one, or one per sweep point.
public struct RecipeRun: Sendable {
    public let plans: [MergePlan]
    /// The sweep values of each plan (empty without a sweep).
    public let points: [[(name: String, value: ParameterSetting)]]
    /// One line per key the recipe gives that mergekit accepts but that has no effect here
    /// (`MethodDescription.Parameter.note`), in the order the method lists its parameters.
    public var notes: [String] = []
}

extension Recipe {
    /// Validates the recipe against the method and the checkpoints and plans the merge (or the
    /// sweep: one output per point, `output/point-NNN`, zero-padded to sort). Every problem is
    /// reported together, with the recipe line where it has one: unknown keys and parameters,
    /// every value outside its parameter's range, repeated sweep axes and points, then what
    /// opening the checkpoints finds. A model given as a Hugging Face id is read from the cache
    /// `hub` names (`ModelLocator`; download it first, `HubDownloader`, `modelTexts`).
    ///
    /// `compute`: the precision of the arithmetic (`ComputeDType`); nil computes as mergekit does
    /// in the recipe's `dtype` (rounded to float16 or bfloat16 when that is the `dtype`, else
    /// float32).
    public func plan(output: String, overwrite: Bool = false, emit: EmitKind = .model, seed: UInt64? = nil,
                     maxShardSize: Int? = nil, dtype overrideDType: DType? = nil, compute: ComputeDType? = nil,
                     hub: HubSettings = .current) throws(MergeKitError) -> RecipeRun {
        try plan(output: output, overwrite: overwrite, emit: emit, seed: seed, maxShardSize: maxShardSize, dtype: overrideDType,
                 compute: compute, references: [:], hub: hub) { _ in }
    }

    /// The precision the recipe computes in unless the caller says (`ComputeDType(recipeDType:)`).
    public var compute: ComputeDType { ComputeDType(recipeDType: dtype) }

    /// `plan` with the models a multi-document recipe supplies: `references` maps a `model:` or
    /// `base_model:` text to the checkpoint it stands for (another document's output, planned or
    /// written; a `MODEL+ADAPTER` model). `intermediate` sets what an intermediate's output is
    /// (`OutputSpec.isSweepPoint`, `staysTemporary`).
    func plan(output: String, overwrite: Bool, emit: EmitKind, seed: UInt64?, maxShardSize: Int?, dtype overrideDType: DType?,
              compute: ComputeDType?, references: [String: Checkpoint], hub: HubSettings,
              intermediate: (inout OutputSpec) -> Void) throws(MergeKitError) -> RecipeRun {
        var problems = ProblemList()
        parameterProblems(into: &problems)
        func add(_ line: Int, _ error: MergeKitError) { self.add(line, error, to: &problems) }
        let spec = MethodRegistry.recipeMethod(named: method)
        // Checkpoints: a relative path is taken from the working directory, else beside the
        // recipe; a text another document supplies (`references`) stands for its checkpoint; a
        // Hugging Face id that is no local path, for its snapshot in the cache.
        let resolve = resolvedPath
        let locator = ModelLocator(settings: hub)
        let source = RecipeMerge.Source(resolve: resolve, locate: { references[$0]?.path ?? locator.bestPath($0, local: resolve($0)) },
                                        open: { text throws(MergeKitError) in
            if let supplied = references[text] { return supplied }
            return try Checkpoint(path: try locator.path(text, local: resolve(text)))
        }, adapter: { text throws(MergeKitError) in try locator.path(text, local: resolve(text), kind: .adapter) })
        let merge = modules.isEmpty ? wholeModelMerge(spec: spec, source: source, into: &problems)
                                    : layeredMerge(spec: spec, emit: emit, source: source, into: &problems)
        if tokenizer?.source != nil && emit == .taskVector {
            add(tokenizer?.sourceLine ?? 0, MergeKitError(.invalidArgument, file: path,
                "tokenizer_source gives the output a vocabulary of its own, so no base gives its task vector",
                fix: "Write the model"))
        }
        try problems.throwIfAny()
        guard let merge, let spec else { throw MergeKitError(.invalidArgument, file: path, "no base model could be opened") }

        let points = sweepPoints
        let outDType = overrideDType ?? outDType ?? dtype
        let seedValue = seed ?? recipeSeed

        // A sweep's directory is one output (written whole by `SweepOutput`), checked here once;
        // the recipe file is an input like the checkpoints.
        if !sweep.isEmpty {
            OutputGuard.check(output: output, isDirectory: true, overwrite: overwrite, inputs: [path] + merge.readPaths, into: &problems)
            if OutputGuard.isFileOutput(output) {
                problems.add(MergeKitError(.invalidArgument, file: output, "a sweep writes one output per point into a directory",
                                           fix: "Give an output directory"))
            }
            try problems.throwIfAny()
        }

        var plans: [MergePlan] = []
        let recipeBytes = Array(text.utf8)
        let groups = merge.groups, context = merge.context
        for (index, point) in points.enumerated() {
            var global = parameters
            for (name, value) in point { global[name] = value }
            let globals = groups.map { $0.global(global) }
            let resolver: @Sendable (String) throws(MergeKitError) -> TensorParameters = { tensor throws(MergeKitError) in
                let where_ = context(tensor)
                let group = groups[where_.group]
                let values = RecipeMerge.arguments(preset: spec.preset, group: group, global: globals[where_.group], tensor: tensor,
                                                   context: where_, seed: seedValue)
                let weights = zip(values.weights(), group.padded).map { $1 ? 0 : $0 }
                return TensorParameters(method: try spec.description.build(values), weights: weights)
            }
            let representative: TensorParameters
            do throws(MergeKitError) {
                let values = RecipeMerge.arguments(preset: spec.preset, group: groups[0], global: globals[0], tensor: "",
                                                   context: .init(group: 0, t: 0, modelTensors: nil), seed: seedValue)
                representative = TensorParameters(method: try spec.description.build(values),
                                                  weights: zip(values.weights(), groups[0].padded).map { $1 ? 0 : $0 })
            } catch {
                add(methodLine, error)
                continue
            }
            let pointOutput = sweep.isEmpty ? output : FileSystem.join(output, OutputEntries.pointName(index, of: points.count))
            var spec = OutputSpec(path: pointOutput, dtype: outDType, maxShardSize: maxShardSize, emit: emit, overwrite: overwrite,
                                  inputs: [path] + merge.readPaths)
            spec.isSweepPoint = !sweep.isEmpty
            spec.compute = compute ?? self.compute
            intermediate(&spec)
            let weighted = zip(merge.inputs, representative.weights).map { $0.weighted($1) }
            do throws(MergeKitError) {
                var plan = try MergePlan(base: merge.base, inputs: weighted, method: representative.method, output: spec, parameters: resolver)
                plan.configEdits += merge.configEdits
                plan.origins = merge.origins
                plan.vocabulary = merge.vocabulary
                if spec.isDirectory {
                    plan.generatedFiles.merge(merge.files) { _, tokenizer in tokenizer }
                    plan.companions.removeAll { merge.droppedCompanions.contains($0) || merge.files[$0] != nil }
                    // One copy of the recipe's bytes shared by every point (the array's storage is
                    // shared), and a sweep point's model card names the recipe instead of holding
                    // it: memory linear in the number of points, not quadratic.
                    plan.generatedFiles["recipe.yml"] = recipeBytes
                    plan.generatedFiles["README.md"] = Array(ModelCard.text(plan: plan, recipe: sweep.isEmpty ? text : nil,
                                                                            sweepRecipe: !sweep.isEmpty,
                                                                            sweepPoint: point.map { ($0.name, $0.value.description) },
                                                                            aliases: references.aliases).utf8)
                }
                plans.append(plan)
            } catch {
                problems.add(error)
            }
        }
        try problems.throwIfAny()
        var run = RecipeRun(plans: plans, points: points.count == 1 && sweep.isEmpty ? [[]] : points)
        run.notes = spec.description.parameters.compactMap { parameter in
            let key = parameter.key
            let given = parameters[key] != nil || groups.contains { $0.models.contains { $0[key] != nil } || $0.scopes.contains { $0[key] != nil } }
            return given ? parameter.note.map { "line \(parameterLines[key] ?? methodLine): \($0)" } : nil
        }
        run.notes += merge.notes
        if !merge.files.isEmpty && OutputGuard.isFileOutput(output) {
            run.notes.append("\(output) is a single .safetensors file, so the tokenizer files (\(merge.files.keys.sorted().joined(separator: ", "))) are not written; write a directory to get them")
        }
        return run
    }

    /// Every problem found without opening a file, added to `problems`: the schema's, unknown
    /// method and parameter names, every value outside its parameter's range (each at its own
    /// line), repeated or oversized sweep axes, and what each point's method refuses when built
    /// (for a tensor outside the layers, as the plan's representative is).
    func parameterProblems(into problems: inout ProblemList) {
        func add(_ line: Int, _ error: MergeKitError) { self.add(line, error, to: &problems) }
        schemaProblems.forEach { problems.add($0) }
        let spec = MethodRegistry.recipeMethod(named: method)
        if spec == nil && !method.isEmpty {
            let names = MethodRegistry.recipeNames
            let near = names.min { editDistance(method, $0) < editDistance(method, $1) }.map { " (did you mean \"\($0)\"?)" } ?? ""
            add(methodLine, MergeKitError(.invalidArgument, file: path, "unknown merge_method \"\(method)\"\(near)",
                                          fix: "Supported: " + names.joined(separator: ", ")))
        }
        let allowed = spec?.description.recipeKeys ?? Array(parameterLines.keys)
        let perModel = spec?.description.perModelKeys ?? MethodRegistry.perModelKeys
        // Parameter names.
        func near(_ name: String, _ candidates: [String]) -> String {
            candidates.min { editDistance(name, $0) < editDistance(name, $1) }
                .flatMap { editDistance(name, $0) <= 3 ? " (did you mean \"\($0)\"?)" : nil } ?? ""
        }
        func checkNames(_ lines: [String: Int]) {
            for (name, line) in lines.sorted(by: { ($0.value, $0.key) < ($1.value, $1.key) }) where !allowed.contains(name) && name != "seed" {
                add(line, MergeKitError(.invalidArgument, file: path, "\(method) has no parameter \"\(name)\"\(near(name, allowed))",
                                        fix: "Parameters of \(method): " + (allowed.isEmpty ? "none" : allowed.joined(separator: ", "))))
            }
        }
        func checkModelNames(_ parameters: [String: ParameterSetting], line: Int) {
            for name in parameters.keys.sorted() where !perModel.contains(name) {
                add(line, MergeKitError(.invalidArgument, file: path, "\(method.isEmpty ? "the method" : method) takes no per-model parameter \"\(name)\"\(near(name, perModel))",
                                        fix: perModel.isEmpty ? "Remove it" : "Per-model parameters: " + perModel.joined(separator: ", ")))
            }
        }
        checkNames(parameterLines)
        for input in inputs { checkModelNames(input.parameters, line: input.line) }
        for module in modules {
            checkNames(module.parameterLines)
            for slice in module.slices {
                checkNames(slice.parameterLines)
                for source in slice.sources { checkModelNames(source.parameters, line: source.line) }
            }
        }
        for axis in sweep where spec != nil && !allowed.contains(axis.name) {
            add(0, MergeKitError(.invalidArgument, file: path, "cannot sweep \"\(axis.name)\": \(method) has no such parameter",
                                 fix: "Sweepable: " + allowed.joined(separator: ", ")))
        }
        // Values: each against its parameter's rule, at its own line.
        let found = problems.items.count
        for site in sites {
            guard let rule = spec?.description.parameter(site.parameter)?.rule ?? MethodRegistry.rule(forRecipeKey: site.parameter),
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
        // A layer-wise recipe: one check per slice, with its inputs (and its problems, e.g. a base not among its sources).
        guard let spec, pointCount <= Double(SweepGrid.maximumPoints), problems.items.count == found else { return }
        // (Nothing to merge — no models, no slices — is a schema problem already reported.)
        let groups = modules.isEmpty
            ? (inputs.isEmpty ? [] : [RecipeMerge.ParameterGroup(scopes: [], models: methodInputs(spec.description).map(\.parameters),
                                                                 padded: methodInputs(spec.description).map { _ in false }, line: methodLine,
                                                                 hasBase: baseModel != nil)])
            : sliceRoles(spec.description, into: &problems).filter { $0.roles != nil }.map(\.group)
        for point in sweepPoints {
            var global = parameters
            for (name, value) in point { global[name] = value }
            for group in groups {
                do throws(MergeKitError) {
                    let values = MethodArguments(preset: spec.preset, global: group.global(global), models: group.models, tensor: "", t: 0,
                                                 seed: recipeSeed, hasBaseModel: group.hasBase)
                    try spec.description.build(values).validate(weights: zip(values.weights(), group.padded).map { $1 ? 0 : $0 })
                } catch {
                    add(group.line, error)
                }
            }
        }
    }

    /// The models entries the method combines. mergekit merges each distinct model once, the
    /// base_model as the base, so an entry naming the base_model is the base itself and is left
    /// out, parameters and all (as a slice leaves its base source out, `sliceRoles`): for the
    /// methods that combine the base with the models (`Kind.baseAmongModels`) and for every
    /// method that merges task vectors against it. Kept, it would be one more model with τ = 0,
    /// refused by the one-model methods (arcee_fusion, nearswap) and counted by normalized
    /// weights, means and random streams. The averages (`linear`, `passthrough`) take every
    /// listed model. A recipe listing only the base keeps it (τ = 0: the output is θ₀, as
    /// mergekit writes a merge with nothing to add).
    func methodInputs(_ description: MethodDescription?) -> [Input] {
        guard let baseModel, let kind = description?.kind, !kind.contains(.baseOptional) || kind.contains(.baseAmongModels) else {
            return inputs
        }
        let standardized = { (p: String) in URL(fileURLWithPath: p).standardizedFileURL.path }
        let base = standardized(baseModel)
        let others = inputs.filter { $0.kind != .model || standardized($0.path) != base }
        return others.isEmpty && !kind.contains(.baseAmongModels) ? inputs : others
    }

    /// Checks everything that needs no file (see `parameterProblems`) and throws every problem
    /// found; `plan` checks the same first. The `sweep` command calls it before opening anything.
    public func validateParameters() throws(MergeKitError) {
        var problems = ProblemList()
        parameterProblems(into: &problems)
        try problems.throwIfAny()
    }

    /// A path as the recipe gives it, resolved: as written when absolute or when it exists from
    /// the working directory, else beside the recipe file when it exists there.
    func resolvedPath(_ p: String) -> String {
        if p.hasPrefix("/") || FileSystem.exists(p) { return p }
        let beside = FileSystem.join(FileSystem.parentDirectory(of: path), p)
        return FileSystem.exists(beside) ? beside : p
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
