import Foundation
import Yams

/// A recipe for a merge that learns from a little data — RegMean, RegMean++, Fisher merging,
/// AdaMerging and aTLAS — on the CLIP engine:
///
/// ```yaml
/// merge_method: regmean                 # regmean, regmean_plusplus, fisher, adamerging, atlas
/// base_model: path/to/pretrained        # the methods that need θ₀ (AdaMerging, aTLAS)
/// models:
///   - model: path/to/finetuned-a
///     data: path/to/task-a.safetensors  # the task's images (`pixel_values`, `labels` when used)
///     head: path/to/head-a.safetensors  # the task's classification head, where the method uses one
///   - model: path/to/finetuned-b
///     data: path/to/task-b.safetensors
/// data: {samples: 256, batch_size: 32, seed: 0}   # how the data is read
/// parameters: {alpha: 0.95}                       # the method's settings
/// ```
///
/// A recipe is one when its `merge_method` is one of `methods` or it has a `data:` section. Each
/// setting under `data:` and `parameters:` is the method command's option of the same name
/// (`batch_size` is `--batch-size`; `true` gives a flag, `false` leaves it out): a recipe runs the
/// same code as `merge-cli regmean …` and writes the same bytes. The schema is checked here
/// with lines, every problem at once; the settings' values are checked by the method when it runs.
/// No `sweep:`, `slices:` or several documents: those belong to the task-vector methods.
public struct DataRecipe: Sendable {
    /// One task: a fine-tuned model with its data and head.
    public struct Task: Sendable {
        public let model: String
        public let data: String?
        public let head: String?
        public let line: Int
    }

    /// A setting under `data:` or `parameters:`.
    public struct Setting: Sendable {
        public enum Value: Sendable, Equatable {
            case flag(Bool)
            case text(String)
        }
        public let name: String
        public let value: Value
        public let section: String
        public let line: Int
    }

    /// The method names a data recipe may give, each with the command that runs it.
    public static let methods: [(name: String, command: String)] = [
        ("regmean", "regmean"), ("regmean_plusplus", "regmean"), ("fisher", "fisher"),
        ("adamerging", "adamerging"), ("atlas", "atlas"),
    ]
    static let topLevelKeys = ["merge_method", "base_model", "models", "data", "parameters"]

    public let path: String
    public let text: String
    public let method: String
    public let methodLine: Int
    public let base: String?
    public let baseLine: Int
    public let tasks: [Task]
    /// `data:` then `parameters:`, each in file order.
    public let settings: [Setting]

    /// The command that runs `method`.
    public var command: String { Self.methods.first { $0.name == method }?.command ?? method }

    /// Whether the recipe at `path` is a data recipe: its single document maps `merge_method` to
    /// one of `methods`, or has a `data:` key. Reads the file as every recipe is read (bounded);
    /// unreadable files are left to the ordinary recipe reader's messages (false).
    public static func applies(path: String) -> Bool {
        guard let text = try? RecipeFile.text(path: path), let roots = try? RecipeFile.roots(text, path: path),
              case .mapping(let mapping)? = roots.first else { return false }
        for (key, value) in mapping {
            if key.string == "data" { return true }
            if key.string == "merge_method", let name = value.string, methods.contains(where: { $0.name == name }) { return true }
        }
        return false
    }

    /// Reads and checks the recipe at `path`, reporting every schema problem at once with its line.
    public static func load(path: String) throws(MergeKitError) -> DataRecipe {
        let text = try RecipeFile.text(path: path)
        let roots = try RecipeFile.roots(text, path: path)
        guard let root = roots.first else {
            throw MergeKitError(.invalidArgument, file: path, "is empty", fix: "Write a recipe with merge_method and models")
        }
        guard roots.count == 1 else {
            throw MergeKitError(.invalidArgument, file: path, "holds several YAML documents: a merge from data is one document",
                                fix: "Give the data merge its own recipe file")
        }
        var reader = Reader(parser: RecipeParser(path: path))
        let recipe = reader.recipe(root, path: path, text: text)
        try reader.parser.problems.throwIfAny()
        guard let recipe else { throw MergeKitError(.invalidArgument, file: path, "is not a data recipe") }
        return recipe
    }

    /// The schema walk, on the recipe parser's mapping rules (merge keys, duplicate keys) and
    /// problem list.
    struct Reader {
        var parser: RecipeParser

        mutating func recipe(_ root: Node, path: String, text: String) -> DataRecipe? {
            guard case .mapping(let mapping) = root else {
                parser.problem(root, "the recipe must be a mapping with merge_method, models and data")
                return nil
            }
            var method = "", methodLine = 0, base: String?, baseLine = 0
            var tasks: [Task] = [], settings: [Setting] = []
            var sawModels = false
            for (keyNode, value) in parser.pairs(mapping) {
                guard let key = keyNode.string else { parser.problem(keyNode, "keys must be strings"); continue }
                switch key {
                case "merge_method":
                    let names = DataRecipe.methods.map(\.name)
                    if let name = value.string, names.contains(name) {
                        method = name
                        methodLine = parser.line(value)
                    } else {
                        parser.problem(value, "merge_method of a recipe with a data: section must be one of \(names.joined(separator: ", "))"
                                       + (value.string.map { ", not \"\($0)\"" } ?? ""),
                                       fix: "Name a method that learns from data, or drop the data: section to merge task vectors")
                    }
                case "base_model":
                    if let p = value.string, case .scalar = value, !p.isEmpty { base = p; baseLine = parser.line(value) }
                    else { parser.problem(value, "base_model must be a path") }
                case "models":
                    sawModels = true
                    guard case .sequence(let entries) = value, !entries.isEmpty else {
                        parser.problem(value, "models must be a non-empty list of {model: PATH, data: FILE, head: FILE}")
                        continue
                    }
                    for entry in entries { if let task = task(entry) { tasks.append(task) } }
                case "data", "parameters":
                    settings += self.settings(value, section: key)
                default:
                    parser.problem(keyNode, "unknown key \"\(key)\" in a recipe that merges from data",
                                   fix: "Allowed keys: " + DataRecipe.topLevelKeys.joined(separator: ", ")
                                   + " (sweeps, slices and multi-document recipes are for the task-vector methods)")
                }
            }
            if method.isEmpty && !parser.pairs(mapping).contains(where: { $0.key.string == "merge_method" }) {
                parser.problem(root, "merge_method is missing",
                               fix: "Add merge_method: one of " + DataRecipe.methods.map(\.name).joined(separator: ", "))
            }
            if !sawModels { parser.problem(root, "models is missing", fix: "List the fine-tuned models with their data under models:") }
            return DataRecipe(path: path, text: text, method: method, methodLine: methodLine, base: base, baseLine: baseLine,
                              tasks: tasks, settings: settings)
        }

        mutating func task(_ node: Node) -> Task? {
            guard case .mapping(let mapping) = node else {
                parser.problem(node, "each models entry must be a mapping {model: PATH, data: FILE, head: FILE}")
                return nil
            }
            var model: String?, data: String?, head: String?
            for (keyNode, value) in parser.pairs(mapping) {
                let key = keyNode.string ?? ""
                guard ["model", "data", "head"].contains(key) else {
                    parser.problem(keyNode, "unknown key \"\(key)\" in a models entry", fix: "A models entry has model, data and head")
                    continue
                }
                guard case .scalar = value, let text = value.string, !text.isEmpty else {
                    parser.problem(value, "\(key) must be a path")
                    continue
                }
                switch key {
                case "model": model = text
                case "data": data = text
                default: head = text
                }
            }
            guard let model else {
                parser.problem(node, "a models entry needs model: PATH")
                return nil
            }
            return Task(model: model, data: data, head: head, line: parser.line(node))
        }

        mutating func settings(_ node: Node, section: String) -> [Setting] {
            guard case .mapping(let mapping) = node else {
                parser.problem(node, "\(section) must map setting names to values")
                return []
            }
            var out: [Setting] = []
            for (keyNode, value) in parser.pairs(mapping) {
                guard let name = keyNode.string, !name.isEmpty,
                      name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
                    parser.problem(keyNode, "\(section) keys must be setting names (letters, digits, _)")
                    continue
                }
                guard case .scalar(let scalar) = value else {
                    parser.problem(value, "\(section).\(name) must be a single value")
                    continue
                }
                let setting: Setting.Value
                if let bool = value.bool, scalar.style == .plain { setting = .flag(bool) } else { setting = .text(scalar.string) }
                out.append(Setting(name: name, value: setting, section: section, line: parser.line(keyNode)))
            }
            return out
        }
    }
}
