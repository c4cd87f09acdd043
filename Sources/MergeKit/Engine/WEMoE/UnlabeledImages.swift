/// The inputs of one task for test-time adaptation: `pixel_values` [N, C, H, W] (F32, F16, BF16 or
/// F64) from a safetensors file, the dataset format of `ImageDataset` with `labels` optional and
/// ignored (test-time adaptation sees no labels). Memory-mapped; batches are converted to Float32
/// on demand.
public final class UnlabeledImages: @unchecked Sendable {
    public let path: String
    /// N.
    public var count: Int { images.count }
    public var channels: Int { images.channels }
    public var height: Int { images.height }
    public var width: Int { images.width }
    private let images: ImagePixels

    public init(path: String) throws(MergeKitError) {
        self.path = path
        images = try ImagePixels(file: try SafeTensorsFile(path: path), path: path,
                                 fix: "Test-time adaptation reads pixel_values [N, C, H, W] (labels are not needed); see the README")
    }

    /// Floats per image, C·H·W.
    public var pixelsPerImage: Int { images.pixelsPerImage }

    /// Images `indices` (in that order) as Float32, [indices.count, C, H, W].
    public func pixels(_ indices: [Int]) -> [Float] { images.pixels(indices) }

    /// Drops the file's mapped pixel pages from the process's resident set (a later read faults
    /// them back in from the page cache).
    public func releasePages() { images.releasePages() }

    /// Checks that the images fit `config` and that there is at least one.
    public func check(against config: CLIPVisionConfig) throws(MergeKitError) {
        try images.check(against: config)
        if count == 0 {
            throw MergeKitError(.invalidArgument, file: path, tensor: "pixel_values", "holds no images",
                                fix: "Test-time adaptation needs unlabeled inputs of every task")
        }
    }
}

extension WEMoETask {
    /// Checks that the task fits a model with `config` and embeddings of `embeddingSize`, and has
    /// inputs (before the model is loaded).
    public func check(config: CLIPVisionConfig, embeddingSize: Int) throws(MergeKitError) {
        try head.check(embeddingSize: embeddingSize)
        try data.check(against: config)
    }
}
