/// A recipe file planned before any work (`RecipeFile.plan`): every stage of its graph
/// (`RecipeGraph`: its documents, and the `MODEL+ADAPTER` models they use) with its plans, the
/// output, and where the intermediates go (`WorkDirectory`). `MergeRun.run(_:threads:…)` makes
/// the stages the output needs, in order.
///
/// **What is checked when.** Every stage is planned before any work, the later ones on the
/// planned layout of the intermediates they read (`Checkpoint(planned:path:)`: the exact names,
/// shapes, dtypes, shards and metadata those will be written with), so everything a plan checks
/// from headers, arguments and file types is checked for the whole graph at once: the graph
/// itself, every document's keys and parameters, every checkpoint that exists, tensor names,
/// shapes and dtypes across the stages, LoRA adapters against the models they are merged into
/// (targets, shapes, PEFT's module rules), the output and every intermediate's location, the
/// memory whole-tensor methods need and the disk space of every intermediate and of the output.
/// What needs an intermediate's values is checked when the stage that reads it runs, on the
/// written checkpoint, as the stage is planned again: a task vector's recorded base fingerprint
/// or full-model test against an intermediate base, a LoRA adapter's saved embedding copies
/// against an intermediate, a linearized intermediate's θ₀, and (as in every merge) NaN and ±∞.
/// Planning a stage again on its written inputs must give the plan checked before (the same
/// tensors, dtypes and files), or the run stops.
public struct StagedPlan: Sendable {
    /// What a stage is for.
    public enum Role: String, Sendable {
        /// Written to the work directory and read by later stages.
        case intermediate
        /// Written to the output.
        case output
        /// Not needed by the output: checked, not made.
        case unused
    }

    public struct Stage: Sendable {
        public let stage: RecipeGraph.Stage
        public let role: Role
        /// Where it is written: the output, or its place in the work directory (`<work
        /// directory>/stage-NNN` until the default temporary one exists).
        public let location: String
        /// Its plan (one per sweep point for an output that sweeps), made before any work, on the
        /// planned layout of the stages it reads. Empty for an unused document with a sweep (its
        /// parameters are checked, its points not laid out).
        public let plans: [MergePlan]
        /// The sweep values of each plan (empty without a sweep).
        public let points: [[(name: String, value: ParameterSetting)]]
        /// Its document's notes on keys without effect here (`RecipeRun.notes`).
        public var notes: [String] = []

        /// Whether it reads an intermediate: its plans were made on planned layouts and are made
        /// again, on the written intermediates, when it runs.
        public var readsIntermediates: Bool { !stage.dependencies.isEmpty }
    }

    /// The run's settings, as given to `RecipeFile.plan`.
    struct Settings: Sendable {
        let output: String
        let overwrite: Bool
        let emit: EmitKind
        let seed: UInt64?
        let maxShardSize: Int?
        let dtype: DType?
        let compute: ComputeDType?
        let work: WorkDirectory.Options
        /// Where Hugging Face ids are read from.
        var hub: HubSettings = .current
    }

    public let file: RecipeFile
    public let graph: RecipeGraph
    /// Parallel to `graph.stages`.
    public let stages: [Stage]
    let settings: Settings

    /// The output, as given.
    public var output: String { settings.output }
    public var workDirectory: WorkDirectory.Options { settings.work }
    /// The stage written to the output.
    public var target: Stage { stages[graph.target] }
    /// The stages made before the output, in order.
    public var intermediates: [Stage] { stages.filter { $0.role == .intermediate } }
    /// Whether the file is one ordinary recipe: one stage, no work directory.
    public var isSingle: Bool { intermediates.isEmpty }
}
