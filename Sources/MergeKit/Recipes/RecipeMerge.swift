/// What a recipe merges once its checkpoints are open, before its parameters are resolved per
/// tensor (per sweep point): the base and the inputs `MergePlan` matches, and where each tensor's
/// parameters come from.
///
/// A whole-model recipe (`models:`) has one parameter group: the models' parameters over the
/// recipe's. A layer-wise recipe (`slices:`, `modules:`; `Recipe+Layers.swift`) has one per slice:
/// its sources' parameters over the slice's, its module's and the recipe's, its input slots, and
/// its tensors' layer positions counted within the slice.
struct RecipeMerge {
    /// Where one tensor's parameters come from.
    struct TensorContext: Sendable {
        /// Index into `groups`.
        let group: Int
        /// The layer position for gradients.
        let t: Double
        /// Each input's own name for the tensor (nil: the output name).
        let modelTensors: [String]?
    }

    /// The parameters of one slice (or of a whole-model recipe).
    struct ParameterGroup: Sendable {
        /// Scopes between the models' parameters and the recipe's, innermost first (a slice's,
        /// its module's).
        let scopes: [[String: ParameterSetting]]
        /// Each input slot's own parameters.
        let models: [[String: ParameterSetting]]
        /// Slots this group leaves empty (a slice with fewer sources than others, in an average):
        /// weight 0.
        let padded: [Bool]
        /// Where the group is written (the slice's line; the merge_method's for a whole-model recipe).
        let line: Int
        /// Whether the group has a base model in mergekit's sense (`MethodArguments.hasBaseModel`).
        var hasBase = true

        /// The recipe's parameters (a sweep point's) under the group's scopes.
        func global(_ recipe: [String: ParameterSetting]) -> [String: ParameterSetting] {
            ParameterSetting.layered(scopes + [recipe])
        }
    }

    let base: Checkpoint
    let inputs: [MergeInput]
    let groups: [ParameterGroup]
    let context: @Sendable (String) -> TensorContext
    /// Every checkpoint path the merge reads (the output must be none of them).
    let readPaths: [String]
    /// Values set in the output's config.json (layer counts, per-layer lists).
    var configEdits: [ConfigRewriter.Edit] = []
    /// Where each output tensor is read from, when renamed (`MergePlan.origins`).
    var origins: [String: [String]] = [:]
    /// Tokenizer files written into a directory output (`VocabularyMerge.files`), and the base's
    /// companions it does not copy.
    var files: [String: [UInt8]] = [:]
    var droppedCompanions: [String] = []
    /// What `run` mentions (`RecipeRun.notes`).
    var notes: [String] = []
    /// The output vocabulary, for `--dry-run` (`MergePlan.vocabulary`).
    var vocabulary: String?

    /// How a recipe's model texts become checkpoints: `resolve` turns a relative path into the
    /// path read (from the working directory, else beside the recipe); `locate` names the
    /// checkpoint a text stands for (its path, or the path of the checkpoint another document of a
    /// multi-document recipe supplies for it, or a Hugging Face id's cached snapshot); `open`
    /// opens it; `adapter` names the directory of a `lora:` entry (a path, or a cached adapter).
    struct Source {
        let resolve: (String) -> String
        let locate: (String) -> String
        let open: (String) throws(MergeKitError) -> Checkpoint
        let adapter: (String) throws(MergeKitError) -> String
    }

    /// The method and weights for `tensor` under `spec`, with the recipe's parameters `global`.
    static func arguments(preset: MethodDescription.Preset, group: ParameterGroup, global: [String: ParameterSetting],
                          tensor: String, context: TensorContext, seed: UInt64) -> MethodArguments {
        var values = MethodArguments(preset: preset, global: global, models: group.models, tensor: tensor, t: context.t, seed: seed)
        values.modelTensors = context.modelTensors
        values.hasBaseModel = group.hasBase
        return values
    }
}

extension Recipe {
    /// Whether any parameter is a gradient (a list of numbers over the layers).
    var usesGradients: Bool {
        func gradient(_ setting: ParameterSetting) -> Bool {
            switch setting {
            case .gradient: return true
            case .conditions(let conditions): return conditions.contains { gradient($0.value) }
            default: return false
            }
        }
        let scopes = [parameters] + inputs.map(\.parameters)
            + modules.flatMap { [$0.parameters] + $0.slices.flatMap { [$0.parameters] + $0.sources.map(\.parameters) } }
        return scopes.contains { $0.values.contains(where: gradient) } || sweep.contains { $0.values.contains(where: gradient) }
    }

    /// A whole-model recipe's merge: the base (or the first model, for a method that needs none)
    /// and the models, each tensor at its layer position within its stack (`LayerLayout`, asked
    /// only when a gradient needs it).
    func wholeModelMerge(spec: (description: MethodDescription, preset: MethodDescription.Preset)?, source: RecipeMerge.Source,
                         into problems: inout ProblemList) -> RecipeMerge? {
        let resolve = source.resolve
        func add(_ line: Int, _ error: MergeKitError) { self.add(line, error, to: &problems) }
        var base: Checkpoint?
        var opened: [MergeInput] = []
        if let baseModel {
            do throws(MergeKitError) { base = try source.open(baseModel) } catch { add(baseLine, error) }
        } else if let spec, !spec.description.kind.contains(.baseOptional) {
            // (Without a known method, the missing or unknown merge_method is the problem.)
            add(0, MergeKitError(.invalidArgument, file: path, "\(method) needs a base_model", fix: "Add base_model: PATH"))
        }
        let entries = methodInputs(spec?.description)
        for input in entries {
            do throws(MergeKitError) {
                switch input.kind {
                case .lora: opened.append(MergeInput(lora: try LoRAAdapter(path: source.adapter(input.path))))
                case .model:
                    opened.append(MergeInput(kind: .model, checkpoint: try source.open(input.path)))
                case .taskVector:
                    opened.append(MergeInput(kind: .taskVector, checkpoint: try Checkpoint(path: resolve(input.path))))
                }
            } catch {
                add(input.line, error)
            }
        }
        if base == nil, baseModel == nil, let first = opened.first, opened.allSatisfy({ $0.kind == .model }) {
            base = first.checkpoint  // linear without a base: the first model anchors the task vectors
        }
        guard var base else { return nil }
        // The vocabularies: merged by the tokenizer settings, else the same as the base's.
        var vocabulary: VocabularyMerge?
        var tieEdits: [ConfigRewriter.Edit] = []
        if opened.count == entries.count, let tokenizer {
            if tokenizer.source != nil, let other = zip(entries, opened).first(where: { $0.1.kind != .model }) {
                add(other.0.line, MergeKitError(.invalidArgument, file: path,
                    "tokenizer_source merges the vocabularies of models, and \(other.0.path) is \(other.1.kind == .lora ? "a LoRA adapter" : "a task vector"), which has no tokenizer",
                    fix: "Merge it as a model (the model it came from), or drop tokenizer_source"))
                return nil
            }
            // Tied heads first, so that the vocabulary presents every head any model stores (a
            // merged vocabulary writes a model; the plan presents them otherwise).
            if tokenizer.source != nil {
                var untied = false
                (base, opened, untied) = VocabularyTensors.presentingTiedHeads(base: base, inputs: opened, emit: .model)
                if untied, let edit = VocabularyTensors.tieEdit(false, config: VocabularyTensors.config(of: base)) { tieEdits.append(edit) }
            }
            let models = [VocabularyMerge.Model(checkpoint: base, text: baseModel ?? entries.first?.path ?? "", line: baseModel == nil ? (entries.first?.line ?? 0) : baseLine)]
                + zip(entries, opened).map { VocabularyMerge.Model(checkpoint: $1.checkpoint, text: $0.path, line: $0.line) }
            // A problem of the recipe itself (a source, a token) names the recipe.
            let report = { (line: Int, error: MergeKitError) in
                var named = error
                if named.file == nil { named.file = path }
                add(line, named)
            }
            guard let planned = VocabularyMerge.plan(tokenizer, models: models, match: modelMatcher(models.map { ($0.text, $0.checkpoint.path) }),
                                                     locate: resolve, report: report),
                  let views = planned.views(hasBase: baseModel != nil, report: report) else { return nil }
            base = views[0]
            opened = zip(opened, views.dropFirst()).map { MergeInput(kind: .model, checkpoint: $1, weight: $0.weight) }
            vocabulary = planned
        }
        if opened.count == entries.count && tokenizer?.source == nil {
            for (entry, input) in zip(entries, opened) where input.kind == .model {
                if let error = VocabularyMerge.mismatch(base: base, model: input.checkpoint) { add(entry.line, error) }
            }
        }
        var layout: LayerLayout?
        if usesGradients {
            do throws(MergeKitError) {
                layout = try LayerLayout.detect(base, config: LayerLayout.config(of: base))
            } catch {
                add(baseModel == nil ? (inputs.first?.line ?? 0) : baseLine, error)
            }
        }
        let group = RecipeMerge.ParameterGroup(scopes: [], models: entries.map(\.parameters),
                                               padded: entries.map { _ in false }, line: methodLine, hasBase: baseModel != nil)
        let positions = layout
        var merge = RecipeMerge(base: base, inputs: opened, groups: [group],
                                context: { tensor in RecipeMerge.TensorContext(group: 0, t: positions?.t(of: tensor) ?? 0, modelTensors: nil) },
                                readPaths: [base.path] + opened.flatMap { [$0.path, $0.checkpoint.path] })
        merge.configEdits = tieEdits
        if let vocabulary {
            merge.configEdits += vocabulary.configEdits
            merge.files = vocabulary.files
            merge.droppedCompanions = vocabulary.dropped
            merge.notes = vocabulary.notes
            merge.vocabulary = vocabulary.summary
        }
        return merge
    }

    /// Which of `models` (each as the recipe writes it, and the checkpoint's path) a recipe text
    /// names: the one written the same, else the one whose checkpoint the text resolves to.
    func modelMatcher(_ models: [(text: String, path: String)]) -> (String) -> Int? {
        let resolve = resolvedPath
        return { text in
            if let i = models.firstIndex(where: { $0.text == text }) { return i }
            let key = Recipe.modelKey(resolve(text))
            return models.firstIndex { Recipe.modelKey($0.path) == key }
        }
    }
}
