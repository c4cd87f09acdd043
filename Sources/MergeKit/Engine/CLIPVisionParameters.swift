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

    /// A zero-filled set of parameters with this layout.
    public init(config: CLIPVisionConfig, prefix: String = "vision_model.", projectionName: String? = "visual_projection.weight") {
        self.config = config
        self.prefix = prefix
        self.projectionName = projectionName
        var tensors: [Tensor] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) {
            tensors.append(Tensor(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        for (local, shape) in CLIPVisionParameters.localNames(config) {
            add(prefix + local, shape)
        }
        if let projectionName { add(projectionName, [config.projectionDim, config.hiddenSize]) }
        self.tensors = tensors
        storage = FloatBuffer(count: offset)
        var index: [String: Int] = [:]
        for (i, tensor) in tensors.enumerated() { index[tensor.name] = i }
        self.index = index
    }

    /// A zero-filled set with the same layout as `other`.
    public convenience init(zerosLike other: CLIPVisionParameters) {
        self.init(config: other.config, prefix: other.prefix, projectionName: other.projectionName)
    }

    /// The encoder's tensors without prefix, in state-dict order, with their shapes.
    static func localNames(_ c: CLIPVisionConfig) -> [(String, [Int])] {
        let d = c.hiddenSize, f = c.intermediateSize
        var names: [(String, [Int])] = [
            ("embeddings.class_embedding", [d]),
            ("embeddings.patch_embedding.weight", [d, c.numChannels, c.patchSize, c.patchSize]),
            ("embeddings.position_embedding.weight", [c.numTokens, d]),
            ("pre_layrnorm.weight", [d]), ("pre_layrnorm.bias", [d]),
        ]
        for i in 0..<c.numHiddenLayers {
            let layer = "encoder.layers.\(i)."
            for projection in ["k_proj", "v_proj", "q_proj", "out_proj"] {
                names.append((layer + "self_attn.\(projection).weight", [d, d]))
                names.append((layer + "self_attn.\(projection).bias", [d]))
            }
            names += [(layer + "layer_norm1.weight", [d]), (layer + "layer_norm1.bias", [d]),
                      (layer + "mlp.fc1.weight", [f, d]), (layer + "mlp.fc1.bias", [f]),
                      (layer + "mlp.fc2.weight", [d, f]), (layer + "mlp.fc2.bias", [d]),
                      (layer + "layer_norm2.weight", [d]), (layer + "layer_norm2.bias", [d])]
        }
        names += [("post_layernorm.weight", [d]), ("post_layernorm.bias", [d])]
        return names
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

    /// Loads every tensor of the encoder from `checkpoint` (F32, F16, BF16 or F64, converted to
    /// Float). The prefix and the projection are found from the checkpoint's names; tensors of
    /// other towers (a `CLIPModel`'s text model, `logit_scale`) are ignored.
    public static func load(from checkpoint: Checkpoint, config: CLIPVisionConfig) throws(MergeKitError) -> CLIPVisionParameters {
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
        let parameters = CLIPVisionParameters(config: config, prefix: prefix, projectionName: projection)
        for tensor in parameters.tensors {
            guard let entry = checkpoint.entry(named: tensor.name) else {
                throw MergeKitError(.missingTensor, file: checkpoint.path, tensor: tensor.name,
                    "is missing; a CLIP image encoder with this config.json needs it",
                    fix: "Check that config.json belongs to these weights")
            }
            try parameters.read(entry, into: tensor, file: checkpoint.path)
        }
        return parameters
    }

    /// A direction Δθ in this layout from a checkpoint holding some of its tensors (a task-vector
    /// file; transformers' names with or without the `vision_model.` prefix). Tensors the file
    /// lacks are zero; tensors of the file that are not parameters of this encoder are ignored.
    /// At least one tensor must match.
    public func direction(from checkpoint: Checkpoint) throws(MergeKitError) -> CLIPVisionParameters {
        let result = CLIPVisionParameters(zerosLike: self)
        var matched = 0
        for tensor in tensors {
            var candidates = [tensor.name]
            if tensor.name == projectionName {
                candidates.append("visual_projection.weight")
            } else {
                let local = String(tensor.name.dropFirst(prefix.count))
                candidates += ["vision_model." + local, local]
            }
            guard let entry = candidates.lazy.compactMap({ checkpoint.entry(named: $0) }).first else { continue }
            try result.read(entry, into: tensor, file: checkpoint.path)
            matched += 1
        }
        if matched == 0 {
            throw MergeKitError(.missingTensor, file: checkpoint.path,
                "holds none of the image encoder's \(tensors.count) tensors (such as \(tensors[1].name))",
                fix: "Pass a task vector or checkpoint of this CLIP image encoder")
        }
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

    private func read(_ entry: Checkpoint.Entry, into tensor: Tensor, file: String) throws(MergeKitError) {
        guard DType.mergeableTypes.contains(entry.info.dtype) else {
            throw MergeKitError(.dtypeMismatch, file: file, tensor: entry.name,
                "is \(entry.info.dtype.rawValue); the engine reads F32, F16, BF16 and F64 weights")
        }
        guard entry.info.shape == tensor.shape else {
            throw MergeKitError(.shapeMismatch, file: file, tensor: entry.name,
                "has shape \(entry.info.shape) but the model's config.json implies \(tensor.shape)",
                fix: "Check that config.json belongs to these weights")
        }
        let bytes = entry.file.bytes(of: entry.info)
        if tensor.count > 0 {
            Float.load(bytes.baseAddress!, dtype: entry.info.dtype, count: tensor.count, into: storage.pointer + tensor.offset)
        }
    }
}
