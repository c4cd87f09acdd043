/// What a checkpoint holds, told from its metadata and tensor names: the one place that decides,
/// for `inspect` and for every engine command's inputs (`CheckpointRole`).
///
/// | kind          | told by                                                                  |
/// |---------------|--------------------------------------------------------------------------|
/// | `linearized`  | `mergekit.kind` = `linearized`, or every tensor `params0.…` / `params.…` |
/// | `task_vector` | `mergekit.kind` = `task_vector`                                          |
/// | `wemoe`       | `merge_method` = `wemoe`, or router tensors `….mlp.gate.…`               |
/// | `model`       | anything else                                                            |
///
/// A task vector made by another tool carries no metadata and reads as a model.
public enum CheckpointKind: String, Sendable, CaseIterable {
    case model
    case taskVector = "task_vector"
    case linearized
    case wemoe

    public init(_ checkpoint: Checkpoint) {
        if LinearizedCheckpoint.isLinearized(checkpoint) || CheckpointKind.hasLinearizedNames(checkpoint) {
            self = .linearized
        } else if TaskVectorFile.isTaskVector(checkpoint) {
            self = .taskVector
        } else if WEMoEParameters.isWEMoE(checkpoint) {
            self = .wemoe
        } else {
            self = .model
        }
    }

    /// Whether every tensor is `params0.<name>` or `params.<name>` and both halves occur: a
    /// linearized checkpoint, even when its metadata was lost.
    static func hasLinearizedNames(_ checkpoint: Checkpoint) -> Bool {
        let names = checkpoint.tensorNames
        let base = LinearizedCheckpoint.Half.base.prefix, model = LinearizedCheckpoint.Half.model.prefix
        return !names.isEmpty && names.allSatisfy { $0.hasPrefix(base) || $0.hasPrefix(model) }
            && names.contains { $0.hasPrefix(base) } && names.contains { $0.hasPrefix(model) }
    }

    /// The kind in a sentence: "is <description>".
    public var description: String {
        switch self {
        case .model: return "an ordinary model"
        case .taskVector: return "a task vector (τ = θ − θ₀)"
        case .linearized: return "a linearized checkpoint (params0.* = θ₀, params.* = θ)"
        case .wemoe: return "a WEMoE model (routers mixing expert MLPs)"
        }
    }
}

/// The checkpoint an engine operation takes as one of its inputs, with the kinds it accepts and,
/// for every other kind, what to pass instead: `check` turns a wrong input into a message that
/// names the file, what it is, and the fix.
public enum CheckpointRole: Sendable {
    /// The model an evaluation runs as it is.
    case evalModel
    /// The fine-tuned θ an evaluation linearizes around a given base.
    case evalLinearizedModel
    /// The base θ₀ an evaluation linearizes a fine-tune around.
    case evalBase
    /// The model fine-tuning starts from.
    case finetuneBase
    /// The pre-trained encoder of a WEMoE upscaling.
    case wemoeBase
    /// One expert of a WEMoE upscaling.
    case wemoeExpert
    /// The model of test-time adaptation (WEMoE training).
    case wemoeTrainModel
    /// The base of the disentanglement error.
    case disentanglementBase
    /// A task vector of the disentanglement error.
    case disentanglementTaskVector
    /// A fine-tuned model of the disentanglement error (τ = θ − θ₀).
    case disentanglementModel
    /// The base and the model of a linearization.
    case linearizeInput
    /// A fine-tuned model of a merge that learns from data (`regmean`, `fisher`), and its base.
    case dataMergeModel, dataMergeBase

    /// The input, in the library's words ("eval's model"); a front end words it by the term's key
    /// ("role-eval-model").
    public var term: MergeKitError.Term {
        switch self {
        case .evalModel, .evalLinearizedModel: return .init("role-eval-model", "eval's model")
        case .evalBase: return .init("role-eval-base", "eval's base")
        case .finetuneBase: return .init("role-finetune-base", "finetune's base")
        case .wemoeBase: return .init("role-wemoe-base", "wemoe's base")
        case .wemoeExpert: return .init("role-wemoe-expert", "wemoe's expert")
        case .wemoeTrainModel: return .init("role-wemoe-train-model", "wemoe-train's model")
        case .disentanglementBase: return .init("role-disentanglement-base", "disentanglement's base")
        case .disentanglementTaskVector: return .init("role-disentanglement-task-vector", "disentanglement's task vector")
        case .disentanglementModel: return .init("role-disentanglement-model", "disentanglement's model")
        case .linearizeInput: return .init("role-linearize", "linearize")
        case .dataMergeModel: return .init("role-data-merge-model", "the merge's model")
        case .dataMergeBase: return .init("role-data-merge-base", "the merge's base")
        }
    }

    /// The input, in the library's words.
    public var option: String { term.words }

    /// The kinds this input takes. A disentanglement task vector may be a model too: task vectors
    /// made by other tools carry no metadata and cannot be told from one.
    public var accepted: Set<CheckpointKind> {
        switch self {
        case .evalModel: return [.model, .linearized, .wemoe]
        case .evalLinearizedModel, .evalBase, .finetuneBase, .wemoeBase, .wemoeExpert, .linearizeInput, .dataMergeModel, .dataMergeBase:
            return [.model]
        case .wemoeTrainModel: return [.wemoe]
        case .disentanglementBase, .disentanglementModel: return [.model, .linearized]
        case .disentanglementTaskVector: return [.taskVector, .linearized, .model]
        }
    }

    /// What this option takes, in words.
    var wanted: MergeKitError.Text {
        switch self {
        case .evalModel: return "a model (ordinary, linearized or WEMoE)"
        case .evalLinearizedModel: return "the ordinary fine-tuned model θ to linearize around \(term: .givenBase)"
        case .evalBase, .disentanglementBase: return "the ordinary pre-trained model θ₀"
        case .finetuneBase: return "the ordinary model θ₀ to start from"
        case .wemoeBase: return "the ordinary pre-trained model θ₀"
        case .wemoeExpert: return "an ordinary fine-tuned model θₜ"
        case .wemoeTrainModel: return "a WEMoE model"
        case .disentanglementTaskVector: return "a task vector (or a linearized checkpoint, read as θ − θ₀)"
        case .disentanglementModel: return "a fine-tuned model θ (τ = θ − θ₀)"
        case .linearizeInput: return "ordinary checkpoints"
        case .dataMergeModel: return "an ordinary fine-tuned model θₜ"
        case .dataMergeBase: return "the ordinary pre-trained model θ₀"
        }
    }

    /// What to pass instead of a checkpoint of `kind`.
    func fix(for kind: CheckpointKind, path: String) -> MergeKitError.Text {
        func applyFirst(_ model: String, _ then: String) -> MergeKitError.Text {
            "Apply it to its base first (\(term: .applyTaskVector(base: "BASE", taskVector: path, output: model))) and \(then)"
        }
        switch (self, kind) {
        case (.evalModel, .taskVector), (.evalLinearizedModel, .taskVector):
            return applyFirst("MODEL", "evaluate MODEL")
        case (.evalLinearizedModel, .linearized):
            return "A linearized checkpoint carries its own θ₀: \(term: .notAroundABase)"
        case (.evalLinearizedModel, .wemoe):
            return "WEMoE models are not linearized: \(term: .notAroundABase)"
        case (.evalBase, .linearized):
            return "Pass the model it was linearized around, or evaluate the linearized checkpoint itself \(term: .evaluateItself(path))"
        case (.evalBase, _), (.disentanglementBase, _):
            return "Pass the pre-trained model (a directory with config.json, or a .safetensors file with config.json next to it)"
        case (.finetuneBase, .linearized):
            return "Pass the base model itself (linear fine-tuning, \(term: .inTheTangentSpace), writes the linearized checkpoint)"
        case (.finetuneBase, .wemoe):
            return "A WEMoE model's routers are trained with \(term: .testTimeAdaptation)"
        case (.finetuneBase, _):
            return applyFirst("MODEL", "fine-tune MODEL")
        case (.wemoeBase, .wemoe):
            return "Pass the pre-trained model the experts were fine-tuned from"
        case (.wemoeBase, _):
            return "Pass the pre-trained model itself"
        case (.wemoeExpert, .linearized):
            return "WEMoE mixes the MLPs of ordinary fine-tuned models: pass the fine-tuned model itself, not its linearization"
        case (.wemoeExpert, .wemoe):
            return "Pass the fine-tuned models the WEMoE model was upscaled from"
        case (.wemoeExpert, _):
            return applyFirst("EXPERT", "pass EXPERT")
        case (.wemoeTrainModel, _):
            return "Upscale the models first (\(term: .wemoeUpscaling(base: "BASE", experts: ["FT1", "FT2"], output: "MOE"))) and train MOE"
        case (.disentanglementTaskVector, _), (.disentanglementModel, .wemoe):
            return "\(term: .wemoeSources)"
        case (.disentanglementModel, _):
            return "\(term: .passAsTaskVector.atStart)"
        case (.linearizeInput, .wemoe):
            return "Linearize the base and the fine-tuned models instead"
        case (.linearizeInput, .linearized):
            return "Pass the ordinary base and fine-tuned checkpoints it was made from"
        case (.dataMergeModel, .taskVector):
            return applyFirst("MODEL", "pass MODEL")
        case (.dataMergeModel, .linearized), (.dataMergeBase, .linearized):
            return "Pass the ordinary checkpoints it was made from; a linearized model's layers are not the ones its data flows through"
        case (.linearizeInput, .taskVector):
            return "Linearize the base alone, then merge the task vector onto it (\(term: .applyTaskVector(base: "LIN", taskVector: path)))"
        default:
            return "Pass \(wanted)"
        }
    }

    /// The checkpoint's kind when this option takes it; otherwise an error naming the file, what
    /// it is, what the option takes and what to pass.
    @discardableResult
    public func check(_ checkpoint: Checkpoint) throws(MergeKitError) -> CheckpointKind {
        let kind = CheckpointKind(checkpoint)
        guard accepted.contains(kind) else {
            throw MergeKitError(.invalidArgument, file: checkpoint.path, "is \(kind.description); \(term: term) takes \(wanted)",
                                fix: fix(for: kind, path: checkpoint.path))
        }
        return kind
    }
}
