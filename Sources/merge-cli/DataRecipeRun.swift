import ArgumentParser
import Foundation
import MergeKit

/// `merge-cli run` of a recipe that merges from data (`DataRecipe`): the recipe becomes the
/// method command's arguments — `merge_method: regmean` with its models, data, heads and settings
/// is `merge-cli regmean --model … --data … --alpha …` — and that command runs, so a recipe and a
/// command line write the same bytes and share every check and message. A setting the command
/// does not have, or a value it refuses, is reported with the recipe's line (exit 1, as every
/// recipe problem); options of `run` that a merge from data has no use for are refused (exit 64).
enum DataRecipeRun {
    /// The command line `recipe` stands for, with `run`'s output options.
    static func arguments(_ recipe: DataRecipe, _ options: OutputOptions, seed: UInt64?) -> [String] {
        var arguments = [recipe.command]
        if recipe.method == "regmean_plusplus" { arguments.append("--plusplus") }
        if let base = recipe.base { arguments += ["--base", base] }
        for task in recipe.tasks {
            arguments += ["--model", task.model]
            if let data = task.data { arguments += ["--data", data] }
            if let head = task.head { arguments += ["--head", head] }
        }
        for setting in recipe.settings where !(seed != nil && setting.name == "seed") {
            let flag = "--" + setting.name.replacingOccurrences(of: "_", with: "-")
            switch setting.value {
            case .flag(true): arguments.append(flag)
            case .flag(false): continue
            case .text(let value): arguments += [flag, value]
            }
        }
        if let seed { arguments += ["--seed", String(seed)] }
        arguments += ["--output", options.output]
        if let threads = options.threads { arguments += ["--threads", String(threads)] }
        if options.overwrite { arguments.append("--overwrite") }
        if options.json { arguments.append("--json") }
        if options.quiet { arguments.append("--quiet") }
        return arguments
    }

    /// `run`'s options that do not apply to a merge from data, by flag, when given.
    static func unusedOptions(_ options: OutputOptions, compute: ComputeOptions, target: String?, workDir: String?) -> [String] {
        var flags: [String] = []
        if options.dtype != nil { flags.append("--dtype") }
        if options.maxShardSize != nil { flags.append("--max-shard-size") }
        if options.checksums { flags.append("--checksums") }
        if options.dryRun { flags.append("--dry-run") }
        if options.emit != .model { flags.append("--emit") }
        if compute.computeDType != nil { flags.append("--compute-dtype") }
        if target != nil { flags.append("--target") }
        if workDir != nil { flags.append("--work-dir") }
        return flags
    }

    /// Runs the recipe at `path` (`RunCommand.validate` has refused the options in `unusedOptions`).
    static func run(path: String, _ options: OutputOptions, seed: UInt64?) throws {
        var recipe: DataRecipe?
        try reportingErrors { () throws(MergeKitError) in recipe = try DataRecipe.load(path: path) }
        guard let recipe else { return }
        let arguments = self.arguments(recipe, options, seed: seed)
        var command: ParsableCommand
        do {
            command = try MergeCLI.parseAsRoot(arguments)
        } catch {
            throw ErrorOutput.report(problem(recipe, message: MergeCLI.message(for: error)))
        }
        try command.run()
    }

    /// A setting the method command refused, in the recipe's terms: the setting (by its flag in
    /// the command's message) and its line.
    static func problem(_ recipe: DataRecipe, message: String) -> MergeKitError {
        let message = message.split(separator: "\n").first.map(String.init) ?? message
        let setting = recipe.settings.first { setting in
            let flag = "--" + setting.name.replacingOccurrences(of: "_", with: "-")
            return message.range(of: "'\(flag)'") != nil || message.range(of: flag + " ") != nil || message.hasSuffix(flag)
        }
        let fix = "See `merge-cli \(recipe.command) --help`: each of its options is a setting under data: or parameters:, "
            + "without the leading -- and with _ for - (true for a flag)"
        if let setting {
            return MergeKitError(.invalidArgument, file: recipe.path,
                                 "line \(setting.line): \(setting.section).\(setting.name) — \(recipe.method): \(message)", fix: fix)
        }
        return MergeKitError(.invalidArgument, file: recipe.path, "\(recipe.method): \(message)", fix: fix)
    }
}
