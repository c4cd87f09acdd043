import Foundation

/// Layer-wise recipes (`slices:`, `modules:`), planned as mergekit plans them:
///
/// - **Layers.** Each module's output layers are its slices' layers in order, renumbered from 0:
///   layer `offset` of a slice merges layer `start + offset` of each source (`layer_range:
///   [start, end]`, end excluded; every source of a slice gives the same number of layers).
///   Ranges may overlap and repeat layers (a frankenmerge stacking layers 0–23 of one model on
///   layers 8–31 of another, or of itself).
/// - **Around the layers.** The tensors before a module's layers (embeddings) are merged from its
///   first slice's sources with that slice's parameters, the tensors after them (final norm,
///   head) from its last slice's (`LayerLayout` tells which is which).
/// - **Roles.** An average (a method that needs no base: `linear`, `passthrough`) merges every
///   source of a slice. Any other method merges the slice's sources against the slice's base
///   model (its own `base_model`, else the recipe's), which must be one of its sources — except in
///   a module's `models:`, where, as in a whole-model recipe, the base needs not be listed.
/// - **Parameters.** A source's parameters, then the slice's, the module's and the recipe's
///   (`ParameterSetting.layered`); a per-model value is resolved for the source's own tensor name.
///   A gradient runs over the slice: layer `offset` of an n-layer slice is at t = offset/(n − 1)
///   (1 when n = 1); the tensors around the layers at t = 0.
/// - **Output config.** config.json comes from the base model (else the first slice's first
///   source); each module's layer count is rewritten, and its per-layer lists (`layer_types`,
///   `no_rope_layers`) are rebuilt layer by layer from the configs of the models each output layer
///   comes from.
///
/// Every problem is reported before any work, at its recipe line: ranges empty, reversed or past a
/// model's layers, sources of different lengths, a model twice in a slice, a base not among a
/// slice's sources, slices merging different numbers of models (allowed for an average, where the
/// missing inputs weigh 0), a source lacking a tensor of the layer (or holding one the output would
/// drop), checkpoints of another architecture, and modules the recipe names wrongly or leaves out.
extension Recipe {
    /// A slice's sources in their roles.
    struct SliceRoles {
        /// The source the others are merged against (θ₀, or the anchor of an average); nil: the
        /// base model, not listed (a module's `models:`).
        let anchor: Int?
        /// The sources merged, one per input slot.
        let inputs: [Int]
        /// The slice's base model (its own or the recipe's).
        let base: String?
    }

    /// One slice of the recipe with its module, its roles (nil when they cannot be told: reported)
    /// and its parameter group.
    struct SliceEntry {
        let slice: Slice
        let module: Module
        let roles: SliceRoles?
        let group: RecipeMerge.ParameterGroup
    }

    /// Every slice, in recipe order, with its roles and parameters (see the extension's
    /// documentation); what cannot be told is added to `problems`. Needs no file.
    func sliceRoles(_ description: MethodDescription, into problems: inout ProblemList) -> [SliceEntry] {
        func add(_ line: Int, _ detail: String, fix: String? = nil) {
            self.add(line, MergeKitError(.invalidArgument, file: path, detail, fix: fix), to: &problems)
        }
        // A method that needs no base averages a slice's sources (the first anchors the task
        // vectors), unless it combines a base it is given with the models (the SLERP family).
        let baseOptional = description.kind.contains(.baseOptional), baseAmong = description.kind.contains(.baseAmongModels)
        var found: [(slice: Slice, module: Module, roles: SliceRoles?, averaged: Bool)] = []
        for module in modules {
            for slice in module.slices {
                let base = slice.baseModel ?? baseModel
                let averaging = baseOptional && !(baseAmong && base != nil)
                var seen = Set<String>()
                for source in slice.sources where !seen.insert(Self.modelKey(source.path)).inserted {
                    add(source.line, "\(source.path) is listed twice in one slice; mergekit merges each model once per slice",
                        fix: "List each model once per slice (another slice may repeat its layers)")
                }
                let all = Array(slice.sources.indices)
                if averaging {
                    found.append((slice, module, SliceRoles(anchor: slice.fromModels && base != nil ? nil : 0, inputs: all, base: base), true))
                } else if let base {
                    if let i = slice.sources.firstIndex(where: { Self.modelKey($0.path) == Self.modelKey(base) }) {
                        found.append((slice, module, SliceRoles(anchor: i, inputs: all.filter { $0 != i }, base: base), false))
                    } else if slice.fromModels {
                        found.append((slice, module, SliceRoles(anchor: nil, inputs: all, base: base), false))
                    } else {
                        add(slice.line, "the base model \(base) is not among this slice's sources; \(method) merges each slice's sources against the base model, listed among them (as in mergekit)",
                            fix: "Add a source - model: \(base) with the slice's layer_range")
                        found.append((slice, module, nil, false))
                    }
                } else {
                    add(slice.line, "\(method) merges against a base model, and this slice has none",
                        fix: "Add base_model: PATH (for the recipe, or for the slice) and list it among the slice's sources")
                    found.append((slice, module, nil, false))
                }
            }
        }
        let slots = found.compactMap { $0.roles?.inputs.count }.max() ?? 0
        let anchored = found.filter { !$0.averaged }
        if let first = anchored.first(where: { $0.roles != nil }),
           let other = anchored.first(where: { $0.roles.map { $0.inputs.count != first.roles!.inputs.count } ?? false }) {
            add(other.slice.line, "this slice merges \(other.roles!.inputs.count) model(s) with its base, the slice at line \(first.slice.line) \(first.roles!.inputs.count); \(method) merges every tensor from the same number of models",
                fix: "Give every slice as many sources")
        }
        return found.map { entry in
            let inputs = entry.roles?.inputs ?? []
            let models = inputs.map { entry.slice.sources[$0].parameters }
            let padding = max(0, slots - models.count)
            return SliceEntry(slice: entry.slice, module: entry.module, roles: entry.roles,
                              group: RecipeMerge.ParameterGroup(scopes: [entry.slice.parameters, entry.module.parameters],
                                                                models: models + Array(repeating: [:], count: padding),
                                                                padded: models.map { _ in false } + Array(repeating: true, count: padding),
                                                                line: entry.slice.line, hasBase: entry.roles?.base != nil))
        }
    }

    /// A model reference as mergekit compares them: the path as written, normalised.
    static func modelKey(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.path
    }

    /// The per-layer lists of config.json that follow the layers (rebuilt for the output's layers).
    static let perLayerConfigKeys = ["layer_types", "no_rope_layers"]

    /// A layer-wise recipe's merge (see the extension's documentation); nil after adding to
    /// `problems` what prevents it.
    func layeredMerge(spec: (description: MethodDescription, preset: MethodDescription.Preset)?, emit: EmitKind,
                      source: RecipeMerge.Source, into reported: inout ProblemList) -> RecipeMerge? {
        let resolve = source.locate
        var problems = ProblemList()
        defer { problems.items.forEach { reported.add($0) } }
        func add(_ line: Int, _ error: MergeKitError) { self.add(line, error, to: &problems) }
        guard let spec else { return nil }
        let entries = sliceRoles(spec.description, into: &problems)
        if emit == .taskVector {
            add(0, MergeKitError(.invalidArgument, file: path, "a layer-wise recipe (slices, modules) writes a model: its layers come from several models, so no base gives its task vector",
                                 fix: "Write the model"))
        }

        // Every checkpoint, opened once, with its layout.
        var opened: [String: Checkpoint] = [:], layouts: [String: LayerLayout] = [:], configs: [String: JSONValue] = [:]
        var failed = Set<String>()
        var uses: [(text: String, line: Int, path: String)] = []   // each checkpoint's first use, in the recipe's order
        func open(_ reference: String, line: Int) -> Checkpoint? {
            let resolved = resolve(reference)
            if !uses.contains(where: { $0.path == resolved }) { uses.append((reference, line, resolved)) }
            if let checkpoint = opened[resolved] { return checkpoint }
            guard !failed.contains(resolved) else { return nil }
            do throws(MergeKitError) {
                let checkpoint = try source.open(reference)
                if TaskVectorFile.isTaskVector(checkpoint) || LinearizedCheckpoint.isLinearized(checkpoint) {
                    throw MergeKitError(.invalidArgument, file: resolved,
                        "is \(TaskVectorFile.isTaskVector(checkpoint) ? "a task vector" : "a linearized checkpoint"); slices take the layers of fine-tuned models",
                        fix: "Merge it whole under models: (task_vector: PATH), or give the model it came from")
                }
                let config = LayerLayout.config(of: checkpoint)
                layouts[resolved] = try LayerLayout.detect(checkpoint, config: config)
                configs[resolved] = config
                opened[resolved] = checkpoint
                return checkpoint
            } catch {
                add(line, error)
                failed.insert(resolved)
                return nil
            }
        }
        let recipeBase = baseModel.flatMap { open($0, line: baseLine) }
        for entry in entries {
            if let base = entry.slice.baseModel { _ = open(base, line: entry.slice.line) }
            for source in entry.slice.sources { _ = open(source.path, line: source.line) }
        }
        guard problems.items.isEmpty, let firstSource = entries.first?.slice.sources.first,
              let donor = recipeBase ?? open(firstSource.path, line: firstSource.line), let layout = layouts[donor.path] else {
            return nil
        }
        func layoutOf(_ checkpoint: Checkpoint) -> LayerLayout { layouts[checkpoint.path]! }
        for (resolved, checkpoint) in opened.sorted(by: { $0.key < $1.key }) {
            let other = layouts[resolved]!
            if other.family != layout.family || other.modules.map(\.name) != layout.modules.map(\.name)
                || other.modules.map(\.layerPrefix) != layout.modules.map(\.layerPrefix) {
                add(0, MergeKitError(.invalidArgument, file: checkpoint.path,
                    "is a \(other.family) with modules \(other.modules.map(\.name).joined(separator: ", ")), but the output is laid out as \(donor.path), a \(layout.family) with modules \(layout.modules.map(\.name).joined(separator: ", "))",
                    fix: "Stack layers of models of one architecture"))
            }
        }
        guard problems.items.isEmpty else { return nil }

        // The recipe's modules, in the layout's order.
        var assigned: [Int: [Int]] = [:]   // layout module → indices into `entries`
        let names = layout.modules.map(\.name)
        var entryIndex = 0
        for module in modules {
            let range = entryIndex..<(entryIndex + module.slices.count)
            entryIndex += module.slices.count
            let target: Int?
            if let name = module.name {
                target = names.firstIndex(of: name)
                if target == nil {
                    add(module.line, MergeKitError(.invalidArgument, file: path,
                        "\(donor.path) (a \(layout.family)) has no module \"\(name)\"", fix: "Its modules: " + names.joined(separator: ", ")))
                }
            } else if names.count == 1 {
                target = 0
            } else {
                target = nil
                add(module.line, MergeKitError(.invalidArgument, file: path,
                    "slices: stack the layers of a model with one module, but \(donor.path) (a \(layout.family)) has \(names.count): \(names.joined(separator: ", "))",
                    fix: "Write modules: with one entry per module, e.g. modules: {\(names[0]): {slices: [...]}, ...}"))
            }
            if let target {
                if assigned[target] != nil {
                    add(module.line, MergeKitError(.invalidArgument, file: path, "module \(names[target]) is given twice"))
                }
                assigned[target] = Array(range)
            }
        }
        let named = problems.items.isEmpty
        for (m, name) in names.enumerated() where assigned[m] == nil && named {
            add(modules.first?.line ?? 0, MergeKitError(.invalidArgument, file: path,
                "modules: leaves out module \(name) of \(donor.path), so its tensors would be missing from the output (mergekit writes such a model)",
                fix: "Add \(name): {models: [...]} (or slices) to modules"))
        }
        guard problems.items.isEmpty, entries.allSatisfy({ $0.roles != nil }) else { return nil }

        // Tied heads: each module's head comes from its last slice's models, its embedding from
        // its first slice's (`tiedHeads`).
        let tied = tiedHeads(layout: layout, assigned: assigned, entries: entries, donor: donor, opened: &opened, resolve: resolve)
        var configEdits = tied.map { [$0] } ?? []

        // The vocabularies: merged by the tokenizer settings over every model of the recipe (the
        // tensors around the layers are presented in the output's rows, each from its slice's
        // sources), else each slice's models must have its anchor's.
        var vocabulary: VocabularyMerge?
        var vocabularyIndex: [String: Int] = [:]
        if let tokenizer {
            let donorUse = uses.first { $0.path == donor.path } ?? (donor.path, baseLine, donor.path)
            let ordered = [donorUse] + uses.filter { $0.path != donor.path && opened[$0.path] != nil }
            let models = ordered.map { VocabularyMerge.Model(checkpoint: opened[$0.path]!, text: $0.text, line: $0.line) }
            for (i, use) in ordered.enumerated() { vocabularyIndex[use.path] = i }
            let report = { (line: Int, error: MergeKitError) in
                var named = error
                if named.file == nil { named.file = path }
                add(line, named)
            }
            vocabulary = VocabularyMerge.plan(tokenizer, models: models, match: modelMatcher(models.map { ($0.text, $0.checkpoint.path) }),
                                              locate: resolvedPath, report: report)
            guard vocabulary != nil else { return nil }
        }

        // The source map: every output tensor, module by module.
        var map = TensorSourceMap()
        var contexts: [String: RecipeMerge.TensorContext] = [:]
        var origins: [String: [String]] = [:]
        let slots = entries.first!.group.models.count
        var slotCheckpoints: [Checkpoint?] = Array(repeating: nil, count: slots)
        for (m, module) in layout.modules.enumerated() {
            var outputLayer = 0
            var provenance: [(checkpoint: Checkpoint, layer: Int)] = []
            let moduleEntries = assigned[m]!
            for (k, g) in moduleEntries.enumerated() {
                let entry = entries[g], roles = entry.roles!, slice = entry.slice
                // The anchor and the inputs, each with its checkpoint, first layer, line and own parameters' name.
                struct Participant { let checkpoint: Checkpoint; let start: Int; let end: Int; let line: Int; let path: String }
                func participant(_ index: Int?) -> Participant? {
                    let reference = index.map { slice.sources[$0].path } ?? roles.base!
                    guard let checkpoint = opened[resolve(reference)] else { return nil }
                    let line = index.map { slice.sources[$0].line } ?? slice.line
                    let count = layoutOf(checkpoint).modules[m].layerCount
                    let source = index.map { slice.sources[$0] }
                    return Participant(checkpoint: checkpoint, start: source?.start ?? 0, end: source?.end ?? count, line: line, path: reference)
                }
                guard let anchor = participant(roles.anchor) else { return nil }
                let inputs = roles.inputs.compactMap(participant)
                // Every source once, in the recipe's order (and the base of a module's models: first).
                let participants = (roles.anchor == nil ? [anchor] : []) + slice.sources.indices.compactMap(participant)
                for (slot, input) in inputs.enumerated() where slotCheckpoints[slot] == nil { slotCheckpoints[slot] = input.checkpoint }
                // Ranges.
                var rangesFine = true
                for p in participants {
                    let count = layoutOf(p.checkpoint).modules[m].layerCount
                    let shown = "layer_range [\(p.start), \(p.end)]"
                    if module.layerPrefix == nil {
                        if p.start != 0 || p.end != 0 {
                            add(p.line, MergeKitError(.invalidArgument, file: path, "\(shown): module \(module.name) has no layers",
                                                      fix: "Give it models: [...] instead of slices"))
                            rangesFine = false
                        }
                    } else if p.start < 0 || p.end <= p.start {
                        add(p.line, MergeKitError(.invalidArgument, file: path, "\(shown) is \(p.end == p.start ? "empty" : "reversed"): a range gives layers START to END − 1",
                                                  fix: "Write [START, END] with START < END, e.g. [0, 16] for 16 layers"))
                        rangesFine = false
                    } else if p.end > count {
                        add(p.line, MergeKitError(.invalidArgument, file: path,
                            "\(shown) reaches layer \(p.end - 1), but \(p.path) has \(count) layer\(count == 1 ? "" : "s") (0 to \(count - 1))",
                            fix: "Keep END at most \(count)"))
                        rangesFine = false
                    }
                }
                let lengths = participants.map { $0.end - $0.start }
                if rangesFine && Set(lengths).count > 1 {
                    add(slice.line, MergeKitError(.invalidArgument, file: path,
                        "the sources of this slice give \(lengths.map(String.init).joined(separator: ", ")) layers; every source of a slice gives the same number of layers (merged layer by layer)",
                        fix: "Give every source a layer_range of the same length"))
                    rangesFine = false
                }
                guard rangesFine else { continue }
                let length = lengths[0]

                /// Adds output tensor `name`: the anchor's `anchorName`, each input's name from `inputName`.
                func addTensor(_ name: String, anchorName: String, t: Double, inputName: (Participant) -> String) {
                    guard var base = anchor.checkpoint.entry(named: anchorName) else { return }
                    var sources: [Checkpoint.Entry] = [], sourceNames: [String] = []
                    let presentsVocabulary = vocabulary?.output != nil && VocabularyTensors.isVocabulary(name) && anchorName == name
                    if let vocabulary, presentsVocabulary {
                        // In the output's rows, from the slice's models (the slice's base, if any, first among them).
                        let members = ([anchor] + inputs).map { vocabularyIndex[resolve($0.path)] ?? vocabularyIndex[$0.checkpoint.path] ?? 0 }
                        let baseMember = roles.base.flatMap { b in ([anchor] + inputs).firstIndex { Self.modelKey(resolve($0.path)) == Self.modelKey(resolve(b)) } }
                        let report = { (line: Int, error: MergeKitError) in
                            var named = error
                            if named.file == nil { named.file = path }
                            add(line, named)
                        }
                        guard let presented = vocabulary.presented(name, members: members, base: baseMember, report: report) else { return }
                        base = presented[0]
                        sources = Array(presented.dropFirst())
                        sourceNames = inputs.map { _ in name }
                    }
                    for input in inputs where !presentsVocabulary {
                        let own = inputName(input)
                        guard let found = input.checkpoint.entry(named: own) else {
                            add(input.line, MergeKitError(.missingTensor, file: input.checkpoint.path, tensor: own,
                                "is missing, and this slice merges it into \(name) with \(anchorName) of \(anchor.path)",
                                fix: "Slice layers of models of one architecture and size"))
                            return
                        }
                        guard found.info.shape == base.info.shape else {
                            if VocabularyTensors.isVocabulary(own), let mismatch = VocabularyMerge.mismatch(base: anchor.checkpoint, model: input.checkpoint) {
                                add(input.line, mismatch)
                                return
                            }
                            add(input.line, MergeKitError(.shapeMismatch, file: input.checkpoint.path, tensor: own,
                                "has shape \(found.info.shape), but \(anchorName) of \(anchor.path), merged with it into \(name), has \(base.info.shape)",
                                fix: "Slice layers of models of one architecture and size"))
                            return
                        }
                        sources.append(found)
                        sourceNames.append(own)
                    }
                    guard contexts[name] == nil else {
                        add(slice.line, MergeKitError(.invalidArgument, file: anchor.checkpoint.path, tensor: anchorName,
                            "would be written twice, as \(name)", fix: "Check the layer ranges"))
                        return
                    }
                    let padding = slots - sources.count
                    map.tensors.append(TensorSourceMap.Tensor(name: name, base: base, inputs: sources + Array(repeating: base, count: padding)))
                    contexts[name] = RecipeMerge.TensorContext(group: g, t: t,
                                                               modelTensors: sourceNames + Array(repeating: anchorName, count: padding))
                    var origin = ["\(anchor.path): \(anchorName)"]
                    for (input, own) in zip(inputs, sourceNames) where !origin.contains("\(input.path): \(own)") {
                        origin.append("\(input.path): \(own)")
                    }
                    origins[name] = origin
                }
                /// Tensors of an input that the output would not take from it.
                func checkExtra(_ input: Participant, wanted: Set<String>, where belongs: (LayerLayout.Place) -> Bool) {
                    let inputLayout = layoutOf(input.checkpoint)
                    for name in input.checkpoint.tensorNames where belongs(inputLayout.place(of: name)) && !wanted.contains(name) {
                        add(input.line, MergeKitError(.extraTensor, file: input.checkpoint.path, tensor: name,
                            "is not in \(anchor.path), which this slice merges it with; the output would silently drop it",
                            fix: "Slice layers of models of one architecture"))
                        return
                    }
                }
                // The tensors before the layers (first slice) and after them (last slice).
                func outside(after: Bool) {
                    let place = LayerLayout.Place.outside(module: m, after: after)
                    let names = anchor.checkpoint.tensorNames.filter { layoutOf(anchor.checkpoint).place(of: $0) == place }
                    for name in names { addTensor(name, anchorName: name, t: 0) { _ in name } }
                    for input in inputs { checkExtra(input, wanted: Set(names)) { $0 == place } }
                }
                if k == 0 { outside(after: false) }
                for offset in 0..<length {
                    let anchorLayer = anchor.start + offset
                    let anchorLayout = layoutOf(anchor.checkpoint)
                    let suffixes = anchor.checkpoint.tensorNames.compactMap { name -> String? in
                        guard case .layer(m, anchorLayer, let suffix) = anchorLayout.place(of: name) else { return nil }
                        return suffix
                    }
                    let t = length > 1 ? Double(offset) / Double(length - 1) : 1
                    for suffix in suffixes {
                        addTensor(layout.layerName(module: m, index: outputLayer, suffix: suffix),
                                  anchorName: anchorLayout.layerName(module: m, index: anchorLayer, suffix: suffix), t: t) { input in
                            layoutOf(input.checkpoint).layerName(module: m, index: input.start + offset, suffix: suffix)
                        }
                    }
                    for input in inputs {
                        let layer = input.start + offset
                        checkExtra(input, wanted: Set(suffixes.map { layoutOf(input.checkpoint).layerName(module: m, index: layer, suffix: $0) })) {
                            if case .layer(m, layer, _) = $0 { return true }
                            return false
                        }
                    }
                    provenance.append((anchor.checkpoint, anchorLayer))
                    outputLayer += 1
                }
                if k == moduleEntries.count - 1 { outside(after: true) }
            }
            if module.layerPrefix != nil, let config = LayerLayout.config(of: donor) {
                configEdits += Self.layerConfigEdits(module: module, layers: provenance, donor: config) { configs[$0.path] }
            } else if module.layerPrefix != nil, let key = module.countKeys.first, let directory = donor.directory,
                      FileSystem.kind(of: FileSystem.join(directory, "config.json")) == .file {
                // A config.json that is not a JSON object cannot be edited: the finish step says so.
                configEdits.append(ConfigRewriter.Edit(path: key, value: .int(provenance.count)))
            }
        }
        guard problems.items.isEmpty else { return nil }

        let views = map.views(base: donor, inputs: slotCheckpoints.map { $0 ?? donor })
        var merge = RecipeMerge(base: views.base, inputs: views.inputs.map { MergeInput(kind: .model, checkpoint: $0) },
                                groups: entries.map(\.group),
                                context: { [contexts] tensor in contexts[tensor] ?? RecipeMerge.TensorContext(group: 0, t: 0, modelTensors: nil) },
                                readPaths: [donor.path] + opened.values.map(\.path).sorted())
        merge.configEdits = configEdits + (vocabulary?.configEdits ?? [])
        merge.origins = origins
        if let vocabulary {
            merge.files = vocabulary.files
            merge.droppedCompanions = vocabulary.dropped
            merge.notes = vocabulary.notes
            merge.vocabulary = vocabulary.summary
        }
        return merge
    }

    /// Presents the tied heads of a layer-wise recipe's models (`VocabularyTensors`): a module's
    /// head (an output head after its layers) is merged from its last slice's models, which take
    /// part with their embedding as the head when they tie it. The output stores the head when one
    /// of those models stores it, or when it comes from another merge than the embedding (the first
    /// slice's models, parameters or base differ from the last's: a frankenmerge of a tied model
    /// and another model needs a head of its own) and a model of the recipe stores such a head or a
    /// last slice's model says in its config.json that it ties one (a model saved without any head
    /// says nothing); a module merged once, of tied models, stays tied. Returns the edit of
    /// config.json (taken from `donor`) when it says otherwise.
    func tiedHeads(layout: LayerLayout, assigned: [Int: [Int]], entries: [SliceEntry], donor: Checkpoint,
                   opened: inout [String: Checkpoint], resolve: (String) -> String) -> ConfigRewriter.Edit? {
        func models(_ entry: SliceEntry) -> [String] {
            let base = entry.roles?.anchor == nil ? [entry.roles?.base].compactMap { $0 } : []
            return (base + entry.slice.sources.map(\.path)).map(resolve)
        }
        func sameMerge(_ a: SliceEntry, _ b: SliceEntry) -> Bool {
            models(a).map(Self.modelKey) == models(b).map(Self.modelKey) && a.roles?.anchor == b.roles?.anchor
                && a.slice.sources.map(\.parameters) == b.slice.sources.map(\.parameters) && a.slice.parameters == b.slice.parameters
                && a.module.name == b.module.name
        }
        var stores = false
        for m in layout.modules.indices {
            guard let indices = assigned[m], let first = indices.first, let last = indices.last else { continue }
            let candidates = VocabularyTensors.heads.filter { layout.place(of: $0) == .outside(module: m, after: true) }
            let lastModels = models(entries[last]).filter { opened[$0] != nil }
            guard !candidates.isEmpty, !lastModels.isEmpty else { continue }
            var needed = candidates.filter { name in lastModels.contains { opened[$0]!.entry(named: name) != nil } }
            if needed.isEmpty && (first != last && !sameMerge(entries[first], entries[last])) {
                // The head's name: as a model of the recipe stores it, else the architecture's first, when a
                // model's config.json says it ties its head (a model without any head says nothing).
                let stored = candidates.first { name in opened.values.contains { $0.entry(named: name) != nil } }
                let declared = lastModels.contains { VocabularyTensors.tied(VocabularyTensors.config(of: opened[$0]!)) == true }
                if let name = stored ?? (declared ? candidates[0] : nil),
                   lastModels.contains(where: { VocabularyTensors.tiedHead(name, in: opened[$0]!) != nil }) { needed = [name] }
            }
            for key in lastModels { opened[key] = VocabularyTensors.presentingTiedHeads(needed, of: opened[key]!) }
            if !needed.isEmpty { stores = true }
        }
        let donorStores = VocabularyTensors.storedHeads(in: donor).contains {
            if case .outside(_, true) = layout.place(of: $0) { return true } else { return false }
        }
        return stores == donorStores ? nil : VocabularyTensors.tieEdit(!stores, config: VocabularyTensors.config(of: donor))
    }

    /// The config.json edits for one module of the output: its layer count under the first of the
    /// module's count keys the donor config has, and each per-layer list found beside it (with one
    /// entry per layer of the donor) rebuilt from `layers` — output layer i is layer j of a model,
    /// and takes that model's entry j (`config(model)`), else the donor's entry j; a list that cannot
    /// be rebuilt so is left as it is.
    static func layerConfigEdits(module: LayerLayout.Module, layers: [(checkpoint: Checkpoint, layer: Int)], donor: JSONValue,
                                 config: (Checkpoint) -> JSONValue?) -> [ConfigRewriter.Edit] {
        func value(_ path: [String], in json: JSONValue?) -> JSONValue? {
            path.reduce(json) { $0?[$1] }
        }
        guard let key = module.countKeys.first(where: { value($0, in: donor)?.nonNegativeInt != nil }),
              let donorCount = value(key, in: donor)?.nonNegativeInt else { return [] }
        var edits = [ConfigRewriter.Edit(path: key, value: .int(layers.count))]
        let parent = Array(key.dropLast())
        for listKey in perLayerConfigKeys {
            guard let donorList = value(parent + [listKey], in: donor)?.arrayValue, donorList.count == donorCount else { continue }
            let rebuilt = layers.map { source -> JSONValue? in
                let own = config(source.checkpoint)
                if let list = value(parent + [listKey], in: own)?.arrayValue, list.count == value(key, in: own)?.nonNegativeInt,
                   source.layer < list.count {
                    return list[source.layer]
                }
                return source.layer < donorList.count ? donorList[source.layer] : nil
            }
            if rebuilt.allSatisfy({ $0 != nil }) { edits.append(ConfigRewriter.Edit(path: parent + [listKey], value: .array(rebuilt.map { $0! }))) }
        }
        return edits
    }
}
