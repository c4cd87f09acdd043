/// CLIP image encoders and task heads with random weights from a seed: the starting point of a
/// model trained from scratch (`merge-cli init encoder`, then `finetune` on a pretext task) and
/// the fixed heads of synthetic tasks (`merge-cli init head`).
///
/// Encoders follow transformers' `CLIPPreTrainedModel._init_weights` for a
/// `CLIPVisionModelWithProjection` with `initializer_factor` f and `initializer_range` r
/// (D = hidden_size, L = num_hidden_layers); every other weight as `nn.Linear`/`nn.LayerNorm` start:
///
/// | tensor | init |
/// |---|---|
/// | `embeddings.class_embedding` | N(0, (D^-½ f)²) |
/// | `embeddings.patch_embedding.weight`, `embeddings.position_embedding.weight` | N(0, (r f)²) |
/// | `self_attn.{q,k,v}_proj.weight` | N(0, (D^-½ (2L)^-½ f)²) |
/// | `self_attn.out_proj.weight` | N(0, (D^-½ f)²) |
/// | `mlp.fc1.weight` | N(0, ((2D)^-½ f)²) |
/// | `mlp.fc2.weight` | N(0, (D^-½ (2L)^-½ f)²) |
/// | `visual_projection.weight` | N(0, (D^-½ f)²) |
/// | every bias | 0 |
/// | every LayerNorm weight | 1 |
///
/// Each tensor draws from its own stream, SplitMix64 + Box–Muller (`GaussianGenerator`) seeded by
/// mix(seed ⊕ mix(FNV-1a of the tensor's name)), in row-major order: a tensor's values depend on the
/// seed and its name only, not on the other tensors or the order they are made in.
public enum RandomInitialization {
    /// A random encoder with `config`'s shape (validated by the caller), named as
    /// `CLIPVisionModelWithProjection` saves it (`vision_model.…` and `visual_projection.weight`).
    public static func encoder(config: CLIPVisionConfig, seed: UInt64, factor: Double = 1,
                               initializerRange: Double = 0.02) -> CLIPVisionParameters {
        let parameters = CLIPVisionParameters(config: config)
        for tensor in parameters.tensors {
            let local = String(tensor.name.dropFirst(tensor.name.hasPrefix(parameters.prefix) ? parameters.prefix.count : 0))
            let values: [Float]
            switch initialization(of: local, config: config, factor: factor, range: initializerRange) {
            case .constant(let value):
                values = [Float](repeating: value, count: tensor.count)
            case .normal(let std):
                var generator = GaussianGenerator(seed: stream(seed: seed, name: tensor.name))
                values = (0..<tensor.count).map { _ in Float(std * generator.next()) }
            }
            parameters.setValues(values, of: tensor.name)
        }
        return parameters
    }

    /// How one tensor starts.
    enum Initialization: Equatable {
        case constant(Float)
        case normal(std: Double)
    }

    /// The initialization of tensor `local` (its name without the `vision_model.` prefix).
    static func initialization(of local: String, config: CLIPVisionConfig, factor f: Double, range r: Double) -> Initialization {
        let d = Double(config.hiddenSize), layers = Double(config.numHiddenLayers)
        let inner = 1 / d.squareRoot() / (2 * layers).squareRoot() * f
        if local.hasSuffix(".bias") { return .constant(0) }
        if local.hasSuffix("norm1.weight") || local.hasSuffix("norm2.weight") || local.hasSuffix("layrnorm.weight")
            || local.hasSuffix("layernorm.weight") {
            return .constant(1)
        }
        if local == "embeddings.class_embedding" || local.hasSuffix("out_proj.weight") || local == "visual_projection.weight" {
            return .normal(std: f / d.squareRoot())
        }
        if local.hasPrefix("embeddings.") { return .normal(std: r * f) }
        if local.hasSuffix("mlp.fc1.weight") { return .normal(std: f / (2 * d).squareRoot()) }
        return .normal(std: inner)  // q, k, v projections and mlp.fc2
    }

    /// A random task head [classes, dimension]: rows drawn from N(0, I) (the stream of tensor
    /// `weight`, as the encoder's tensors), each scaled to length `scale` (a unit text embedding ×
    /// exp(logit_scale) in CLIP's zero-shot heads).
    public static func head(classes: Int, dimension: Int, seed: UInt64, scale: Double) -> TaskHead {
        var generator = GaussianGenerator(seed: stream(seed: seed, name: "weight"))
        var weight = [Float](repeating: 0, count: classes * dimension)
        for c in 0..<classes {
            let row = (0..<dimension).map { _ in generator.next() }
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for i in 0..<dimension { weight[c * dimension + i] = Float(row[i] / norm * scale) }
        }
        return TaskHead(weight: weight, classes: classes, dimension: dimension)
    }

    /// The seed of tensor `name`'s stream.
    static func stream(seed: UInt64, name: String) -> UInt64 {
        CounterRandom.mix(seed ^ CounterRandom.mix(CounterRandom.fnv1a(name)))
    }
}

extension CLIPVisionParameters {
    /// Writes these parameters (F32) as a model directory: `model.safetensors` and a generated
    /// `config.json` (a `CLIPVisionConfig`, model_type `clip_vision_model`). Atomic; the output is
    /// checked against `inputs` by `OutputGuard`. A path ending in `.safetensors` is refused: the
    /// engine needs the config.json next to the weights.
    @discardableResult
    public func save(directory path: String, metadata: [String: String] = [:], overwrite: Bool = false,
                     inputs: [String] = []) throws(MergeKitError) -> [OutputNote] {
        guard !OutputGuard.isFileOutput(path) else {
            throw MergeKitError(.invalidArgument, file: path, "is a .safetensors file; an encoder is written as a model directory (config.json + model.safetensors)",
                fix: "Give a directory path, e.g. ./model")
        }
        let tensors = self.tensors.map { (name: $0.name, shape: $0.shape, values: UnsafePointer(storage.pointer + $0.offset)) }
        return try FloatCheckpointWriter.save(tensors, metadata: ["format": "pt"].merging(metadata) { _, new in new }, to: path,
                                              overwrite: overwrite, inputs: inputs,
                                              generated: ["config.json": Array((config.json.serialized(indent: 2) + "\n").utf8)])
    }
}

extension TaskHead {
    /// Writes the head as a safetensors file with `weight` [classes, E] (and `bias` when it has one),
    /// F32. Atomic; the output is checked against `inputs` by `OutputGuard`.
    @discardableResult
    public func save(to path: String, metadata: [String: String] = [:], overwrite: Bool = false,
                     inputs: [String] = []) throws(MergeKitError) -> [OutputNote] {
        guard OutputGuard.isFileOutput(path) else {
            throw MergeKitError(.invalidArgument, file: path, "is not a .safetensors path; a head is one safetensors file",
                fix: "Give a path ending in .safetensors, e.g. head.safetensors")
        }
        return try weight.withUnsafeBufferPointer { w throws(MergeKitError) in
            try (bias ?? []).withUnsafeBufferPointer { b throws(MergeKitError) in
                var tensors: [FloatCheckpointWriter.Tensor] = [(name: "weight", shape: [classes, dimension], values: w.baseAddress!)]
                if bias != nil { tensors.append((name: "bias", shape: [classes], values: b.baseAddress!)) }
                return try FloatCheckpointWriter.save(tensors, metadata: ["format": "pt"].merging(metadata) { _, new in new }, to: path,
                                                      overwrite: overwrite, inputs: inputs)
            }
        }
    }
}
