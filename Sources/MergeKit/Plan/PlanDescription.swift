/// The human-readable form of a validated plan (`--dry-run`): inputs, method, output files and
/// what each tensor will get.
public enum PlanDescription {
    public static func text(_ plan: MergePlan) -> String {
        var lines: [String] = []
        lines.append("method: \(plan.method.info.name) \(JSONValue.object(plan.method.parameters).serialized())")
        if plan.output.compute.rounding != nil {
            lines.append("compute: \(plan.output.compute.rawValue), rounded where mergekit rounds when it computes in it")
        }
        lines.append("base: \(plan.base.path)")
        for input in plan.inputs {
            lines.append("input: \(input.path) (\(input.kind.rawValue), weight \(input.weight))")
        }
        let layout = plan.output.isDirectory ? "directory" : "file"
        lines.append("output: \(plan.output.path) (\(layout), emit \(plan.output.emit.rawValue), \(plan.shards.count) file(s), \(plan.outputBytes) bytes of tensors)")
        for shard in plan.shards {
            lines.append("  \(shard.fileName): \(shard.layout.tensors.count) tensors, \(shard.layout.fileSize) bytes")
        }
        if !plan.companions.isEmpty || !plan.generatedFiles.isEmpty {
            lines.append("  also: " + (plan.companions + plan.generatedFiles.keys.sorted()).joined(separator: ", "))
        }
        if let vocabulary = plan.vocabulary { lines.append("vocabulary: \(vocabulary)") }
        if let largest = MergeExecutor.largestWholeTensor([plan]) {
            let available = MemoryBudget.configuredBytes.map { ", \(ByteCount.describe($0)) available" } ?? ""
            lines.append("memory: matrices merged whole need up to about \(ByteCount.describe(largest.bytes)) each (the largest: \(largest.name)), plus \(ByteCount.describe(MergeExecutor.perWorkerBytes([plan]))) per worker\(available)")
        }
        let uniformParameters = JSONValue.object(plan.method.parameters).serialized()
        let uniformWeights = plan.inputs.map(\.weight)
        lines.append("tensors:")
        for tensor in plan.tensors {
            let shape = "[" + tensor.output.shape.map(String.init).joined(separator: ", ") + "]"
            var line = "  \(tensor.name) \(shape) \(tensor.base.info.dtype.rawValue) -> \(tensor.output.dtype.rawValue): "
            switch tensor.action {
            case .copy:
                line += "copied from the base"
            case .merge:
                line += "merged" + (tensor.computeInDouble ? " (in Float64)" : "")
                    + (MergeExecutor.wholeTensorMethod(tensor) != nil ? " whole (\(tensor.method.info.name): SVD per matrix)" : "")
                let parameters = JSONValue.object(tensor.method.parameters).serialized()
                if parameters != uniformParameters { line += " with \(parameters)" }
                if tensor.weights != uniformWeights { line += " weights \(tensor.weights)" }
            }
            if let origin = plan.origins[tensor.name] { line += " from " + origin.joined(separator: ", ") }
            lines.append(line)
        }
        return TerminalText.lines(lines)
    }

    /// The same plan as JSON (`--dry-run --json`): inputs, method, output files and, per tensor,
    /// its shape, dtypes and what it will get.
    public static func json(_ plan: MergePlan) -> JSONValue {
        let uniformWeights = plan.inputs.map(\.weight)
        let uniformParameters = JSONValue.object(plan.method.parameters)
        let tensors: [JSONValue] = plan.tensors.map { tensor in
            var members = [
                JSONMember("name", .string(tensor.name)),
                JSONMember("shape", .array(tensor.output.shape.map { .int($0) })),
                JSONMember("dtype", .string(tensor.base.info.dtype.rawValue)),
                JSONMember("output_dtype", .string(tensor.output.dtype.rawValue)),
                JSONMember("action", .string(tensor.action == .merge ? "merge" : "copy")),
                JSONMember("file", .string(plan.shards[tensor.shard].fileName)),
            ]
            if tensor.action == .merge {
                let compute = plan.output.compute.rounding?.rawValue ?? (tensor.computeInDouble ? "F64" : "F32")
                members.append(JSONMember("compute", .string(compute)))
                members.append(JSONMember("whole_tensor", .bool(MergeExecutor.wholeTensorMethod(tensor) != nil)))
                let parameters = JSONValue.object(tensor.method.parameters)
                if parameters != uniformParameters { members.append(JSONMember("parameters", parameters)) }
                if tensor.weights != uniformWeights { members.append(JSONMember("weights", .array(tensor.weights.map { .double($0) }))) }
            }
            if let origin = plan.origins[tensor.name] { members.append(JSONMember("from", .array(origin.map { .string($0) }))) }
            return .object(members)
        }
        return .object([
            JSONMember("method", .string(plan.method.info.name)),
            JSONMember("parameters", uniformParameters),
            JSONMember("base", .string(plan.base.path)),
            JSONMember("inputs", .array(plan.inputs.map { input in
                .object([JSONMember("path", .string(input.path)), JSONMember("kind", .string(input.kind.rawValue)),
                         JSONMember("weight", .double(input.weight))])
            })),
            JSONMember("output", .object([
                JSONMember("path", .string(plan.output.path)),
                JSONMember("layout", .string(plan.output.isDirectory ? "directory" : "file")),
                JSONMember("emit", .string(plan.output.emit.rawValue)),
                JSONMember("tensor_bytes", .int(plan.outputBytes)),
                JSONMember("files", .array(plan.shards.map { shard in
                    .object([JSONMember("name", .string(shard.fileName)), JSONMember("tensors", .int(shard.layout.tensors.count)),
                             JSONMember("bytes", .int(shard.layout.fileSize))])
                })),
                JSONMember("also", .array((plan.companions + plan.generatedFiles.keys.sorted()).map { .string($0) })),
            ])),
        ] + (plan.vocabulary.map { [JSONMember("vocabulary", .string($0))] } ?? []) + [
            JSONMember("tensors", .array(tensors)),
        ])
    }
}
