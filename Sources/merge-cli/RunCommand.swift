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

    @Option(help: "Seed for DARE's random masks (overrides the recipe's seed).")
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

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "One output per grid point over λ, density or other parameters, reading every input once.",
        discussion: """
            Example (the task-arithmetic paper's 21-point λ grid, task vectors only):
              merge-cli sweep --method task-arithmetic --base B --model A --model C \\
                --scale 0:1:0.05 --emit task-vector -o sweep/
            Writes sweep/point-000 … point-020 and sweep/manifest.json (each point's parameters, \
            files, sizes and SHA-256). Grids are start:stop:step (inclusive) or comma lists; \
            --grid NAME=GRID sweeps any parameter of the method (recipe names: lambda, density, ...).
            """)

    @Option(help: ArgumentHelp("The method, by recipe name (task_arithmetic, ties, dare_ties, breadcrumbs, linear, …).", valueName: "name"))
    var method: String

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(help: ArgumentHelp("Grid of λ, e.g. 0:1:0.05.", valueName: "grid"))
    var scale: String?

    @Option(help: ArgumentHelp("Grid of densities, e.g. 0.1,0.2,0.3.", valueName: "grid"))
    var density: String?

    @Option(help: ArgumentHelp("Any parameter's grid, NAME=GRID (repeatable).", valueName: "name=grid"))
    var grid: [String] = []

    @Option(help: ArgumentHelp("A fixed parameter, NAME=VALUE (repeatable), e.g. trim_scope=global.", valueName: "name=value"))
    var param: [String] = []

    @Option(help: "Seed for DARE's random masks.")
    var seed: UInt64?

    func validate() throws {
        if scale == nil && density == nil && grid.isEmpty {
            throw ValidationError("Give at least one grid: --scale, --density or --grid NAME=GRID.")
        }
        for entry in grid + param where !entry.contains("=") {
            throw ValidationError("\(entry) is not NAME=VALUE.")
        }
        for entry in [scale, density].compactMap({ $0 }) + grid.map({ String($0.split(separator: "=", maxSplits: 1).last ?? "") })
            where SweepGrid.parse(entry) == nil {
            throw ValidationError("\(entry) is not a grid: use start:stop:step (inclusive) or a comma list.")
        }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            // The command line becomes a recipe, validated and planned like any other.
            func quoted(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            var yaml = "merge_method: \(method)\nbase_model: \(quoted(inputs.base))\nmodels:\n"
            let all = inputs.models.map { ("model", $0) } + inputs.taskVectors.map { ("task_vector", $0) } + inputs.loras.map { ("lora", $0) }
            for (i, (kind, path)) in all.enumerated() {
                yaml += "  - \(kind): \(quoted(path))\n"
                if !inputs.weights.isEmpty { yaml += "    parameters: {weight: \(inputs.weights[i])}\n" }
            }
            if !param.isEmpty {
                yaml += "parameters:\n"
                for entry in param {
                    let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                    yaml += "  \(parts[0]): \(parts[1])\n"
                }
            }
            yaml += "sweep:\n"
            if let scale { yaml += "  lambda: \(quoted(scale))\n" }
            if let density { yaml += "  density: \(quoted(density))\n" }
            for entry in grid {
                let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
                yaml += "  \(parts[0]): \(quoted(parts[1]))\n"
            }
            let recipe = try Recipe.parse(yaml, path: "merge-cli sweep")
            try runRecipe(recipe, outputOptions, seed: seed, command: CommandLine.arguments.joined(separator: " "))
        }
    }
}
