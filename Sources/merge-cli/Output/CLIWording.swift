import MergeKit

/// How the command line words the terms of the library's messages (`MergeKitError.Term`): by the
/// flags and commands the user types. The library says "the batch size", "allow overwriting",
/// "task arithmetic of BASE and τ.safetensors"; merge-cli says "--batch-size", "pass
/// --overwrite", "`merge-cli task-arithmetic --base BASE --task-vector τ.safetensors`". Every
/// error is worded here before it is printed (`ErrorOutput`, argument checks). A term not listed
/// keeps the library's words.
enum CLIWording {
    /// merge-cli's words for `term` (capitalized by `MergeKitError.worded` when the term begins a
    /// sentence), or nil for the library's.
    static func name(_ term: MergeKitError.Term) -> String? {
        let a = term.arguments
        switch term.key {
        // Settings
        case "threads": return "fewer --threads"
        case "overwrite": return "pass --overwrite"
        case "work-dir": return "--work-dir DIR"
        case "target": return "--target"
        case "allow-unused": return "pass --allow-unused"
        case "allow-hub-downloads": return "Run without --offline, and with HF_HUB_OFFLINE unset, to download it"
        case "work-offline": return "work from the cache alone (--offline)"
        case "check-finite": return "--check-finite"
        case "scale": return "--scale"
        case "wider-dtype": return "a wider dtype (--dtype F32 or BF16)"
        case "dtype": return "--dtype \(a[0])"
        case "steps": return "--steps"
        case "batch-size": return "--batch-size"
        case "lr": return "--lr"
        case "weight-decay": return "--weight-decay"
        case "warmup-steps": return "--warmup-steps"
        case "clip-norm": return "--clip-norm"
        case "adam-eps": return "--adam-eps"
        case "batch-size-at-most": return "pass --batch-size \(a[0]) or less"
        case "samples": return "--samples"
        case "more-samples": return "a larger --samples"
        case "alpha": return "--alpha"
        case "smaller-alpha": return "a smaller --alpha"
        case "others-scale": return "--scale"
        case "fisher-epsilon": return "--epsilon"
        case "singular-pseudo-inverse": return "pass --singular pseudo-inverse (the default)"
        // Inputs
        case "as-model": return "pass it with --model"
        case "as-task-vector": return "pass it with --task-vector"
        case "result-as-model": return "pass the result with --model"
        case "as-a-model": return "as a --model"
        case "as-base": return "as --base"
        case "as-lora": return "to --lora"
        case "model-path": return "Point --model at"
        case "given-base": return "--base"
        case "not-around-a-base": return "drop --linearized --base"
        case "evaluate-itself": return "(--model \(a[0]) without --linearized --base)"
        case "model-of-base": return "--model must be a fine-tune of --base"
        case "experts-of-base": return "Every --model must be a fine-tune of --base"
        case "wemoe-sources":
            return "Pass the fine-tuned models the WEMoE model was built from with --model (τ = θ − θ₀), or their task vectors with --task-vector"
        case "role-eval-model": return "eval --model"
        case "role-eval-base": return "eval --base"
        case "role-finetune-base": return "finetune --base"
        case "role-wemoe-base": return "wemoe --base"
        case "role-wemoe-expert": return "wemoe --model"
        case "role-wemoe-train-model": return "wemoe-train --model"
        case "role-disentanglement-base": return "disentanglement --base"
        case "role-disentanglement-task-vector": return "disentanglement --task-vector"
        case "role-disentanglement-model": return "disentanglement --model"
        case "role-data-merge-model": return "--model"
        case "role-data-merge-base": return "--base"
        // LoRA extraction
        case "rank-example": return "Pass e.g. --rank 64"
        case "svd-defaults": return "(--oversampling 10 --power-iterations 4)"
        case "no-embeddings": return "leave out --embeddings"
        case "embeddings": return "Pass --embeddings to factorise embeddings and the output head too"
        case "use-randomized": return "pass --randomized"
        case "randomized": return "--randomized"
        case "randomized-products": return "Pass --randomized (its randomized SVD reads the matrix through matrix products only)"
        case "factors-dtype": return "pass --dtype \(a[0])"
        case "extraction-inputs": return "(--base PRETRAINED --model FINETUNED)"
        // Other commands
        case "task-vector-command": return a.isEmpty ? "`merge-cli task-vector`" : "`merge-cli task-vector --base \(a[0])`"
        case "apply-task-vector": return "`merge-cli task-arithmetic --base \(a[0]) --task-vector \(a[1])" + (a.count > 2 ? " -o \(a[2])`" : "`")
        case "merge-model": return "`merge-cli task-arithmetic --base \(a[0]) --model \(a[1])`"
        case "inspect-check-finite": return "`merge-cli inspect --check-finite`"
        case "verify-command": return "`merge-cli verify`"
        case "linearize-command":
            switch a.count {
            case 2: return "`merge-cli linearize --base \(a[0]) -o \(a[1])`"
            case 3: return "`merge-cli linearize --base \(a[0]) --model \(a[1]) -o \(a[2])`"
            default: return "`merge-cli linearize`"
            }
        case "linearize-base": return "`linearize --base`"
        case "finetune-base": return "`finetune --base`"
        case "finetune-linearized": return "`finetune --linearized`"
        case "finetune-linearized-command": return "`merge-cli finetune --linearized`"
        case "wemoe-command":
            guard a.count >= 2 else { return "`merge-cli wemoe`" }
            return "`merge-cli wemoe --base \(a[0])" + a.dropFirst(2).map { " --model \($0)" }.joined() + " -o \(a[1])`"
        case "wemoe-train-command": return "`merge-cli wemoe-train`"
        default: return nil
        }
    }
}

extension MergeKitError {
    /// This error as merge-cli says it (`CLIWording`).
    var inCLIWords: MergeKitError { worded(by: CLIWording.name) }
}
