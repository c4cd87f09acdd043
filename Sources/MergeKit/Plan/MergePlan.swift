/// One input of a merge, with its weight wᵢ: a fine-tuned checkpoint (τ = θ − θ₀ is computed on
/// the fly), a task-vector file (τ read as stored), or a PEFT LoRA adapter (τ = s·B·A per targeted
/// module, zero elsewhere; see `LoRAAdapter`).
public struct MergeInput: Sendable {
    public enum Kind: String, Sendable {
        case model
        case taskVector = "task-vector"
        case lora
    }

    public let kind: Kind
    /// The checkpoint read: the model, the task-vector file, or an adapter's
    /// `adapter_model.safetensors`.
    public let checkpoint: Checkpoint
    /// The adapter, for `.lora` inputs.
    public let adapter: LoRAAdapter?
    public let weight: Double

    public init(kind: Kind, checkpoint: Checkpoint, weight: Double = 1) {
        precondition(kind != .lora, "LoRA inputs are made with init(lora:weight:)")
        self.kind = kind
        self.checkpoint = checkpoint
        self.adapter = nil
        self.weight = weight
    }

    /// A LoRA adapter as an input.
    public init(lora adapter: LoRAAdapter, weight: Double = 1) {
        kind = .lora
        checkpoint = adapter.weights
        self.adapter = adapter
        self.weight = weight
    }

    /// The same input with another weight.
    public func weighted(_ weight: Double) -> MergeInput {
        if let adapter { return MergeInput(lora: adapter, weight: weight) }
        return MergeInput(kind: kind, checkpoint: checkpoint, weight: weight)
    }

    /// The path as the user gave it (the adapter directory for LoRA inputs).
    public var path: String { adapter?.path ?? checkpoint.path }
}

/// Where one input's τ for one tensor comes from.
public enum InputSource: Sendable {
    /// A stored tensor: θᵢ of a fine-tuned model (τ = θᵢ − θ₀) or τᵢ of a task-vector file.
    case tensor(Checkpoint.Entry)
    /// τ = s·B·A (or its transpose), materialised row block by row block as chunks are merged.
    /// (Boxed: a module is three times the size of an entry, and a plan holds a source per
    /// input per tensor.)
    indirect case lora(LoRAAdapter.Module)
    /// τ = 0: a LoRA adapter that does not target this tensor.
    case zero

    /// The stored tensor, for `.tensor` sources.
    public var entry: Checkpoint.Entry? {
        if case .tensor(let entry) = self { return entry }
        return nil
    }

    /// Bytes read for this source (a LoRA module's two factors).
    public var byteCount: Int {
        switch self {
        case .tensor(let entry): return entry.info.byteCount
        case .lora(let module): return module.a.info.byteCount + module.b.info.byteCount
        case .zero: return 0
        }
    }

    /// Bits read per element of the tensor (for progress; LoRA factors are small and count 0).
    var bitsPerElement: Int { entry?.info.dtype.bitWidth ?? 0 }
}

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
    /// Replace an existing output (atomically, only once the new one is complete, and only when
    /// it holds nothing but an output's files: `OutputGuard`).
    public var overwrite: Bool
    /// Paths the command reads besides the checkpoints it merges (a recipe, datasets, task heads,
    /// config files): the output must not be, contain, lie inside or link to any of them either.
    public var inputs: [String]
    /// A sweep point, written inside the sweep's directory (`SweepOutput`), which is checked and
    /// replaced as a whole.
    var isSweepPoint = false

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

/// What happens to one output tensor.
public struct PlannedTensor: Sendable {
    public enum Action: Sendable, Equatable {
        /// Merged by the method (float tensors).
        case merge
        /// Copied from the base byte for byte (integer, bool and other non-mergeable dtypes).
        case copy
    }

    public let action: Action
    /// The method and per-input weights for this tensor (recipes may vary them per tensor).
    public let method: any MergeMethod
    public let weights: [Double]
    /// The base tensor.
    public let base: Checkpoint.Entry
    /// Where each input's τ comes from, parallel to `MergePlan.inputs` (empty for copies).
    public let inputs: [InputSource]
    /// Computed in Double (some input or the output is F64) rather than Float.
    public let computeInDouble: Bool
    /// Index of the output shard and the tensor's place in it.
    public let shard: Int
    public let output: TensorInfo

    public var name: String { output.name }
}

/// One output file: its name (inside the output directory, or the output file itself) and layout.
public struct OutputShard: Sendable {
    public let fileName: String
    public let layout: SafeTensorsLayout
}

/// A method and per-input weights chosen for one tensor (a recipe's filters and layer gradients
/// give different tensors different parameters).
public struct TensorParameters: Sendable {
    public let method: any MergeMethod
    public let weights: [Double]

    public init(method: any MergeMethod, weights: [Double]) {
        self.method = method
        self.weights = weights
    }
}

/// A validated, complete description of one merge, made before any heavy work.
///
/// Everything a user can get wrong is checked here (see `MergePlan.init`), so that execution
/// only fails for reasons outside the user's control (a full disk, a file changed underneath).
public struct MergePlan: Sendable {
    public let base: Checkpoint
    public let inputs: [MergeInput]
    /// The method (for tensors without their own parameters, whole-model statistics and metadata).
    public let method: any MergeMethod
    public let output: OutputSpec
    /// Output tensors in output order (shard by shard, data order within a shard).
    public let tensors: [PlannedTensor]
    public let shards: [OutputShard]
    /// Companion files (config.json, tokenizer files, ...) copied from the base directory.
    public let companions: [String]
    /// Files of the base's directory a directory output does not get (not companions, or links
    /// out of the model's tree; `Checkpoint.companionSelection()`), for the caller to mention.
    public var skippedFiles: [Checkpoint.SkippedFile] = []
    /// `__metadata__` written into every output file.
    public let metadata: [String: String]
    /// Files written into a directory output besides the weights (a model card, the recipe),
    /// by name. Ignored for single-file outputs.
    public var generatedFiles: [String: [UInt8]] = [:]

    /// Tensor bytes read from the inputs (base included) for merged tensors and copies.
    public var inputBytes: Int {
        tensors.reduce(0) { total, t in
            total + t.base.info.byteCount + t.inputs.reduce(0) { $0 + $1.byteCount }
        }
    }

    /// Tensor bytes written.
    public var outputBytes: Int { shards.reduce(0) { $0 + $1.layout.dataSize } }
}
