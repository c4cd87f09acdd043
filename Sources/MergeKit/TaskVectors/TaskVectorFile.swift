import Crypto

/// Task-vector files: safetensors checkpoints holding τ = θ_ft − θ₀ for every float tensor of the
/// base (integer and bool buffers are left out, as in the reference code), with `__metadata__`
/// recording where they came from:
///
/// | key                         | value                                              |
/// |-----------------------------|----------------------------------------------------|
/// | `format`                    | `pt`                                               |
/// | `mergekit.kind`             | `task_vector`                                      |
/// | `mergekit.base`             | the base checkpoint's path as given                |
/// | `mergekit.base_fingerprint` | `BaseFingerprint` of the base (`sha256:…`)         |
/// | `mergekit.sources`          | JSON array of the fine-tuned inputs' paths         |
/// | `mergekit.method`           | the method that produced it (task-arithmetic for a plain τ) |
///
/// When a task-vector file is applied, its fingerprint must match the base it is applied to.
/// Files without a fingerprint (made by other tools) are accepted unchecked.
public enum TaskVectorFile {
    public static let kindKey = "mergekit.kind"
    public static let kindValue = "task_vector"
    public static let baseKey = "mergekit.base"
    public static let fingerprintKey = "mergekit.base_fingerprint"
    public static let sourcesKey = "mergekit.sources"

    /// Whether a checkpoint's metadata marks it as a MergeKit task vector.
    public static func isTaskVector(_ checkpoint: Checkpoint) -> Bool {
        checkpoint.metadata?[kindKey] == kindValue
    }

    /// A full model passed where a task vector is expected lies *near the base* (θ = θ₀ + τ with
    /// a small τ), while a task vector lies near zero. On the fingerprint's sample positions (the
    /// first, middle and last 16 elements of every float tensor both have, finite values only),
    /// this is the relative distance r = ‖x − θ₀‖ / ‖θ₀‖: about ‖τ‖/‖θ₀‖ — a few percent, and
    /// far below ½ for any fine-tune — for a full model, and about 1 for a task vector (≥ ½
    /// unless τ were as large as half of θ₀ and aligned with it, which no fine-tune is). nil when
    /// the samples of the base are all 0.
    public static func relativeDistance(_ checkpoint: Checkpoint, toBase base: Checkpoint) -> Double? {
        var distance = 0.0, norm = 0.0
        var x = [Double](repeating: 0, count: 16), b = x
        for entry in base.entries where entry.info.dtype.isMergeable {
            guard let other = checkpoint.entry(named: entry.name), other.info.dtype.isMergeable,
                  other.info.shape == entry.info.shape else { continue }
            for range in BaseFingerprint.sampleRanges(elementCount: entry.info.elementCount) {
                BaseFingerprint.load(entry, range, into: &b)
                BaseFingerprint.load(other, range, into: &x)
                for k in 0..<range.count where x[k].isFinite && b[k].isFinite {
                    distance += (x[k] - b[k]) * (x[k] - b[k])
                    norm += b[k] * b[k]
                }
            }
        }
        return norm > 0 ? (distance / norm).squareRoot() : nil
    }

    /// Below this relative distance to the base (`relativeDistance`), a file given as a task
    /// vector is a full model.
    public static let fullModelDistance = 0.5
}

/// A fingerprint of a base model that identifies its weights, not just its architecture.
///
/// SHA-256 over, for every float tensor in name order: the name, the shape, and up to 48 sample
/// values (the first, middle and last 16 elements) converted to Float32. Reading a few values per
/// tensor costs a few page faults, yet two different checkpoints of one architecture (say a base
/// and its chat version) almost surely differ somewhere in those samples. The values are compared
/// as Float32, so an exact bf16 -> f32 upcast of a base keeps its fingerprint.
public enum BaseFingerprint {
    public static func compute(_ checkpoint: Checkpoint) -> String {
        var hasher = SHA256()
        let entries = checkpoint.entries.filter { $0.info.dtype.isMergeable }.sorted { $0.name < $1.name }
        var samples = [Float](repeating: 0, count: 16)
        for entry in entries {
            hasher.update(data: Array(entry.name.utf8) + [0])
            var dims = entry.info.shape.map { UInt64($0).littleEndian }
            dims.append(UInt64.max)
            dims.withUnsafeBytes { hasher.update(bufferPointer: $0) }
            let width = entry.info.dtype.byteWidth!
            let bytes = entry.file.bytes(of: entry.info)
            for range in sampleRanges(elementCount: entry.info.elementCount) {
                samples.withUnsafeMutableBufferPointer { buffer in
                    Float.load(bytes.baseAddress! + range.lowerBound * width, dtype: entry.info.dtype, count: range.count, into: buffer.baseAddress!)
                    let sampled = UnsafeBufferPointer(rebasing: buffer[0..<range.count])
                    for value in sampled {
                        withUnsafeBytes(of: value.bitPattern.littleEndian) { hasher.update(bufferPointer: $0) }
                    }
                }
            }
        }
        let digest = hasher.finalize()
        return "sha256:" + hexString(digest)
    }

    /// The sampled elements of a tensor of `n` elements: the first, middle and last 16 (merged
    /// where they overlap; none for an empty tensor).
    static func sampleRanges(elementCount n: Int) -> [Range<Int>] {
        Array(Set([0, max(0, n / 2 - 8), max(0, n - 16)])).sorted().compactMap { start in
            let count = min(16, n - start)
            return count > 0 ? start..<(start + count) : nil
        }
    }

    /// Elements `range` (at most 16) of `entry` as Double.
    static func load(_ entry: Checkpoint.Entry, _ range: Range<Int>, into values: inout [Double]) {
        let bytes = entry.file.bytes(of: entry.info)
        values.withUnsafeMutableBufferPointer { buffer in
            Double.load(bytes.baseAddress! + range.lowerBound * entry.info.dtype.byteWidth!, dtype: entry.info.dtype,
                        count: range.count, into: buffer.baseAddress!)
        }
    }
}

/// Lower-case hex of a byte sequence.
func hexString<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}
