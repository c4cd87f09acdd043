import Foundation

/// The last phase of a merge: each plan's output is committed by its `CheckpointWriter` —
/// companions copied from the base (with `config.json`'s dtype, and a layer-wise recipe's layer
/// counts, kept truthful by `ConfigRewriter`), generated files (the model card, the recipe) written, the output synced and
/// moved into place — and described as a `MergeResult`. A failure aborts every output.
extension MergeExecutor {
    static func finish(_ targets: [Target], start: Date) throws(MergeKitError) -> [MergeResult] {
        var results: [MergeResult] = []
        for target in targets {
            let plan = target.plan
            var warnings: [String] = []
            do throws(MergeKitError) {
                let companions = try plan.companions.map { name throws(MergeKitError) in (source: try plan.base.companionSource(name), name: name) }
                try target.writer!.commit(companions: companions, generated: plan.generatedFiles) { name, bytes in
                    guard name == "config.json" else { return bytes }
                    let rewritten = plan.rewrittenConfig(bytes)
                    if rewritten == bytes, !ConfigRewriter.isJSONObject(bytes) {
                        var wanted = plan.output.dtype.map { ["its torch_dtype was not set to \(ConfigRewriter.torchNames[$0] ?? $0.rawValue)"] } ?? []
                        wanted += plan.configEdits.map { "\($0.path.joined(separator: ".")) was not set to \($0.value.serialized())" }
                        if !wanted.isEmpty {
                            warnings.append("\(FileSystem.join(plan.output.path, name)): copied unchanged: the base's config.json is not a JSON object, so \(wanted.joined(separator: ", ")); fix it by hand before loading the model with transformers")
                        }
                    }
                    return rewritten
                }
            } catch {
                targets.forEach { $0.writer?.abort() }
                throw error
            }
            // (A partition's result lists only the shards it wrote.)
            let files = plan.shards.indices.filter { target.writer!.writes(shard: $0) }.map { plan.shards[$0] }.map { shard in
                MergeResult.File(path: plan.output.isDirectory ? FileSystem.join(plan.output.path, shard.fileName) : plan.output.path,
                                 bytes: shard.layout.fileSize)
            }
            results.append(MergeResult(outputPath: plan.output.path, files: files,
                                       tensorsMerged: plan.tensors.reduce(0) { $0 + ($1.action == .merge ? 1 : 0) },
                                       tensorsCopied: plan.tensors.reduce(0) { $0 + ($1.action == .copy ? 1 : 0) },
                                       inputBytes: plan.inputBytes, outputBytes: plan.outputBytes,
                                       seconds: Date().timeIntervalSince(start),
                                       modelStatistics: plan.method.statistics.needsModelPasses ? target.model : nil,
                                       notes: target.writer!.notes, warnings: warnings))
        }
        return results
    }
}
