import Foundation
import Yams

extension Recipe {
    static let topLevelKeys = ["merge_method", "base_model", "models", "slices", "modules", "parameters", "dtype", "out_dtype", "sweep", "name",
                               "tokenizer_source", "tokenizer", "chat_template", "eval"]
    /// mergekit keys MergeKit does not implement (reported as such, not as typos).
    static let unsupportedKeys = ["base_model_lora"]
    static let dtypeNames: [String: DType] = ["float32": .F32, "float16": .F16, "bfloat16": .BF16, "float64": .F64,
                                             "fp32": .F32, "fp16": .F16, "bf16": .BF16]

    /// Parses `path`, a recipe of one document (`RecipeFile` reads files of several). Schema
    /// problems are kept and reported by `plan` together with the problems found against the
    /// method and the checkpoints; unreadable YAML throws at once.
    public static func load(path: String) throws(MergeKitError) -> Recipe {
        try single(RecipeFile.load(path: path))
    }

    /// Parses recipe `text` (named `path` in messages), a recipe of one document.
    public static func parse(_ text: String, path: String) throws(MergeKitError) -> Recipe {
        try single(RecipeFile.parse(text, path: path))
    }

    private static func single(_ file: RecipeFile) throws(MergeKitError) -> Recipe {
        guard file.documents.count == 1 else {
            throw MergeKitError(.invalidArgument, file: file.path,
                "holds \(file.documents.count) YAML documents (a multi-document recipe, as mergekit-multi reads): it is read as a RecipeFile",
                fix: "Run it with merge-cli run, which plans every document")
        }
        return file.documents[0]
    }
}
