import ArgumentParser
import Foundation
import MergeKit

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Merge as a recipe says (YAML or JSON in mergekit's vocabulary; a sweep: section writes one output per point).",
        discussion: """
            Everything is validated before any heavy work: unknown keys, methods and parameters, \
            missing models and shape mismatches are reported together, with their recipe lines. \
            A directory output also gets the recipe (recipe.yml) and a model card (README.md).

            A recipe file may hold several documents separated by --- (as mergekit-multi reads \
            them): each has a name: that the others use as a model or base_model, and the output is \
            the document without a name, else the last (or --target NAME). model: PATH+ADAPTER is \
            the model with its PEFT LoRA adapter merged in. Intermediates go to a temporary \
            directory beside the output, removed at the end, or to --work-dir DIR as DIR/NAME.

            A recipe whose merge_method is regmean, regmean_plusplus, fisher, adamerging or atlas \
            (or that has a data: section) merges from data on the CLIP engine: each models entry \
            gives model, data and head, and the settings under data: and parameters: are that \
            method command's options (batch_size for --batch-size, true for a flag).
            """)

    @Argument(help: ArgumentHelp("The recipe file.", valueName: "recipe"))
    var recipe: String

    @OptionGroup var outputOptions: OutputOptions
    @OptionGroup var compute: ComputeOptions

    @Option(parsing: .unconditional, help: "Seed for DARE's random masks (overrides the recipe's seed, in every document).")
    var seed: UInt64?

    @Option(name: .long, help: ArgumentHelp("The document written to the output, by name (default: the document without a name, else the last).", valueName: "name"))
    var target: String?

    @Option(name: .customLong("work-dir"), help: ArgumentHelp("Where a multi-document recipe's intermediates are written, each as DIR/NAME (default: a temporary directory beside the output, removed at the end).", valueName: "dir"))
    var workDir: String?

    @Flag(name: .customLong("keep-intermediates"), help: "Keep the intermediates in --work-dir after the run (also those completed before a failure); by default they are removed.")
    var keepIntermediates = false

    @OptionGroup var hub: HubOptions
    @OptionGroup var partitioning: PartitionOptions
    @OptionGroup(title: "Scoring a sweep's points (CLIP image encoders; the recipe's eval: section)") var scoring: EvaluationOptions

    func validate() throws {
        try partitioning.validate(output: outputOptions.output)
        if let workDir { try ArgumentCheck.path(workDir, flag: "--work-dir") }
        if DataRecipe.applies(path: recipe) {
            // (A merge from data is not partitioned: its method command has no --partition.)
            let unused = DataRecipeRun.unusedOptions(outputOptions, compute: compute, target: target, workDir: workDir)
                + (partitioning.partition != nil ? ["--partition"] : []) + (partitioning.assemble ? ["--assemble"] : [])
            if !unused.isEmpty {
                throw ValidationError("\(unused.joined(separator: ", ")) \(unused.count == 1 ? "does" : "do") not apply to \(recipe), a merge from data (its method command writes the model in the base's dtype)")
            }
        }
        if scoring.isGiven && DataRecipe.applies(path: recipe) {
            throw ValidationError("--eval, --keep, --select, --eval-batch-size and --png score a sweep's points; \(recipe) is a merge from data")
        }
        if keepIntermediates && workDir == nil {
            throw ValidationError("--keep-intermediates needs --work-dir DIR: the default work directory is a temporary directory, removed at the end")
        }
    }

    func run() throws {
        if DataRecipe.applies(path: recipe) {
            // RegMean, Fisher, AdaMerging, aTLAS: the method command with the recipe's settings.
            try DataRecipeRun.run(path: recipe, outputOptions, seed: seed)
            return
        }
        try reportingErrors { () throws(MergeKitError) in
            let file = try RecipeFile.load(path: recipe)
            // The download phase (Hugging Face ids the cache lacks), then planning on the cache.
            let settings = hub.settings
            _ = try HubDownloads.prepare(file.modelTexts, settings: settings, quiet: outputOptions.quiet)
            let staged = try file.plan(output: outputOptions.output, overwrite: outputOptions.overwrite, emit: outputOptions.emit,
                                       seed: seed, maxShardSize: outputOptions.maxShardSize?.bytes, dtype: outputOptions.dtype?.dtype,
                                       target: target, workDirectory: WorkDirectory.Options(path: workDir, keep: keepIntermediates),
                                       compute: compute.computeDType, hub: settings)
            if !outputOptions.quiet {
                for note in staged.stages.filter({ $0.role != .unused }).flatMap(\.notes) {
                    FileHandle.standardError.write(Data("note: \(TerminalText.escaped(note))\n".utf8))
                }
            }
            let recipeEvaluation = file.documents.last?.evaluation
            let evaluation: SweepEvaluation?
            do {
                evaluation = try scoring.evaluation(recipe: recipeEvaluation, output: outputOptions, partitioned: partitioning.partition != nil)
            } catch {
                throw MergeKitError(.invalidArgument, file: recipe, "\(String(describing: error))", fix: "Correct the evaluation's flags or the recipe's eval: section")
            }
            if evaluation != nil && !staged.isSingle {
                throw MergeKitError(.invalidArgument, file: recipe,
                    "has \(staged.stages.count) stages (documents or models with adapters); only a recipe of one document scores a sweep (eval:)",
                    fix: "Make the models the sweep reads first, then sweep them with a recipe of its own")
            }
            if evaluation != nil && staged.target.points.allSatisfy(\.isEmpty) {
                throw MergeKitError(.invalidArgument, file: recipe, "has no sweep: section; --eval scores a sweep's points",
                    fix: "Add a sweep: section (e.g. sweep: {lambda: \"0:1:0.1\"}), or score one model with merge-cli eval")
            }
            if staged.isSingle {
                // One merge (or one sweep), as every recipe of one document.
                let target = staged.target
                let sweeps = !target.points.allSatisfy(\.isEmpty)
                let points = target.points.map { $0.map { (name: $0.name, value: $0.value.description) } }
                if let evaluation {
                    try MergeRunner.run(target.plans, evaluation: evaluation, options: outputOptions, points: points)
                    return
                }
                try MergeRunner.run(target.plans, options: outputOptions, points: sweeps ? points : [],
                                    sweepDirectory: sweeps ? outputOptions.output : nil, partition: partitioning)
            } else if partitioning.partition != nil {
                throw MergeKitError(.invalidArgument, file: recipe,
                    "has \(staged.stages.count) stages (documents or models with adapters); a recipe of several stages cannot be partitioned yet",
                    fix: "Run it without --partition, or run its stages as recipes of their own and partition the last")
            } else {
                try MergeRunner.run(staged, options: outputOptions)
            }
        }
    }
}

/// Plans a recipe and runs it (a sweep writes its points and a manifest into one directory,
/// moved into place when complete), in `compute` (nil: the recipe's `dtype` decides).
///
/// With `partition`, one partition of it; a method the partition refuses (whole-model
/// statistics) exits with `refusalStatus`, other failures with 1.
func runRecipe(_ recipe: Recipe, _ options: OutputOptions, seed: UInt64?, compute: ComputeDType?, command: String?,
               hub: HubOptions, partition: PartitionOptions? = nil, refusalStatus: Int32 = 1,
               evaluation: SweepEvaluation? = nil) throws {
    var run: RecipeRun!
    try reportingErrors { () throws(MergeKitError) in
        let settings = hub.settings
        _ = try HubDownloads.prepare(recipe.modelTexts, settings: settings, quiet: options.quiet)
        run = try recipe.plan(output: options.output, overwrite: options.overwrite, emit: options.emit, seed: seed,
                              maxShardSize: options.maxShardSize?.bytes, dtype: options.dtype?.dtype, compute: compute,
                              hub: settings)
    }
    if let partition, partition.partition != nil, !partition.statsRounds {
        do throws(MergeKitError) {
            try Partition.checkSupported(run.plans)
            try PartitionStatistics.checkArguments(run.plans, files: partition.stats, writing: partition.writeStats != nil)
        } catch {
            throw ErrorOutput.report(error, exitStatus: refusalStatus)
        }
    }
    try reportingErrors { () throws(MergeKitError) in
        if !options.quiet {
            for note in run.notes { FileHandle.standardError.write(Data("note: \(TerminalText.escaped(note))\n".utf8)) }
        }
        let points = run.points.map { $0.map { (name: $0.name, value: $0.value.description) } }
        if let evaluation {
            let plans = command.map { MergeRun.withModelCards(run.plans, command: $0) } ?? run.plans
            try MergeRunner.run(plans, evaluation: evaluation, options: options, points: points)
            return
        }
        try MergeRunner.run(run.plans, options: options, points: recipe.sweep.isEmpty ? [] : points,
                            sweepDirectory: recipe.sweep.isEmpty ? nil : options.output, command: command, partition: partition)
    }
}
