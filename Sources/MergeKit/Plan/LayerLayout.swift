/// Which tensors of a checkpoint belong to which layer, for the common architectures: a small
/// table of name patterns (`families`), one row per naming scheme.
///
/// A family has one or more modules (mergekit's word): a stack of layers, whose tensors are named
/// `PREFIX` + the layer index + `.` + the rest (`model.layers.12.mlp.up_proj.weight`), with the
/// tensors around it — those before the layers (embeddings) and those after (`post`: the final
/// norm, the head). T5 and CLIP have two stacks and a module without layers for what the stacks
/// share. A checkpoint's family is chosen from its `config.json` (`model_type`, else the
/// architecture's name) when it has one, else from its tensor names (the family whose layer
/// prefixes name the most tensors); a checkpoint whose layers cannot be told apart — no family
/// matches, or a tensor outside every stack is numbered like a layer (another stack this table
/// does not know) — is refused with the file and the fix.
///
/// Layer-wise recipes use it three ways: slices renumber the layers of a stack (layer i of the
/// output is layer j of a source: same rest of the name), the tensors around a stack are taken
/// from the first slice (before) or the last (after), as mergekit takes its architectures'
/// `pre_weights` and `post_weights`; gradients place a tensor at t = i/(n − 1) within its stack.
/// The layer count is rewritten in the output's config.json under the first of the module's
/// `countKeys` the donor config has.
public struct LayerLayout: Sendable {
    /// One module of a checkpoint.
    public struct Module: Sendable, Equatable {
        /// mergekit's name for it: `default` when the checkpoint has one module.
        public let name: String
        /// The prefix the layer index follows (`model.layers.`); nil for a module without layers.
        public let layerPrefix: String?
        /// One more than the largest layer index present (0 without layers).
        public let layerCount: Int
        /// Config key paths that may hold the layer count, in order of preference.
        let countKeys: [[String]]
        /// Name prefixes of the module's tensors outside the layers (empty: every tensor no other
        /// module claims).
        let owns: [String]
        /// Name prefixes of the tensors that come after the layers.
        let post: [String]
    }

    /// Where one tensor sits.
    public enum Place: Sendable, Equatable {
        /// In layer `index` of module `module`; `suffix` is the rest of the name after `PREFIX.index.`.
        case layer(module: Int, index: Int, suffix: String)
        /// Outside the layers, before them (`after` false: embeddings) or after them (final norm, head).
        case outside(module: Int, after: Bool)
    }

    /// The family's name, for messages ("Llama-style decoder").
    public let family: String
    /// The modules present in the checkpoint, in the family's order.
    public let modules: [Module]

    /// Where `name` sits.
    public func place(of name: String) -> Place {
        for (m, module) in modules.enumerated() {
            if let prefix = module.layerPrefix, let (index, suffix) = Self.layerIndex(name, prefix: prefix) {
                return .layer(module: m, index: index, suffix: suffix)
            }
        }
        let owner = modules.firstIndex { module in module.owns.contains { name.hasPrefix($0) } }
            ?? modules.firstIndex { $0.owns.isEmpty } ?? 0
        return .outside(module: owner, after: modules[owner].post.contains { name.hasPrefix($0) })
    }

    /// The layer tensor of module `module` at `index` with `suffix`.
    public func layerName(module: Int, index: Int, suffix: String) -> String {
        (modules[module].layerPrefix ?? "") + String(index) + "." + suffix
    }

    /// The layer position t of `name` for gradients: i/(n − 1) for layer i of a stack of n (1 when
    /// n = 1), 0 outside the layers — mergekit's rule for a whole-model recipe, where each module
    /// is one slice over all its layers.
    public func t(of name: String) -> Double {
        guard case .layer(let m, let index, _) = place(of: name) else { return 0 }
        let count = modules[m].layerCount
        return count <= 1 ? 1 : Double(index) / Double(count - 1)
    }

    /// The index and the rest of the name when `name` is `prefix` + digits + `.` + rest.
    static func layerIndex(_ name: String, prefix: String) -> (Int, String)? {
        guard name.hasPrefix(prefix) else { return nil }
        let tail = name.utf8.dropFirst(prefix.utf8.count)
        guard let dot = tail.firstIndex(of: UInt8(ascii: ".")), dot > tail.startIndex,
              tail[tail.startIndex..<dot].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              tail.distance(from: tail.startIndex, to: dot) <= 9,
              let index = Int(String(decoding: tail[tail.startIndex..<dot], as: UTF8.self)) else { return nil }
        return (index, String(decoding: tail[tail.index(after: dot)...], as: UTF8.self))
    }
}

extension LayerLayout {
    /// One row of the table.
    struct Family: Sendable {
        struct ModuleSpec: Sendable {
            let name: String
            /// Alternative prefixes of the stack (a checkpoint uses one); empty: no layers.
            let layerPrefixes: [String]
            let countKeys: [[String]]
            let owns: [String]
            let post: [String]
        }

        let name: String
        /// config.json `model_type` values and architecture names that select the family.
        let modelTypes: [String]
        let architectures: [String]
        let modules: [ModuleSpec]
    }

    /// The table. Post prefixes follow mergekit's architecture definitions (`post_weights`).
    static let families: [Family] = [
        Family(name: "Llama-style decoder (model.layers.N.)",
               modelTypes: ["llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
                            "gemma3_text", "phi3", "phi", "cohere", "cohere2", "granite", "olmo", "olmo2", "starcoder2",
                            "stablelm", "internlm2", "deepseek_v2", "deepseek_v3", "glm4", "smollm3", "ministral", "solar"],
               architectures: ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                               "GemmaForCausalLM", "Gemma2ForCausalLM", "Phi3ForCausalLM"],
               modules: [.init(name: "default", layerPrefixes: ["model.layers."], countKeys: [["num_hidden_layers"]], owns: [],
                               post: ["model.norm.", "model.final_layernorm.", "lm_head.", "score.", "output."])]),
        Family(name: "GPT-2-style decoder (transformer.h.N.)",
               modelTypes: ["gpt2", "gptj", "gpt_bigcode", "falcon", "bloom", "qwen", "exaone", "jais", "codegen"],
               architectures: ["GPT2LMHeadModel", "GPT2Model", "FalconForCausalLM", "GPTJForCausalLM", "BloomForCausalLM"],
               modules: [.init(name: "default", layerPrefixes: ["transformer.h."],
                               countKeys: [["n_layer"], ["num_hidden_layers"], ["num_layers"]], owns: [],
                               post: ["transformer.ln_f.", "lm_head.", "score."])]),
        Family(name: "GPT-NeoX decoder (gpt_neox.layers.N.)",
               modelTypes: ["gpt_neox"], architectures: ["GPTNeoXForCausalLM"],
               modules: [.init(name: "default", layerPrefixes: ["gpt_neox.layers."], countKeys: [["num_hidden_layers"]], owns: [],
                               post: ["gpt_neox.final_layer_norm.", "embed_out."])]),
        Family(name: "BERT-style encoder (encoder.layer.N.)",
               modelTypes: ["bert", "roberta", "xlm-roberta", "electra", "camembert"],
               architectures: ["BertModel", "BertForMaskedLM", "BertForSequenceClassification", "RobertaModel"],
               modules: [.init(name: "default",
                               layerPrefixes: ["encoder.layer.", "bert.encoder.layer.", "roberta.encoder.layer.", "electra.encoder.layer."],
                               countKeys: [["num_hidden_layers"]], owns: [],
                               post: ["pooler.", "bert.pooler.", "roberta.pooler.", "cls.", "classifier.", "lm_head.", "qa_outputs."])]),
        Family(name: "T5 encoder-decoder (encoder.block.N., decoder.block.N.)",
               modelTypes: ["t5", "mt5", "umt5"], architectures: ["T5ForConditionalGeneration", "T5Model"],
               modules: [.init(name: "encoder", layerPrefixes: ["encoder.block."], countKeys: [["num_layers"]], owns: ["encoder."],
                               post: ["encoder.final_layer_norm."]),
                         .init(name: "decoder", layerPrefixes: ["decoder.block."], countKeys: [["num_decoder_layers"], ["num_layers"]],
                               owns: ["decoder."], post: ["decoder.final_layer_norm."]),
                         .init(name: "shared", layerPrefixes: [], countKeys: [], owns: [], post: ["lm_head."])]),
        Family(name: "CLIP (text_model.encoder.layers.N., vision_model.encoder.layers.N.)",
               modelTypes: ["clip", "clip_vision_model", "clip_text_model"],
               architectures: ["CLIPModel", "CLIPVisionModel", "CLIPVisionModelWithProjection", "CLIPTextModel"],
               modules: [.init(name: "text_model", layerPrefixes: ["text_model.encoder.layers."],
                               countKeys: [["text_config", "num_hidden_layers"], ["num_hidden_layers"]], owns: ["text_model."],
                               post: ["text_model.final_layer_norm."]),
                         .init(name: "vision_model", layerPrefixes: ["vision_model.encoder.layers."],
                               countKeys: [["vision_config", "num_hidden_layers"], ["num_hidden_layers"]], owns: ["vision_model."],
                               post: ["vision_model.post_layernorm."]),
                         .init(name: "shared", layerPrefixes: [], countKeys: [], owns: [],
                               post: ["text_projection.", "visual_projection."])]),
    ]

    /// The layer naming schemes the table knows, for messages.
    static var knownSchemes: String {
        families.flatMap { $0.modules.flatMap { $0.layerPrefixes.prefix(1).map { $0 + "N." } } }.joined(separator: ", ")
    }

    /// The layout of `checkpoint` (see the type's documentation); `config` is its config.json
    /// when it has one. Throws when no family fits, naming the file and the fix.
    public static func detect(_ checkpoint: Checkpoint, config: JSONValue? = nil) throws(MergeKitError) -> LayerLayout {
        let names = checkpoint.tensorNames
        var chosen: Family?
        var source = "its tensor names"
        if let config {
            let modelType = config["model_type"]?.stringValue
            let architecture = config["architectures"]?.arrayValue?.first?.stringValue
            chosen = families.first { family in
                modelType.map(family.modelTypes.contains) ?? false
            } ?? families.first { family in architecture.map(family.architectures.contains) ?? false }
            if let chosen {
                source = "its config.json (\(modelType.map { "model_type \($0)" } ?? "architecture \(architecture ?? "")"))"
                if !names.contains(where: { name in chosen.modules.contains { $0.layerPrefixes.contains { layerIndex(name, prefix: $0) != nil } } }) {
                    throw MergeKitError(.invalidArgument, file: checkpoint.path,
                        "is a \(chosen.name) by \(source), but none of its tensors is named so",
                        fix: "Give a checkpoint saved by transformers (no wrapper prefix such as base_model.model.)")
                }
            }
        }
        if chosen == nil {
            var best: (family: Family, count: Int)?
            for family in families {
                let count = names.reduce(0) { total, name in
                    total + (family.modules.contains { $0.layerPrefixes.contains { layerIndex(name, prefix: $0) != nil } } ? 1 : 0)
                }
                if count > 0 && count > (best?.count ?? 0) { best = (family, count) }
            }
            chosen = best?.family
        }
        guard let family = chosen else {
            throw MergeKitError(.invalidArgument, file: checkpoint.path,
                "has no layers named in a way MergeKit knows (\(knownSchemes)), so which tensors form each layer cannot be told",
                fix: "Layer-wise recipes (slices, modules, layer gradients) need one of these layouts; merge it whole with models: and per-tensor filters instead")
        }
        // The modules present: a stack with at least one tensor (under the prefix the checkpoint
        // uses), a module without layers that holds a tensor.
        var modules: [Module] = []
        for spec in family.modules {
            if spec.layerPrefixes.isEmpty {
                modules.append(Module(name: spec.name, layerPrefix: nil, layerCount: 0, countKeys: [], owns: spec.owns, post: spec.post))
                continue
            }
            for prefix in spec.layerPrefixes {
                let indices = names.compactMap { layerIndex($0, prefix: prefix)?.0 }
                guard let last = indices.max() else { continue }
                modules.append(Module(name: spec.name, layerPrefix: prefix, layerCount: last + 1, countKeys: spec.countKeys,
                                      owns: spec.owns, post: spec.post))
                break
            }
        }
        var layout = LayerLayout(family: family.name, modules: modules)
        // Modules without layers are kept only when they hold a tensor; one module left is `default`.
        let held = Set(names.compactMap { name -> Int? in
            if case .outside(let m, _) = layout.place(of: name) { return m }
            return nil
        })
        modules = modules.enumerated().filter { $0.element.layerPrefix != nil || held.contains($0.offset) }.map(\.element)
        if modules.count == 1, let only = modules.first {
            modules = [Module(name: "default", layerPrefix: only.layerPrefix, layerCount: only.layerCount, countKeys: only.countKeys,
                              owns: [], post: only.post)]
        }
        layout = LayerLayout(family: family.name, modules: modules)
        // A tensor outside every stack numbered like a layer belongs to a stack the table does not know.
        for name in names {
            guard case .outside = layout.place(of: name), let stack = numberedPrefix(name) else { continue }
            throw MergeKitError(.invalidArgument, file: checkpoint.path, tensor: name,
                "is numbered like a layer of \(stack)N. but is outside the layers of a \(family.name) (chosen by \(source)), so which layer it belongs to cannot be told",
                fix: "Layer-wise recipes (slices, modules, layer gradients) need a layout MergeKit knows; merge it whole with models: and per-tensor filters instead")
        }
        return layout
    }

    /// The prefix before the first inner component of `name` that is a number
    /// (`visual.blocks.3.proj.weight` → `visual.blocks.`), nil when there is none.
    static func numberedPrefix(_ name: String) -> String? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        for i in 1..<max(1, parts.count - 1) where !parts[i].isEmpty && parts[i].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            return parts[0..<i].joined(separator: ".") + "."
        }
        return nil
    }

    /// The checkpoint's config.json, when it is a directory holding one that parses as a JSON
    /// object (nil otherwise: the layout is then told from the tensor names).
    public static func config(of checkpoint: Checkpoint) -> JSONValue? {
        guard let directory = checkpoint.directory else { return nil }
        let path = FileSystem.join(directory, "config.json")
        guard FileSystem.kind(of: path) == .file, let bytes = try? FileSystem.readFile(path),
              let json = try? JSONParser.parse(bytes), case .object = json else { return nil }
        return json
    }
}
