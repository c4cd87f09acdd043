import Foundation

/// The inputs of a merge that learns from a little data (RegMean, RegMean++, Fisher merging), all
/// checked from their headers before anything large is loaded: T ordinary fine-tuned CLIP image
/// encoders of one architecture (the same config.json sizes, all with or all without
/// `visual_projection`), one dataset per model (`pixel_values` of the model's image size; labels,
/// if any, are not used), one head per model when the method needs logits, an optional base θ₀ of
/// the same architecture, and an output that replaces none of them.
///
/// Tensors are matched by their place in the encoder's layout, so the models may name their
/// tensors with different prefixes (a `CLIPModel` beside a `CLIPVisionModelWithProjection`); the
/// output takes the first model's names, dtypes and companion files.
public struct DataMergeInputs: Sendable {
    /// The fine-tuned encoders θₜ, in the order given.
    public let models: [EncoderCheckpoint]
    /// Each model's unlabeled inputs.
    public let data: [UnlabeledImages]
    /// Each model's head (empty when the method needs none).
    public let heads: [TaskHead]
    /// The pre-trained encoder θ₀, when given.
    public let base: EncoderCheckpoint?
    /// The architecture every input shares.
    public let config: CLIPVisionConfig
    /// Whether the encoders have `visual_projection`.
    public let hasProjection: Bool
    /// Where the merged model goes, and whether it may replace what is there.
    public let output: String, overwrite: Bool
    /// Every file the merged model is built from.
    public let inputs: [String]
    /// The merged encoder's tensors in state-dict order, named as in the first model.
    let layout: [CLIPVisionParameters.Tensor]
    /// The first model's prefix and projection name (the output's layout).
    let prefix: String, projectionName: String?
    /// `entries[t][i]`: model t's tensor at `layout[i]`; `baseEntries` the base's.
    let entries: [[Checkpoint.Entry]]
    let baseEntries: [Checkpoint.Entry]?

    /// Checks every input; `heads` must be empty or give one head per model, `data` one dataset
    /// per model. `ignored` hears about each checkpoint's tensors the encoder does not use (only
    /// with `allowUnused`), once that checkpoint has been checked.
    public init(models paths: [String], data dataPaths: [String], heads headPaths: [String] = [], base basePath: String? = nil,
                output: String, overwrite: Bool = false, allowUnused: Bool = false,
                ignored: (_ file: String, _ tensors: [String]) -> Void = { _, _ in }) throws(MergeKitError) {
        guard paths.count >= 2 else {
            throw MergeKitError(.invalidArgument, "Got \(paths.count) model\(paths.count == 1 ? "" : "s"); a merge needs at least two",
                                fix: "Give the fine-tuned models to merge, each with its data")
        }
        guard dataPaths.count == paths.count, headPaths.isEmpty || headPaths.count == paths.count else {
            throw MergeKitError(.invalidArgument,
                                "Got \(paths.count) models, \(dataPaths.count) datasets\(headPaths.isEmpty ? "" : " and \(headPaths.count) heads")",
                                fix: "Give one dataset\(headPaths.isEmpty ? "" : " and one head") per model, in the same order")
        }
        var checkpoints: [Checkpoint] = []
        var configs: [String] = []
        for path in paths {
            let checkpoint = try Checkpoint(path: path)
            try CheckpointRole.dataMergeModel.check(checkpoint)
            checkpoints.append(checkpoint)
            configs.append(try CLIPVisionModel.configPath(for: checkpoint))
        }
        var baseCheckpoint: Checkpoint? = nil
        if let basePath {
            let checkpoint = try Checkpoint(path: basePath)
            try CheckpointRole.dataMergeBase.check(checkpoint)
            baseCheckpoint = checkpoint
            configs.append(try CLIPVisionModel.configPath(for: checkpoint))
        }
        inputs = paths + dataPaths + headPaths + (basePath.map { [$0] } ?? []) + configs
        (self.output, self.overwrite) = (output, overwrite)
        try OutputGuard.check(output: output, overwrite: overwrite, inputs: inputs)

        var models: [EncoderCheckpoint] = []
        var entries: [[Checkpoint.Entry]] = []
        for checkpoint in checkpoints {
            let model = try EncoderCheckpoint(checkpoint, allowUnused: allowUnused)
            if let first = models.first { try DataMergeInputs.checkSameArchitecture(model, as: first) }
            ignored(checkpoint.path, model.ignoredTensors)
            entries.append(try DataMergeInputs.entries(of: model))
            models.append(model)
        }
        let first = models[0]
        if let baseCheckpoint {
            let model = try EncoderCheckpoint(baseCheckpoint, allowUnused: allowUnused)
            try DataMergeInputs.checkSameArchitecture(model, as: first)
            ignored(baseCheckpoint.path, model.ignoredTensors)
            baseEntries = try DataMergeInputs.entries(of: model)
            base = model
        } else {
            (base, baseEntries) = (nil, nil)
        }
        (self.models, self.entries, config, hasProjection) = (models, entries, first.config, first.hasProjection)
        (prefix, projectionName) = try CLIPVisionParameters.locate(in: first.checkpoint)
        layout = CLIPVisionParameters.layout(config, prefix: prefix, projectionName: projectionName)

        var data: [UnlabeledImages] = []
        for path in dataPaths {
            let images = try UnlabeledImages(path: path)
            try images.check(against: config)
            data.append(images)
        }
        self.data = data
        var heads: [TaskHead] = []
        for path in headPaths {
            let head = try TaskHead(path: path)
            try head.check(embeddingSize: first.embeddingSize)
            heads.append(head)
        }
        self.heads = heads
    }

    /// Model t's tensors in layout order.
    private static func entries(of model: EncoderCheckpoint) throws(MergeKitError) -> [Checkpoint.Entry] {
        let (prefix, projection) = try CLIPVisionParameters.locate(in: model.checkpoint)
        // `EncoderCheckpoint` checked every tensor of this layout against the header.
        return CLIPVisionParameters.layout(model.config, prefix: prefix, projectionName: projection).map {
            model.checkpoint.entry(named: $0.name)!
        }
    }

    /// Throws unless `model` has `first`'s sizes and projection, naming the first difference.
    private static func checkSameArchitecture(_ model: EncoderCheckpoint, as first: EncoderCheckpoint) throws(MergeKitError) {
        let fix = "Merge fine-tunes of one pre-trained model (the same config.json sizes)"
        if let (mine, theirs) = zip(model.config.sizeFields, first.config.sizeFields).first(where: { $0.value != $1.value }) {
            throw MergeKitError(.shapeMismatch, file: model.checkpoint.path,
                                "has \(mine.key) \(mine.value) but \(first.checkpoint.path) has \(theirs.value)", fix: fix)
        }
        if model.config != first.config {
            throw MergeKitError(.shapeMismatch, file: model.checkpoint.path,
                                "has hidden_act \(model.config.hiddenAct.rawValue) and layer_norm_eps \(model.config.layerNormEps) but "
                                + "\(first.checkpoint.path) has \(first.config.hiddenAct.rawValue) and \(first.config.layerNormEps)", fix: fix)
        }
        if model.hasProjection != first.hasProjection {
            throw MergeKitError(.missingTensor, file: model.checkpoint.path, tensor: "visual_projection.weight",
                                model.hasProjection ? "is present but \(first.checkpoint.path) has no projection"
                                                    : "is missing but \(first.checkpoint.path) has one",
                                fix: "Merge encoders of one kind: all CLIPVisionModelWithProjection (or CLIPModel), or all CLIPVisionModel")
        }
    }

    /// The number of tasks T.
    public var tasks: Int { models.count }

    /// The images of task `t` a merge uses: all of them when there are at most `samples`, else
    /// `samples` of them drawn without replacement by a seeded shuffle (so that a dataset sorted by
    /// class still gives a mixed sample), in file order.
    func sampleIndices(task t: Int, samples: Int, seed: UInt64) -> [Int] {
        let count = data[t].count
        guard samples < count else { return Array(0..<count) }
        var order = Array(0..<count)
        var rng = GaussianGenerator(seed: CounterRandom.mix(seed ^ CounterRandom.mix(UInt64(t) &+ 0x5EED)))
        for i in 0..<samples {
            let j = i + Int(rng.nextBits() % UInt64(count - i))
            order.swapAt(i, j)
        }
        return order[..<samples].sorted()
    }

    /// Whether tensor `i` holds the same bytes in every model (a tensor all fine-tunes left
    /// frozen): the merge then copies it, so it stays exactly as it was.
    func isIdenticalAcrossModels(_ i: Int) -> Bool {
        let first = entries[0][i]
        let bytes = first.file.bytes(of: first.info)
        defer { DataMergeInputs.release(first) }
        return entries.dropFirst().allSatisfy { model in
            let entry = model[i]
            guard entry.info.dtype == first.info.dtype else { return false }
            let other = entry.file.bytes(of: entry.info)
            defer { DataMergeInputs.release(entry) }
            return other.count == bytes.count && (bytes.count == 0 || memcmp(bytes.baseAddress!, other.baseAddress!, bytes.count) == 0)
        }
    }

    /// Converts model t's tensor `i` (or the base's, for t = nil) to Float into `destination`.
    func load(_ i: Int, model t: Int?, into destination: UnsafeMutablePointer<Float>) {
        let entry = t.map { entries[$0][i] } ?? baseEntries![i]
        guard layout[i].count > 0 else { return }
        Float.load(entry.file.bytes(of: entry.info).baseAddress!, dtype: entry.info.dtype, count: layout[i].count, into: destination)
        DataMergeInputs.release(entry)
    }

    /// Drops the mapped pages of `entry` from the resident set once read: a merge reads every
    /// model once, and the mapped pages would otherwise stay in its peak memory (the page cache
    /// keeps them either way).
    private static func release(_ entry: Checkpoint.Entry) {
        let start = entry.file.fileOffset(of: entry.info)
        entry.file.release(start..<(start + entry.info.byteCount))
    }

    /// Images `indices` of task t as Float32, checked to be finite (an image with a NaN or ±Inf
    /// pixel is named by its index in the file).
    func pixels(task t: Int, _ indices: [Int]) throws(MergeKitError) -> [Float] {
        let pixels = data[t].pixels(indices)
        data[t].releasePages()
        let n = data[t].pixelsPerImage
        if let bad = pixels.firstIndex(where: { !$0.isFinite }) {
            throw MergeKitError(.nonFiniteValue, file: data[t].path, tensor: "pixel_values",
                                "image \(indices[bad / n]) holds \(pixels[bad]) (element \(bad % n) of its pixels)",
                                fix: "Preprocess the images again; pixel values must be finite")
        }
        return pixels
    }

    /// Writes the merged encoder: the first model's checkpoint with the encoder's tensors replaced
    /// by `merged` (each in that tensor's dtype), its other tensors and companion files (config.json)
    /// copied. The metadata records the run as a merge's does: `mergekit.method` and
    /// `mergekit.parameters` (`parameters`, with the data and heads). Atomic.
    /// - Returns: what happened around the output (stale temporaries removed, …).
    public func write(_ merged: CLIPVisionParameters, method: String, parameters: [JSONMember]) throws(MergeKitError) -> [OutputNote] {
        let record = JSONValue.object(parameters + [JSONMember("data", .array(data.map { .string($0.path) }))]
                                      + (heads.isEmpty ? [] : [JSONMember("heads", .array(heads.map { .string($0.path ?? "") }))]))
        return try FineTuning.write(theta: merged, base: models[0].checkpoint, linearized: false,
                                    output: OutputSpec(path: output, overwrite: overwrite, inputs: inputs),
                                    metadata: ["mergekit.method": method, "mergekit.parameters": record.serialized()])
    }
}
