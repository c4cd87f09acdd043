/// The checks that stop a training run (`FineTuning`, `WEMoETraining`) at the first non-finite loss,
/// gradient or updated parameter, so that the command fails before it writes anything: a NaN or ±Inf
/// never washes out (Adam's moments keep it, and one NaN image makes the whole batch's gradient NaN),
/// and a checkpoint of NaNs is worse than none.
///
/// The errors name the step (1-based, as the progress output counts), the batch (its images' indices
/// in the data file) and, when some of those images hold NaN or Inf pixels, those images. A batch with
/// finite pixels means the run diverged (the learning rate is too large for the data), and so does a
/// finite update that overflows the parameters.
enum TrainingGuard {
    /// "NaN", "+Inf" or "-Inf".
    static func name(of x: Double) -> String {
        x.isNaN ? "NaN" : (x < 0 ? "-Inf" : "+Inf")
    }

    /// The index of the first NaN or ±Inf among `count` floats, or nil.
    static func firstNonFinite(_ values: UnsafePointer<Float>, count: Int) -> Int? {
        for i in 0..<count where !values[i].isFinite { return i }
        return nil
    }

    /// `indices` for a message: all of them up to 16, else the first 16 and the count.
    static func list(_ indices: [Int]) -> String {
        let shown = indices.prefix(16).map(String.init).joined(separator: ", ")
        return indices.count > 16 ? "\(shown), … (\(indices.count) images)" : shown
    }

    /// The error for a non-finite `what` (the loss, or the gradient of a tensor) on a batch of images
    /// `batch` (indices in `file`) whose pixels, `pixelsPerImage` floats each, are `pixels`.
    static func batchError(step: Int, what: String, value: Double, tensor: String? = nil, file: String, batch: [Int],
                           pixels: [Float], pixelsPerImage: Int) -> MergeKitError {
        var bad: [Int] = []
        pixels.withUnsafeBufferPointer { p in
            for (k, image) in batch.enumerated() where firstNonFinite(p.baseAddress! + k * pixelsPerImage, count: pixelsPerImage) != nil {
                bad.append(image)
            }
        }
        let detail = "training stopped at step \(step): \(what) is \(name(of: value)) on the batch of images \(list(batch)) (indices in the file)"
        if bad.isEmpty {
            return MergeKitError(.nonFiniteValue, file: file, tensor: tensor, "\(detail); their pixels are finite, so the model diverged",
                                 fix: "Lower \(term: .learningRate); nothing was written")
        }
        return MergeKitError(.nonFiniteValue, file: file, tensor: tensor,
                             detail + "; image\(bad.count == 1 ? "" : "s") \(list(Array(Set(bad)).sorted())) hold\(bad.count == 1 ? "s" : "") NaN or Inf pixels",
                             fix: "Remove or repair those images; nothing was written")
    }

    /// The error for a parameter that an update made non-finite (an overflow).
    static func parameterError(step: Int, tensor: String, value: Float, learningRate: Double) -> MergeKitError {
        MergeKitError(.nonFiniteValue, tensor: tensor,
                      "training stopped at step \(step): the update made the parameter \(name(of: Double(value))) (an overflow at learning rate \(learningRate))",
                      fix: "Lower \(term: .learningRate); nothing was written")
    }
}
