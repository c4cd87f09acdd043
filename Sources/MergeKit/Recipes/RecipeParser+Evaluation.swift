import Yams

/// A recipe's `eval:` section (a MergeKit extension): how a sweep of CLIP image encoders scores
/// its points and which it keeps (`SweepEvaluation`; `merge-cli sweep --eval` is the same):
///
/// ```yaml
/// sweep: {lambda: "0:1:0.1"}
/// eval:
///   tasks:                      # or the list of tasks alone: eval: [{head: …, data: …}, …]
///     - head: heads/mnist.safetensors
///       data: data/mnist-val.safetensors
///       name: mnist             # optional: the head's file name without its extension
///   keep: best                  # best (default) | all | none
///   select: average             # average (default) | worst | loss | a task's name
///   batch_size: 32              # optional
///   png: false                  # also render the plots as PNG
/// ```
///
/// Paths are read as the recipe's checkpoints are: from the working directory, else beside the
/// recipe.
extension RecipeParser {
    static let evaluationKeys = ["tasks", "keep", "select", "batch_size", "png"]
    static let taskKeys = ["head", "data", "name"]

    mutating func evaluation(_ node: Node) -> SweepEvaluation? {
        var tasksNode: Node?
        var evaluation = SweepEvaluation(tasks: [])
        switch node {
        case .sequence:
            tasksNode = node
        case .mapping(let mapping):
            for (keyNode, value) in pairs(mapping) {
                switch keyNode.string {
                case "tasks":
                    tasksNode = value
                case "keep":
                    guard let text = value.string, let keep = SweepEvaluation.Keep(rawValue: text) else {
                        problem(value, "eval keep must be best, all or none")
                        continue
                    }
                    evaluation.keep = keep
                case "select":
                    guard let text = value.string, case .scalar = value, !text.isEmpty else {
                        problem(value, "eval select must be average, worst, loss or a task's name")
                        continue
                    }
                    evaluation.select = SweepEvaluation.Selection(text)
                case "batch_size":
                    guard let text = value.string, let size = Int(text), size >= 1 else {
                        problem(value, "eval batch_size must be a whole number of images, at least 1")
                        continue
                    }
                    evaluation.batchSize = size
                case "png":
                    guard let text = value.string, let flag = Bool(text.lowercased()) else { problem(value, "eval png must be true or false"); continue }
                    evaluation.png = flag
                default:
                    problem(keyNode, "unknown key \"\(keyNode.string ?? "?")\" in eval" + suggestion(keyNode.string ?? "", Self.evaluationKeys),
                            fix: "Allowed keys: " + Self.evaluationKeys.joined(separator: ", "))
                }
            }
        default:
            problem(node, "eval must be a mapping with tasks (a list of {head, data}), keep and select")
            return nil
        }
        guard case .sequence(let entries)? = tasksNode, !entries.isEmpty else {
            problem(tasksNode ?? node, "eval needs tasks: a non-empty list of {head: FILE, data: FILE}")
            return nil
        }
        for entry in entries {
            guard case .mapping(let mapping) = entry else { problem(entry, "an eval task must be a mapping {head: FILE, data: FILE}"); continue }
            var head: String?, data: String?, name: String?
            for (keyNode, value) in pairs(mapping) {
                let key = keyNode.string ?? ""
                guard Self.taskKeys.contains(key) else {
                    problem(keyNode, "unknown key \"\(key)\" in an eval task" + suggestion(key, Self.taskKeys),
                            fix: "Allowed keys: " + Self.taskKeys.joined(separator: ", "))
                    continue
                }
                guard let text = value.string, case .scalar = value, !text.isEmpty else { problem(value, "eval task \(key) must be a string"); continue }
                switch key {
                case "head": head = text
                case "data": data = text
                default: name = text
                }
            }
            guard let head, let data else { problem(entry, "an eval task needs head and data"); continue }
            evaluation.tasks.append(SweepEvaluation.Task(name: name, head: head, data: data))
        }
        evaluation = evaluation.namedApart()
        for problem in evaluation.argumentProblems { self.problem(node, "eval: \(problem)") }
        return evaluation
    }
}
