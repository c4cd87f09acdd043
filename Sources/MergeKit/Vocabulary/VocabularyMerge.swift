/// A recipe's tokenizer settings applied to its models, before tensor matching: the output
/// vocabulary (`OutputVocabulary`), every model's vocabulary tensors presented in it
/// (`VocabularyRows`: views, so tensor matching, the executor and the methods see models of one
/// vocabulary), the output's tokenizer files and config.json's `vocab_size`.
///
/// **Rows for tokens a model lacks** (mergekit's rules). The models of a tensor are those merged
/// into it (a whole-model recipe: the base and every model; a slice: its sources). For output
/// token t, a model that has t keeps its own row; the models that lack it get one row, the same
/// for all of them:
///
/// - the row its `tokens:` entry names — zeros (`kind: zero`), a model's own row for t (`source:
///   MODEL`), or a given row of a model (`kind: model_token` with `token_id`, or `token`: that
///   token's row in the model's own vocabulary); with `force: true` every model gets it;
/// - else, when one model has t, that model's row; when none has it, zeros; when the base (a
///   base the recipe gives) has it, the base's row; otherwise the mean of the rows of the models
///   that have it, in the models' order.
///
/// Rows after the vocabulary (`pad_to_multiple_of`) hold the mean of the model's vocabulary rows.
/// A model without an output head (tied embeddings) uses its input embedding as its head. A model
/// without tokenizer.json whose embedding has the base's rows is taken to have the base's
/// vocabulary, as mergekit assumes (a note says so); any other model needs its tokenizer.
///
/// Every problem is reported before any work, with the recipe line of the model or token entry.
struct VocabularyMerge {
    /// One model of the recipe: the base first (or the model standing for it), then the others
    /// (the same checkpoint may appear twice, e.g. a base also listed among the models).
    struct Model {
        let checkpoint: Checkpoint
        /// The model as the recipe writes it (matched against `tokens:` sources and a model source).
        let text: String
        let line: Int
    }

    let models: [Model]
    let settings: TokenizerSettings
    /// The output vocabulary (nil: the vocabularies are not merged, only the template set).
    let output: OutputVocabulary?
    /// config.json's vocabulary size.
    var configEdits: [ConfigRewriter.Edit] = []
    /// Tokenizer files written into the output, by name (they replace the base's companions of
    /// the same name).
    var files: [String: [UInt8]] = [:]
    /// The base's companions the output does not copy (another model's tokenizer is used).
    var dropped: [String] = []
    /// What the caller should mention (a model taken to have the base's vocabulary).
    var notes: [String] = []

    /// The output vocabulary in words (for `--dry-run`); nil when the vocabularies are not merged.
    var summary: String? {
        guard let output, let source = settings.source else { return nil }
        let kept = output.tokens.count - output.appended.count
        let from: String
        switch source {
        case .base: from = "the base's"
        case .union: from = "the union of the models'"
        case .model(let text): from = "\(text)'s"
        }
        return "\(from) (tokenizer_source \(TokenizerSettings.describe(source))): \(output.tokens.count) tokens (\(kept) of its source tokenizer's, \(output.appended.count) added)"
            + (output.rowCount > output.tokens.count ? ", padded to \(output.rowCount) rows" : "")
            + "; every model's embedding and head rows placed by token"
    }
    /// Each model's vocabulary (parallel to `models`).
    private let vocabularies: [Vocabulary]
    /// Each model's rows of the output tokens (−1: it lacks the token; parallel to `models`).
    private let rows: [[Int32]]
    /// Finds the model a recipe text names (an index into `models`).
    private let match: (String) -> Int?

    /// One model's vocabulary.
    private struct Vocabulary {
        /// nil: the base's (a model without tokenizer.json).
        let tokenizer: ModelTokenizer?
        /// Rows of its embedding.
        let rows: Int
        /// Its tokens have ids below this (its rows, or config.json's smaller `vocab_size`).
        let limit: Int
        /// Token → row.
        let tokens: [String: Int]
    }

    /// Reads every model's vocabulary and builds the output's (`settings` applied to `models`,
    /// `models[0]` the base). `match` finds the model a recipe text names (an index into
    /// `models`), `locate` resolves a path the recipe gives; `report` takes each problem with its
    /// recipe line. Nil when a problem was reported.
    static func plan(_ settings: TokenizerSettings, models: [Model], match: @escaping (String) -> Int?, locate: (String) -> String,
                     report: (Int, MergeKitError) -> Void) -> VocabularyMerge? {
        var failed = false
        func fail(_ line: Int, _ error: MergeKitError) {
            report(line, error)
            failed = true
        }
        let base = models[0].checkpoint
        var template: String?
        if let requested = settings.chatTemplate {
            do throws(MergeKitError) {
                template = try ChatTemplates.resolve(requested, models: models.map(\.checkpoint))
            } catch {
                fail(settings.chatTemplateLine, error)
            }
        }
        guard let source = settings.source else {
            // A chat template alone: the base's tokenizer files with it.
            var merge = VocabularyMerge(models: models, settings: settings, output: nil, vocabularies: [], rows: [], match: match)
            if let template {
                do throws(MergeKitError) {
                    merge.files = try TokenizerFiles.write(vocabulary: nil, files: base.companionBytes, template: template)
                } catch {
                    fail(settings.chatTemplateLine, error)
                }
            }
            return failed ? nil : merge
        }

        // Every model's vocabulary (read once per checkpoint).
        var vocabularies: [Vocabulary?] = []
        for (i, model) in models.enumerated() {
            let checkpoint = model.checkpoint
            if let same = models[..<i].firstIndex(where: { Recipe.modelKey($0.checkpoint.path) == Recipe.modelKey(checkpoint.path) }) {
                vocabularies.append(vocabularies[same])
                continue
            }
            guard let rows = VocabularyTensors.rows(of: checkpoint) else {
                fail(model.line, MergeKitError(.vocabularyMismatch, file: checkpoint.path,
                    "has no input embedding MergeKit knows (such as \(VocabularyTensors.embeddings.prefix(3).joined(separator: ", "))), so its vocabulary cannot be merged",
                    fix: "Merge models with token embeddings, or drop tokenizer_source (the models must then have the base's vocabulary)"))
                vocabularies.append(nil)
                continue
            }
            let limit = min(rows, configuredSize(checkpoint) ?? rows)
            let tokenizer: ModelTokenizer?
            do throws(MergeKitError) {
                tokenizer = try ModelTokenizer.read(checkpoint, known: vocabularies.compactMap { $0?.tokenizer })
            } catch {
                fail(model.line, error)
                vocabularies.append(nil)
                continue
            }
            if let tokenizer {
                vocabularies.append(Vocabulary(tokenizer: tokenizer, rows: rows, limit: limit, tokens: tokenizer.tokens(below: limit)))
            } else if i == 0 {
                fail(model.line, MergeKitError(.fileNotFound, file: tokenizerPath(checkpoint),
                    "does not exist: tokenizer_source \(TokenizerSettings.describe(source)) needs the base model's tokenizer (MergeKit reads tokenizer.json, a fast tokenizer's file)",
                    fix: "Save the base's tokenizer into its directory (transformers: AutoTokenizer.from_pretrained(...).save_pretrained(DIR))"))
                vocabularies.append(nil)
            } else if let first = vocabularies.first, let baseVocabulary = first, rows == baseVocabulary.rows {
                vocabularies.append(Vocabulary(tokenizer: nil, rows: rows, limit: min(limit, baseVocabulary.limit), tokens: baseVocabulary.tokens))
            } else if vocabularies.first.map({ $0 == nil }) == true && rows == VocabularyTensors.rows(of: base) {
                vocabularies.append(nil)  // the base's vocabulary, which could not be read: reported at the base
            } else {
                let baseRows = VocabularyTensors.rows(of: base).map { " (the base's has \($0))" } ?? ""
                fail(model.line, MergeKitError(.fileNotFound, file: tokenizerPath(checkpoint),
                    "does not exist, and the model's embedding has \(rows) rows\(baseRows): tokenizer_source \(TokenizerSettings.describe(source)) needs its tokenizer to place its rows",
                    fix: "Save the model's tokenizer into its directory (transformers: AutoTokenizer.from_pretrained(...).save_pretrained(DIR))"))
                vocabularies.append(nil)
            }
        }
        guard !failed, let baseVocabulary = vocabularies[0], let baseTokenizer = baseVocabulary.tokenizer else { return nil }
        let vocabulary = vocabularies.map { $0! }
        var notes: [String] = []
        for (i, model) in models.enumerated() where vocabulary[i].tokenizer == nil
            && !models[..<i].contains(where: { Recipe.modelKey($0.checkpoint.path) == Recipe.modelKey(model.checkpoint.path) }) {
            notes.append("\(model.checkpoint.path) has no \(ModelTokenizer.fileName); its vocabulary is taken to be the base's (its embedding has the base's \(vocabulary[i].rows) rows), as mergekit assumes")
        }

        // The tokenizer the output is written from, and where its files are read.
        var named: ModelTokenizer?
        var sourceFiles: (String) throws(MergeKitError) -> [UInt8]? = base.companionBytes
        if case .model(let text) = source {
            if let i = match(text) {
                named = vocabulary[i].tokenizer
                sourceFiles = models[i].checkpoint.companionBytes
                if named == nil {
                    fail(settings.sourceLine, MergeKitError(.fileNotFound, file: tokenizerPath(models[i].checkpoint),
                        "does not exist, so the output cannot take this model's tokenizer (tokenizer_source: \(text))",
                        fix: "Save the model's tokenizer into its directory, or use tokenizer_source: base"))
                }
            } else {
                let directory = locate(text)
                let path = FileSystem.join(directory, ModelTokenizer.fileName)
                if FileSystem.kind(of: directory) != .directory {
                    fail(settings.sourceLine, MergeKitError(.invalidArgument,
                        "tokenizer_source \"\(text)\" is neither base, union, a model of this recipe nor a model directory",
                        fix: "Give base, union, or the path of a model directory holding \(ModelTokenizer.fileName)"))
                } else {
                    do throws(MergeKitError) {
                        guard FileSystem.exists(path) else {
                            throw MergeKitError(.fileNotFound, file: path, "does not exist: tokenizer_source \(text) names a model without a fast tokenizer",
                                                fix: "Save the model's tokenizer into its directory, or use tokenizer_source: base")
                        }
                        named = try ModelTokenizer(bytes: FileSystem.readFile(path), path: path)
                        sourceFiles = { name throws(MergeKitError) in
                            let file = FileSystem.join(directory, name)
                            return FileSystem.kind(of: file) == .file ? try FileSystem.readFile(file) : nil
                        }
                    } catch {
                        fail(settings.sourceLine, error)
                    }
                }
            }
        }
        guard !failed else { return nil }

        // The output vocabulary, every model's rows of it, config.json and the tokenizer files.
        let output: OutputVocabulary
        do throws(MergeKitError) {
            let others = models.indices.dropFirst().filter { i in
                !models[..<i].contains { Recipe.modelKey($0.checkpoint.path) == Recipe.modelKey(models[i].checkpoint.path) }
            }
            output = try OutputVocabulary.build(source: source, base: baseTokenizer, baseLimit: baseVocabulary.limit,
                                                models: others.map { OutputVocabulary.Model(tokenizer: vocabulary[$0].tokenizer, limit: vocabulary[$0].limit) },
                                                named: named, extra: settings.tokens.map(\.token), padToMultipleOf: settings.padToMultipleOf)
        } catch {
            fail(settings.sourceLine, error)
            return nil
        }
        var merge = VocabularyMerge(models: models, settings: settings, output: output, notes: notes, vocabularies: vocabulary,
                                    rows: vocabulary.map { output.rows(in: $0.tokens) }, match: match)
        let config = (try? base.companionBytes("config.json")).flatMap { $0 }.flatMap { try? JSONParser.parse($0) }
        if config?["text_config"]?["vocab_size"] != nil {
            merge.configEdits.append(ConfigRewriter.Edit(path: ["text_config", "vocab_size"], value: .int(output.rowCount)))
        }
        if config?["vocab_size"] != nil || config?["text_config"]?["vocab_size"] == nil {
            merge.configEdits.append(ConfigRewriter.Edit(path: ["vocab_size"], value: .int(output.rowCount)))
        }
        do throws(MergeKitError) {
            merge.files = try TokenizerFiles.write(vocabulary: output, files: sourceFiles, template: template)
            if case .model = source {
                // Another model's tokenizer: its files, none of the base's.
                for name in TokenizerFiles.names where merge.files[name] == nil {
                    if let bytes = try sourceFiles(name) { merge.files[name] = bytes } else { merge.dropped.append(name) }
                }
            }
        } catch {
            fail(settings.sourceLine, error)
        }
        return failed ? nil : merge
    }

    /// config.json's `vocab_size` (or its text model's) of `checkpoint`.
    static func configuredSize(_ checkpoint: Checkpoint) -> Int? {
        let config = (try? checkpoint.companionBytes("config.json")).flatMap { $0 }.flatMap { try? JSONParser.parse($0) }
        return config?["vocab_size"]?.nonNegativeInt ?? config?["text_config"]?["vocab_size"]?.nonNegativeInt
    }

    static func tokenizerPath(_ checkpoint: Checkpoint) -> String {
        FileSystem.join(checkpoint.directory ?? FileSystem.parentDirectory(of: checkpoint.path), ModelTokenizer.fileName)
    }

    /// Tensor `name` of each of `members` (indices into `models`, each checkpoint once) in the
    /// output's rows, parallel to `members`; `base` is the member that is the recipe's base (nil:
    /// none). A member lacking an output head uses its input embedding. Nil when a problem was
    /// reported (each with its recipe line).
    func presented(_ name: String, members: [Int], base: Int?, report: (Int, MergeKitError) -> Void) -> [Checkpoint.Entry]? {
        guard let output else { return nil }
        var failed = false
        func fail(_ line: Int, _ error: MergeKitError) {
            report(line, error)
            failed = true
        }
        let first = models[members[0]].checkpoint
        guard let reference = first.entry(named: name) ?? VocabularyTensors.tiedHead(name, in: first) else { return nil }
        var sources: [Checkpoint.Entry] = []
        for m in members {
            let model = models[m], checkpoint = model.checkpoint
            guard let entry = checkpoint.entry(named: name) ?? VocabularyTensors.tiedHead(name, in: checkpoint) else {
                fail(model.line, MergeKitError(.missingTensor, file: checkpoint.path, tensor: name,
                    "is in \(first.path) but not in this model, which has no input embedding to tie it to either",
                    fix: "Merge checkpoints of the same architecture"))
                continue
            }
            if !entry.info.dtype.isMergeable || Array(entry.info.shape.dropFirst()) != Array(reference.info.shape.dropFirst())
                || (entry.info.shape.first ?? 0) < vocabularies[m].limit {
                fail(model.line, MergeKitError(.shapeMismatch, file: checkpoint.path, tensor: entry.name,
                    "is \(entry.info.dtype.rawValue) \(entry.info.shape), but \(name) of \(first.path) is \(reference.info.dtype.rawValue) \(reference.info.shape): only the vocabulary (the first dimension) may differ, and the tensor must be a float",
                    fix: "Merge checkpoints of the same architecture and hidden size"))
                continue
            }
            sources.append(entry)
        }
        guard !failed else { return nil }

        // Each token's fill.
        func member(_ text: String, line: Int, token: String) -> Int? {
            guard let i = match(text), let m = members.firstIndex(where: { Recipe.modelKey(models[$0].checkpoint.path) == Recipe.modelKey(models[i].checkpoint.path) }) else {
                fail(line, MergeKitError(.invalidArgument, "token \(token) takes its row from \"\(text)\", which is not a model merged into this tensor",
                                         fix: "Name the base_model or one of the models merged, exactly as the recipe writes it"))
                return nil
            }
            return m
        }
        let rows = members.map { self.rows[$0] }
        let rules = Dictionary(settings.tokens.map { ($0.token, $0) }, uniquingKeysWith: { first, _ in first })
        var fills: [VocabularyFills.Fill] = []
        var fillOf = [Int32](repeating: 0, count: output.tokens.count)
        var forced = [Bool](repeating: false, count: output.tokens.count)
        for (j, token) in output.tokens.enumerated() {
            let present = rows.indices.filter { rows[$0][j] >= 0 }
            let fill: VocabularyFills.Fill
            if let rule = rules[token] {
                forced[j] = rule.force
                if !rule.force && present.count == rows.count { continue }
                guard let source = rule.source else {
                    let lacking = rows.indices.filter { rows[$0][j] < 0 }.map { models[members[$0]].checkpoint.path }
                    fail(rule.line, MergeKitError(.invalidArgument,
                        "token \(token) has no source, and \(rule.force ? "force: true gives every model its source's row" : "\(lacking.joined(separator: ", ")) lack\(lacking.count == 1 ? "s" : "") it")",
                        fix: "Give it a source: a model's path, {kind: zero} or {kind: model_token, model: PATH, token: TEXT}"))
                    continue
                }
                switch source {
                case .zero:
                    fill = .zero
                case .model(let text):
                    guard let m = member(text, line: rule.line, token: token) else { continue }
                    guard rows[m][j] >= 0 else {
                        fail(rule.line, MergeKitError(.invalidArgument, file: models[members[m]].checkpoint.path,
                            "does not have token \(token), so it cannot give its row", fix: "Name a model that has the token, or a model_token source"))
                        continue
                    }
                    fill = .row(source: m, row: Int(rows[m][j]))
                case .modelToken(let text, let id, let named):
                    guard let m = member(text, line: rule.line, token: token) else { continue }
                    let vocabulary = vocabularies[members[m]]
                    guard let row = id ?? named.flatMap({ (vocabulary.tokenizer?.vocabulary ?? vocabulary.tokens)[$0] }) else {
                        fail(rule.line, MergeKitError(.invalidArgument, file: models[members[m]].checkpoint.path,
                            "does not have token \(named ?? ""), which token \(token) takes its row from", fix: "Name a token of that model, or its row with token_id"))
                        continue
                    }
                    guard row < sources[m].info.shape[0] else {
                        fail(rule.line, MergeKitError(.invalidArgument, file: models[members[m]].checkpoint.path,
                            "has \(sources[m].info.shape[0]) vocabulary rows, so it has no row \(row) for token \(token)",
                            fix: "Give a token_id below \(sources[m].info.shape[0])"))
                        continue
                    }
                    fill = .row(source: m, row: row)
                }
            } else if present.count == rows.count {
                continue
            } else if present.count == 1 {
                fill = .row(source: present[0], row: Int(rows[present[0]][j]))
            } else if present.isEmpty {
                fill = .zero
            } else if let base, present.contains(base) {
                fill = .row(source: base, row: Int(rows[base][j]))
            } else {
                fill = .mean(present.map { VocabularyFills.Row(source: $0, row: Int(rows[$0][j])) })
            }
            fillOf[j] = Int32(fills.count)
            fills.append(fill)
        }
        guard !failed else { return nil }
        let shared = VocabularyFills(sources: sources, fills: fills)
        return members.indices.map { m in
            let own = rows[m].enumerated().map { j, row in row >= 0 && !forced[j] ? row : -1 - fillOf[j] }
            return VocabularyRows(own: sources[m], fills: shared, rows: own, rowCount: output.rowCount).entry(named: name)
        }
    }

    /// Every model as a view whose vocabulary tensors (the base's) are presented in the output's
    /// rows, all models merged into each tensor (a whole-model recipe); `hasBase`: `models[0]` is
    /// a base the recipe gives. Nil when a problem was reported.
    func views(hasBase: Bool, report: (Int, MergeKitError) -> Void) -> [Checkpoint]? {
        guard output != nil else { return models.map(\.checkpoint) }
        let members = models.indices.filter { i in
            !models[..<i].contains { Recipe.modelKey($0.checkpoint.path) == Recipe.modelKey(models[i].checkpoint.path) }
        }
        let names = VocabularyTensors.names(in: models[0].checkpoint)
        var presented: [String: [Checkpoint.Entry]] = [:]
        var failed = false
        for name in names {
            guard let entries = self.presented(name, members: members, base: hasBase ? 0 : nil, report: report) else { failed = true; continue }
            presented[name] = entries
        }
        guard !failed else { return nil }
        return models.map { model in
            let checkpoint = model.checkpoint
            let m = members.firstIndex { Recipe.modelKey(models[$0].checkpoint.path) == Recipe.modelKey(checkpoint.path) }!
            var entries = checkpoint.entries.map { presented[$0.name]?[m] ?? $0 }
            // A tied model's head: its embedding's rows, under the head's name.
            for name in names where checkpoint.entry(named: name) == nil { entries.append(presented[name]![m]) }
            return Checkpoint(viewOf: checkpoint, entries: entries, metadata: checkpoint.metadata)
        }
    }
}

extension VocabularyMerge {
    /// Why `model`'s vocabulary tensors cannot be merged with `base`'s as they are (nil: they
    /// can): their rows differ. Names the sizes and, when both have a tokenizer.json, a few tokens
    /// each has that the other lacks; the fix is a recipe's `tokenizer_source`.
    static func mismatch(base: Checkpoint, model: Checkpoint,
                         fix: String = "Add tokenizer_source: base to the recipe (the output keeps the base's vocabulary, and this model's rows are placed by token), or tokenizer_source: union (every model's tokens)")
        -> MergeKitError? {
        guard let baseRows = VocabularyTensors.rows(of: base), let rows = VocabularyTensors.rows(of: model), rows != baseRows,
              let tensor = VocabularyTensors.embeddings.first(where: { model.entry(named: $0) != nil }) else { return nil }
        // Rows of another width are another architecture (or a transposed tensor), not another
        // vocabulary: the shape mismatch says so.
        if let baseEntry = base.entry(named: tensor), baseEntry.info.shape.dropFirst() != model.entry(named: tensor)!.info.shape.dropFirst() {
            return nil
        }
        var detail = "has \(rows) vocabulary rows (\(tensor) is \(model.entry(named: tensor)!.info.shape)) but the base (\(base.path)) has \(baseRows)"
        if let mine = try? ModelTokenizer.read(model), let theirs = try? ModelTokenizer.read(base) {
            let own = mine.tokens(below: min(rows, configuredSize(model) ?? rows))
            let baseTokens = theirs.tokens(below: min(baseRows, configuredSize(base) ?? baseRows))
            func listed(_ tokens: [String: Int], without other: [String: Int]) -> (count: Int, text: String) {
                let missing = tokens.filter { other[$0.key] == nil }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }
                let shown = missing.prefix(5).map { "\"\($0.key)\" (\($0.value))" }.joined(separator: ", ")
                return (missing.count, shown + (missing.count > 5 ? ", …" : ""))
            }
            let added = listed(own, without: baseTokens), lacking = listed(baseTokens, without: own)
            var parts: [String] = []
            if added.count > 0 { parts.append("its tokenizer has \(added.count) token\(added.count == 1 ? "" : "s") the base's lacks: \(added.text)") }
            if lacking.count > 0 { parts.append("it lacks \(lacking.count) of the base's: \(lacking.text)") }
            if parts.isEmpty { parts.append("their tokenizers have the same tokens, so the extra rows are padding") }
            detail += "; " + parts.joined(separator: "; ")
        }
        return MergeKitError(.vocabularyMismatch, file: model.path, tensor: tensor, detail, fix: fix)
    }
}
