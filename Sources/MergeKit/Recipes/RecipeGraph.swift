/// The documents of a recipe file as the merges they make and the order they are made in
/// (mergekit-multi's graph): every document is a stage, and so is every `MODEL+ADAPTER` model
/// (the model with its PEFT adapter merged in, `ModelReference`), which is made before the
/// documents that use it.
///
/// **Names.** A document's `name` names its output (in a file of several): another document's `model:` or `base_model:`
/// equal to it reads that output (a name wins over a path of the same spelling, as in
/// mergekit-multi). Documents may come in any order — a document may use a name defined further
/// down, as mergekit-multi, which sorts its documents by their dependencies, allows; they are made
/// in dependency order, and among documents that are ready, in file order. Checked before any work,
/// each problem with its line and the fix:
///
/// - a name twice; a name that is not a plain file name (it names the output's directory in a
///   work directory: not empty, no `/`, not starting with `.`);
/// - two documents without a name (only the output may have none; mergekit-multi refuses this too);
/// - a cycle (a document using its own name, or documents using each other), each named;
/// - a reference that is neither a document's name nor an existing path (with the nearest name),
///   and `X+Y` that does not exist while `Y` is not an adapter directory;
/// - a document's name given as a `task_vector:` or `lora:` (a document's output is a model);
/// - an output (`target`) that is not a document's name.
///
/// **The output** is the document named by `target`; without one, the document without a name,
/// else the last document. Only the output and the stages it needs are made (`needed`); the others
/// are still checked.
public struct RecipeGraph: Sendable {
    public struct Stage: Sendable {
        public enum Kind: Sendable, Equatable {
            /// A document of the file (its index in `RecipeFile.documents`).
            case document(Int)
            /// A model with a PEFT adapter merged in: the model's text as the recipe writes it
            /// (a document's name or a path) and the adapter directory (resolved).
            case adapter(model: String, adapter: String)
        }

        public let kind: Kind
        /// What the recipe calls it: the document's name (nil for an unnamed document), or
        /// `MODEL+ADAPTER` as first written.
        public let name: String?
        /// Its recipe line: the document's first line, or the line of the first `MODEL+ADAPTER`.
        public let line: Int
        /// The document whose line numbers and messages it uses (itself, or the first document
        /// that uses the adapted model).
        public let document: Int
        /// The stages it reads, by index in `RecipeGraph.stages`.
        public let dependencies: [Int]
        /// The directory it is written to in a work directory (its name, unique in the graph).
        public let directoryName: String
        /// What each `model:` / `base_model:` text of the document that is another stage stands for.
        let references: [String: Int]

        /// How messages and descriptions name it.
        public var label: String {
            switch kind {
            case .document: return name.map { "document \"\($0)\" (line \(line))" } ?? "the unnamed document (line \(line))"
            case .adapter: return "\"\(name ?? "")\" (line \(line): the model with the adapter merged in)"
            }
        }
    }

    /// Every stage, in the order they are made (each after the stages it reads).
    public let stages: [Stage]
    /// The stage written to the output.
    public let target: Int
    /// Whether the output needs the stage (only those are made).
    public let needed: [Bool]

    /// Why `name` cannot name a document, if it cannot: it names a directory in a work directory.
    static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.contains("/") || name.contains("\0") { return "contains \(name.contains("/") ? "/" : "a NUL character")" }
        if name.hasPrefix(".") { return "starts with a dot (hidden names are MergeKit's temporary outputs)" }
        if name.utf8.count > 255 { return "is longer than 255 bytes" }
        return nil
    }

    /// The graph of `file`'s documents, with `target` (a document's name) as the output; every
    /// problem is added to `problems` with its line, and nil returned when there is one.
    static func build(_ file: RecipeFile, target requested: String?, into problems: inout ProblemList) -> RecipeGraph? {
        let documents = file.documents
        let found = problems.items.count
        func add(_ document: Int, _ line: Int, _ detail: String, fix: String) {
            documents[document].add(line, MergeKitError(.invalidArgument, file: file.path, detail, fix: fix), to: &problems)
        }

        // Names: unique; only one document without one.
        var named: [String: Int] = [:]
        var unnamed: [Int] = []
        for (i, document) in documents.enumerated() {
            guard let name = document.name else { unnamed.append(i); continue }
            if let first = named[name] {
                add(i, document.nameLine, "the name \"\(name)\" is also the name of the document at line \(documents[first].line)",
                    fix: "Give every document its own name")
            } else {
                named[name] = i
            }
        }
        if documents.count > 1 {
            for i in unnamed.dropFirst() {
                add(i, documents[i].line, "this document has no name, and neither has the document at line \(documents[unnamed[0]].line): only one document, the output, may be unnamed",
                    fix: "Add name: NAME to every document but the output")
            }
        }
        // In a file of one document a name refers to nothing (mergekit-yaml ignores it).
        let names = documents.count > 1 ? Set(named.keys) : []
        let listed = named.sorted { $0.value < $1.value }.map { "\"\($0.key)\"" }.joined(separator: ", ")

        // References, in file order; adapter stages before the first document that uses them. A
        // draft's references name stages by their index in `stages`; documents' names and an
        // adapter's model document are resolved once every document has its stage.
        struct Draft {
            let kind: Stage.Kind, name: String?, line: Int, document: Int
            var references: [String: Int] = [:]
            /// An adapter's model, when it is a document: its text and the document.
            var model: (text: String, document: Int)?
        }
        var stages: [Draft] = []
        var documentStage: [Int: Int] = [:]
        var adapterStage: [String: Int] = [:]
        for (i, document) in documents.enumerated() {
            var references: [String: Int] = [:]
            let uses = document.modelUses
            for input in document.inputs where input.kind != .model {
                if names.contains(input.path) {
                    add(i, input.line, "\(input.kind.rawValue): \(input.path) names a document, whose output is a model, not a \(input.kind == .lora ? "LoRA adapter" : "task vector")",
                        fix: "Write model: \(input.path)")
                }
            }
            for (text, line) in uses {
                switch ModelReference.parse(text, documents: names, resolve: document.resolvedPath) {
                case .ambiguous(let model, let adapter):
                    add(i, line, "\"\(text)\" is both an existing path and MODEL+ADAPTER (the model \"\(model)\" with the adapter \"\(adapter)\")",
                        fix: "Rename the path or the adapter directory, so that the text means one of them")
                case .reference(.document):
                    continue  // resolved below, once every document has its stage
                case .reference(.withAdapter(let model, let adapter)):
                    let modelText = String(text[..<text.lastIndex(of: "+")!])
                    let key = modelText + "\u{0}" + adapter
                    if adapterStage[key] == nil {
                        adapterStage[key] = stages.count
                        stages.append(Draft(kind: .adapter(model: modelText, adapter: adapter), name: text, line: line, document: i,
                                            model: model.document.map { (modelText, named[$0]!) }))
                    }
                    references[text] = adapterStage[key]!
                case .reference(.path(let path)):
                    guard !FileSystem.exists(document.resolvedPath(path)) else { continue }
                    // A Hugging Face id (or a malformed one): found in the cache, or not, when opened.
                    if HubReference.read(path) != .notAnId { continue }
                    if let plus = path.lastIndex(of: "+"), plus != path.startIndex, path.index(after: plus) != path.endIndex {
                        let adapter = String(path[path.index(after: plus)...])
                        add(i, line, "\"\(path)\" does not exist, and is not MODEL+ADAPTER either: \"\(adapter)\" is not a PEFT adapter directory (with \(LoRAAdapter.configFileName))",
                            fix: "Check both paths; MODEL+ADAPTER splits at the last +")
                    } else if documents.count > 1 {
                        let near = names.min { editDistance(path, $0) < editDistance(path, $1) }
                            .flatMap { editDistance(path, $0) <= max(2, $0.count / 3) ? " (did you mean \"\($0)\"?)" : nil } ?? ""
                        add(i, line, "\"\(path)\" is neither the name of a document of this recipe (\(listed.isEmpty ? "none is named" : listed)) nor an existing path\(near)",
                            fix: "Use a document's name exactly as its name: gives it, or the path of a checkpoint")
                    }
                    // One document: the checkpoint's own error, when it is opened.
                }
            }
            documentStage[i] = stages.count
            stages.append(Draft(kind: .document(i), name: document.name, line: document.line, document: i, references: references))
        }

        // Names become stage references.
        var resolved: [Stage] = []
        var dependencies: [[Int]] = []
        for stage in stages {
            var references = stage.references
            if let model = stage.model { references[model.text] = documentStage[model.document]! }
            if case .document(let i) = stage.kind {
                let document = documents[i]
                for (text, _) in document.modelUses where names.contains(text) {
                    references[text] = documentStage[named[text]!]!
                }
            }
            dependencies.append(Array(Set(references.values)).sorted())
            resolved.append(Stage(kind: stage.kind, name: stage.name, line: stage.line, document: stage.document,
                                  dependencies: dependencies[dependencies.count - 1], directoryName: "", references: references))
        }

        // Cycles, each reported once (by its first document in file order).
        var state = [Int](repeating: 0, count: resolved.count)  // 0 new, 1 on the path, 2 done
        var path: [Int] = []
        var reported = Set<Set<Int>>()
        func visit(_ s: Int) {
            state[s] = 1
            path.append(s)
            for d in resolved[s].dependencies {
                if state[d] == 1 {
                    let cycle = Array(path[path.lastIndex(of: d)!...])
                    let members = Set(cycle)
                    if reported.insert(members).inserted { reportCycle(cycle) }
                } else if state[d] == 0 {
                    visit(d)
                }
            }
            path.removeLast()
            state[s] = 2
        }
        func reportCycle(_ cycle: [Int]) {
            let first = cycle.min { resolved[$0].line < resolved[$1].line }!
            let document = resolved[first].document
            if cycle.count == 1, let name = resolved[first].name {
                let line = documents[document].modelUses.first { $0.text == name }?.line ?? resolved[first].line
                add(document, line, "the document \"\(name)\" uses its own name as a model: a document cannot read its own output",
                    fix: "Use another document's name, or write a checkpoint directory of that name as ./\(name)")
                return
            }
            // The cycle in the order the stages read each other, from its first document.
            let start = cycle.firstIndex(of: first)!
            let ordered = Array(cycle[start...] + cycle[..<start]) + [first]
            let text = ordered.map { s in "\(resolved[s].name.map { "\"\($0)\"" } ?? "the unnamed document") (line \(resolved[s].line))" }
                .joined(separator: " → ")
            add(document, resolved[first].line, "these documents use each other's outputs, in a cycle: \(text); none can be made first",
                fix: "Remove one of these references")
        }
        for s in resolved.indices where state[s] == 0 { visit(s) }

        // The output.
        var target = documentStage[unnamed.count == 1 && documents.count > 1 ? unnamed[0] : documents.count - 1]!
        if let requested {
            if let i = named[requested] {
                target = documentStage[i]!
            } else {
                let near = names.min { editDistance(requested, $0) < editDistance(requested, $1) }
                    .flatMap { editDistance(requested, $0) <= max(2, $0.count / 3) ? " (did you mean \"\($0)\"?)" : nil } ?? ""
                problems.add(MergeKitError(.invalidArgument, file: file.path,
                    "there is no document named \"\(requested)\" to make the output from (\(term: .outputDocument))\(near)",
                    fix: listed.isEmpty ? "No document has a name: the output is the last document" : "Named documents: \(listed)"))
            }
        }
        guard problems.items.count == found else { return nil }

        // Order: each stage after the stages it reads; among ready ones, the earliest in the file.
        var order: [Int] = []
        var placed = [Bool](repeating: false, count: resolved.count)
        while order.count < resolved.count {
            let next = resolved.indices.first { !placed[$0] && resolved[$0].dependencies.allSatisfy { placed[$0] } }!
            placed[next] = true
            order.append(next)
        }
        var position = [Int](repeating: 0, count: resolved.count)
        for (p, s) in order.enumerated() { position[s] = p }
        var needed = [Bool](repeating: false, count: resolved.count)
        var pending = [target]
        while let s = pending.popLast() {
            if needed[s] { continue }
            needed[s] = true
            pending += resolved[s].dependencies
        }
        // Directory names: a document's name; MODEL+ADAPTER's last components, made unique.
        var taken = names
        var ordered: [Stage] = []
        for s in order {
            let stage = resolved[s]
            var directory = stage.name ?? "output"
            if case .adapter(let model, let adapter) = stage.kind {
                let candidate = FileSystem.lastComponent(of: model) + "+" + FileSystem.lastComponent(of: adapter)
                directory = nameProblem(candidate) == nil ? candidate : "adapter"
                var k = 2
                let stem = directory
                while taken.contains(directory) { directory = "\(stem)-\(k)"; k += 1 }
            }
            taken.insert(directory)
            ordered.append(Stage(kind: stage.kind, name: stage.name, line: stage.line, document: stage.document,
                                 dependencies: stage.dependencies.map { position[$0] }.sorted(), directoryName: directory,
                                 references: stage.references.mapValues { position[$0] }))
        }
        return RecipeGraph(stages: ordered, target: position[target], needed: order.map { needed[$0] })
    }
}
