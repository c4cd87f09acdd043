import Foundation
import Yams

extension Recipe {
    static let topLevelKeys = ["merge_method", "base_model", "models", "slices", "modules", "parameters", "dtype", "out_dtype", "sweep"]
    /// mergekit keys MergeKit does not implement (reported as such, not as typos).
    static let unsupportedKeys = ["tokenizer_source", "tokenizer", "chat_template", "base_model_lora"]
    static let dtypeNames: [String: DType] = ["float32": .F32, "float16": .F16, "bfloat16": .BF16, "float64": .F64,
                                             "fp32": .F32, "fp16": .F16, "bf16": .BF16]

    /// Parses `path`. Schema problems are kept and reported by `plan` together with the problems
    /// found against the method and the checkpoints; unreadable YAML throws at once.
    public static func load(path: String) throws(MergeKitError) -> Recipe {
        let bytes = try RecipeLimits.readFile(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw MergeKitError(.invalidArgument, file: path, "is not UTF-8 text", fix: "Save the recipe as UTF-8 YAML or JSON")
        }
        return try parse(text, path: path)
    }

    /// Parses recipe `text` (named `path` in messages).
    public static func parse(_ text: String, path: String) throws(MergeKitError) -> Recipe {
        try RecipeLimits.check(text, path: path)
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw MergeKitError(.invalidArgument, file: path, "is empty", fix: "Write a recipe with merge_method and models")
            }
            root = node
        } catch let error as MergeKitError {
            throw error
        } catch {
            // The parser quotes the offending line; a hostile one can be a megabyte long.
            var reason = "\(error)"
            if reason.count > 400 { reason = String(reason.prefix(400)) + "…" }
            throw MergeKitError(.invalidArgument, file: path, "is not valid YAML or JSON (\(reason))", fix: "Fix the syntax at the position shown")
        }
        var parser = RecipeParser(path: path)
        guard let recipe = parser.recipe(root, text: text) else {
            try parser.problems.throwIfAny()
            throw MergeKitError(.invalidArgument, file: path, "is not a recipe")
        }
        return recipe
    }
}
