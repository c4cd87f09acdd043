/// Every parameter tensor of a CLIP image encoder, in one flat Float32 buffer, in the state-dict
/// order of transformers' `CLIPVisionModelWithProjection`, with their names and shapes.
///
/// The same type holds weights θ, directions Δθ (JVP tangents, task vectors) and gradients ∂L/∂θ,
/// so the three always share one layout and the layers address them through the same views.
///
/// Names are those of the checkpoint the weights came from: `<prefix>embeddings.class_embedding`,
/// `<prefix>encoder.layers.{i}.self_attn.q_proj.weight`, …, and `visual_projection.weight`, where
/// the prefix is `vision_model.` for `CLIPVisionModelWithProjection` and `CLIPModel` checkpoints.
public final class CLIPVisionParameters: @unchecked Sendable {
    /// One named tensor of the layout.
    public struct Tensor: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        /// Element offset in the flat buffer.
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let config: CLIPVisionConfig
    /// The tensors in state-dict order.
    public let tensors: [Tensor]
    /// Prefix of the encoder's tensor names (`vision_model.` or empty).
    public let prefix: String
    /// Name of the projection to the embedding space, or nil for a `CLIPVisionModel` without one
    /// (the embedding is then the pooled output itself).
    public let projectionName: String?
    let storage: FloatBuffer
    private let index: [String: Int]

    /// Tensors of the file the parameters were loaded from that the model does not use (only
    /// when loading was told to allow them; otherwise they are an error).
    public internal(set) var ignoredTensors: [String] = []

    /// A zero-filled set of parameters with this layout.
    public init(config: CLIPVisionConfig, prefix: String = "vision_model.", projectionName: String? = "visual_projection.weight") {
        self.config = config
        self.prefix = prefix
        self.projectionName = projectionName
        let tensors = CLIPVisionParameters.layout(config, prefix: prefix, projectionName: projectionName)
        self.tensors = tensors
        storage = FloatBuffer(count: tensors.last.map { $0.offset + $0.count } ?? 0)
        var index: [String: Int] = [:]
        for (i, tensor) in tensors.enumerated() { index[tensor.name] = i }
        self.index = index
    }

    /// A zero-filled set with the same layout as `other`.
    public convenience init(zerosLike other: CLIPVisionParameters) {
        self.init(config: other.config, prefix: other.prefix, projectionName: other.projectionName)
    }

    /// The tensors of an encoder with `config` (validated), in state-dict order, with their
    /// offsets in the flat buffer; computed without allocating the buffer.
    static func layout(_ config: CLIPVisionConfig, prefix: String, projectionName: String?) -> [Tensor] {
        var tensors: [Tensor] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) {
            tensors.append(Tensor(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        for (local, shape) in localNames(config) { add(prefix + local, shape) }
        if let projectionName { add(projectionName, [config.projectionDim, config.hiddenSize]) }
        return tensors
    }

    /// The encoder's tensors without prefix, in state-dict order, with their shapes.
    static func localNames(_ c: CLIPVisionConfig) -> [(String, [Int])] {
        stemNames(c) + (0..<c.numHiddenLayers).flatMap { layerNames(c, $0) } + headNames(c)
    }

    /// The embeddings and `pre_layrnorm`.
    private static func stemNames(_ c: CLIPVisionConfig) -> [(String, [Int])] {
        let d = c.hiddenSize
        return [("embeddings.class_embedding", [d]),
                ("embeddings.patch_embedding.weight", [d, c.numChannels, c.patchSize, c.patchSize]),
                ("embeddings.position_embedding.weight", [c.numTokens, d]),
                ("pre_layrnorm.weight", [d]), ("pre_layrnorm.bias", [d])]
    }

    /// Encoder layer `i`.
    private static func layerNames(_ c: CLIPVisionConfig, _ i: Int) -> [(String, [Int])] {
        let d = c.hiddenSize, f = c.intermediateSize
        let layer = "encoder.layers.\(i)."
        var names: [(String, [Int])] = []
        for projection in ["k_proj", "v_proj", "q_proj", "out_proj"] {
            names.append((layer + "self_attn.\(projection).weight", [d, d]))
            names.append((layer + "self_attn.\(projection).bias", [d]))
        }
        return names + [(layer + "layer_norm1.weight", [d]), (layer + "layer_norm1.bias", [d]),
                        (layer + "mlp.fc1.weight", [f, d]), (layer + "mlp.fc1.bias", [f]),
                        (layer + "mlp.fc2.weight", [d, f]), (layer + "mlp.fc2.bias", [d]),
                        (layer + "layer_norm2.weight", [d]), (layer + "layer_norm2.bias", [d])]
    }

    /// `post_layernorm`.
    private static func headNames(_ c: CLIPVisionConfig) -> [(String, [Int])] {
        [("post_layernorm.weight", [c.hiddenSize]), ("post_layernorm.bias", [c.hiddenSize])]
    }

    /// The number of parameters of an encoder with `config` (with `visual_projection` when
    /// `projection`), with overflow-checked arithmetic and without listing every layer: nil when
    /// it does not fit in an `Int`. `CLIPVisionConfig.validate` refuses configs where it is nil.
    static func parameterCount(_ config: CLIPVisionConfig, projection: Bool) -> Int? {
        func total(_ shapes: [[Int]]) -> Int? {
            var sum = 0
            for shape in shapes {
                guard let n = CLIPVisionConfig.checkedProduct(shape) else { return nil }
                let (next, overflow) = sum.addingReportingOverflow(n)
                if overflow { return nil }
                sum = next
            }
            return sum
        }
        var shapes = (stemNames(config) + headNames(config)).map(\.1)
        if projection { shapes.append([config.projectionDim, config.hiddenSize]) }
        guard let fixed = total(shapes), let layer = total(layerNames(config, 0).map(\.1)),
              let layers = CLIPVisionConfig.checkedProduct([layer, config.numHiddenLayers]) else { return nil }
        let (sum, overflow) = fixed.addingReportingOverflow(layers)
        return overflow ? nil : sum
    }

    /// Total number of parameters.
    public var count: Int { storage.count }
    public var names: [String] { tensors.map(\.name) }

    public func tensor(named name: String) -> Tensor? { index[name].map { tensors[$0] } }

    /// The values of tensor `name`, or nil if the layout has no such tensor.
    public func values(of name: String) -> [Float]? {
        guard let t = tensor(named: name) else { return nil }
        return Array(UnsafeBufferPointer(start: storage.pointer + t.offset, count: t.count))
    }

    /// Overwrites tensor `name` (which must exist, with `values.count` elements).
    public func setValues(_ values: [Float], of name: String) {
        guard let t = tensor(named: name) else { preconditionFailure("no tensor \(name) in the layout") }
        precondition(values.count == t.count, "\(name) has \(t.count) elements, not \(values.count)")
        values.withUnsafeBufferPointer { (storage.pointer + t.offset).update(from: $0.baseAddress!, count: t.count) }
    }

    /// All parameters as one flat array, in layout order.
    public var flat: [Float] { storage.array }

    /// A copy with the same layout.
    public func copy() -> CLIPVisionParameters {
        let result = CLIPVisionParameters(zerosLike: self)
        result.storage.pointer.update(from: storage.pointer, count: count)
        return result
    }

    /// Whether `other` has exactly this layout (names, shapes, offsets).
    public func hasSameLayout(as other: CLIPVisionParameters) -> Bool {
        tensors == other.tensors
    }

    /// self ← self + α·other (same layout).
    public func add(_ other: CLIPVisionParameters, scale alpha: Float = 1) {
        precondition(hasSameLayout(as: other), "parameter layouts differ")
        Float.axpy(alpha, UnsafeBufferPointer(other.storage.buffer), storage.buffer)
    }

    func pointer(_ name: String) -> UnsafeMutablePointer<Float> {
        guard let t = tensor(named: name) else { preconditionFailure("no tensor \(name) in the layout") }
        return storage.pointer + t.offset
    }

    /// Whether every element of tensor `name` is zero (+0 or −0).
    func isZero(_ name: String) -> Bool {
        guard let t = tensor(named: name) else { preconditionFailure("no tensor \(name) in the layout") }
        let base = storage.pointer + t.offset
        for i in 0..<t.count where base[i] != 0 { return false }
        return true
    }

    /// Pointers to every layer's tensors.
    var views: CLIPVisionParameterViews { makeViews(markingZeros: false) }

    /// The views of a JVP direction: tensors that are all zeros (those a partial direction lacks)
    /// are marked, so that the JVP skips their GEMMs, and whole layers while the tangent is still 0.
    var directionViews: CLIPVisionParameterViews { makeViews(markingZeros: true) }

    private func makeViews(markingZeros: Bool) -> CLIPVisionParameterViews {
        let c = config
        let d = c.hiddenSize, f = c.intermediateSize
        func p(_ local: String) -> UnsafeMutablePointer<Float> { pointer(prefix + local) }
        func zero(_ local: String) -> Bool { markingZeros && isZero(prefix + local) }
        func linear(_ local: String, _ inputs: Int, _ outputs: Int) -> LinearParameters {
            LinearParameters(weight: p(local + ".weight"), bias: p(local + ".bias"), inputs: inputs, outputs: outputs,
                             weightIsZero: zero(local + ".weight"), biasIsZero: zero(local + ".bias"))
        }
        func norm(_ local: String) -> LayerNormParameters {
            LayerNormParameters(weight: p(local + ".weight"), bias: p(local + ".bias"), dim: d,
                                isZero: zero(local + ".weight") && zero(local + ".bias"))
        }
        let layers = (0..<c.numHiddenLayers).map { i in
            let layer = "encoder.layers.\(i)."
            return EncoderLayerParameters(
                layerNorm1: norm(layer + "layer_norm1"),
                attention: SelfAttentionParameters(q: linear(layer + "self_attn.q_proj", d, d), k: linear(layer + "self_attn.k_proj", d, d),
                                                   v: linear(layer + "self_attn.v_proj", d, d), out: linear(layer + "self_attn.out_proj", d, d)),
                layerNorm2: norm(layer + "layer_norm2"),
                mlp: MLPParameters(fc1: linear(layer + "mlp.fc1", d, f), fc2: linear(layer + "mlp.fc2", f, d)))
        }
        return CLIPVisionParameterViews(
            embeddings: EmbeddingParameters(classEmbedding: p("embeddings.class_embedding"),
                                            patchWeight: p("embeddings.patch_embedding.weight"),
                                            positionEmbedding: p("embeddings.position_embedding.weight"),
                                            patchWeightIsZero: zero("embeddings.patch_embedding.weight"),
                                            isZero: zero("embeddings.patch_embedding.weight") && zero("embeddings.class_embedding")
                                                && zero("embeddings.position_embedding.weight")),
            preLayerNorm: norm("pre_layrnorm"),
            layers: layers,
            postLayerNorm: norm("post_layernorm"),
            projection: projectionName.map {
                LinearParameters(weight: pointer($0), bias: nil, inputs: d, outputs: c.projectionDim,
                                 weightIsZero: markingZeros && isZero($0))
            })
    }
}

/// Pointers to the tensors of every layer inside one `CLIPVisionParameters` buffer.
struct CLIPVisionParameterViews {
    var embeddings: EmbeddingParameters
    var preLayerNorm: LayerNormParameters
    var layers: [EncoderLayerParameters]
    var postLayerNorm: LayerNormParameters
    var projection: LinearParameters?
}

// MARK: - Loading

extension CLIPVisionParameters {
    /// Suffix that identifies the image encoder's tensors (only the vision tower has a patch embedding).
    static let anchorName = "embeddings.patch_embedding.weight"

    /// Whether a tensor the engine does not read belongs to something else than the image encoder
    /// and may be left aside without a word: the other towers of a `CLIPModel` (`text_model.…`,
    /// `text_projection`, `logit_scale`) and the `position_ids` index buffer older transformers
    /// saved with the embeddings. Every other tensor the model does not use is an error (a config
    /// with fewer layers than the weights, a head the engine does not run) unless allowed.
    static func isOtherTower(_ name: String) -> Bool {
        name.hasPrefix("text_model.") || name.contains(".text_model.") || name.hasSuffix("text_projection.weight")
            || name.hasSuffix("text_projection.bias") || name == "logit_scale" || name.hasSuffix(".logit_scale")
            || name.hasSuffix("embeddings.position_ids")
    }

    /// The tensors of `checkpoint` outside `used` and not of another tower, in file order: what
    /// the model would silently ignore. Throws unless `allowUnused` when there are any.
    static func unusedTensors(of checkpoint: Checkpoint, used: Set<String>, allowUnused: Bool, fix: String) throws(MergeKitError) -> [String] {
        let unused = checkpoint.tensorNames.filter { !used.contains($0) && !isOtherTower($0) }
        if let first = unused.first, !allowUnused {
            let more = unused.count > 1 ? " and \(unused.count - 1) more (\(unused.dropFirst().prefix(3).joined(separator: ", "))\(unused.count > 4 ? ", …" : ""))" : ""
            throw MergeKitError(.extraTensor, file: checkpoint.path, tensor: first,
                "is not used by the model that config.json describes\(more)",
                fix: "\(fix), or \(term: .allowUnused) to ignore such tensors")
        }
        return unused
    }

    /// Where the image encoder sits in `checkpoint`: the prefix of its tensor names and the name
    /// of its projection (nil without one).
    static func locate(in checkpoint: Checkpoint) throws(MergeKitError) -> (prefix: String, projection: String?) {
        let anchors = checkpoint.tensorNames.filter { $0.hasSuffix(anchorName) && !$0.contains("text_model") }
        guard let anchor = anchors.first else {
            throw MergeKitError(.missingTensor, file: checkpoint.path, tensor: "vision_model." + anchorName,
                "holds no CLIP image encoder (no tensor named …\(anchorName))",
                fix: "Point at a CLIPVisionModel, CLIPVisionModelWithProjection or CLIPModel checkpoint")
        }
        guard anchors.count == 1 else {
            throw MergeKitError(.ambiguousCheckpoint, file: checkpoint.path,
                "holds several image encoders (\(anchors.joined(separator: ", ")))", fix: "Extract one encoder first")
        }
        let prefix = String(anchor.dropLast(anchorName.count))
        // `visual_projection` sits next to `vision_model` (CLIPVisionModelWithProjection, CLIPModel).
        let outer = prefix.hasSuffix("vision_model.") ? String(prefix.dropLast("vision_model.".count)) : prefix
        let projection = [outer + "visual_projection.weight", "visual_projection.weight"].first { checkpoint.entry(named: $0) != nil }
        return (prefix, projection)
    }

    /// Checks `checkpoint` against the encoder `config` describes, from its header alone (nothing
    /// is allocated or read): every tensor of the layout is present, a float, of the implied shape,
    /// and no tensor of the checkpoint is left unused (`unusedTensors`). Returns the layout and the
    /// unused tensors (empty unless `allowUnused`).
    static func check(_ checkpoint: Checkpoint, config: CLIPVisionConfig,
                      allowUnused: Bool) throws(MergeKitError) -> (layout: CLIPVisionParameters.Layout, unused: [String]) {
        let (prefix, projection) = try locate(in: checkpoint)
        let tensors = layout(config, prefix: prefix, projectionName: projection)
        for tensor in tensors {
            guard let entry = checkpoint.entry(named: tensor.name) else {
                throw MergeKitError(.missingTensor, file: checkpoint.path, tensor: tensor.name,
                    "is missing; a CLIP image encoder with this config.json needs it",
                    fix: "Check that config.json belongs to these weights")
            }
            try check(entry, against: tensor, file: checkpoint.path)
        }
        let unused = try unusedTensors(of: checkpoint, used: Set(tensors.map(\.name)), allowUnused: allowUnused,
                                       fix: "Check that config.json (num_hidden_layers and the sizes) belongs to these weights")
        return (Layout(config: config, prefix: prefix, projectionName: projection), unused)
    }

    /// Where an encoder's tensors sit in a checkpoint: enough to build its parameters.
    struct Layout {
        let config: CLIPVisionConfig
        let prefix: String
        let projectionName: String?
    }

    /// Loads every tensor of the encoder from `checkpoint` (F32, F16, BF16 or F64, converted to
    /// Float). The prefix and the projection are found from the checkpoint's names; tensors of
    /// other towers (a `CLIPModel`'s text model, `logit_scale`) are ignored. Every tensor is
    /// checked against the layout before the parameters are allocated (`check`); a tensor the model
    /// does not use is an error unless `allowUnused` (then it is listed in `ignoredTensors`).
    public static func load(from checkpoint: Checkpoint, config: CLIPVisionConfig,
                            allowUnused: Bool = false) throws(MergeKitError) -> CLIPVisionParameters {
        let (layout, unused) = try check(checkpoint, config: config, allowUnused: allowUnused)
        let parameters = CLIPVisionParameters(config: config, prefix: layout.prefix, projectionName: layout.projectionName)
        for tensor in parameters.tensors {
            parameters.read(checkpoint.entry(named: tensor.name)!, into: tensor)
        }
        parameters.ignoredTensors = unused
        return parameters
    }

    /// A direction Δθ in this layout from a checkpoint holding some of its tensors (a task-vector
    /// file; transformers' names with or without the `vision_model.` prefix). Tensors the file
    /// lacks are zero. At least one tensor must match; the file's tensors that are not parameters
    /// of this encoder are an error unless `allowUnused` (other towers excepted, see
    /// `isOtherTower`). Everything is checked before the direction is allocated.
    public func direction(from checkpoint: Checkpoint, allowUnused: Bool = false) throws(MergeKitError) -> CLIPVisionParameters {
        var matches: [(Checkpoint.Entry, Tensor)] = []
        for tensor in tensors {
            var candidates = [tensor.name]
            if tensor.name == projectionName {
                candidates.append("visual_projection.weight")
            } else {
                let local = String(tensor.name.dropFirst(prefix.count))
                candidates += ["vision_model." + local, local]
            }
            guard let entry = candidates.lazy.compactMap({ checkpoint.entry(named: $0) }).first else { continue }
            try CLIPVisionParameters.check(entry, against: tensor, file: checkpoint.path)
            matches.append((entry, tensor))
        }
        if matches.isEmpty {
            throw MergeKitError(.missingTensor, file: checkpoint.path,
                "holds none of the image encoder's \(tensors.count) tensors (such as \(tensors[1].name))",
                fix: "Pass a task vector or checkpoint of this CLIP image encoder")
        }
        let unused = try CLIPVisionParameters.unusedTensors(of: checkpoint, used: Set(matches.map(\.0.name)), allowUnused: allowUnused,
                                                            fix: "Pass a task vector of this encoder (the base's config.json and layers)")
        let result = CLIPVisionParameters(zerosLike: self)
        for (entry, tensor) in matches { result.read(entry, into: tensor) }
        result.ignoredTensors = unused
        return result
    }

    /// θ − θ₀ for two parameter sets of one architecture (a task vector): the direction of a
    /// linearized model. Throws when the layouts differ.
    public static func difference(_ model: CLIPVisionParameters, _ base: CLIPVisionParameters,
                                  file: String? = nil) throws(MergeKitError) -> CLIPVisionParameters {
        guard model.config == base.config, model.tensors.map(\.shape) == base.tensors.map(\.shape),
              (model.projectionName == nil) == (base.projectionName == nil) else {
            throw MergeKitError(.shapeMismatch, file: file,
                "is not the same architecture as the base (config.json or tensors differ)",
                fix: "The model must be a fine-tune of the base")
        }
        let result = model.copy()
        Float.axpy(-1, UnsafeBufferPointer(base.storage.buffer), result.storage.buffer)
        return result
    }

    /// Checks that `entry` can fill `tensor`: a float dtype and the same shape.
    static func check(_ entry: Checkpoint.Entry, against tensor: Tensor, file: String) throws(MergeKitError) {
        guard DType.mergeableTypes.contains(entry.info.dtype) else {
            throw MergeKitError(.dtypeMismatch, file: file, tensor: entry.name,
                "is \(entry.info.dtype.rawValue); the engine reads F32, F16, BF16 and F64 weights")
        }
        guard entry.info.shape == tensor.shape else {
            throw MergeKitError(.shapeMismatch, file: file, tensor: entry.name,
                "has shape \(entry.info.shape) but the model's config.json implies \(tensor.shape)",
                fix: "Check that config.json belongs to these weights")
        }
    }

    /// Converts `entry` (checked by `check(_:against:file:)`) into `tensor`'s slot.
    private func read(_ entry: Checkpoint.Entry, into tensor: Tensor) {
        let bytes = entry.file.bytes(of: entry.info)
        if tensor.count > 0 {
            Float.load(bytes.baseAddress!, dtype: entry.info.dtype, count: tensor.count, into: storage.pointer + tensor.offset)
        }
    }
}
