/// Which files of a Hub repository a merge reads, and whether a cache snapshot holds them.
///
/// A **model** needs its weights in one format — safetensors when the repository has them
/// (`model.safetensors.index.json` and every shard it names, else `model.safetensors`), else
/// PyTorch's (`pytorch_model.bin.index.json` and its shards, else `pytorch_model.bin`): the names
/// transformers writes, preferred as transformers prefers them, and never both formats — and the
/// companions a merge copies (`Checkpoint.companionFileNames`: config, tokenizer, license files)
/// that the repository has. Nothing else is downloaded: not the other format's weights, not
/// README.md. A **LoRA adapter** needs `adapter_config.json` and `adapter_model.safetensors`,
/// else `adapter_model.bin`.
///
/// A snapshot is **complete** when its weights are, in the first format it holds an entry point
/// of (safetensors first): the index and all its shards, or the single file (each a regular file,
/// links followed: a link into a missing blob is missing). The downloader places companions
/// first, then the index, then the shards (or the single file last), so a download stopped
/// part-way never leaves a snapshot that looks complete.
public enum HubFiles {
    /// What a repository is read as.
    public enum Kind: Sendable, Hashable {
        case model, adapter
    }

    /// A model's weights formats, in the order they are preferred: each an index (naming its
    /// shards) and a single file.
    static let modelWeights: [(index: String, single: String)] = [
        (Checkpoint.indexFileName, Checkpoint.singleFileName),
        (Checkpoint.pytorchIndexFileName, Checkpoint.pytorchFileName),
    ]
    /// An adapter's weights files, in the order they are preferred.
    static let adapterWeights = [LoRAAdapter.weightsFileName, LoRAAdapter.pytorchWeightsFileName]

    /// The first file `kind` needs that `snapshot` lacks (nil: complete), and, when the index is
    /// there but cannot be read, the error.
    static func missing(in snapshot: String, kind: Kind) -> (file: String?, error: MergeKitError?) {
        func present(_ name: String) -> Bool { FileSystem.kind(of: FileSystem.join(snapshot, name)) == .file }
        switch kind {
        case .adapter:
            if !present(LoRAAdapter.configFileName) { return (LoRAAdapter.configFileName, nil) }
            return (adapterWeights.contains(where: present) ? nil : adapterWeights[0], nil)
        case .model:
            for (index, single) in modelWeights {
                if present(index) {
                    do throws(MergeKitError) {
                        let shards = try Checkpoint.readIndex(FileSystem.join(snapshot, index)).shardNames
                        return (shards.first { !present($0) }, nil)
                    } catch {
                        return (index, error)
                    }
                }
                if present(single) { return (nil, nil) }
            }
            return (Checkpoint.singleFileName, nil)
        }
    }

    /// The files of a repository holding `files` that `kind` needs, in the order they are placed,
    /// with the weights' entry point: an index (whose shards are added once it is read) or a
    /// single weights file. Throws when the repository has no weights MergeKit reads.
    static func selection(_ files: [String], kind: Kind, repository: String, revision: String) throws(MergeKitError)
        -> (companions: [String], weights: String)
    {
        let listed = Set(files)
        switch kind {
        case .adapter:
            guard listed.contains(LoRAAdapter.configFileName), let weights = adapterWeights.first(where: listed.contains) else {
                throw MergeKitError(.notACheckpoint, file: repository,
                    "(revision \(revision)) has no \(listed.contains(LoRAAdapter.configFileName) ? "adapter_model.safetensors or adapter_model.bin" : "adapter_config.json"): it is not a PEFT LoRA adapter MergeKit reads",
                    fix: "Check the repository, or use a revision that has the adapter")
            }
            return ([LoRAAdapter.configFileName], weights)
        case .model:
            let companions = Checkpoint.companionFileNames.filter { listed.contains($0) }
            for (index, single) in modelWeights {
                if listed.contains(index) { return (companions, index) }
                if listed.contains(single) { return (companions, single) }
            }
            let other = files.filter { !$0.contains("/") && Checkpoint.weightSuffixes.contains(where: $0.hasSuffix) }.sorted()
            throw MergeKitError(.notACheckpoint, file: repository,
                "(revision \(revision)) has no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json" + (other.isEmpty ? "" : " (it has \(other.prefix(4).joined(separator: ", "))\(other.count > 4 ? ", …" : ""))"),
                fix: "MergeKit reads the weights transformers saves (safetensors or PyTorch); convert the model, or use a revision that has them")
        }
    }
}
