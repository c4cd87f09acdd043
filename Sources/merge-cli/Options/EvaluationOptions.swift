import ArgumentParser
import MergeKit

/// Scoring a sweep's points (`sweep`, and `run` with a recipe that sweeps): the tasks, which
/// points to keep, how to choose, the plots.
struct EvaluationOptions: ParsableArguments {
    @Option(name: .customLong("eval"), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("Score every point on a task, HEAD=DATA: a task head (safetensors `weight` [classes, embedding]) and its labelled images (`pixel_values`, `labels`), as `merge-cli eval` takes them. Repeatable; the task is named by the head's file name.", valueName: "head=data"))
    var eval: [String] = []

    @Option(help: ArgumentHelp("Which points to write: the selected one (default), all (each with its scores in its model card) or none (the manifest and plots only).", valueName: "best|all|none"))
    var keep: SweepEvaluation.Keep?

    @Option(help: ArgumentHelp("How to choose the point: the highest mean accuracy (average, the default), the best worst-task accuracy (worst), the lowest mean loss (loss), or one task's accuracy (its name). Ties go to the first point.", valueName: "name"))
    var select: String?

    @Option(name: .customLong("eval-batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per forward pass when scoring (default 32, fewer when 32 would not fit in the memory available).", valueName: "B"))
    var batchSize: Int?

    @Flag(help: "Also render the sweep's plots as PNG (with rsvg-convert, from librsvg2-bin) next to the SVGs.")
    var png = false

    /// The tasks the flags give, in order.
    func tasks() throws -> [SweepEvaluation.Task] {
        try eval.map { entry in
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex, entry.index(after: equals) != entry.endIndex else {
                throw ValidationError("--eval \(entry) is not HEAD=DATA (a task head file and its dataset file)")
            }
            return SweepEvaluation.Task(head: String(entry[..<equals]), data: String(entry[entry.index(after: equals)...]))
        }
    }

    /// Whether any evaluation flag was given.
    var isGiven: Bool { !eval.isEmpty || keep != nil || select != nil || batchSize != nil || png }

    /// The evaluation: `recipe`'s (a recipe's `eval:` section) with these flags' tasks added and
    /// their settings replacing its own; nil when neither gives one. Argument problems are
    /// ValidationErrors (exit 64).
    func evaluation(recipe: SweepEvaluation? = nil, output: OutputOptions, partitioned: Bool) throws -> SweepEvaluation? {
        let extra = try tasks()
        guard recipe != nil || !extra.isEmpty else {
            if isGiven { throw ValidationError("--keep, --select, --eval-batch-size and --png go with --eval (the tasks to score the points on).") }
            return nil
        }
        var evaluation = recipe ?? SweepEvaluation(tasks: [])
        evaluation.tasks += extra
        evaluation = evaluation.namedApart()
        if let keep { evaluation.keep = keep }
        if let select { evaluation.select = SweepEvaluation.Selection(select) }
        if let batchSize { evaluation.batchSize = batchSize }
        if png { evaluation.png = true }
        if let problem = evaluation.argumentProblems.first { throw ValidationError("--eval: \(problem)") }
        if output.emit != .model { throw ValidationError("--eval scores models; it cannot be used with --emit \(output.emit.rawValue).") }
        if partitioned { throw ValidationError("--eval cannot be used with --partition: the points are scored by one process, which keeps the best.") }
        if OutputGuard.isFileOutput(output.output) { throw ValidationError("--eval: a sweep writes a directory; \(output.output) names a .safetensors file.") }
        return evaluation
    }
}

extension SweepEvaluation.Keep: ExpressibleByArgument {}
