/// What `merge-cli inspect` reports about a checkpoint: layout, kind, metadata, tensors, totals.
public struct CheckpointSummary: Sendable {
    public struct DTypeTotal: Sendable {
        public let dtype: DType
        public let tensors: Int
        public let parameters: Int
        public let bytes: Int
    }

    public let path: String
    public let layout: Checkpoint.Layout
    public let files: [String]
    /// "model", "task_vector", "linearized" (`LinearizedCheckpoint`) or "wemoe" (a weight-ensembling MoE model, `WEMoEParameters`).
    public let kind: String
    public let metadata: [String: String]
    public let tensors: [TensorInfo]
    public let parameters: Int
    public let bytes: Int
    public let dtypes: [DTypeTotal]

    public init(_ checkpoint: Checkpoint) {
        path = checkpoint.path
        layout = checkpoint.layout
        files = checkpoint.filePaths
        kind = CheckpointKind(checkpoint).rawValue
        metadata = checkpoint.metadata ?? [:]
        tensors = checkpoint.entries.map(\.info)
        parameters = checkpoint.parameterCount
        bytes = checkpoint.dataBytes
        var totals: [DType: (Int, Int, Int)] = [:]
        for t in tensors {
            let old = totals[t.dtype] ?? (0, 0, 0)
            totals[t.dtype] = (old.0 + 1, old.1 + t.elementCount, old.2 + t.byteCount)
        }
        dtypes = totals.keys.sorted { $0.rawValue < $1.rawValue }.map { d in
            DTypeTotal(dtype: d, tensors: totals[d]!.0, parameters: totals[d]!.1, bytes: totals[d]!.2)
        }
    }

    public var layoutDescription: String {
        switch layout {
        case .file: return "single file"
        case .directory(let weights): return "directory (\(weights))"
        case .sharded(let index): return "sharded directory, \(files.count) shards (\(index))"
        }
    }

    public var json: JSONValue {
        .object(jsonMembers + [JSONMember("tensors", .array(tensors.map(Self.json)))])
    }

    /// The JSON report pretty-printed (2 spaces), with `extra` members at the end, handed to
    /// `write` piece by piece: the same text as `json` with them, serialised, but never built
    /// whole (a million-tensor checkpoint's report would take gigabytes as one value).
    public func writeJSON(adding extra: [JSONMember] = [], to write: (String) -> Void) {
        func member(_ m: JSONMember) -> String {
            var key = ""
            JSONValue.writeString(m.key, to: &key)
            return "  " + key + ": " + m.value.serialized(indent: 2, level: 1)
        }
        write("{\n")
        for m in jsonMembers { write(member(m) + ",\n") }
        write("  \"tensors\": [")
        for (i, t) in tensors.enumerated() {
            write((i == 0 ? "\n" : ",\n") + "    " + Self.json(t).serialized(indent: 2, level: 2))
        }
        write(tensors.isEmpty ? "]" : "\n  ]")
        for m in extra { write(",\n" + member(m)) }
        write("\n}\n")
    }

    private static func json(_ t: TensorInfo) -> JSONValue {
        .object([JSONMember("name", .string(t.name)), JSONMember("dtype", .string(t.dtype.rawValue)),
                 JSONMember("shape", .array(t.shape.map { .int($0) })), JSONMember("parameters", .int(t.elementCount)),
                 JSONMember("bytes", .int(t.byteCount))])
    }

    /// Every member of the JSON report but the tensors.
    private var jsonMembers: [JSONMember] {
        [
            JSONMember("path", .string(path)),
            JSONMember("layout", .string(layoutDescription)),
            JSONMember("files", .array(files.map { .string($0) })),
            JSONMember("kind", .string(kind)),
            JSONMember("metadata", .object(metadata.keys.sorted().map { JSONMember($0, .string(metadata[$0]!)) })),
            JSONMember("tensor_count", .int(tensors.count)),
            JSONMember("parameters", .int(parameters)),
            JSONMember("bytes", .int(bytes)),
            JSONMember("dtypes", .array(dtypes.map { d in
                .object([JSONMember("dtype", .string(d.dtype.rawValue)), JSONMember("tensors", .int(d.tensors)),
                         JSONMember("parameters", .int(d.parameters)), JSONMember("bytes", .int(d.bytes))])
            })),
        ]
    }

    /// The human-readable report.
    public var text: String {
        var lines: [String] = []
        writeText { lines.append($0) }
        return lines.joined(separator: "\n")
    }

    /// The human-readable report, one line at a time (without line ends), each line escaped for a
    /// terminal (`TerminalText`): names and metadata are data and never forge a line.
    public func writeText(to emit: (String) -> Void) {
        func write(_ line: String) { emit(TerminalText.escaped(line)) }
        var lines: [String] = []
        lines.append("\(path): \(layoutDescription)")
        switch kind {
        case "task_vector": lines.append("kind: task vector")
        case "linearized":
            let architecture = metadata[LinearizedCheckpoint.architectureKey] ?? "unknown architecture"
            lines.append("kind: linearized model (\(architecture)): params0.* = θ₀, params.* = θ, "
                         + "run as f(x; θ₀) + J·(θ − θ₀); \(grouped(parameters / 2)) parameters per half")
        case "wemoe":
            let m = metadata
            lines.append("kind: WEMoE model: \(m["wemoe.num_experts"].flatMap { Int($0) }.map { counted($0, "expert") } ?? "? experts"), router depth \(m["wemoe.router_depth"] ?? "?"), "
                         + "λ \(m["wemoe.init_lambda"] ?? "?"), \(m["wemoe.trained_steps"] ?? "0") test-time adaptation steps")
        default: lines.append("kind: model")
        }
        if !metadata.isEmpty {
            lines.append("metadata:")
            for key in metadata.keys.sorted() { lines.append("  \(key): \(metadata[key]!)") }
        }
        lines.append("tensors: \(tensors.count), parameters: \(grouped(parameters)), bytes: \(grouped(bytes))")
        for d in dtypes {
            lines.append("  \(d.dtype.rawValue): \(d.tensors) tensors, \(grouped(d.parameters)) parameters, \(grouped(d.bytes)) bytes")
        }
        let nameWidth = min(80, max(4, tensors.lazy.map(\.name.count).max() ?? 0))
        lines.append("")
        lines.append(pad("name", nameWidth) + "  " + pad("dtype", 6) + "  " + pad("shape", 16) + "  parameters")
        lines.forEach(write)
        for t in tensors {
            let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
            write(pad(t.name, nameWidth) + "  " + pad(t.dtype.rawValue, 6) + "  " + pad(shape, 16) + "  " + grouped(t.elementCount))
        }
    }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }
}

/// 1234567 -> "1,234,567".
func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}
