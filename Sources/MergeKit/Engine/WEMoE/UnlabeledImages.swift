/// The inputs of one task for test-time adaptation: `pixel_values` [N, C, H, W] (F32, F16, BF16 or
/// F64) from a safetensors file, the dataset format of `ImageDataset` with `labels` optional and
/// ignored (test-time adaptation sees no labels). Memory-mapped; batches are converted to Float32
/// on demand.
public final class UnlabeledImages: @unchecked Sendable {
    public let path: String
    /// N.
    public let count: Int
    public let channels: Int
    public let height: Int
    public let width: Int
    private let file: SafeTensorsFile
    private let pixelInfo: TensorInfo

    public init(path: String) throws(MergeKitError) {
        self.path = path
        file = try SafeTensorsFile(path: path)
        let fix = "Test-time adaptation reads pixel_values [N, C, H, W] (labels are not needed); see the README"
        guard let pixels = file.tensor(named: "pixel_values") else {
            throw MergeKitError(.missingTensor, file: path, tensor: "pixel_values", "is missing", fix: fix)
        }
        guard pixels.dtype.isMergeable, pixels.shape.count == 4 else {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "pixel_values",
                "is \(pixels.dtype.rawValue) \(pixels.shape); it must be a float tensor [N, C, H, W]", fix: fix)
        }
        pixelInfo = pixels
        count = pixels.shape[0]
        channels = pixels.shape[1]
        height = pixels.shape[2]
        width = pixels.shape[3]
    }

    /// Floats per image, C·H·W.
    public var pixelsPerImage: Int { channels * height * width }

    /// Images `indices` (in that order) as Float32, [indices.count, C, H, W].
    public func pixels(_ indices: [Int]) -> [Float] {
        var out = [Float](repeating: 0, count: indices.count * pixelsPerImage)
        guard !out.isEmpty else { return out }
        let byteWidth = pixelInfo.dtype.byteWidth!, n = pixelsPerImage
        let start = file.bytes(of: pixelInfo).baseAddress!
        out.withUnsafeMutableBufferPointer { o in
            for (i, index) in indices.enumerated() {
                precondition(index >= 0 && index < count)
                Float.load(start + index * n * byteWidth, dtype: pixelInfo.dtype, count: n, into: o.baseAddress! + i * n)
            }
        }
        return out
    }

    /// Checks that the images fit `config` and that there is at least one.
    public func check(against config: CLIPVisionConfig) throws(MergeKitError) {
        if channels != config.numChannels || height != config.imageSize || width != config.imageSize {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "pixel_values",
                "holds \(channels)×\(height)×\(width) images but the model takes \(config.numChannels)×\(config.imageSize)×\(config.imageSize)",
                fix: "Preprocess the images to the model's image_size")
        }
        if count == 0 {
            throw MergeKitError(.invalidArgument, file: path, tensor: "pixel_values", "holds no images",
                                fix: "Test-time adaptation needs unlabeled inputs of every task")
        }
    }
}
