/// What a merge writes: the merged model θ₀ + τ, or only the merged task vector τ.
public enum EmitKind: String, Sendable, CaseIterable {
    case model
    case taskVector = "task-vector"
}

/// Where and how the output is written.
public struct OutputSpec: Sendable {
    /// A path ending in `.safetensors` (in any case) is written as one file; anything else as a
    /// Hugging Face directory (shards + index when larger than `maxShardSize`, companions copied from the base).
    public var path: String
    /// Output dtype for merged tensors; nil keeps the base's (F32 for task vectors).
    public var dtype: DType?
    /// Largest shard (tensor bytes) of a directory output; nil = `defaultMaxShardSize`.
    public var maxShardSize: Int?
    public var emit: EmitKind
    /// The precision the merge computes in: full float32 (the default), or mergekit's rounding to
    /// a 16-bit `dtype` (`ComputeDType`; a recipe's `dtype` selects it).
    public var compute: ComputeDType = .float32
    /// Replace an existing output (atomically, only once the new one is complete, and only when
    /// it holds nothing but an output's files: `OutputGuard`).
    public var overwrite: Bool
    /// Paths the command reads besides the checkpoints it merges (a recipe, datasets, task heads,
    /// config files): the output must not be, contain, lie inside or link to any of them either.
    public var inputs: [String]
    /// A sweep point, written inside the sweep's directory (`SweepOutput`), which is checked and
    /// replaced as a whole; also a multi-stage recipe's intermediate in its work directory, which
    /// is checked as a whole (`RecipeFile.plan`).
    var isSweepPoint = false
    /// An intermediate of a multi-stage recipe that is not kept: moved into place like any output,
    /// its files stay registered as temporaries in the same step (`StagedOutput`), so an interrupt
    /// from then on removes it too; the work directory removes it at the end (`WorkDirectory`).
    var staysTemporary = false
    /// One partition's share of the output (`Partition`): the shards it writes, and whether it
    /// writes the small files (index, companions, generated files). nil: the whole output.
    var part: OutputPart?

    /// transformers' `save_pretrained` default shard size (5 GB).
    public static let defaultMaxShardSize = 5_000_000_000

    public init(path: String, dtype: DType? = nil, maxShardSize: Int? = nil, emit: EmitKind = .model, overwrite: Bool = false,
                inputs: [String] = []) {
        self.path = path
        self.dtype = dtype
        self.maxShardSize = maxShardSize
        self.emit = emit
        self.overwrite = overwrite
        self.inputs = inputs
    }

    /// Whether the output is a directory (anything not ending in `.safetensors`, in any case).
    public var isDirectory: Bool { !OutputGuard.isFileOutput(path) }
}

/// What one partition of a partitioned merge writes of a plan's output (`Partition`): whole shard
/// files, and the small files for partition 0. The executor produces only these shards and reads
/// only the inputs of their tensors.
struct OutputPart: Sendable {
    /// Indices into `MergePlan.shards`.
    let shards: Set<Int>
    /// Whether this partition writes the shard index, the companions and the generated files.
    let writesSmallFiles: Bool
}
