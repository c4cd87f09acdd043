import Foundation

/// Something that maps images to embeddings: a model, or a linearized model.
public protocol ImageEncoder: Sendable {
    var config: CLIPVisionConfig { get }
    /// E.
    var embeddingSize: Int { get }
    /// Embeddings [B, E] of images [B, C, H, W].
    func forward(pixels: [Float], batch: Int) -> [Float]
}

extension CLIPVisionModel: ImageEncoder {}

/// A model linearized around θ₀ (tangent-space task arithmetic, docs/METHODS.md §6):
///
///     f_lin(x; θ) = f(x; θ₀) + J_θ f(x; θ₀)·(θ − θ₀),
///
/// evaluated with one JVP pass of the base model along Δθ = θ − θ₀.
public struct LinearizedCLIPVisionModel: ImageEncoder {
    /// The model at θ₀.
    public let base: CLIPVisionModel
    /// Δθ = θ − θ₀, in the base's layout.
    public let direction: CLIPVisionParameters
    /// Tensors of the file it was loaded from that the model does not use (`LinearizedCheckpoint.model`).
    public internal(set) var ignoredTensors: [String] = []

    public init(base: CLIPVisionModel, direction: CLIPVisionParameters) {
        precondition(direction.tensors.map(\.shape) == base.parameters.tensors.map(\.shape), "the direction's layout differs from the base's")
        self.base = base
        self.direction = direction
    }

    /// Linearizes `base` towards a fine-tuned model θ: Δθ = θ − θ₀.
    public init(base: CLIPVisionModel, finetuned: CLIPVisionParameters, file: String? = nil) throws(MergeKitError) {
        self.init(base: base, direction: try CLIPVisionParameters.difference(finetuned, base.parameters, file: file))
    }

    public var config: CLIPVisionConfig { base.config }
    public var embeddingSize: Int { base.embeddingSize }

    /// f(x; θ₀) + J·Δθ.
    public func forward(pixels: [Float], batch: Int) -> [Float] {
        var (embeddings, tangent) = base.jvp(pixels: pixels, batch: batch, direction: direction)
        for i in embeddings.indices { embeddings[i] += tangent[i] }
        return embeddings
    }
}

/// What an evaluation measured.
public struct EvaluationResult: Sendable, Equatable {
    public let images: Int
    /// Images whose largest logit is their label's (the first maximum on ties, as torch.argmax).
    public let correct: Int
    /// Mean cross-entropy of the logits against the labels.
    public let meanLoss: Double
    public let seconds: Double

    /// Top-1 accuracy in [0, 1].
    public var accuracy: Double { images == 0 ? 0 : Double(correct) / Double(images) }
    public var imagesPerSecond: Double { seconds > 0 ? Double(images) / seconds : 0 }
}

/// Top-1 accuracy and mean cross-entropy of an encoder with a task head on a dataset.
///
/// Nothing undefined is reported as a number: an empty dataset, an image with a NaN or infinite
/// pixel, and an image whose logits are not finite (non-finite weights in the model or the head,
/// or an embedding of zero norm) are errors naming the image.
public enum Evaluation {
    /// Checks that `head` and `data` fit an encoder with `config` and embeddings of
    /// `embeddingSize` and that `data` holds images (`purpose` says what for), before anything is
    /// run (or loaded).
    public static func check(head: TaskHead, data: ImageDataset, config: CLIPVisionConfig, embeddingSize: Int,
                             purpose: String = "to evaluate on") throws(MergeKitError) {
        try head.check(embeddingSize: embeddingSize)
        try data.check(against: config, classes: head.classes)
        guard data.count >= 1 else {
            throw MergeKitError(.invalidArgument, file: data.path, tensor: "pixel_values", "holds no images \(purpose)",
                                fix: "Pass a dataset with at least one image")
        }
    }

    /// Evaluates in batches of `batchSize`, calling `progress(imagesDone, imagesTotal)` after
    /// each batch.
    public static func run(_ encoder: any ImageEncoder, head: TaskHead, data: ImageDataset, batchSize: Int,
                           progress: (Int, Int) -> Void = { _, _ in }) throws(MergeKitError) -> EvaluationResult {
        precondition(batchSize >= 1)
        try check(head: head, data: data, config: encoder.config, embeddingSize: encoder.embeddingSize)
        let start = Date()
        var correct = 0
        var lossSum = 0.0
        try embeddings(of: encoder, data: data, batchSize: batchSize, progress: progress) { range, embeddings throws(MergeKitError) in
            let logits = head.logits(embeddings: embeddings, batch: range.count)
            for (i, label) in data.labels[range].enumerated() {
                let row = Array(logits[i * head.classes..<(i + 1) * head.classes])
                guard let bad = row.firstIndex(where: { !$0.isFinite }) else {
                    var best = 0
                    for k in 1..<head.classes where row[k] > row[best] { best = k }
                    if best == label { correct += 1 }
                    lossSum += ClassificationLoss.logSumExp(row) - Double(row[label])
                    continue
                }
                throw MergeKitError(.nonFiniteValue, file: data.path, tensor: "pixel_values",
                    "image \(range.lowerBound + i) gets logit \(row[bad]) for class \(bad) although its pixels are finite",
                    fix: "The model or the head holds non-finite weights, or the embedding is zero: check them with \(term: .verification)")
            }
        }
        return EvaluationResult(images: data.count, correct: correct, meanLoss: lossSum / Double(data.count),
                                seconds: Date().timeIntervalSince(start))
    }

    /// Runs `encoder` over `data` in batches of `batchSize` images, in order, checking every batch's
    /// pixels for NaN and ±Inf first, and hands each batch's image range and embeddings [B, E] to
    /// `body`; `progress` hears images done, of all. What evaluation and class-mean heads share.
    static func embeddings(of encoder: any ImageEncoder, data: ImageDataset, batchSize: Int, progress: (Int, Int) -> Void,
                           _ body: (Range<Int>, [Float]) throws(MergeKitError) -> Void) throws(MergeKitError) {
        var done = 0
        while done < data.count {
            let range = done..<min(data.count, done + batchSize)
            let pixels = data.pixels(range)
            try data.checkFinite(pixels, first: range.lowerBound)
            try body(range, encoder.forward(pixels: pixels, batch: range.count))
            done = range.upperBound
            progress(done, data.count)
        }
    }
}
