/// The shape of a CLIP image encoder, as Hugging Face's `CLIPVisionConfig` describes it.
///
/// Read from a model directory's `config.json`: either a `CLIPVisionConfig` (model_type
/// `clip_vision_model`, as `CLIPVisionModel(WithProjection).save_pretrained` writes) or a full
/// `CLIPConfig` (model_type `clip`), whose `vision_config` holds the encoder and whose top-level
/// `projection_dim` sizes `visual_projection`. Missing keys take transformers' defaults, which are
/// those of ViT-B/32 (`CLIPVisionConfig.vitB32`).
public struct CLIPVisionConfig: Sendable, Equatable {
    /// Width D of the residual stream (768 for ViT-B/32).
    public var hiddenSize: Int
    /// Width of the MLP's hidden layer (3072).
    public var intermediateSize: Int
    /// Number of encoder layers (12).
    public var numHiddenLayers: Int
    /// Number of attention heads; D must be a multiple of it (12).
    public var numAttentionHeads: Int
    /// Image channels (3).
    public var numChannels: Int
    /// Height and width of the (square) input images in pixels (224).
    public var imageSize: Int
    /// Side of a square patch, also the patch convolution's stride (32).
    public var patchSize: Int
    /// Width of `visual_projection`'s output, the image embedding (512).
    public var projectionDim: Int
    /// The MLP activation (`quick_gelu` for OpenAI's CLIP).
    public var hiddenAct: CLIPActivation
    /// ε added to the variance in every LayerNorm (1e-5).
    public var layerNormEps: Float

    public init(hiddenSize: Int = 768, intermediateSize: Int = 3072, numHiddenLayers: Int = 12,
                numAttentionHeads: Int = 12, numChannels: Int = 3, imageSize: Int = 224, patchSize: Int = 32,
                projectionDim: Int = 512, hiddenAct: CLIPActivation = .quickGELU, layerNormEps: Float = 1e-5) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numChannels = numChannels
        self.imageSize = imageSize
        self.patchSize = patchSize
        self.projectionDim = projectionDim
        self.hiddenAct = hiddenAct
        self.layerNormEps = layerNormEps
    }

    /// OpenAI's CLIP ViT-B/32 image encoder, the papers' model (docs/METHODS.md §6).
    public static let vitB32 = CLIPVisionConfig()

    /// D / heads.
    public var headDim: Int { hiddenSize / numAttentionHeads }
    /// Patches per image side; pixels past the last whole patch are ignored, as by the strided
    /// convolution.
    public var gridSize: Int { imageSize / patchSize }
    /// Patches per image.
    public var numPatches: Int { gridSize * gridSize }
    /// Tokens per image: the class token, then the patches in row-major order.
    public var numTokens: Int { numPatches + 1 }
    /// Inputs of one patch: channels × patch × patch.
    public var patchInputs: Int { numChannels * patchSize * patchSize }
    /// Floats of one preprocessed image, [channels, image, image].
    public var pixelsPerImage: Int { numChannels * imageSize * imageSize }

    /// The largest value of each size field the engine accepts. Far beyond any released CLIP
    /// image encoder (ViT-bigG/14: hidden 1664, MLP 8192, 48 layers, 224-pixel images), and small
    /// enough that every parameter tensor, the whole parameter count and its bytes fit in an `Int`.
    /// Sizes derived from several fields (the tokens of an image, its attention matrix) are
    /// checked with overflow-checked arithmetic on top.
    public static let limits: [(key: String, max: Int)] = [
        ("hidden_size", 1 << 16), ("intermediate_size", 1 << 18), ("num_hidden_layers", 1 << 12),
        ("num_attention_heads", 1 << 16), ("num_channels", 1 << 10), ("image_size", 1 << 16),
        ("patch_size", 1 << 16), ("projection_dim", 1 << 16),
    ]

    /// The size fields by their config.json names.
    var sizeFields: [(key: String, value: Int)] {
        [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", numHiddenLayers),
         ("num_attention_heads", numAttentionHeads), ("num_channels", numChannels), ("image_size", imageSize),
         ("patch_size", patchSize), ("projection_dim", projectionDim)]
    }

    /// Checks that the sizes describe a model the engine can run: every size field between 1 and
    /// its limit (`limits`), `hidden_size` a multiple of `num_attention_heads`, `patch_size` at
    /// most `image_size` (pixels past the last whole patch are ignored, as by transformers'
    /// strided convolution), `layer_norm_eps` finite and ≥ 0, and every derived size (tokens per
    /// image, num_attention_heads × tokens² floats of one image's attention, every parameter
    /// tensor and their total, in bytes) representable. Messages name the field.
    public func validate(file: String? = nil) throws(MergeKitError) {
        func bad(_ detail: String) -> MergeKitError {
            MergeKitError(.invalidArgument, file: file, detail, fix: "Check the model's config.json")
        }
        let values = Dictionary(uniqueKeysWithValues: sizeFields.map { ($0.key, $0.value) })
        for (key, limit) in CLIPVisionConfig.limits {
            let value = values[key]!
            if value < 1 { throw bad("\(key) is \(value); it must be at least 1") }
            if value > limit { throw bad("\(key) is \(value), more than \(limit), the largest the engine accepts") }
        }
        if hiddenSize % numAttentionHeads != 0 {
            throw bad("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        if patchSize > imageSize { throw bad("patch_size \(patchSize) is larger than image_size \(imageSize)") }
        if !(layerNormEps >= 0) || !layerNormEps.isFinite { throw bad("layer_norm_eps \(layerNormEps) is not a finite number ≥ 0") }
        // Within the limits, tokens ≤ 2³² + 1: the attention (tokens² per head) and the parameter
        // total are the products that can overflow. One image's attention is held to 2⁵⁰ floats
        // (4 PB), so that the buffers of a few dozen images stay addressable (`EngineMemory`
        // measures shards of up to 64).
        let tokens = numTokens
        guard let attention = CLIPVisionConfig.checkedProduct([numAttentionHeads, tokens, tokens]), attention <= 1 << 50 else {
            throw bad("image_size \(imageSize) with patch_size \(patchSize) gives \(tokens) tokens per image, whose attention "
                      + "(num_attention_heads \(numAttentionHeads) × tokens² floats) is too large to address")
        }
        guard let parameters = CLIPVisionParameters.parameterCount(self, projection: true),
              parameters.multipliedReportingOverflow(by: MemoryLayout<Float>.stride).overflow == false else {
            throw bad("hidden_size \(hiddenSize), intermediate_size \(intermediateSize), num_hidden_layers \(numHiddenLayers), "
                      + "num_channels \(numChannels) and patch_size \(patchSize) give more parameters than can be addressed")
        }
    }

    /// The product of `factors`, or nil when it overflows an `Int` (or a factor is negative).
    static func checkedProduct(_ factors: [Int]) -> Int? {
        var result = 1
        for factor in factors {
            guard factor >= 0 else { return nil }
            let (product, overflow) = result.multipliedReportingOverflow(by: factor)
            if overflow { return nil }
            result = product
        }
        return result
    }

    /// Reads `config.json` (a `CLIPVisionConfig` or a `CLIPConfig`) at `path`.
    public static func load(path: String) throws(MergeKitError) -> CLIPVisionConfig {
        let bytes = try FileSystem.readFile(path)
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw MergeKitError(.invalidArgument, file: path, "is not valid JSON (\(error.description))",
                fix: "Restore config.json from the model's source")
        }
        return try CLIPVisionConfig(json: json, file: path)
    }

    /// Decodes a parsed `config.json`; `file` names it in messages.
    public init(json: JSONValue, file: String? = nil) throws(MergeKitError) {
        guard json.objectMembers != nil else {
            throw MergeKitError(.invalidArgument, file: file, "is not a JSON object", fix: "Restore config.json from the model's source")
        }
        var vision = json
        var projection = json["projection_dim"]
        if let modelType = json["model_type"]?.stringValue, modelType != "clip_vision_model" {
            guard let nested = json["vision_config"], nested.objectMembers != nil else {
                throw MergeKitError(.invalidArgument, file: file,
                    "has model_type \"\(modelType)\" and no vision_config; the engine runs CLIP image encoders",
                    fix: "\(term: .modelPath) a CLIPVisionModel, CLIPVisionModelWithProjection or CLIPModel checkpoint")
            }
            vision = nested
        } else if let nested = json["vision_config"], nested.objectMembers != nil {
            vision = nested
        }
        if projection == nil { projection = vision["projection_dim"] }

        func integer(_ key: String, _ value: JSONValue?, default fallback: Int) throws(MergeKitError) -> Int {
            guard let value, value != .null else { return fallback }
            func bad(_ detail: String) -> MergeKitError {
                MergeKitError(.invalidArgument, file: file, detail, fix: "Check the model's config.json")
            }
            func whole(_ item: JSONValue) throws(MergeKitError) -> Int {
                if let n = item.nonNegativeInt { return n }
                guard case .number(let text) = item else {
                    throw bad("\(key) is \(value.kindName), not a whole number")
                }
                if !text.isEmpty && text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                    throw bad("\(key) is \(text), too large for any model")  // overflows Int
                }
                throw bad("\(key) is \(text), not a whole number ≥ 1")
            }
            if case .array(let items) = value {
                // transformers allows image_size / patch_size as [h, w]; only squares are supported.
                guard items.count == 2, key == "image_size" || key == "patch_size" else {
                    throw bad("\(key) is an array, not a whole number")
                }
                let (height, width) = (try whole(items[0]), try whole(items[1]))
                guard height == width else {
                    throw bad("\(key) is [\(height), \(width)]; the engine runs square images and patches only")
                }
                return height
            }
            return try whole(value)
        }
        let defaults = CLIPVisionConfig.vitB32
        hiddenSize = try integer("hidden_size", vision["hidden_size"], default: defaults.hiddenSize)
        intermediateSize = try integer("intermediate_size", vision["intermediate_size"], default: defaults.intermediateSize)
        numHiddenLayers = try integer("num_hidden_layers", vision["num_hidden_layers"], default: defaults.numHiddenLayers)
        numAttentionHeads = try integer("num_attention_heads", vision["num_attention_heads"], default: defaults.numAttentionHeads)
        numChannels = try integer("num_channels", vision["num_channels"], default: defaults.numChannels)
        imageSize = try integer("image_size", vision["image_size"], default: defaults.imageSize)
        patchSize = try integer("patch_size", vision["patch_size"], default: defaults.patchSize)
        projectionDim = try integer("projection_dim", projection, default: defaults.projectionDim)
        if let act = vision["hidden_act"], act != .null {
            guard let name = act.stringValue, let parsed = CLIPActivation(rawValue: name) else {
                throw MergeKitError(.invalidArgument, file: file,
                    "hidden_act \(act.stringValue.map { "\"\($0)\"" } ?? act.kindName) is not supported",
                    fix: "The engine implements \(CLIPActivation.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " and "))")
            }
            hiddenAct = parsed
        } else {
            hiddenAct = defaults.hiddenAct
        }
        if let eps = vision["layer_norm_eps"], eps != .null {
            guard let value = eps.doubleValue else {
                throw MergeKitError(.invalidArgument, file: file, "layer_norm_eps is \(eps.kindName), not a number",
                    fix: "Check the model's config.json")
            }
            layerNormEps = Float(value)
        } else {
            layerNormEps = defaults.layerNormEps
        }
        try validate(file: file)
    }
}
