/// How a sweep of CLIP image encoders scores its points (`sweep --eval HEAD=DATA`, a recipe's
/// `eval:` section): every point is evaluated on every task — a head and a labelled dataset, as
/// `merge-cli eval` takes them — and the points are compared by a `Selection` rule; which points
/// are written is the `Keep` policy. The run is `MergeRun.run(_:evaluation:…)`.
public struct SweepEvaluation: Sendable, Equatable {
    /// One task a point is scored on.
    public struct Task: Sendable, Equatable {
        /// How the task is named in scores, plots and `--select`: as given, else the head's file
        /// name without its extension (with as many of its directories as tell it apart from
        /// another task's: `namedApart()`).
        public let name: String
        /// Whether `name` was made from the head's path (not given).
        public let isDefaultName: Bool
        /// The task head: safetensors with `weight` [classes, embedding].
        public let head: String
        /// The labelled images: safetensors with `pixel_values` [N,3,H,W] F32 and `labels` [N] I64.
        public let data: String

        public init(name: String? = nil, head: String, data: String) {
            self.init(name: name ?? Task.defaultName(head: head, components: 1), isDefaultName: name == nil, head: head, data: data)
        }

        init(name: String, isDefaultName: Bool, head: String, data: String) {
            self.name = name
            self.isDefaultName = isDefaultName
            self.head = head
            self.data = data
        }

        /// The last `components` parts of the head's path, without `.safetensors` (or the file's
        /// last extension).
        static func defaultName(head: String, components: Int) -> String {
            let parts = FileSystem.trimmingTrailingSlashes(head).split(separator: "/").map(String.init)
            var file = parts.last ?? head
            if file.hasSuffix(".safetensors") {
                file = String(file.dropLast(".safetensors".count))
            } else if let dot = file.lastIndex(of: "."), dot != file.startIndex {
                file = String(file[..<dot])
            }
            return (parts.dropLast().suffix(components - 1) + [file]).joined(separator: "/")
        }
    }

    /// These settings with the tasks whose names were made from their heads' paths named apart:
    /// two `head.safetensors` in `task0/` and `task1/` become `task0/head` and `task1/head`.
    public func namedApart() -> SweepEvaluation {
        var result = self
        for components in 2...8 {
            let counts = Dictionary(result.tasks.map { ($0.name, 1) }, uniquingKeysWith: +)
            guard counts.values.contains(where: { $0 > 1 }) else { break }
            result.tasks = result.tasks.map { task in
                guard task.isDefaultName, counts[task.name]! > 1 else { return task }
                return Task(name: Task.defaultName(head: task.head, components: components), isDefaultName: true, head: task.head, data: task.data)
            }
        }
        return result
    }

    /// Which points are written.
    public enum Keep: String, Sendable, CaseIterable {
        /// The selected point only.
        case best
        /// Every point, each with its scores in its model card.
        case all
        /// None: the manifest and the plots only.
        case none
    }

    /// How points are compared; ties go to the earliest point in grid order.
    public enum Selection: Sendable, Equatable, CustomStringConvertible {
        /// The highest mean accuracy over the tasks.
        case average
        /// The highest accuracy on the task the point does worst on.
        case worst
        /// The lowest mean cross-entropy over the tasks.
        case loss
        /// The highest accuracy on one task, by name.
        case task(String)

        /// `average`, `worst`, `loss`, or a task's name.
        public init(_ text: String) {
            switch text {
            case "average": self = .average
            case "worst": self = .worst
            case "loss": self = .loss
            default: self = .task(text)
            }
        }

        public var description: String {
            switch self {
            case .average: "average"
            case .worst: "worst"
            case .loss: "loss"
            case .task(let name): name
            }
        }

        /// What the rule maximises, in words (for the manifest, cards and messages).
        public var meaning: String {
            switch self {
            case .average: "the highest mean accuracy over the tasks"
            case .worst: "the highest accuracy on the point's worst task"
            case .loss: "the lowest mean cross-entropy over the tasks"
            case .task(let name): "the highest accuracy on task \(name)"
            }
        }
    }

    public var tasks: [Task]
    public var keep: Keep
    public var select: Selection
    /// Images per forward pass (nil: 32, fewer when 32 would not fit the memory budget).
    public var batchSize: Int?
    /// Whether the plots are also rendered as PNG (next to the SVGs).
    public var png: Bool

    /// (Tasks with names made from their heads' paths are named apart: `namedApart()`.)
    public init(tasks: [Task], keep: Keep = .best, select: Selection = .average, batchSize: Int? = nil, png: Bool = false) {
        self.tasks = tasks
        self.keep = keep
        self.select = select
        self.batchSize = batchSize
        self.png = png
        self.tasks = namedApart().tasks
    }

    /// What is wrong with the evaluation's arguments themselves (before any file is opened),
    /// each a sentence: no tasks, two tasks of one name, a `select` naming no task, a batch
    /// size below 1.
    public var argumentProblems: [String] {
        var problems: [String] = []
        if tasks.isEmpty { problems.append("an evaluation needs at least one task (a head and its data)") }
        var seen: Set<String> = []
        for task in tasks where !seen.insert(task.name).inserted {
            problems.append("two tasks are named \(task.name); name them apart (their heads' file names are the default names)")
        }
        if case .task(let name) = select, !tasks.contains(where: { $0.name == name }) {
            let names = tasks.map(\.name).joined(separator: ", ")
            problems.append("select \(name) is neither average, worst nor loss, nor a task (the tasks: \(names))")
        }
        if let batchSize, batchSize < 1 { problems.append("the batch size must be at least 1, not \(batchSize)") }
        return problems
    }
}

/// What one point scored.
public struct PointScores: Sendable, Equatable {
    /// Per task, in the evaluation's task order.
    public let results: [EvaluationResult]

    public init(results: [EvaluationResult]) {
        precondition(!results.isEmpty)
        self.results = results
    }

    /// Mean accuracy over the tasks.
    public var averageAccuracy: Double { results.reduce(0) { $0 + $1.accuracy } / Double(results.count) }
    /// Mean of the tasks' mean cross-entropies.
    public var averageLoss: Double { results.reduce(0) { $0 + $1.meanLoss } / Double(results.count) }
    /// The accuracy on the worst task.
    public var worstAccuracy: Double { results.map(\.accuracy).min()! }

    /// The number `selection` compares, larger better (the loss negated).
    func key(_ selection: SweepEvaluation.Selection, tasks: [SweepEvaluation.Task]) -> Double {
        switch selection {
        case .average: averageAccuracy
        case .worst: worstAccuracy
        case .loss: -averageLoss
        case .task(let name): results[tasks.firstIndex { $0.name == name }!].accuracy
        }
    }
}

extension SweepEvaluation {
    /// The point `select` chooses among `scores` (the first of equals, in grid order).
    public func selected(_ scores: [PointScores]) -> Int {
        var best = 0
        for i in scores.indices.dropFirst() where scores[i].key(select, tasks: tasks) > scores[best].key(select, tasks: tasks) {
            best = i
        }
        return best
    }

    /// Whether point `index` is written, `selected` being the chosen one.
    public func keeps(_ index: Int, selected: Int) -> Bool {
        switch keep {
        case .all: true
        case .best: index == selected
        case .none: false
        }
    }
}
