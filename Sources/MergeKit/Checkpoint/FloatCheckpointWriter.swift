/// Writes Float32 tensors held in memory as one safetensors checkpoint: a `.safetensors` file, or
/// a directory holding `model.safetensors` and its companions (copied, or generated such as a
/// config.json). Atomic, through `CheckpointWriter`; the output is first checked against `inputs`
/// (every path the tensors were built from) by `OutputGuard`. What WEMoE models, random encoders
/// and task heads are saved with.
enum FloatCheckpointWriter {
    /// One tensor: its name, shape and values (shape's product of them, F32).
    typealias Tensor = (name: String, shape: [Int], values: UnsafePointer<Float>)

    /// - Parameters:
    ///   - companions: (source path, file name) pairs copied into a directory output.
    ///   - generated: file name → bytes written into a directory output (a companion of the same
    ///     name is not copied).
    /// - Returns: what happened around the output (stale temporaries removed, …).
    static func save(_ tensors: [Tensor], metadata: [String: String], to path: String, overwrite: Bool, inputs: [String],
                     companions: [(source: String, name: String)] = [], generated: [String: [UInt8]] = [:]) throws(MergeKitError) -> [OutputNote] {
        try OutputGuard.check(output: path, overwrite: overwrite, inputs: inputs + companions.map(\.source))
        let layout = SafeTensorsLayout(specs: tensors.map { TensorSpec(name: $0.name, dtype: .F32, shape: $0.shape) }, metadata: metadata)
        let spec = OutputSpec(path: path, overwrite: overwrite)
        let writer = try CheckpointWriter(output: spec, shards: [OutputShard(fileName: "model.safetensors", layout: layout)])
        do throws(MergeKitError) {
            for (info, tensor) in zip(layout.tensors, tensors) {
                try writer.write(UnsafeRawBufferPointer(start: UnsafeRawPointer(tensor.values), count: info.end - info.begin),
                                 dataOffset: info.begin, shard: 0)
            }
            try writer.commit(companions: spec.isDirectory ? companions : [], generated: spec.isDirectory ? generated : [:]) { _, bytes in bytes }
        } catch {
            writer.abort()
            throw error
        }
        return writer.notes
    }
}
