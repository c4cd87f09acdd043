import Foundation
import Yams

/// A recipe file: one YAML (or JSON) document — an ordinary recipe — or several separated by
/// `---`, as mergekit-multi reads them: each document is a recipe with a `name`, and the others
/// may use that name as a model or a base (`RecipeGraph` orders and checks them; `plan` plans
/// them all).
///
/// Every document is read as `Recipe.parse` reads one (the same keys, limits and merge keys);
/// lines are the file's. An empty (null) document, such as a stray `---` leaves, is skipped. Each document's `text` is
/// the whole file, which every output made from it records (`recipe.yml`, the model card).
/// Anchors belong to their document, as in YAML and PyYAML: an alias of an earlier document's
/// anchor is refused (`RecipeLimits`).
public struct RecipeFile: Sendable {
    /// The file, as named, and its text.
    public let path: String
    public let text: String
    /// The documents in file order.
    public let documents: [Recipe]

    /// Reads and parses the file at `path` (bounded and checked as `Recipe.load` does).
    public static func load(path: String) throws(MergeKitError) -> RecipeFile {
        try parse(text(path: path), path: path)
    }

    /// The text of the recipe file at `path`, read within `RecipeLimits` and checked to be UTF-8.
    static func text(path: String) throws(MergeKitError) -> String {
        let bytes = try RecipeLimits.readFile(path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw MergeKitError(.invalidArgument, file: path, "is not UTF-8 text", fix: "Save the recipe as UTF-8 YAML or JSON")
        }
        return text
    }

    /// The YAML documents of `text` (named `path` in messages), bounded by `RecipeLimits`; empty
    /// (null) documents are skipped. Unreadable YAML throws, quoting at most 400 characters.
    static func roots(_ text: String, path: String) throws(MergeKitError) -> [Node] {
        try RecipeLimits.check(text, path: path)
        var roots: [Node] = []
        do {
            let parser = try Parser(yaml: text)
            while let root = try parser.nextRoot() {
                if root.null != nil { continue }  // an empty document
                roots.append(root)
            }
        } catch {
            // The parser quotes the offending line; a hostile one can be a megabyte long.
            var reason = "\(error)"
            if reason.count > 400 { reason = String(reason.prefix(400)) + "…" }
            throw MergeKitError(.invalidArgument, file: path, "is not valid YAML or JSON (\(reason))", fix: "Fix the syntax at the position shown")
        }
        return roots
    }

    /// Parses recipe `text` (named `path` in messages). Unreadable YAML throws at once; schema
    /// problems are kept in each document and reported when it is planned.
    public static func parse(_ text: String, path: String) throws(MergeKitError) -> RecipeFile {
        let roots = try roots(text, path: path)
        guard !roots.isEmpty else {
            throw MergeKitError(.invalidArgument, file: path, "is empty", fix: "Write a recipe with merge_method and models")
        }
        var documents: [Recipe] = []
        var problems = ProblemList()
        for root in roots {
            var parser = RecipeParser(path: path)
            if let recipe = parser.recipe(root, text: text) {
                documents.append(recipe)
            } else {
                parser.problems.items.forEach { problems.add($0) }
            }
        }
        try problems.throwIfAny()
        return RecipeFile(path: path, text: text, documents: documents)
    }
}
