/// The human-readable form of a validated plan (`--dry-run`): inputs, method, output files and
/// what each tensor will get.
public enum PlanDescription {
    public static func text(_ plan: MergePlan) -> String {
        var lines: [String] = []
        lines.append("method: \(plan.method.info.name) \(JSONValue.object(plan.method.parameters).serialized())")
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
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
