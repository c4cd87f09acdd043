/// The `README.md` written into a directory output, so a merged model records how it was made:
/// the base, the method and its parameters, the inputs with their weights, and the recipe (or
/// command) that produced it. Front matter in the Hugging Face model-card format.
public enum ModelCard {
    /// - Parameters:
    ///   - sweepRecipe: a sweep point's card: the recipe is the sweep's, in `recipe.yml` beside
    ///     the card, and is named rather than repeated (a sweep of P points would otherwise hold P
    ///     copies of a recipe that lists P values).
    ///   - aliases: how the recipe names checkpoints it made itself (a multi-document recipe's
    ///     intermediates, by path), which would otherwise show as their work-directory paths.
    ///     A Hugging Face cache snapshot is named by its id (`org/name`), as a model card's
    ///     `base_model` names a model of the Hub.
    public static func text(plan: MergePlan, recipe: String? = nil, command: String? = nil, sweepRecipe: Bool = false,
                            sweepPoint: [(name: String, value: String)] = [], aliases: [String: String] = [:]) -> String {
        func name(_ path: String) -> String { aliases[path] ?? HubCache.snapshotOwner(path)?.repository ?? path }
        var lines: [String] = []
        lines.append("---")
        lines.append("base_model: \(yamlString(name(plan.base.path)))")
        lines.append("tags:")
        lines.append("- merge")
        lines.append("- mergekit-swift")
        lines.append("- \(plan.method.info.name)")
        lines.append("---")
        lines.append("")
        lines.append("# Merged model")
        lines.append("")
        lines.append("Made with MergeKit (merge-cli) by **\(plan.method.info.name)**: \(plan.method.info.summary).")
        lines.append("Reference: \(plan.method.info.reference).")
        lines.append("")
        lines.append("- Base model: `\(name(plan.base.path))`")
        lines.append("- Output: \(plan.output.emit == .model ? "the merged model θ₀ + τ" : "the merged task vector τ only")")
        let parameters = JSONValue.object(plan.method.parameters).serialized()
        lines.append("- Parameters: `\(parameters)`")
        if !sweepPoint.isEmpty {
            lines.append("- Sweep point: " + sweepPoint.map { "`\($0.name) = \($0.value)`" }.joined(separator: ", "))
        }
        lines.append("")
        lines.append("| input | kind | weight |")
        lines.append("|---|---|---|")
        for input in plan.inputs {
            lines.append("| `\(name(input.path))` | \(input.kind.rawValue) | \(input.weight) |")
        }
        if let recipe {
            lines.append("")
            lines.append("## Recipe")
            lines.append("")
            lines.append("```yaml")
            lines.append(recipe.hasSuffix("\n") ? String(recipe.dropLast()) : recipe)
            lines.append("```")
        }
        if sweepRecipe {
            lines.append("")
            lines.append("## Recipe")
            lines.append("")
            lines.append("The sweep's recipe is `recipe.yml`, next to this file; this point is the sweep point above.")
        }
        if let command {
            lines.append("")
            lines.append("## Command")
            lines.append("")
            lines.append("```sh")
            lines.append(command)
            lines.append("```")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The "Evaluation" section of an evaluated sweep point's card: its score on every task and
    /// how the sweep chose among its points.
    public static func evaluationSection(_ evaluation: SweepEvaluation, scores: PointScores, selected: Bool) -> String {
        var lines = ["", "## Evaluation", ""]
        let chosen = selected ? "This point was selected" : "This point was not the one selected"
        lines.append("\(chosen) among the sweep's points by \(evaluation.select.meaning) (`--select \(evaluation.select)`); "
                     + "each point was scored with top-1 accuracy on these tasks:")
        lines.append("")
        lines.append("| task | accuracy | mean loss | images | head | data |")
        lines.append("|---|---|---|---|---|---|")
        for (task, result) in zip(evaluation.tasks, scores.results) {
            lines.append("| \(task.name) | \(String(format: "%.2f %%", result.accuracy * 100)) | \(String(format: "%.4f", result.meanLoss)) "
                         + "| \(result.images) | `\(task.head)` | `\(task.data)` |")
        }
        lines.append("| **average** | \(String(format: "%.2f %%", scores.averageAccuracy * 100)) | \(String(format: "%.4f", scores.averageLoss)) | | | |")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func yamlString(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
