/// The `pixel_values` [N, C, H, W] tensor of a dataset file (F32, F16, BF16 or F64), memory-mapped
/// and converted to Float32 on demand: what `ImageDataset` and `UnlabeledImages` share.
struct ImagePixels: @unchecked Sendable {
    let path: String
    let count: Int
    let channels: Int
    let height: Int
    let width: Int
    let file: SafeTensorsFile
    private let info: TensorInfo

    /// `fix` is the hint of every error (it says what the caller's format holds).
    init(file: SafeTensorsFile, path: String, fix: String) throws(MergeKitError) {
        guard let pixels = file.tensor(named: "pixel_values") else {
            throw MergeKitError(.missingTensor, file: path, tensor: "pixel_values", "is missing", fix: fix)
        }
        guard pixels.dtype.isMergeable, pixels.shape.count == 4 else {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "pixel_values",
                "is \(pixels.dtype.rawValue) \(pixels.shape); it must be a float tensor [N, C, H, W]", fix: fix)
        }
        self.path = path
        self.file = file
        info = pixels
        count = pixels.shape[0]
        channels = pixels.shape[1]
        height = pixels.shape[2]
        width = pixels.shape[3]
    }

    /// Floats per image, C·H·W.
    var pixelsPerImage: Int { channels * height * width }

    /// The images `range` as Float32, [range.count, C, H, W].
    func pixels(_ range: Range<Int>) -> [Float] {
        precondition(range.lowerBound >= 0 && range.upperBound <= count)
        var out = [Float](repeating: 0, count: range.count * pixelsPerImage)
        guard !out.isEmpty else { return out }
        let width = info.dtype.byteWidth!
        let start = file.bytes(of: info).baseAddress! + range.lowerBound * pixelsPerImage * width
        out.withUnsafeMutableBufferPointer { Float.load(start, dtype: info.dtype, count: $0.count, into: $0.baseAddress!) }
        return out
    }

    /// Images `indices` (in that order) as Float32, [indices.count, C, H, W].
    func pixels(_ indices: [Int]) -> [Float] {
        var out = [Float](repeating: 0, count: indices.count * pixelsPerImage)
        guard !out.isEmpty else { return out }
        let byteWidth = info.dtype.byteWidth!, n = pixelsPerImage
        let start = file.bytes(of: info).baseAddress!
        out.withUnsafeMutableBufferPointer { o in
            for (i, index) in indices.enumerated() {
                precondition(index >= 0 && index < count)
                Float.load(start + index * n * byteWidth, dtype: info.dtype, count: n, into: o.baseAddress! + i * n)
            }
        }
        return out
    }

    /// Drops the mapped pages of `pixel_values` from the resident set.
    func releasePages() {
        let start = file.fileOffset(of: info)
        file.release(start..<(start + info.byteCount))
    }

    /// Checks that the images have the size `config` takes.
    func check(against config: CLIPVisionConfig) throws(MergeKitError) {
        if channels != config.numChannels || height != config.imageSize || width != config.imageSize {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "pixel_values",
                "holds \(channels)×\(height)×\(width) images but the model takes \(config.numChannels)×\(config.imageSize)×\(config.imageSize)",
                fix: "Preprocess the images to the model's image_size")
        }
    }
}

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
    public var count: Int { images.count }
    public var channels: Int { images.channels }
    public var height: Int { images.height }
    public var width: Int { images.width }
    /// Class indices, [N].
    public let labels: [Int]
    private let images: ImagePixels

    public init(path: String) throws(MergeKitError) {
        self.path = path
        let file = try SafeTensorsFile(path: path)
        let fix = "A dataset holds pixel_values [N, C, H, W] (F32) and labels [N] (I64); see the README"
        images = try ImagePixels(file: file, path: path, fix: fix)
        guard let labelInfo = file.tensor(named: "labels") else {
            throw MergeKitError(.missingTensor, file: path, tensor: "labels", "is missing", fix: fix)
        }
        guard labelInfo.dtype == .I64 || labelInfo.dtype == .I32, labelInfo.shape == [images.count] else {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "labels",
                "is \(labelInfo.dtype.rawValue) \(labelInfo.shape); it must be I64 [\(images.count)], one label per image", fix: fix)
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
    }

    /// Floats per image, C·H·W.
    public var pixelsPerImage: Int { images.pixelsPerImage }

    /// The images `range` as Float32, [range.count, C, H, W].
    public func pixels(_ range: Range<Int>) -> [Float] { images.pixels(range) }

    /// Throws naming the first image of `pixels` (images `first`, `first` + 1, … as `pixels(_:)`
    /// returned them) with a NaN or infinite value.
    public func checkFinite(_ pixels: [Float], first: Int) throws(MergeKitError) {
        guard let index = pixels.firstIndex(where: { !$0.isFinite }) else { return }
        let (image, offset) = index.quotientAndRemainder(dividingBy: pixelsPerImage)
        throw MergeKitError(.nonFiniteValue, file: path, tensor: "pixel_values",
            "image \(first + image) holds \(pixels[index]) (element \(offset) of its \(channels)×\(height)×\(width) pixels)",
            fix: "Preprocess the images again; pixel values must be finite")
    }

    /// Checks that the images fit `config` and the labels a head with `classes` classes.
    public func check(against config: CLIPVisionConfig, classes: Int) throws(MergeKitError) {
        try images.check(against: config)
        if let i = labels.firstIndex(where: { $0 >= classes }) {
            throw MergeKitError(.invalidArgument, file: path, tensor: "labels",
                "label \(i) is \(labels[i]) but the head has \(counted(classes, "class", "classes")) (\(classes == 1 ? "0 only" : "0…\(classes - 1)"))",
                fix: "Use the head of this dataset's task")
        }
    }
}
