/// Which files of a Hub repository a merge reads, and whether a cache snapshot holds them.
///
/// A **model** needs its weights — `model.safetensors.index.json` and every shard it names, else
/// `model.safetensors` (the names transformers writes and loads) — and the companions a merge
/// copies (`Checkpoint.companionFileNames`: config, tokenizer, license files) that the repository
/// has. Nothing else is downloaded: not PyTorch `.bin` weights, not other formats, not README.md.
/// A **LoRA adapter** needs `adapter_config.json` and `adapter_model.safetensors`.
///
/// A snapshot is **complete** when its weights are: the index and all its shards, or
/// `model.safetensors` (each a regular file, links followed: a link into a missing blob is
/// missing). The downloader places companions first, then the index, then the shards (or
/// `model.safetensors` last), so a download stopped part-way never leaves a snapshot that looks
/// complete.
public enum HubFiles {
    /// What a repository is read as.
    public enum Kind: Sendable, Hashable {
        case model, adapter
    }

    /// The first file `kind` needs that `snapshot` lacks (nil: complete), and, when the index is
    /// there but cannot be read, the error.
    static func missing(in snapshot: String, kind: Kind) -> (file: String?, error: MergeKitError?) {
        func present(_ name: String) -> Bool { FileSystem.kind(of: FileSystem.join(snapshot, name)) == .file }
        switch kind {
        case .adapter:
            return (["adapter_config.json", "adapter_model.safetensors"].first { !present($0) }, nil)
        case .model:
            if present(Checkpoint.indexFileName) {
                do throws(MergeKitError) {
                    let index = try Checkpoint.readIndex(FileSystem.join(snapshot, Checkpoint.indexFileName))
                    return (index.shardNames.first { !present($0) }, nil)
                } catch {
                    return (Checkpoint.indexFileName, error)
                }
            }
            return (present(Checkpoint.singleFileName) ? nil : Checkpoint.singleFileName, nil)
        }
    }

    /// The files of a repository holding `files` that `kind` needs, in the order they are placed,
    /// with the weights' entry point: the index (whose shards are added once it is read) or
    /// `model.safetensors`. Throws when the repository has no weights MergeKit reads.
    static func selection(_ files: [String], kind: Kind, repository: String, revision: String) throws(MergeKitError)
        -> (companions: [String], weights: String)
    {
        let listed = Set(files)
        switch kind {
        case .adapter:
            guard listed.contains("adapter_config.json") && listed.contains("adapter_model.safetensors") else {
                throw MergeKitError(.notACheckpoint, file: repository,
                    "(revision \(revision)) has no \(listed.contains("adapter_config.json") ? "adapter_model.safetensors" : "adapter_config.json"): it is not a PEFT LoRA adapter MergeKit reads",
                    fix: "Check the repository; an adapter saved as adapter_model.bin must be converted to safetensors")
            }
            return (["adapter_config.json"], "adapter_model.safetensors")
        case .model:
            let companions = Checkpoint.companionFileNames.filter { listed.contains($0) }
            if listed.contains(Checkpoint.indexFileName) { return (companions, Checkpoint.indexFileName) }
            if listed.contains(Checkpoint.singleFileName) { return (companions, Checkpoint.singleFileName) }
            let other = files.filter { !$0.contains("/") && Checkpoint.weightSuffixes.contains(where: $0.hasSuffix) }.sorted()
            throw MergeKitError(.notACheckpoint, file: repository,
                "(revision \(revision)) has no model.safetensors and no model.safetensors.index.json" + (other.isEmpty ? "" : " (it has \(other.prefix(4).joined(separator: ", "))\(other.count > 4 ? ", …" : ""))"),
                fix: "MergeKit reads safetensors weights as transformers saves them; convert the model to safetensors, or use a revision that has them")
        }
    }
}
