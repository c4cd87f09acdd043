extension Recipe {
    /// Every text of this recipe that names a model or an adapter on disk or on the Hugging Face
    /// Hub — `base_model:`, `model:` (also in slices; the MODEL of `MODEL+ADAPTER`) and `lora:` —
    /// with its local form (resolved as a path) and what it is read as: what a download phase
    /// gives `ModelLocator.uncached`. Names of other documents (`documents`) are left out.
    func modelTexts(documents: Set<String>) -> [(text: String, local: String?, kind: HubFiles.Kind)] {
        var texts: [(text: String, local: String?, kind: HubFiles.Kind)] = []
        for (text, _) in modelUses {
            switch ModelReference.parse(text, documents: documents, resolve: resolvedPath) {
            case .reference(.path(let path)), .reference(.withAdapter(.path(let path), _)):
                texts.append((path, resolvedPath(path), .model))
            default:
                continue
            }
        }
        for input in inputs where input.kind == .lora { texts.append((input.path, resolvedPath(input.path), .adapter)) }
        return texts
    }

    /// `modelTexts` of a recipe of one document.
    public var modelTexts: [(text: String, local: String?, kind: HubFiles.Kind)] { modelTexts(documents: []) }
}

extension RecipeFile {
    /// `Recipe.modelTexts` of every document (a document's name is not a model path).
    public var modelTexts: [(text: String, local: String?, kind: HubFiles.Kind)] {
        let names = documents.count > 1 ? Set(documents.compactMap(\.name)) : []
        return documents.flatMap { $0.modelTexts(documents: names) }
    }
}
