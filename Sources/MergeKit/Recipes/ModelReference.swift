/// A model as a recipe's `model:` or `base_model:` names it: a checkpoint path, a document of the
/// same recipe file (mergekit-multi), or either with a PEFT LoRA adapter merged in
/// (`MODEL+ADAPTER`, mergekit's model-plus-LoRA syntax).
///
/// **How the text is read**, in this order:
///
/// 1. the name of a document of the file: that document's output (a name wins over a path of the
///    same spelling, as in mergekit-multi; write `./NAME` for the path);
/// 2. `MODEL+ADAPTER`, split at the **last** `+`, when ADAPTER is a PEFT adapter directory (it
///    holds `adapter_config.json`) and MODEL is not empty: MODEL (a document name or a path) with
///    the adapter merged in, θ = θ_MODEL + s·B·A as PEFT's `merge_and_unload()` makes it. A path
///    that contains `+` is therefore still a path whenever what follows its last `+` is not an
///    adapter directory; when the whole text is also an existing path, the reference is refused
///    as ambiguous;
/// 3. otherwise a path, exactly as written (it may contain `+`).
///
/// Relative paths (the model's and the adapter's) are resolved as every recipe path is: from the
/// working directory, else beside the recipe (`Recipe.resolvedPath`). mergekit splits at the only
/// `+` and refuses a reference with two; here MODEL may itself contain `+`.
enum ModelReference: Equatable, Sendable {
    /// A checkpoint on disk, as written in the recipe.
    case path(String)
    /// The output of the document with this name.
    case document(String)
    /// `model` (a `.path` or a `.document`) with the PEFT adapter at `adapter` (resolved) merged in.
    indirect case withAdapter(ModelReference, adapter: String)

    /// Why `text` cannot be read (the message and the fix), or the reference.
    enum Parsed: Equatable {
        case reference(ModelReference)
        case ambiguous(model: String, adapter: String)
    }

    /// Reads `text` (see the type's documentation); `documents` are the names of the file's
    /// documents, `resolve` resolves a relative path as the recipe does.
    static func parse(_ text: String, documents: Set<String>, resolve: (String) -> String) -> Parsed {
        if documents.contains(text) { return .reference(.document(text)) }
        if let plus = text.lastIndex(of: "+") {
            let model = String(text[..<plus]), adapter = String(text[text.index(after: plus)...])
            if !model.isEmpty && !adapter.isEmpty && isAdapterDirectory(resolve(adapter)) {
                if FileSystem.exists(resolve(text)) { return .ambiguous(model: model, adapter: adapter) }
                let base: ModelReference = documents.contains(model) ? .document(model) : .path(model)
                return .reference(.withAdapter(base, adapter: resolve(adapter)))
            }
        }
        return .reference(.path(text))
    }

    /// Whether `path` is a directory holding a PEFT adapter's `adapter_config.json`.
    static func isAdapterDirectory(_ path: String) -> Bool {
        FileSystem.kind(of: path) == .directory && FileSystem.exists(FileSystem.join(path, LoRAAdapter.configFileName))
    }

    /// The document this reference reads, directly or through an adapter.
    var document: String? {
        switch self {
        case .path: return nil
        case .document(let name): return name
        case .withAdapter(let model, _): return model.document
        }
    }
}
