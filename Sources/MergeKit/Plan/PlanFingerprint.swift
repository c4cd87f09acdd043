import Crypto

/// The SHA-256 of what a merge's plans decide, recorded in every part of a partitioned merge
/// (`OutputParts`) so that parts of different merges are never put together.
///
/// It covers, for each plan (a sweep's points in order): the output path, kind, dtype, compute
/// dtype and shard size; every output shard's name and header bytes (tensor names, dtypes,
/// shapes, offsets, and the metadata naming the method, its parameters and the weights); per
/// tensor, its action, method, parameters and weights, and where every input is read from (file
/// path as given, file size, byte range, dtype and shape, a vocabulary row map, a LoRA module's
/// factors and scale); the companions' names, the config edits and the generated files' bytes
/// (the recipe) but the model card's: it records the command line, and partitions may differ in
/// flags that change no output byte (--threads, --json, --quiet); partition 0 writes it, from
/// its own command (less --partition and --assemble). Two processes that plan the same
/// merge of the same files therefore agree, and a part made with another recipe, other
/// arguments, other inputs (another path, size or layout) or another version of the plan's
/// format does not. A file rewritten in place with the same size and layout is not told apart
/// (the fingerprint reads no tensor bytes).
enum PlanFingerprint {
    /// Bump when what is hashed changes, so that parts written by another version do not match.
    static let version = 1

    static func compute(_ plans: [MergePlan], points: [MergeRun.Point]) -> String {
        var hasher = SHA256()
        func add(_ text: String) {
            hasher.update(data: Array(text.utf8))
            hasher.update(data: [0])
        }
        func add(_ entry: Checkpoint.Entry) {
            add("\(entry.file.path)|\(entry.file.fileSize)|\(entry.info.begin)..<\(entry.info.end)|\(entry.info.dtype.rawValue)|\(entry.info.shape)")
            if let rows = entry.rows {
                add("rows \(rows.rowCount) " + rows.rows.map(String.init).joined(separator: ","))
                add(rows.own)
            }
        }
        add("mergekit plan fingerprint \(version)")
        for (p, plan) in plans.enumerated() {
            let output = plan.output
            add("plan \(p) \(output.path) \(output.emit.rawValue) \(output.dtype?.rawValue ?? "-") \(output.compute.rawValue) \(output.maxShardSize ?? 0)")
            if points.indices.contains(p) { add("point " + points[p].map { "\($0.name)=\($0.value)" }.joined(separator: ",")) }
            add("base \(plan.base.path)")
            for input in plan.inputs { add("input \(input.kind.rawValue) \(input.path) \(input.weight)") }
            for shard in plan.shards {
                add("shard \(shard.fileName)")
                hasher.update(data: shard.layout.prefix)
            }
            for tensor in plan.tensors {
                add("tensor \(tensor.name) \(tensor.action) \(tensor.method.info.name) \(JSONValue.object(tensor.method.parameters).serialized()) \(tensor.weights) \(tensor.computeInDouble) \(tensor.shard)")
                add(tensor.base)
                for source in tensor.inputs {
                    switch source {
                    case .tensor(let entry): add(entry)
                    case .lora(let module):
                        add("lora \(module.name) \(module.scale) \(module.transposed) \(module.embedding)")
                        add(module.a)
                        add(module.b)
                    case .zero: add("zero")
                    }
                }
            }
            add("companions " + plan.companions.joined(separator: ","))
            for edit in plan.configEdits { add("edit \(edit.path.joined(separator: ".")) \(edit.value.serialized())") }
            for name in plan.generatedFiles.keys.sorted() where name != "README.md" {
                add("generated \(name)")
                hasher.update(data: plan.generatedFiles[name]!)
            }
        }
        return hexString(hasher.finalize())
    }
}
