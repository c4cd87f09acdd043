extension TaskHead {
    /// A nearest-class-mean head from labelled images: row c is the mean of the normalised
    /// embeddings e/‖e‖ of the images labelled c, normalised again and scaled to length `scale`,
    /// so that logits = scale·cos(class mean, e/‖e‖). The zero-shot heads of CLIP are built the
    /// same way from text (unit class embeddings × exp(logit_scale)); this builds one from a few
    /// labelled images of each class instead (`merge-cli init head --data`).
    ///
    /// - Parameters:
    ///   - classes: the head's classes (nil: the largest label + 1). Every class needs at least one
    ///     image; a label ≥ `classes` is an error.
    ///   - batchSize: images per forward pass (changes only rounding).
    ///   - progress: images done, of all.
    public static func prototypes(of encoder: any ImageEncoder, data: ImageDataset, classes requested: Int? = nil, scale: Double,
                                  batchSize: Int = 32, progress: (Int, Int) -> Void = { _, _ in }) throws(MergeKitError) -> TaskHead {
        precondition(batchSize >= 1 && scale > 0)
        let fix = "Give at least one labelled image of every class (labels 0…classes − 1)"
        guard let largest = data.labels.max() else {
            throw MergeKitError(.invalidArgument, file: data.path, tensor: "labels", "holds no images", fix: fix)
        }
        let classes = requested ?? largest + 1
        try data.check(against: encoder.config, classes: classes)
        var counts = [Int](repeating: 0, count: classes)
        for label in data.labels { counts[label] += 1 }
        if let empty = counts.firstIndex(of: 0) {
            throw MergeKitError(.invalidArgument, file: data.path, tensor: "labels",
                "has no image of class \(empty) (of \(classes)); its row of the head would be undefined", fix: fix)
        }
        let e = encoder.embeddingSize
        var sums = [Double](repeating: 0, count: classes * e)
        try Evaluation.embeddings(of: encoder, data: data, batchSize: batchSize, progress: progress) { range, embeddings throws(MergeKitError) in
            let (normalized, norms) = TaskHead.normalize(embeddings, batch: range.count, dimension: e)
            for (i, label) in data.labels[range].enumerated() {
                guard norms[i] > 0 && norms[i].isFinite else {
                    throw MergeKitError(.nonFiniteValue, file: data.path, tensor: "pixel_values",
                        "image \(range.lowerBound + i) has an embedding of norm \(norms[i]) although its pixels are finite",
                        fix: "The model holds non-finite weights or maps the image to zero: check it with \(term: .verification)")
                }
                for j in 0..<e { sums[label * e + j] += Double(normalized[i * e + j]) }
            }
        }
        var weight = [Float](repeating: 0, count: classes * e)
        for c in 0..<classes {
            let row = sums[(c * e)..<((c + 1) * e)]
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0 else {
                throw MergeKitError(.invalidArgument, file: data.path, tensor: "labels",
                    "the embeddings of class \(c) cancel out (their mean is zero); its row of the head would be undefined",
                    fix: "Give more images of class \(c)")
            }
            for j in 0..<e { weight[c * e + j] = Float(row[row.startIndex + j] / norm * scale) }
        }
        return TaskHead(weight: weight, classes: classes, dimension: e)
    }
}
