/// Which tensors of a checkpoint have one row per token (their first dimension is the
/// vocabulary): the input embeddings, the output heads and their biases, by the names the common
/// architectures give them (mergekit's architecture definitions mark the same tensors).
///
/// A checkpoint's vocabulary rows are the first dimension of its first input embedding in
/// `embeddings`' order; a tensor of the table is a vocabulary tensor of the checkpoint when its
/// first dimension is that many rows (a tensor that happens to share a name but not the rows is
/// merged as any other). A model with tied embeddings has no output head: its input embedding
/// serves as one (`tiedHead`), as transformers ties them.
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

    /// The tensor a model with tied embeddings uses as output head `name`: its input embedding.
    static func tiedHead(_ name: String, in checkpoint: Checkpoint) -> Checkpoint.Entry? {
        guard heads.contains(name) else { return nil }
        return embeddings.lazy.compactMap { checkpoint.entry(named: $0) }.first
    }
}
