/// Which tensors of a checkpoint have one row per token (their first dimension is the
/// vocabulary): the input embeddings, the output heads and their biases, by the names the common
/// architectures give them (mergekit's architecture definitions mark the same tensors).
///
/// A checkpoint's vocabulary rows are the first dimension of its first input embedding in
/// `embeddings`' order; a tensor of the table is a vocabulary tensor of the checkpoint when its
/// first dimension is that many rows (a tensor that happens to share a name but not the rows is
/// merged as any other).
///
/// **Tied heads.** A model with tied embeddings (`tie_word_embeddings`) stores no output head:
/// its input embedding serves as one (`tiedHead`), as transformers ties them when it loads the
/// model. A model whose config.json says `tie_word_embeddings: false` and that stores no head has
/// none (it was saved without it) and is not taken to tie it. When models that store a head are
/// merged with tied ones, each tied model takes part with its embedding as its head
/// (`presentingTiedHeads`), as mergekit's architectures name the embedding as the head's tied
/// alias; an output that stores a head says `tie_word_embeddings: false` (`tieEdit`), one that
/// does not says `true`, whenever that differs from the config it is written from.
enum VocabularyTensors {
    /// Input embeddings, in order of preference.
    static let embeddings = [
        "model.embed_tokens.weight", "model.language_model.embed_tokens.weight", "transformer.wte.weight",
        "model.tok_embeddings.weight", "gpt_neox.embed_in.weight", "transformer.word_embeddings.weight",
        "transformer.embedding.word_embeddings.weight", "transformer.embd.wte.weight", "backbone.embeddings.weight",
        "embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight", "roberta.embeddings.word_embeddings.weight",
        "distilbert.embeddings.word_embeddings.weight", "shared.weight", "encoder.embed_tokens.weight",
        "decoder.embed_tokens.weight", "embed_tokens.weight", "wte.weight",
    ]
    /// Output heads (one row per token), which a model with tied embeddings lacks.
    static let heads = [
        "lm_head.weight", "embed_out.weight", "output.weight", "transformer.output_layer.weight", "lm_head.decoder.weight",
        "cls.predictions.decoder.weight", "vocab_projector.weight", "lm_head.linear.weight",
    ]
    /// Output heads' biases (one element per token).
    static let biases = ["lm_head.bias", "cls.predictions.bias", "vocab_projector.bias", "lm_head.linear.bias"]

    private static let names = Set(embeddings + heads + biases)

    /// The checkpoint's vocabulary rows: the first dimension of its first input embedding.
    static func rows(of checkpoint: Checkpoint) -> Int? {
        for name in embeddings {
            if let entry = checkpoint.entry(named: name), let rows = entry.info.shape.first { return rows }
        }
        return nil
    }

    /// The checkpoint's vocabulary tensors, in its order.
    static func names(in checkpoint: Checkpoint) -> [String] {
        guard let rows = rows(of: checkpoint) else { return [] }
        return checkpoint.entries.filter { names.contains($0.name) && $0.info.shape.first == rows }.map(\.name)
    }

    /// Whether `name` is in the table.
    static func isVocabulary(_ name: String) -> Bool { names.contains(name) }

    /// The tensor a model with tied embeddings uses as output head `name`: its input embedding,
    /// when it stores no output head at all (a model with another head is of another
    /// architecture) and its config.json does not say the head is untied.
    static func tiedHead(_ name: String, in checkpoint: Checkpoint) -> Checkpoint.Entry? {
        guard heads.contains(name), storedHeads(in: checkpoint).isEmpty, tied(config(of: checkpoint)) != false else { return nil }
        return embeddings.lazy.compactMap { checkpoint.entry(named: $0) }.first
    }

    /// The output heads `checkpoint` stores.
    static func storedHeads(in checkpoint: Checkpoint) -> [String] {
        heads.filter { checkpoint.entry(named: $0) != nil }
    }

    /// `checkpoint` with each head of `names` it ties (`tiedHead`) added as a tensor of that name,
    /// its input embedding's bytes; `checkpoint` itself when it ties none of them.
    static func presentingTiedHeads(_ names: [String], of checkpoint: Checkpoint) -> Checkpoint {
        let added = names.compactMap { name in tiedHead(name, in: checkpoint)?.renamed(name) }
        guard !added.isEmpty else { return checkpoint }
        return Checkpoint(viewOf: checkpoint, entries: checkpoint.entries + added, metadata: checkpoint.metadata)
    }

    /// A whole-model merge's checkpoints with their tied heads presented: every model input
    /// (`.model`) that ties a head the base stores gets its embedding as that head; a base that
    /// ties a head some model stores gets its own (for a model output only: a task vector is
    /// written against the base as it is), and `untied` says the output then stores a head its
    /// base did not.
    static func presentingTiedHeads(base: Checkpoint, inputs: [MergeInput], emit: EmitKind)
        -> (base: Checkpoint, inputs: [MergeInput], untied: Bool) {
        let models = inputs.filter { $0.kind == .model }.map(\.checkpoint)
        guard !models.isEmpty else { return (base, inputs, false) }
        let stored = Set(storedHeads(in: base) + models.flatMap(storedHeads(in:)))
        var presentedBase = base
        if emit == .model {
            presentedBase = presentingTiedHeads(heads.filter { stored.contains($0) && base.entry(named: $0) == nil }, of: base)
        }
        let wanted = storedHeads(in: presentedBase)
        let presented = inputs.map { input in
            input.kind == .model ? MergeInput(kind: .model, checkpoint: presentingTiedHeads(wanted, of: input.checkpoint), weight: input.weight) : input
        }
        return (presentedBase, presented, presentedBase !== base)
    }

    /// config.json (a planned checkpoint's as its plan writes it) of `checkpoint`, if it has one.
    static func config(of checkpoint: Checkpoint) -> JSONValue? {
        (try? checkpoint.companionBytes("config.json")).flatMap { $0 }.flatMap { try? JSONParser.parse($0) }
    }

    /// What `config` says of `tie_word_embeddings` (its text model's when the top level does not
    /// say): nil when it does not say.
    static func tied(_ config: JSONValue?) -> Bool? {
        for value in [config?["tie_word_embeddings"], config?["text_config"]?["tie_word_embeddings"]] {
            if case .bool(let flag)? = value { return flag }
        }
        return nil
    }

    /// The config.json edit saying the output ties its head (`tied`) or stores one: where `config`
    /// has `tie_word_embeddings` (its text model's), else at the top; nil when `config` says so.
    static func tieEdit(_ tied: Bool, config: JSONValue?) -> ConfigRewriter.Edit? {
        guard Self.tied(config) != tied else { return nil }
        let nested = config?["tie_word_embeddings"] == nil && config?["text_config"]?["tie_word_embeddings"] != nil
        return ConfigRewriter.Edit(path: nested ? ["text_config", "tie_word_embeddings"] : ["tie_word_embeddings"], value: .bool(tied))
    }
}
