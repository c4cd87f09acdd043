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
            """)

    @Argument(help: ArgumentHelp("The recipe file.", valueName: "recipe"))
    var recipe: String

    @OptionGroup var outputOptions: OutputOptions

    @Option(parsing: .unconditional, help: "Seed for DARE's random masks (overrides the recipe's seed).")
    var seed: UInt64?

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let loaded = try Recipe.load(path: recipe)
            try runRecipe(loaded, outputOptions, seed: seed, command: nil)
        }
    }
}

/// Plans a recipe and runs it (a sweep writes its points and a manifest into one directory,
/// moved into place when complete).
func runRecipe(_ recipe: Recipe, _ options: OutputOptions, seed: UInt64?, command: String?) throws(MergeKitError) {
    let run = try recipe.plan(output: options.output, overwrite: options.overwrite, emit: options.emit, seed: seed,
                              maxShardSize: options.maxShardSize?.bytes, dtype: options.dtype?.dtype)
    let points = run.points.map { $0.map { (name: $0.name, value: $0.value.description) } }
    try MergeRunner.run(run.plans, options: options, points: recipe.sweep.isEmpty ? [] : points,
                        sweepDirectory: recipe.sweep.isEmpty ? nil : options.output, command: command)
}
