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
