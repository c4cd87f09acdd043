/// Full validation of a checkpoint on disk (a CI gate), optionally with the NaN and ±Inf counts
/// of every float tensor (the finiteness scan of a checkpoint summary).
///
/// Opening the checkpoint validates every header and, for sharded directories, the index against
/// the shards (see `Checkpoint`). The verifier then reads every tensor's bytes once, streaming
/// through one bounded buffer with `pread` (`SafeTensorsFile.read(into:count:at:)`), to prove the
/// data is readable to the last byte. With `checkFinite`, every float tensor (F16, BF16, F32, F64)
/// is converted chunk by chunk (`Float.load` / `Double.load`) and its NaN, +Inf and −Inf values are
/// counted. Memory stays at `bufferBytes` plus its conversion buffer, whatever the model's size.
public struct CheckpointVerifier: Sendable {
    /// Bytes read per `pread` (4 MiB).
    public static let defaultBufferBytes = 4 << 20

    /// Whether to count NaN and ±Inf in float tensors.
    public var checkFinite: Bool
    /// Size of the read buffer (at least 8 bytes).
    public var bufferBytes: Int

    public init(checkFinite: Bool = false, bufferBytes: Int = CheckpointVerifier.defaultBufferBytes) {
        precondition(bufferBytes >= 8, "the read buffer must hold at least one element of every dtype")
        self.checkFinite = checkFinite
        self.bufferBytes = bufferBytes
    }

    /// The NaN and infinity counts of one float tensor that holds any.
    public struct NonFiniteCount: Sendable, Equatable {
        /// The file the tensor is stored in.
        public let file: String
        public let tensor: String
        public let dtype: DType
        public let nan: Int
        public let positiveInfinity: Int
        public let negativeInfinity: Int
        /// Row-major index of the first non-finite element.
        public let firstIndex: Int

        public var total: Int { nan + positiveInfinity + negativeInfinity }

        /// "3 NaN, 1 +Inf" (only the kinds present).
        public var countsDescription: String {
            var parts: [String] = []
            if nan > 0 { parts.append("\(grouped(nan)) NaN") }
            if positiveInfinity > 0 { parts.append("\(grouped(positiveInfinity)) +Inf") }
            if negativeInfinity > 0 { parts.append("\(grouped(negativeInfinity)) -Inf") }
            return parts.joined(separator: ", ")
        }
    }

    /// What a successful verification found.
    public struct Report: Sendable {
        public let path: String
        public let layout: Checkpoint.Layout
        public let files: [String]
        public let tensorCount: Int
        /// Tensor data bytes read (every tensor, once).
        public let bytesRead: Int
        /// Whether NaN/Inf were counted.
        public let checkedFinite: Bool
        /// Float tensors whose values were checked (0 without `checkFinite`).
        public let floatTensorsChecked: Int
        /// The float tensors holding NaN or ±Inf, in checkpoint order.
        public let nonFinite: [NonFiniteCount]

        public var nanCount: Int { nonFinite.reduce(0) { $0 + $1.nan } }
        public var positiveInfinityCount: Int { nonFinite.reduce(0) { $0 + $1.positiveInfinity } }
        public var negativeInfinityCount: Int { nonFinite.reduce(0) { $0 + $1.negativeInfinity } }

        /// True when the checkpoint is valid, readable and (when checked) finite.
        public var passed: Bool { nonFinite.isEmpty }

        /// "single file", "directory (model.safetensors)", "sharded directory, 3 shards (…index.json)".
        public var layoutDescription: String {
            switch layout {
            case .file: return "single file"
            case .directory(let weights): return "directory (\(weights))"
            case .sharded(let index): return "sharded directory, \(files.count) shards (\(index))"
            }
        }

        /// "<layout>; 1,234 tensors, 5,678 bytes read".
        public var summary: String { "\(layoutDescription); \(grouped(tensorCount)) tensors, \(grouped(bytesRead)) bytes read" }

        /// The error for the first tensor holding NaN or ±Inf, when there is one.
        public var nonFiniteError: MergeKitError? {
            guard let first = nonFinite.first else { return nil }
            let others = nonFinite.count > 1 ? " (and \(nonFinite.count - 1) more tensors hold NaN or Inf)" : ""
            return MergeKitError(.nonFiniteValue, file: first.file, tensor: first.tensor,
                "holds \(first.countsDescription) values, the first at element \(first.firstIndex)\(others)",
                fix: "The checkpoint is damaged or training diverged; download it again or use another checkpoint")
        }

        /// Counts of non-finite values as JSON (for the JSON reports of inspection and verification).
        public var nonFiniteJSON: JSONValue {
            .object([
                JSONMember("checked", .bool(checkedFinite)),
                JSONMember("float_tensors_checked", .int(floatTensorsChecked)),
                JSONMember("nan", .int(nanCount)),
                JSONMember("positive_infinity", .int(positiveInfinityCount)),
                JSONMember("negative_infinity", .int(negativeInfinityCount)),
                JSONMember("tensors", .array(nonFinite.map { t in
                    .object([JSONMember("name", .string(t.tensor)), JSONMember("file", .string(t.file)),
                             JSONMember("dtype", .string(t.dtype.rawValue)), JSONMember("nan", .int(t.nan)),
                             JSONMember("positive_infinity", .int(t.positiveInfinity)),
                             JSONMember("negative_infinity", .int(t.negativeInfinity)),
                             JSONMember("first_index", .int(t.firstIndex))])
                })),
            ])
        }

        /// Human-readable lines about non-finite values (empty when not checked).
        public var nonFiniteText: [String] {
            guard checkedFinite else { return [] }
            if nonFinite.isEmpty {
                return ["non-finite values: none in \(grouped(floatTensorsChecked)) float tensors"]
            }
            var lines = ["non-finite values: \(grouped(nanCount)) NaN, \(grouped(positiveInfinityCount)) +Inf, \(grouped(negativeInfinityCount)) -Inf in \(nonFinite.count) of \(grouped(floatTensorsChecked)) float tensors"]
            for t in nonFinite {
                lines.append("  \(t.tensor): \(t.countsDescription) (first at element \(t.firstIndex))")
            }
            return lines.map(TerminalText.escaped)
        }
    }

    /// A temporary output left next to (or inside) a checkpoint by a run that was killed before it
    /// could clean up (`OutputTemporaries`): no process holds it any more.
    public struct StaleTemporary: Sendable, Equatable {
        public let path: String
        /// Disk space it takes.
        public let bytes: Int
        /// The process that left it.
        public let pid: Int32

        /// One line for people.
        public var description: String {
            "\(path) (\(OutputTemporaries.byteDescription(bytes))) is a temporary output left by an interrupted run (process \(pid)); the next run writing this output removes it, or delete it"
        }

        public var json: JSONValue {
            .object([JSONMember("path", .string(path)), JSONMember("bytes", .int(bytes)), JSONMember("pid", .int(Int(pid)))])
        }
    }

    /// The stale temporaries of `path`: next to it, and directly inside it when it is a
    /// directory. Temporaries a live process holds (an output being written now) are not listed.
    public static func staleTemporaries(near path: String) -> [StaleTemporary] {
        OutputTemporaries.find(near: path).filter { !$0.inUse }.map { StaleTemporary(path: $0.path, bytes: $0.bytes, pid: $0.pid) }
    }

    /// Opens `path` (validating headers, shards and index) and verifies it.
    public func verify(path: String) throws(MergeKitError) -> Report {
        try verify(try Checkpoint(path: path))
    }

    /// Reads every tensor of `checkpoint` once and, with `checkFinite`, counts NaN and ±Inf.
    /// Throws only when the data cannot be read (a file truncated or damaged since it was opened).
    public func verify(_ checkpoint: Checkpoint) throws(MergeKitError) -> Report {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferBytes, alignment: 64)
        defer { buffer.deallocate() }
        // Conversion buffers: a chunk of 2-byte elements is at most bufferBytes / 2 values.
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: checkFinite ? bufferBytes / 2 : 0)
        defer { floats.deallocate() }
        let doubles = UnsafeMutablePointer<Double>.allocate(capacity: checkFinite ? bufferBytes / 8 : 0)
        defer { doubles.deallocate() }

        var bytesRead = 0
        var floatTensors = 0
        var nonFinite: [NonFiniteCount] = []
        for entry in checkpoint.entries {
            let info = entry.info
            let counting = checkFinite && info.dtype.isMergeable
            if counting { floatTensors += 1 }
            // Whole elements per chunk (sub-byte dtypes are only read, never converted).
            let elementBytes = info.dtype.byteWidth ?? 1
            let chunkBytes = bufferBytes / elementBytes * elementBytes
            var counter = Counter()
            var done = 0
            let reader = TensorReader(entry)
            while done < info.byteCount {
                let n = min(chunkBytes, info.byteCount - done)
                try reader.read(bytes: done..<(done + n), into: buffer)
                if counting {
                    let count = n / elementBytes
                    let firstElement = done / elementBytes
                    if info.dtype == .F64 {
                        Double.load(buffer, dtype: .F64, count: count, into: doubles)
                        counter.add(doubles, count: count, firstElement: firstElement)
                    } else {
                        Float.load(buffer, dtype: info.dtype, count: count, into: floats)
                        counter.add(floats, count: count, firstElement: firstElement)
                    }
                }
                done += n
            }
            bytesRead += info.byteCount
            if counter.total > 0 {
                nonFinite.append(NonFiniteCount(file: entry.file.path, tensor: info.name, dtype: info.dtype, nan: counter.nan,
                                                positiveInfinity: counter.positiveInfinity,
                                                negativeInfinity: counter.negativeInfinity, firstIndex: counter.firstIndex ?? 0))
            }
        }
        return Report(path: checkpoint.path, layout: checkpoint.layout, files: checkpoint.filePaths,
                      tensorCount: checkpoint.entries.count, bytesRead: bytesRead, checkedFinite: checkFinite,
                      floatTensorsChecked: floatTensors, nonFinite: nonFinite)
    }

    /// NaN / ±Inf counts of one tensor, accumulated chunk by chunk.
    private struct Counter {
        var nan = 0
        var positiveInfinity = 0
        var negativeInfinity = 0
        var firstIndex: Int?

        var total: Int { nan + positiveInfinity + negativeInfinity }

        mutating func add<T: BinaryFloatingPoint>(_ values: UnsafeMutablePointer<T>, count: Int, firstElement: Int) {
            // A fast scan first: almost every chunk is all finite.
            var allFinite = true
            for i in 0..<count where !values[i].isFinite { allFinite = false; break }
            if allFinite { return }
            for i in 0..<count {
                let v = values[i]
                if v.isFinite { continue }
                if firstIndex == nil { firstIndex = firstElement + i }
                if v.isNaN { nan += 1 } else if v > 0 { positiveInfinity += 1 } else { negativeInfinity += 1 }
            }
        }
    }
}
