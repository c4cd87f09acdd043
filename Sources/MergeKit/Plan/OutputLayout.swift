/// One output file: its name (inside the output directory, or the output file itself) and layout.
public struct OutputShard: Sendable {
    public let fileName: String
    public let layout: SafeTensorsLayout
}

/// Where every output tensor goes: the one layout function of the planner, used for ordinary,
/// linearized and linearizing plans alike.
///
/// Tensors keep their order (the base's, for merges) and are split into shards at the output's
/// maximum shard size (`OutputSpec.maxShardSize`, default `OutputSpec.defaultMaxShardSize`; a
/// single-file output is never split): a shard closes when the next tensor would take it past the
/// limit, so a tensor larger than the limit gets a shard of its own. Shards are named as
/// transformers names them: `model.safetensors` for one, `model-0000K-of-0000N.safetensors` for
/// several; a single-file output keeps its own name. Each shard's header (`SafeTensorsLayout`)
/// fixes every tensor's byte offset before any data is written.
enum OutputLayout {
    /// The shards of an output holding `specs` in order, and each tensor's shard index and place
    /// in it (parallel to `specs`).
    static func layOut(_ specs: [TensorSpec], output: OutputSpec, metadata: [String: String])
        -> (shards: [OutputShard], placements: [(shard: Int, info: TensorInfo)]) {
        let limit = output.isDirectory ? (output.maxShardSize ?? OutputSpec.defaultMaxShardSize) : Int.max
        var groups: [[Int]] = [[]]
        var groupBytes = 0
        for (i, spec) in specs.enumerated() {
            if !groups[groups.count - 1].isEmpty && groupBytes + spec.byteCount > limit {
                groups.append([])
                groupBytes = 0
            }
            groups[groups.count - 1].append(i)
            groupBytes += spec.byteCount
        }
        var shards: [OutputShard] = []
        var placements: [(shard: Int, info: TensorInfo)] = []
        placements.reserveCapacity(specs.count)
        for (shardIndex, group) in groups.enumerated() {
            let fileName: String
            if !output.isDirectory {
                fileName = FileSystem.lastComponent(of: output.path)
            } else if groups.count == 1 {
                fileName = Checkpoint.singleFileName
            } else {
                fileName = "model-\(fiveDigits(shardIndex + 1))-of-\(fiveDigits(groups.count)).safetensors"
            }
            let layout = SafeTensorsLayout(specs: group.map { specs[$0] }, metadata: metadata)
            shards.append(OutputShard(fileName: fileName, layout: layout))
            for position in group.indices { placements.append((shardIndex, layout.tensors[position])) }
        }
        return (shards, placements)
    }

    /// `n` zero-padded to five digits, as transformers numbers shards (and `OutputParts` parts).
    static func fiveDigits(_ n: Int) -> String {
        let s = String(n)
        return s.count >= 5 ? s : String(repeating: "0", count: 5 - s.count) + s
    }
}

extension MergePlan {
    /// Output files for `items` in order (`OutputLayout`), with each tensor made for its place.
    static func laidOut(_ items: [(spec: TensorSpec, make: (Int, TensorInfo) -> PlannedTensor)], output: OutputSpec,
                        metadata: [String: String]) -> (tensors: [PlannedTensor], shards: [OutputShard]) {
        let (shards, placements) = OutputLayout.layOut(items.map(\.spec), output: output, metadata: metadata)
        return (zip(items, placements).map { item, placement in item.make(placement.shard, placement.info) }, shards)
    }
}
