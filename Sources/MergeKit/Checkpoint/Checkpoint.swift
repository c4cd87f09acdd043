/// A model on disk: one `.safetensors` file, a directory holding `model.safetensors`, or a
/// sharded Hugging Face directory (`*.safetensors.index.json` plus its shards) — or the same in
/// PyTorch's format: a file `torch.save` wrote (`.bin`, `.pt`, `.pth`, `.ckpt`), a directory
/// holding `pytorch_model.bin`, or one sharded by a `*.bin.index.json` (`PyTorchCheckpointFile`,
/// read without running its pickle). A directory holding both formats is read as safetensors,
/// as transformers reads it.
///
/// Opening validates every file's header and, for sharded checkpoints, that the index and the
/// shards agree exactly (every shard present, every indexed tensor in its shard, no tensor in two
/// shards). Tensor names are unique across the checkpoint.
public final class Checkpoint: @unchecked Sendable {
    public enum Layout: Sendable, Equatable {
        /// A single safetensors file named directly.
        case file
        /// A directory with one safetensors file (normally `model.safetensors`).
        case directory(weights: String)
        /// A directory with an index file and shards.
        case sharded(index: String)
    }

    /// One tensor and the file it lives in.
    public struct Entry: Sendable {
        public let file: SafeTensorsFile
        public let info: TensorInfo
        /// A vocabulary tensor presented in another vocabulary's row order (`VocabularyRows`):
        /// `info` then describes the presented tensor, and its bytes are read through the map.
        var rows: VocabularyRows? = nil
        public var name: String { info.name }

        /// The same tensor under another name (a view's).
        func renamed(_ name: String) -> Entry {
            Entry(file: file, info: TensorInfo(name: name, dtype: info.dtype, shape: info.shape, begin: info.begin, end: info.end), rows: rows)
        }
    }

    /// The path as the user gave it.
    public let path: String
    public let layout: Layout
    /// The files tensors are read from, in shard order (a PyTorch archive, then the scratch file
    /// of its gathered views, if any).
    public let files: [SafeTensorsFile]
    /// Every tensor, in shard order then data order (the order outputs follow).
    public let entries: [Entry]
    /// The directory the checkpoint lives in, when it is a directory checkpoint.
    public let directory: String?
    private let byName: [String: Int]
    /// The `__metadata__` a view reports instead of its files' (nil for ordinary checkpoints).
    private let viewMetadata: [String: String]??
    /// The companions a planned checkpoint's directory will hold (nil for checkpoints on disk).
    private let plannedCompanions: [String]?
    /// A planned checkpoint's companion files, by name, as its plan will write them.
    private let plannedFiles: (@Sendable (String) throws(MergeKitError) -> [UInt8]?)?

    /// File names inside a checkpoint directory that are its weights (never companions).
    static let weightSuffixes = [".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json", ".pt", ".pth",
                                 ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx", ".pkl", ".npz"]

    /// The files besides its weights that a model directory may hold and that a merge copies into
    /// its output: what transformers' `save_pretrained` writes for the model, its generation
    /// config, tokenizer (fast and slow: each tokenizer's vocabulary files), chat template and
    /// processors, plus the license files that must travel with the weights.
    ///
    /// Nothing else is copied. A merged model is often uploaded, and whatever else sits in the
    /// base's directory (notes, logs, training state, remote code, a link to a private file) must
    /// not travel with it; skipped files are reported (`CompanionSelection.skipped`). A directory
    /// holds at most these names besides its weights, the index and the model card.
    public static let companionFileNames: [String] = [
        // The model and generation configs
        "config.json", "generation_config.json",
        // Tokenizers: the common files, then the vocabularies slow tokenizers name
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
        "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
        "spm.model", "source.spm", "target.spm", "bpe.codes", "entity_vocab.json", "tekken.json",
        // Chat templates (a tokenizer's, a processor's)
        "chat_template.jinja", "chat_template.json",
        // Processors of multimodal models
        "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
        // Licenses
        "LICENSE", "LICENSE.txt", "LICENSE.md", "NOTICE", "NOTICE.txt", "USE_POLICY.md",
    ]
    private static let companionNameSet = Set(companionFileNames)

    /// A companion file to copy: its name in the directory and the regular file it is (symlinks
    /// resolved, inside the model's tree).
    public struct Companion: Sendable, Equatable {
        public let name: String
        public let source: String
    }

    /// A file of a checkpoint directory that a merge does not copy, and why.
    public struct SkippedFile: Sendable, Equatable {
        public let name: String
        public let reason: String
    }

    /// What `companionSelection()` found: the companions to copy and the files left behind.
    public struct CompanionSelection: Sendable {
        public var companions: [Companion] = []
        public var skipped: [SkippedFile] = []
    }

    /// The file transformers reads first in a model directory.
    public static let singleFileName = "model.safetensors"
    /// The index name transformers writes for sharded safetensors.
    public static let indexFileName = "model.safetensors.index.json"
    /// The file transformers writes for a PyTorch checkpoint.
    public static let pytorchFileName = "pytorch_model.bin"
    /// The index name transformers writes for a sharded PyTorch checkpoint.
    public static let pytorchIndexFileName = "pytorch_model.bin.index.json"
    /// The suffixes of files `torch.save` writes.
    static let pytorchSuffixes = [".bin", ".pt", ".pth", ".ckpt"]
    /// Files of a training directory that `torch.save` wrote but that are not the model (the
    /// trainer's arguments, optimizer, scheduler, scaler and random states), by name prefix.
    static let trainingStatePrefixes = ["training_args", "optimizer", "scheduler", "scaler", "rng_state"]

    /// Whether `name` is a trainer's state file (`trainingStatePrefixes`, a PyTorch suffix).
    static func isTrainingState(_ name: String) -> Bool {
        pytorchSuffixes.contains { name.hasSuffix($0) } && trainingStatePrefixes.contains { name.hasPrefix($0) }
    }

    /// What a checkpoint is, for the fix of an error about a path that is none.
    static let whatACheckpointIs = "a checkpoint is a .safetensors file, a PyTorch .bin/.pt/.pth/.ckpt file, or a directory holding model.safetensors, pytorch_model.bin or a *.index.json with its shards"

    /// Opens and validates the checkpoint at `path`.
    public init(path: String) throws(MergeKitError) {
        self.path = path
        switch FileSystem.kind(of: path) {
        case .missing:
            throw MergeKitError(.fileNotFound, file: path, "does not exist",
                fix: "Check the path; \(Checkpoint.whatACheckpointIs)")
        case .other:
            throw MergeKitError(.notACheckpoint, file: path, "is \(FileSystem.typeDescription(of: path)), neither a regular file nor a directory",
                fix: "Point at a regular file or a directory; \(Checkpoint.whatACheckpointIs)")
        case .file:
            (files, entries) = try Checkpoint.openWeights(path)
            layout = .file
            directory = nil
        case .directory:
            directory = path
            let names = try FileSystem.contents(of: path)
            let indexes = names.filter { $0.hasSuffix(".safetensors.index.json") }
            let weights = names.filter { $0.hasSuffix(".safetensors") }
            let pytorchIndexes = names.filter { $0.hasSuffix(".bin.index.json") }
            let pytorchWeights = names.filter { name in
                Checkpoint.pytorchSuffixes.contains { name.hasSuffix($0) }
                    && !Checkpoint.isTrainingState(name)
            }
            if names.contains(Checkpoint.singleFileName) {
                layout = .directory(weights: Checkpoint.singleFileName)
                (files, entries) = try Checkpoint.openWeights(FileSystem.join(path, Checkpoint.singleFileName))
            } else if indexes.count == 1 {
                layout = .sharded(index: indexes[0])
                (files, entries) = try Checkpoint.openShards(directory: path, index: indexes[0])
            } else if indexes.count > 1 {
                throw MergeKitError(.ambiguousCheckpoint, file: path,
                    "holds several index files (\(indexes.joined(separator: ", "))) and no model.safetensors",
                    fix: "Keep one index file in the directory, or name the checkpoint file directly")
            } else if weights.count == 1 {
                layout = .directory(weights: weights[0])
                (files, entries) = try Checkpoint.openWeights(FileSystem.join(path, weights[0]))
            } else if weights.count > 1 {
                throw MergeKitError(.ambiguousCheckpoint, file: path,
                    "holds several .safetensors files (\(weights.joined(separator: ", "))) but no index file saying how they fit together",
                    fix: "Add a model.safetensors.index.json, or name one file directly")
            } else if names.contains(Checkpoint.pytorchFileName) {
                layout = .directory(weights: Checkpoint.pytorchFileName)
                (files, entries) = try Checkpoint.openWeights(FileSystem.join(path, Checkpoint.pytorchFileName))
            } else if pytorchIndexes.count == 1 {
                layout = .sharded(index: pytorchIndexes[0])
                (files, entries) = try Checkpoint.openShards(directory: path, index: pytorchIndexes[0])
            } else if pytorchIndexes.count > 1 {
                throw MergeKitError(.ambiguousCheckpoint, file: path,
                    "holds several index files (\(pytorchIndexes.joined(separator: ", "))) and no pytorch_model.bin",
                    fix: "Keep one index file in the directory, or name the checkpoint file directly")
            } else if pytorchWeights.count == 1 {
                layout = .directory(weights: pytorchWeights[0])
                (files, entries) = try Checkpoint.openWeights(FileSystem.join(path, pytorchWeights[0]))
            } else if pytorchWeights.isEmpty {
                throw MergeKitError(.notACheckpoint, file: path,
                    "holds no model.safetensors, no *.safetensors.index.json, no .safetensors file and no pytorch_model.bin or other PyTorch checkpoint",
                    fix: "Point at a model directory or name the checkpoint file directly")
            } else {
                throw MergeKitError(.ambiguousCheckpoint, file: path,
                    "holds several PyTorch checkpoint files (\(pytorchWeights.joined(separator: ", "))) but no index file saying how they fit together",
                    fix: "Add a pytorch_model.bin.index.json, or name one file directly")
            }
        }
        byName = Checkpoint.index(entries)
        viewMetadata = nil
        plannedCompanions = nil
        plannedFiles = nil
    }

    /// Opens one weights file: a PyTorch checkpoint when it starts like one (`PyTorchArchive`),
    /// else a safetensors file. A file with a PyTorch suffix that is neither is reported as such.
    static func openWeights(_ path: String) throws(MergeKitError) -> (files: [SafeTensorsFile], entries: [Entry]) {
        let looksLikePyTorch = PyTorchCheckpointFile.looksLikePyTorch(path)
        if looksLikePyTorch == true { return try PyTorchCheckpointFile.open(path) }
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: path)
        } catch where looksLikePyTorch == false && pytorchSuffixes.contains(where: { path.hasSuffix($0) }) {
            throw MergeKitError(.notACheckpoint, file: path, "is neither a zip archive torch.save writes nor a safetensors file",
                fix: "Check that the download finished; a PyTorch checkpoint starts with the bytes PK")
        }
        return ([file], file.tensors.map { Entry(file: file, info: $0) })
    }

    /// The checkpoint `plan` will write, before it exists (a multi-document recipe plans its
    /// later stages on their inputs' plans): its files are the plan's shards as they will be laid
    /// out (`SafeTensorsFile(planned:path:)`), its companions those the plan copies. Planning what
    /// reads it checks every name, shape, dtype and the metadata now; its bytes cannot be read
    /// (`isPlanned`), so the checks that need values wait for the written checkpoint. `path` names
    /// it in messages (the name the recipe gives it).
    ///
    /// With `memory` (the plan's output built in memory, `MemoryOutput`), the same checkpoint
    /// with its bytes: its tensors are read from memory.
    init(planned plan: MergePlan, path: String, memory: MemoryOutput? = nil) throws(MergeKitError) {
        self.path = path
        if !plan.output.isDirectory {
            layout = .file
        } else if plan.shards.count == 1 {
            layout = .directory(weights: plan.shards[0].fileName)
        } else {
            layout = .sharded(index: Checkpoint.indexFileName)
        }
        var files: [SafeTensorsFile] = []
        for (i, shard) in plan.shards.enumerated() {
            let file = plan.output.isDirectory ? FileSystem.join(path, shard.fileName) : path
            files.append(try SafeTensorsFile(planned: shard.layout, path: file, memory: memory.map { ($0, $0.file(i)) }))
        }
        self.files = files
        directory = plan.output.isDirectory ? path : nil
        (entries, byName) = Checkpoint.index(files)
        viewMetadata = nil
        let writesCompanions = plan.output.isDirectory && plan.output.emit == .model
        plannedCompanions = writesCompanions
            ? Array(Set(plan.companions).union(plan.generatedFiles.keys.filter(Checkpoint.companionNameSet.contains))).sorted() : []
        plannedFiles = { name throws(MergeKitError) in
            guard writesCompanions else { return nil }
            if let bytes = plan.generatedFiles[name] { return bytes }
            guard plan.companions.contains(name), let bytes = try plan.base.companionBytes(name) else { return nil }
            return name == "config.json" ? plan.rewrittenConfig(bytes) : bytes
        }
    }

    /// Every tensor of `files`, in shard order then data order, and each one's place by name.
    /// (Uniqueness across shards is guaranteed by `openShards` or the plan; within a file by the header.)
    private static func index(_ files: [SafeTensorsFile]) -> (entries: [Entry], byName: [String: Int]) {
        var entries: [Entry] = []
        entries.reserveCapacity(files.reduce(0) { $0 + $1.tensors.count })
        for file in files {
            for info in file.tensors { entries.append(Entry(file: file, info: info)) }
        }
        return (entries, index(entries))
    }

    /// Each entry's place by name.
    private static func index(_ entries: [Entry]) -> [String: Int] {
        var byName: [String: Int] = [:]
        byName.reserveCapacity(entries.count)
        for (i, entry) in entries.enumerated() { byName[entry.name] = i }
        return byName
    }

    /// Whether this is a planned checkpoint, not yet written (`init(planned:path:)`) and not
    /// built in memory either: its bytes cannot be read.
    public var isPlanned: Bool { plannedCompanions != nil && files.allSatisfy(\.isPlanned) }

    /// A view of `source` presenting `entries` — tensors of its files, possibly under other names
    /// (e.g. one half of a linearized checkpoint) — with `metadata` as its `__metadata__`.
    /// Readers address tensor bytes through the entries' offsets, so a view costs no I/O.
    init(viewOf source: Checkpoint, entries: [Entry], metadata: [String: String]?) {
        path = source.path
        layout = source.layout
        files = source.files
        directory = source.directory
        self.entries = entries
        var byName: [String: Int] = [:]
        for (i, entry) in entries.enumerated() {
            precondition(byName[entry.name] == nil, "a view has two tensors named \(entry.name)")
            byName[entry.name] = i
        }
        self.byName = byName
        viewMetadata = .some(metadata)
        plannedCompanions = source.plannedCompanions
        plannedFiles = source.plannedFiles
    }

    /// The bytes of companion file `name` (config.json, tokenizer.json, ...) of this directory
    /// checkpoint; nil when it has none (or is not a directory). A planned checkpoint's are those
    /// its plan will write. A link is followed only inside the model's tree, as when companions
    /// are copied (`companionSelection()`); the file is read whole, bounded in size.
    func companionBytes(_ name: String) throws(MergeKitError) -> [UInt8]? {
        if let plannedFiles { return try plannedFiles(name) }
        guard let directory else { return nil }
        let path = FileSystem.join(directory, name)
        guard FileSystem.exists(path) else { return nil }
        switch try Self.resolveCompanion(path, roots: Self.treeRoots(of: directory)) {
        case .source(let real): return try FileSystem.readFile(real)
        case .skipped(let reason):
            throw MergeKitError(.fileUnreadable, file: path, "is \(reason); a model's files are read only inside its directory",
                fix: "Copy the file into the model's directory")
        }
    }

    public func entry(named name: String) -> Entry? {
        byName[name].map { entries[$0] }
    }

    public var tensorNames: [String] { entries.map(\.name) }

    /// The `__metadata__` of the first file (where task-vector provenance is recorded).
    public var metadata: [String: String]? { viewMetadata ?? files.first?.metadata }

    /// Total number of elements over all tensors.
    public var parameterCount: Int { entries.reduce(0) { $0 + $1.info.elementCount } }
    /// Total tensor data bytes.
    public var dataBytes: Int { entries.reduce(0) { $0 + $1.info.byteCount } }

    /// Names of the companions a merge copies from this directory checkpoint (config.json,
    /// tokenizer files, ...), sorted. See `companionSelection()`.
    public func companionFiles() throws(MergeKitError) -> [String] {
        try companionSelection().companions.map(\.name)
    }

    /// The files of a directory checkpoint a merge copies (`companionFileNames`) and those it
    /// leaves behind, sorted by name. Hidden files, the weights (in any format: a merge writes
    /// its own), the index and README.md (outputs get their own model card) are neither; a
    /// trainer's state files (`training_args.bin`, `optimizer.pt`, …) are left behind, named.
    ///
    /// A companion that is a symlink is followed only when its target stays inside the model's
    /// tree: the directory itself or, for a Hugging Face cache snapshot
    /// (`…/models--org--name/snapshots/<commit>/`), the repository's `blobs/`, where the cache's
    /// links point. A link out of the tree is skipped (named, with its target). A companion that is
    /// not a regular file (a FIFO, a device, a directory) is an error: it cannot be copied and
    /// must not be waited on.
    public func companionSelection() throws(MergeKitError) -> CompanionSelection {
        guard let directory else { return CompanionSelection() }
        if let plannedCompanions {
            return CompanionSelection(companions: plannedCompanions.map { Companion(name: $0, source: FileSystem.join(directory, $0)) })
        }
        var selection = CompanionSelection()
        let roots = Self.treeRoots(of: directory)
        for name in try FileSystem.contents(of: directory) {
            if Checkpoint.isTrainingState(name) {
                selection.skipped.append(SkippedFile(name: name, reason: "training state torch.save wrote (trainer arguments, optimizer, scheduler or random state), not part of the model"))
                continue
            }
            if name.hasPrefix(".") || name == "README.md" || Checkpoint.weightSuffixes.contains(where: { name.hasSuffix($0) }) { continue }
            guard Checkpoint.companionNameSet.contains(name) else {
                let kind = FileSystem.kind(of: FileSystem.join(directory, name)) == .directory ? "a directory" : "a file"
                selection.skipped.append(SkippedFile(name: name, reason: "\(kind) a model does not need (not a known config, tokenizer or license file)"))
                continue
            }
            switch try Self.resolveCompanion(FileSystem.join(directory, name), roots: roots) {
            case .source(let source): selection.companions.append(Companion(name: name, source: source))
            case .skipped(let reason): selection.skipped.append(SkippedFile(name: name, reason: reason))
            }
        }
        return selection
    }

    /// The file to copy for companion `name` of this directory checkpoint, resolved and checked
    /// again as `companionSelection()` does (when the output is written, the directory may have
    /// changed since the plan was made).
    func companionSource(_ name: String) throws(MergeKitError) -> String {
        let path = FileSystem.join(directory ?? FileSystem.parentDirectory(of: self.path), name)
        switch try Self.resolveCompanion(path, roots: Self.treeRoots(of: directory ?? FileSystem.parentDirectory(of: self.path))) {
        case .source(let source): return source
        case .skipped(let reason):
            throw MergeKitError(.fileUnreadable, file: path, "changed while the merge ran: it is now \(reason)",
                fix: "Do not modify the base model's directory while merging")
        }
    }

    private enum CompanionResolution {
        case source(String)
        case skipped(String)
    }

    /// The canonical directories a model directory's companions may resolve into: the directory,
    /// and for a Hugging Face cache snapshot also its repository's `blobs/`.
    static func treeRoots(of directory: String) -> [String] {
        guard let real = FileSystem.realPath(directory) else { return [] }
        var roots = [real]
        let snapshots = FileSystem.parentDirectory(of: real)
        let repository = FileSystem.parentDirectory(of: snapshots)
        if FileSystem.lastComponent(of: snapshots) == "snapshots" && FileSystem.lastComponent(of: repository).hasPrefix("models--") {
            roots.append(FileSystem.join(repository, "blobs"))
        }
        return roots
    }

    /// Where companion `path` leads: its canonical path when that is inside one of `roots`.
    private static func resolveCompanion(_ path: String, roots: [String]) throws(MergeKitError) -> CompanionResolution {
        guard FileSystem.exists(path) else {
            throw MergeKitError(.fileNotFound, file: path, "does not exist", fix: "Do not modify the base model's directory while merging")
        }
        guard let real = FileSystem.realPath(path) else { return .skipped("a symbolic link to nothing") }
        guard roots.contains(where: { FileSystem.isSameOrInside(real, $0) }) else {
            return .skipped("a symbolic link to \(real), outside the model's directory")
        }
        do {
            try FileSystem.requireRegularFile(real)
        } catch {
            var named = error
            named.file = path
            throw named
        }
        return .source(real)
    }

    /// The paths of the checkpoint's files on disk, in shard order (the scratch file of a PyTorch
    /// archive's gathered views goes by its archive's path and is not listed again).
    public var filePaths: [String] {
        var seen = Set<String>()
        return files.map(\.path).filter { seen.insert($0).inserted }
    }

    /// The file identities of everything this checkpoint reads, to refuse outputs that would
    /// overwrite an input.
    public var fileIdentities: [FileIdentity] { files.map(\.identity) }

    /// A sharded checkpoint's index: its `weight_map` in the file's order, the shard of each
    /// tensor, and the shard file names, sorted. Every shard must be a plain file name beside the
    /// index.
    struct ShardIndex {
        let weightMap: [JSONMember]
        let shardOf: [String: String]
        let shardNames: [String]
    }

    /// Reads and checks the index at `indexPath` (`ShardIndex`).
    static func readIndex(_ indexPath: String) throws(MergeKitError) -> ShardIndex {
        let bytes = try FileSystem.readFile(indexPath)
        let json: JSONValue
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw MergeKitError(.indexInvalid, file: indexPath, "is not valid JSON (\(error.description))",
                fix: "Restore the index file from the model's source")
        }
        guard case .object(let weightMap)? = json["weight_map"] else {
            throw MergeKitError(.indexInvalid, file: indexPath, "has no \"weight_map\" object",
                fix: "Restore the index file from the model's source")
        }
        var shardOf: [String: String] = [:]
        var shardNames: [String] = []
        var seenShards = Set<String>()
        for member in weightMap {
            guard case .string(let shard) = member.value else {
                throw MergeKitError(.indexInvalid, file: indexPath, tensor: member.key,
                    "weight_map entry is \(member.value.kindName), not a shard file name",
                    fix: "Restore the index file from the model's source")
            }
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != "..", !shard.contains("\0") else {
                throw MergeKitError(.shardPathUnsafe, file: indexPath, tensor: member.key,
                    "names shard \"\(shard)\", which is not a plain file name in the checkpoint directory",
                    fix: "Shards must sit next to the index; fix the index or the directory layout")
            }
            if seenShards.insert(shard).inserted { shardNames.append(shard) }
            shardOf[member.key] = shard
        }
        return ShardIndex(weightMap: weightMap, shardOf: shardOf, shardNames: shardNames.sorted())
    }

    /// The shards `index` names (safetensors or PyTorch files, `openWeights`), checked against it.
    private static func openShards(directory: String, index: String) throws(MergeKitError) -> (files: [SafeTensorsFile], entries: [Entry]) {
        let indexPath = FileSystem.join(directory, index)
        let read = try readIndex(indexPath)
        let (weightMap, shardOf, shardNames) = (read.weightMap, read.shardOf, read.shardNames)
        var files: [SafeTensorsFile] = []
        var shardEntries: [[Entry]] = []
        for shard in shardNames {
            let shardPath = FileSystem.join(directory, shard)
            if FileSystem.kind(of: shardPath) == .missing {
                // The first tensor in the index's own order (a dictionary's order changes per process).
                let example = weightMap.first(where: { shardOf[$0.key] == shard })?.key
                throw MergeKitError(.shardMissing, file: indexPath, tensor: example,
                    "names shard \"\(shard)\", which is not in \(directory)",
                    fix: "Download the missing shard (all shards listed in the index are needed)")
            }
            let opened = try openWeights(shardPath)
            files += opened.files
            shardEntries.append(opened.entries)
        }
        for (shard, entries) in zip(shardNames, shardEntries) {
            let shardPath = FileSystem.join(directory, shard)
            for info in entries.map(\.info) {
                guard let mapped = shardOf[info.name] else {
                    throw MergeKitError(.tensorNotInIndex, file: shardPath, tensor: info.name,
                        "is in the shard but not in the index's weight_map (\(index))",
                        fix: "Restore the index file from the model's source")
                }
                if mapped != shard {
                    throw MergeKitError(.tensorInTwoShards, file: shardPath, tensor: info.name,
                        "is also stored here although the index places it in \(mapped); a tensor must live in one shard",
                        fix: "Re-shard the checkpoint or restore it from its source")
                }
            }
        }
        // Every shard tensor is in the index, under its own shard, so the shards hold every
        // indexed tensor exactly when they hold as many tensors as the index names.
        if shardEntries.reduce(0, { $0 + $1.count }) != shardOf.count {
            var present = Set<String>()
            for entries in shardEntries { for entry in entries { present.insert(entry.name) } }
            for (name, shard) in shardOf.sorted(by: { $0.key < $1.key }) where !present.contains(name) {
                throw MergeKitError(.tensorMissingFromShard, file: FileSystem.join(directory, shard), tensor: name,
                    "is listed in the index (\(index)) for this shard but the shard does not contain it",
                    fix: "Download the shard again or restore the index from the model's source")
            }
        }
        return (files, shardEntries.flatMap { $0 })
    }
}
