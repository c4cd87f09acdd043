extension RecipeFile {
    /// Checks the whole file and plans every stage before any work (`StagedPlan` says what is
    /// checked when). Every problem is reported together, each with its recipe line: the graph's
    /// (`RecipeGraph`), each document's as `Recipe.plan` finds them, each `MODEL+ADAPTER`'s (the
    /// adapter against its model), and the work directory's and the output's places against every
    /// input of every stage. A stage whose inputs could not be planned is checked for what needs
    /// no file.
    ///
    /// The output settings (`emit`, `maxShardSize`, `dtype`) are the output's; intermediates are
    /// models in their documents' `out_dtype` (else `dtype`, else their base's), in shards of the
    /// default size. `seed` applies to every document. A `MODEL+ADAPTER` intermediate keeps its
    /// model's dtypes. Only the output document may sweep.
    ///
    /// - Parameters:
    ///   - target: the name of the document written to the output (nil: the unnamed document, else
    ///     the last one).
    ///   - workDirectory: where the intermediates go and whether they are kept (`WorkDirectory`).
    ///   - compute: the precision of every document's arithmetic (`ComputeDType`); nil: each
    ///     document's own `dtype` decides (`Recipe.compute`).
    ///   - hub: where models given as Hugging Face ids are read from (the cache; download them
    ///     first, `HubDownloader` with `modelTexts`).
    public func plan(output: String, overwrite: Bool = false, emit: EmitKind = .model, seed: UInt64? = nil,
                     maxShardSize: Int? = nil, dtype: DType? = nil, target: String? = nil,
                     workDirectory: WorkDirectory.Options = WorkDirectory.Options(), compute: ComputeDType? = nil,
                     hub: HubSettings = .current) throws(MergeKitError) -> StagedPlan {
        var problems = ProblemList()
        guard let graph = RecipeGraph.build(self, target: target, into: &problems) else {
            for document in documents { document.parameterProblems(into: &problems) }
            try problems.throwIfAny()
            preconditionFailure("a graph that was not built has a problem")
        }
        let settings = StagedPlan.Settings(output: output, overwrite: overwrite, emit: emit, seed: seed, maxShardSize: maxShardSize,
                                           dtype: dtype, compute: compute, work: workDirectory, hub: hub)
        let roles: [StagedPlan.Role] = graph.stages.indices.map { s in
            s == graph.target ? .output : graph.needed[s] ? .intermediate : .unused
        }
        let hasIntermediates = roles.contains(.intermediate)
        let count = graph.stages.count
        if workDirectory.keep && workDirectory.path == nil && hasIntermediates {
            problems.add(MergeKitError(.invalidArgument, file: path,
                "the intermediates cannot be kept in the default work directory, a temporary beside the output removed at the end",
                fix: "Give \(term: .workDirectory) to keep them there"))
        }
        let workExists = workDirectory.path.map { FileSystem.kind(of: $0) == .directory } ?? false

        // Every stage, on the planned layouts of the stages it reads.
        var stages: [StagedPlan.Stage] = []
        var planned: [Checkpoint?] = Array(repeating: nil, count: count)
        for (s, stage) in graph.stages.enumerated() {
            let location = roles[s] == .output ? output
                : WorkDirectory.location(workDirectory, temporaryPath: nil, directoryName: stage.directoryName, index: s, count: count)
            var run = RecipeRun(plans: [], points: [])
            defer {
                var made = StagedPlan.Stage(stage: stage, role: roles[s], location: location, plans: run.plans, points: run.points)
                made.notes = run.notes
                stages.append(made)
            }
            let document = documents[stage.document]
            guard stage.dependencies.allSatisfy({ planned[$0] != nil }) else {
                // A stage it reads could not be planned: what needs no file.
                if case .document = stage.kind { document.parameterProblems(into: &problems) }
                continue
            }
            if case .document = stage.kind, roles[s] != .output, !document.sweep.isEmpty {
                if roles[s] == .intermediate {
                    document.add(document.line, MergeKitError(.invalidArgument, file: path,
                        "this document sweeps, but its output is read by another document: only the output can sweep (a sweep writes one output per point)",
                        fix: "Move the sweep to the output document, or give each point its own document"), to: &problems)
                }
                document.parameterProblems(into: &problems)
                continue
            }
            do throws(MergeKitError) {
                run = try planStage(s, graph: graph, role: roles[s], location: location, settings: settings,
                                    inputs: stage.dependencies.reduce(into: [:]) { $0[$1] = planned[$1]! }, enclosed: true)
                if roles[s] != .output { planned[s] = try Checkpoint(planned: run.plans[0], path: stage.name ?? location) }
            } catch {
                problems.addEach(error)
            }
        }

        // Places: the output (which its own plan checks against its own inputs) against the other
        // stages' inputs, and every intermediate against every input of every stage.
        let inputs = [path] + stages.flatMap { $0.plans.prefix(1).flatMap(\.readPaths) }
        let others = stages.indices.filter { $0 != graph.target }.flatMap { stages[$0].plans.prefix(1).flatMap(\.readPaths) }
        OutputGuard.checkApart(output: output, from: others, into: &problems)
        if hasIntermediates {
            let locations = stages.filter { $0.role == .intermediate }.map(\.location)
            if let directory = workDirectory.path {
                WorkDirectory.check(directory, output: output, locations: locations, inputs: inputs, into: &problems)
                if workExists {
                    for location in locations {
                        OutputGuard.check(output: location, isDirectory: true, overwrite: overwrite, inputs: inputs, into: &problems)
                    }
                }
            }
        }
        try problems.throwIfAny()
        return StagedPlan(file: self, graph: graph, stages: stages, settings: settings)
    }

    /// Plans stage `s` with `inputs` (checkpoints by stage index) for the stages it reads: a
    /// document through `Recipe.plan`, `MODEL+ADAPTER` as the adapter merged into the model
    /// (θ + 1·s·B·A, the model's dtypes). Errors carry their recipe line. An intermediate's
    /// output, `enclosed` in the work directory before it exists (checked as a whole), stays a
    /// temporary unless kept (`OutputSpec.staysTemporary`) and gets no `recipe.yml` (the model card
    /// holds the recipe; a later stage would find it beside its base's files).
    func planStage(_ s: Int, graph: RecipeGraph, role: StagedPlan.Role, location: String, settings: StagedPlan.Settings,
                   inputs: [Int: Checkpoint], enclosed: Bool) throws(MergeKitError) -> RecipeRun {
        let stage = graph.stages[s]
        let document = documents[stage.document]
        let references = stage.references.mapValues { inputs[$0]! }
        func intermediate(_ output: inout OutputSpec) {
            output.isSweepPoint = enclosed
            output.staysTemporary = !settings.work.keep
        }
        switch stage.kind {
        case .document:
            let run: RecipeRun
            do throws(MergeKitError) {
                run = role == .output
                    ? try document.plan(output: settings.output, overwrite: settings.overwrite, emit: settings.emit, seed: settings.seed,
                                        maxShardSize: settings.maxShardSize, dtype: settings.dtype, compute: settings.compute,
                                        references: references, hub: settings.hub) { _ in }
                    : try document.plan(output: location, overwrite: settings.overwrite, emit: .model, seed: settings.seed,
                                        maxShardSize: nil, dtype: nil, compute: settings.compute, references: references,
                                        hub: settings.hub, intermediate: intermediate)
            } catch {
                // Of several documents, say which one a problem without a line is in (its first line).
                guard documents.count > 1 else { throw error }
                var problems = ProblemList()
                for problem in error.problems.isEmpty ? [error] : error.problems {
                    if problem.detail.hasPrefix("line ") { problems.add(problem) } else { document.add(document.line, problem, to: &problems) }
                }
                try problems.throwIfAny()
                throw error
            }
            if role == .output { return run }
            let plans = run.plans.map { plan in
                var plan = plan
                plan.generatedFiles["recipe.yml"] = nil
                return plan
            }
            return RecipeRun(plans: plans, points: run.points)
        case .adapter(let model, let adapterPath):
            var problems = ProblemList()
            var base = references[model], adapter: LoRAAdapter?
            if base == nil {
                do throws(MergeKitError) {
                    base = try Checkpoint(path: try ModelLocator(settings: settings.hub).path(model, local: document.resolvedPath(model)))
                } catch {
                    document.add(stage.line, error, to: &problems)
                }
            }
            do throws(MergeKitError) { adapter = try LoRAAdapter(path: adapterPath) } catch { document.add(stage.line, error, to: &problems) }
            try problems.throwIfAny()
            var output = OutputSpec(path: location, emit: .model, overwrite: settings.overwrite, inputs: [path])
            intermediate(&output)
            do throws(MergeKitError) {
                var plan = try MergePlan(base: base!, inputs: [MergeInput(lora: adapter!)], method: TaskArithmetic(scale: 1), output: output)
                plan.generatedFiles["README.md"] = Array(ModelCard.text(plan: plan, aliases: references.aliases).utf8)
                return RecipeRun(plans: [plan], points: [[]])
            } catch {
                for problem in error.problems.isEmpty ? [error] : error.problems { document.add(stage.line, problem, to: &problems) }
                try problems.throwIfAny()
                preconditionFailure("an error adds a problem")
            }
        }
    }
}

extension [String: Checkpoint] {
    /// How a model card names the checkpoints a recipe supplies (intermediates): by path, the
    /// recipe's text for them.
    var aliases: [String: String] {
        [String: String](map { ($0.value.path, $0.key) }) { first, _ in first }
    }
}

extension MergePlan {
    /// Every path the plan reads that is on disk.
    var readPaths: [String] { Self.readPaths(base: base, inputs: inputs, output: output) }
}

extension ProblemList {
    /// Adds `error`, or each of the problems it reports together.
    mutating func addEach(_ error: MergeKitError) {
        if error.problems.isEmpty { add(error) } else { error.problems.forEach { add($0) } }
    }
}
