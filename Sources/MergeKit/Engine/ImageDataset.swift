/// A labelled image set for evaluation, in one safetensors file:
///
/// | tensor         | dtype                   | shape          |
/// |----------------|-------------------------|----------------|
/// | `pixel_values` | F32 (F16, BF16, F64 too) | [N, C, H, W]   |
/// | `labels`       | I64 (I32 too)            | [N]            |
///
/// Pixels are already preprocessed as the model expects (for CLIP: resized to 224, centre-cropped,
/// scaled to [0, 1] and normalised with CLIP's mean and std), exactly the `pixel_values` a
/// transformers `CLIPImageProcessor` returns. The file is memory-mapped; batches are converted to
/// Float32 on demand.
public final class ImageDataset: @unchecked Sendable {
    public let path: String
    /// N.
    public let count: Int
    public let channels: Int
    public let height: Int
    public let width: Int
    /// Class indices, [N].
    public let labels: [Int]
    private let file: SafeTensorsFile
    private let pixelInfo: TensorInfo

    public init(path: String) throws(MergeKitError) {
        self.path = path
        file = try SafeTensorsFile(path: path)
        let fix = "A dataset holds pixel_values [N, C, H, W] (F32) and labels [N] (I64); see the README"
        guard let pixels = file.tensor(named: "pixel_values") else {
            throw MergeKitError(.missingTensor, file: path, tensor: "pixel_values", "is missing", fix: fix)
        }
        guard pixels.dtype.isMergeable, pixels.shape.count == 4 else {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "pixel_values",
                "is \(pixels.dtype.rawValue) \(pixels.shape); it must be a float tensor [N, C, H, W]", fix: fix)
        }
        guard let labelInfo = file.tensor(named: "labels") else {
            throw MergeKitError(.missingTensor, file: path, tensor: "labels", "is missing", fix: fix)
        }
        guard labelInfo.dtype == .I64 || labelInfo.dtype == .I32, labelInfo.shape == [pixels.shape[0]] else {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "labels",
                "is \(labelInfo.dtype.rawValue) \(labelInfo.shape); it must be I64 [\(pixels.shape[0])], one label per image", fix: fix)
        }
        let bytes = file.bytes(of: labelInfo)
        var labels = [Int](repeating: 0, count: labelInfo.elementCount)
        for i in labels.indices {
            labels[i] = labelInfo.dtype == .I64
                ? Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
                : Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            if labels[i] < 0 {
                throw MergeKitError(.invalidArgument, file: path, tensor: "labels", "label \(i) is \(labels[i]); labels are class indices ≥ 0", fix: fix)
            }
        }
        self.labels = labels
        pixelInfo = pixels
        count = pixels.shape[0]
        channels = pixels.shape[1]
        height = pixels.shape[2]
        width = pixels.shape[3]
    }

    /// Floats per image, C·H·W.
    public var pixelsPerImage: Int { channels * height * width }

    /// The images `range` as Float32, [range.count, C, H, W].
    public func pixels(_ range: Range<Int>) -> [Float] {
        precondition(range.lowerBound >= 0 && range.upperBound <= count)
        var out = [Float](repeating: 0, count: range.count * pixelsPerImage)
        guard !out.isEmpty else { return out }
        let width = pixelInfo.dtype.byteWidth!
        let start = file.bytes(of: pixelInfo).baseAddress! + range.lowerBound * pixelsPerImage * width
        out.withUnsafeMutableBufferPointer { Float.load(start, dtype: pixelInfo.dtype, count: $0.count, into: $0.baseAddress!) }
        return out
    }

    /// Checks that the images fit `config` and the labels a head with `classes` classes.
    public func check(against config: CLIPVisionConfig, classes: Int) throws(MergeKitError) {
        if channels != config.numChannels || height != config.imageSize || width != config.imageSize {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "pixel_values",
                "holds \(channels)×\(height)×\(width) images but the model takes \(config.numChannels)×\(config.imageSize)×\(config.imageSize)",
                fix: "Preprocess the images to the model's image_size")
        }
        if let i = labels.firstIndex(where: { $0 >= classes }) {
            throw MergeKitError(.invalidArgument, file: path, tensor: "labels",
                "label \(i) is \(labels[i]) but the head has \(classes) classes (0…\(classes - 1))",
                fix: "Use the head of this dataset's task")
        }
    }
}
