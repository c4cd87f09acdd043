extension LoRAExtraction.Result {
    /// The JSON report: options, per-tensor errors and a summary.
    public func json(_ extraction: LoRAExtraction) -> JSONValue {
        let errors = reports.map(\.relativeError)
        let worst = reports.max { $0.relativeError < $1.relativeError }
        return .object([
            JSONMember("output", .string(output)),
            JSONMember("base", .string(extraction.base.path)),
            JSONMember("model", .string(extraction.model.path)),
            JSONMember("rank", .int(extraction.options.rank)),
            JSONMember("svd", .string(extraction.options.randomized ? "randomized" : "exact")),
            JSONMember("oversampling", extraction.options.randomized ? .int(extraction.options.oversampling) : .null),
            JSONMember("power_iterations", extraction.options.randomized ? .int(extraction.options.powerIterations) : .null),
            JSONMember("seed", extraction.options.randomized ? .int(Int(truncatingIfNeeded: extraction.options.seed)) : .null),
            JSONMember("tensors", .array(reports.map { r in
                .object([JSONMember("tensor", .string(r.tensor)), JSONMember("module", .string(r.module)),
                         JSONMember("shape", .array(r.shape.map { .int($0) })), JSONMember("rank", .int(r.rank)),
                         JSONMember("relative_error", .double(r.relativeError)), JSONMember("delta_norm", .double(r.deltaNorm)),
                         JSONMember("seconds", .double(r.seconds))])
            })),
            JSONMember("skipped", .array(skipped.map { .string($0) })),
            JSONMember("mean_relative_error", .double(errors.isEmpty ? 0 : errors.reduce(0, +) / Double(errors.count))),
            JSONMember("max_relative_error", .double(worst?.relativeError ?? 0)),
            JSONMember("max_relative_error_tensor", worst.map { .string($0.tensor) } ?? .null),
            JSONMember("files", .array(files.map { .string($0) })),
            JSONMember("notes", .array(notes.map(\.json))),
            JSONMember("seconds", .double(seconds)),
            JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)),
            JSONMember("largest_weight_memory_estimate_bytes",
                       .int(extraction.targets.map { extraction.peakBytes($0, randomized: extraction.options.randomized) }.max() ?? 0)),
        ])
    }
}
