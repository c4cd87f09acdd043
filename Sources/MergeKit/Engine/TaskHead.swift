/// A task's classification head on CLIP image embeddings: logits = W·ê + b with ê = e/‖e‖.
///
/// For zero-shot CLIP heads (the task-arithmetic papers' setting), W's rows are the normalised
/// text embeddings of the class prompts times exp(logit_scale) and there is no bias.
///
/// File format: a safetensors file with `weight` [classes, E] (F32, F16, BF16 or F64), or any
/// file whose only float tensor is 2-D; an optional `bias` [classes] is added.
///
/// Backward: with ∂L/∂ê = Wᵀ·∂L/∂z, ∂L/∂e = (∂L/∂ê − ê·(ê·∂L/∂ê))/‖e‖.
public struct TaskHead: Sendable {
    public let classes: Int
    /// E, the embedding width it expects.
    public let dimension: Int
    /// W, [classes, E] row-major.
    public let weight: [Float]
    /// b, [classes], or nil.
    public let bias: [Float]?
    /// The file it was read from, for messages.
    public let path: String?

    public init(weight: [Float], classes: Int, dimension: Int, bias: [Float]? = nil, path: String? = nil) {
        precondition(classes >= 1 && dimension >= 1 && weight.count == classes * dimension, "the head must be [classes, dimension]")
        precondition(bias == nil || bias!.count == classes, "the bias must have one value per class")
        self.weight = weight
        self.classes = classes
        self.dimension = dimension
        self.bias = bias
        self.path = path
    }

    /// Reads a head from a safetensors file.
    public init(path: String) throws(MergeKitError) {
        let file = try SafeTensorsFile(path: path)
        let floats = file.tensors.filter { $0.dtype.isMergeable }
        guard let matrix = file.tensor(named: "weight") ?? (floats.count == 1 ? floats[0] : nil) else {
            throw MergeKitError(.missingTensor, file: path, tensor: "weight",
                "is missing (the file holds \(file.tensors.map(\.name).joined(separator: ", ")))",
                fix: "Save the head as a [classes, embedding] tensor named \"weight\"")
        }
        guard matrix.dtype.isMergeable, matrix.shape.count == 2 else {
            throw MergeKitError(.shapeMismatch, file: path, tensor: matrix.name,
                "is \(matrix.dtype.rawValue) \(matrix.shape); a head is a float matrix [classes, embedding]",
                fix: "Save the head as a [classes, embedding] float tensor")
        }
        guard matrix.shape[0] >= 1, matrix.shape[1] >= 1 else {
            throw MergeKitError(.shapeMismatch, file: path, tensor: matrix.name,
                "is \(matrix.shape): a head with \(matrix.shape[0] == 0 ? "no classes" : "0-dimensional embeddings") classifies nothing",
                fix: "Save the head as a [classes, embedding] float tensor with at least one class")
        }
        var weight = [Float](repeating: 0, count: matrix.elementCount)
        weight.withUnsafeMutableBufferPointer {
            Float.load(file.bytes(of: matrix).baseAddress!, dtype: matrix.dtype, count: $0.count, into: $0.baseAddress!)
        }
        var bias: [Float]? = nil
        if matrix.name == "weight", let b = file.tensor(named: "bias") {
            guard b.dtype.isMergeable, b.shape == [matrix.shape[0]] else {
                throw MergeKitError(.shapeMismatch, file: path, tensor: "bias",
                    "is \(b.dtype.rawValue) \(b.shape); the bias must be a float vector [\(matrix.shape[0])]")
            }
            var values = [Float](repeating: 0, count: b.elementCount)
            values.withUnsafeMutableBufferPointer {
                Float.load(file.bytes(of: b).baseAddress!, dtype: b.dtype, count: $0.count, into: $0.baseAddress!)
            }
            bias = values
        }
        self.init(weight: weight, classes: matrix.shape[0], dimension: matrix.shape[1], bias: bias, path: path)
    }

    /// Checks that the head takes embeddings of `embeddingSize` (the model's E).
    public func check(embeddingSize: Int) throws(MergeKitError) {
        guard dimension == embeddingSize else {
            throw MergeKitError(.shapeMismatch, file: path, tensor: "weight",
                "the head takes \(dimension)-dimensional embeddings but the model produces \(embeddingSize)",
                fix: "Use the head made for this model's embedding space")
        }
    }

    /// Logits [B, classes] of embeddings [B, E].
    public func logits(embeddings: [Float], batch: Int) -> [Float] {
        precondition(embeddings.count == batch * dimension)
        let normalized = TaskHead.normalize(embeddings, batch: batch, dimension: dimension).normalized
        var logits = [Float](repeating: 0, count: batch * classes)
        if let bias {
            for b in 0..<batch { logits.replaceSubrange(b * classes..<(b + 1) * classes, with: bias) }
        }
        normalized.withUnsafeBufferPointer { n in
            weight.withUnsafeBufferPointer { w in
                logits.withUnsafeMutableBufferPointer { z in
                    BLAS.gemm(transposeB: true, m: batch, n: classes, k: dimension, a: n.baseAddress!, lda: dimension,
                              b: w.baseAddress!, ldb: dimension, beta: bias == nil ? 0 : 1, c: z.baseAddress!, ldc: classes)
                }
            }
        }
        return logits
    }

    /// A classification loss of embeddings [B, E] through this head: the loss, the logits and
    /// ∂L/∂e [B, E] (what the engine's gradient passes take as the head's part).
    func lossGradient(embeddings: [Float], batch: Int, loss: ClassificationLoss)
        -> (loss: Double, logits: [Float], dEmbeddings: [Float]) {
        let logits = self.logits(embeddings: embeddings, batch: batch)
        let (value, dLogits) = loss.evaluate(logits: logits, batch: batch, classes: classes)
        return (value, logits, backward(embeddings: embeddings, logitGradient: dLogits, batch: batch))
    }

    /// ∂L/∂e [B, E] from ∂L/∂logits [B, classes].
    public func backward(embeddings: [Float], logitGradient: [Float], batch: Int) -> [Float] {
        precondition(embeddings.count == batch * dimension && logitGradient.count == batch * classes)
        let (normalized, norms) = TaskHead.normalize(embeddings, batch: batch, dimension: dimension)
        var d = [Float](repeating: 0, count: batch * dimension)
        logitGradient.withUnsafeBufferPointer { dz in
            weight.withUnsafeBufferPointer { w in
                d.withUnsafeMutableBufferPointer { dn in
                    BLAS.gemm(m: batch, n: dimension, k: classes, a: dz.baseAddress!, lda: classes, b: w.baseAddress!,
                              ldb: dimension, c: dn.baseAddress!, ldc: dimension)
                }
            }
        }
        for b in 0..<batch {
            let row = b * dimension
            var projection: Float = 0
            for i in 0..<dimension { projection += normalized[row + i] * d[row + i] }
            for i in 0..<dimension { d[row + i] = (d[row + i] - normalized[row + i] * projection) / norms[b] }
        }
        return d
    }

    /// Rows divided by their Euclidean norms, as PyTorch's `e / e.norm(dim=-1)` (a zero row gives NaN).
    static func normalize(_ x: [Float], batch: Int, dimension: Int) -> (normalized: [Float], norms: [Float]) {
        var out = x
        var norms = [Float](repeating: 0, count: batch)
        for b in 0..<batch {
            var s: Float = 0
            for i in 0..<dimension { s += x[b * dimension + i] * x[b * dimension + i] }
            norms[b] = s.squareRoot()
            for i in 0..<dimension { out[b * dimension + i] /= norms[b] }
        }
        return (out, norms)
    }
}
