import Foundation

/// A sweep's evaluation opened and checked against its plans before any work: the heads and
/// datasets read once (and shared by every point), every task checked against the encoder the
/// points will be, the batch chosen against the memory budget, and how many points may be built
/// in memory (`inMemory`). `score` then evaluates one point's checkpoint — built in memory or
/// written — on every task.
public final class SweepScorer: @unchecked Sendable {
    public let evaluation: SweepEvaluation
    let heads: [TaskHead]
    let datasets: [ImageDataset]
    /// The encoder every point is (all points share the base, so the architecture and the form).
    let config: CLIPVisionConfig
    let hasProjection: Bool
    let form: EncoderCheckpoint.Form
    /// Images per forward pass.
    public let batchSize: Int
    /// Bytes an evaluation holds at once (the model and a batch's activations).
    public let evaluationBytes: Int

    /// Opens the evaluation's files and checks them and the plans, every problem together:
    /// the points must be models (not task vectors) of a CLIP image encoder written as
    /// directories, each head and dataset must fit that encoder.
    public init(_ evaluation: SweepEvaluation, plans: [MergePlan], threads: Int?, budget: MemoryBudget?) throws(MergeKitError) {
        self.evaluation = evaluation
        var problems = ProblemList()
        for problem in evaluation.argumentProblems {
            problems.add(MergeKitError(.invalidArgument, "\(problem)", fix: "Correct the evaluation's arguments"))
        }
        let plan = plans[0]
        if plan.output.emit != .model {
            problems.add(MergeKitError(.invalidArgument, file: plan.output.path,
                "would be a task vector; an evaluation scores models", fix: "Emit models (leave out the task-vector output)"))
        }
        try problems.throwIfAny()
        // The encoder, from the first point as planned (headers and companions only).
        let encoder: EncoderCheckpoint
        do throws(MergeKitError) {
            let planned = try Checkpoint(planned: plan, path: plan.output.path)
            let kind = CheckpointKind(planned)
            var config: CLIPVisionConfig?
            if kind == .model || kind == .taskVector {
                guard let bytes = try planned.companionBytes("config.json") else {
                    throw MergeKitError(.fileNotFound, file: FileSystem.join(plan.base.path, "config.json"),
                        "does not exist; evaluating a point needs the CLIP config its base gives it",
                        fix: "Put the base model's config.json (a CLIPVisionConfig or CLIPConfig) next to its weights")
                }
                let file = FileSystem.join(plan.base.path, "config.json")
                let json: JSONValue
                do {
                    json = try JSONParser.parse(bytes)
                } catch {
                    throw MergeKitError(.invalidArgument, file: file, "is not valid JSON (\(error.description))",
                                        fix: "Restore config.json from the model's source")
                }
                config = try CLIPVisionConfig(json: json, file: file)
            }
            encoder = try EncoderCheckpoint(planned, config: config, allowUnused: true)
        } catch {
            var named = error
            named.detail = "(the sweep's points) " + error.detail
            throw named
        }
        (config, hasProjection, form) = (encoder.config, encoder.hasProjection, encoder.form)
        var heads: [TaskHead] = [], datasets: [ImageDataset] = []
        for task in evaluation.tasks {
            do throws(MergeKitError) {
                let head = try TaskHead(path: task.head)
                let data = try ImageDataset(path: task.data)
                try Evaluation.check(head: head, data: data, config: encoder.config, embeddingSize: encoder.embeddingSize)
                heads.append(head)
                datasets.append(data)
            } catch {
                problems.add(error)
            }
        }
        try problems.throwIfAny()
        self.heads = heads
        self.datasets = datasets
        let threadCount = ThreadCount.resolved(threads)
        let classes = heads.map(\.classes).max()!
        let largest = datasets.map(\.count).max()!
        let (config, hasProjection, form) = (self.config, self.hasProjection, self.form)
        func estimate(_ b: Int) -> MemoryEstimate {
            EngineMemory.evaluation(config: config, hasProjection: hasProjection, form: form, batch: min(b, largest),
                                    threads: threadCount, classes: classes)
        }
        batchSize = try EngineMemory.batch(evaluation.batchSize ?? 32, chosen: evaluation.batchSize != nil,
                                           command: "evaluating the sweep's points", budget: budget, estimate: estimate)
        evaluationBytes = estimate(batchSize).bytes
    }

    /// How many of `plans`' points (the first ones, in grid order) are built in memory: as many
    /// as fit, together with an evaluation, in half of `budget` (all without a budget); the
    /// others are written and read back.
    public func inMemory(_ plans: [MergePlan], budget: MemoryBudget?) -> Int {
        guard let budget else { return plans.count }
        let point = max(1, MemoryOutput.bytes(plans[0]))
        return max(0, min(plans.count, (budget.bytes / 2 - evaluationBytes) / point))
    }

    /// The evaluation's settings as reported (the manifest, `--json`, `--dry-run`): the tasks, the
    /// rule, what is kept, the batch.
    public var settingsJSON: [JSONMember] {
        [
            JSONMember("tasks", .array(evaluation.tasks.map { task in
                .object([JSONMember("name", .string(task.name)), JSONMember("head", .string(task.head)), JSONMember("data", .string(task.data))])
            })),
            JSONMember("select", .string(evaluation.select.description)),
            JSONMember("keep", .string(evaluation.keep.rawValue)),
            JSONMember("batch_size", .int(batchSize)),
        ]
    }

    /// Evaluates `checkpoint` (a point built in memory, or written) on every task, in order.
    public func score(_ checkpoint: Checkpoint, threads: Int?) throws(MergeKitError) -> PointScores {
        let encoder = try EncoderCheckpoint(checkpoint, config: form == .plain ? config : nil, allowUnused: true).load(threads: threads)
        var results: [EvaluationResult] = []
        for (head, data) in zip(heads, datasets) {
            results.append(try Evaluation.run(encoder, head: head, data: data, batchSize: batchSize))
        }
        return PointScores(results: results)
    }
}
