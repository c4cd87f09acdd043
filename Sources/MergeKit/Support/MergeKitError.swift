/// Every error MergeKit throws: what went wrong, where (file, tensor), and how to fix it.
///
/// `code` names the failure precisely, so tests (and scripts reading JSON error documents) can tell one
/// failure from another; `description` is the one-line message users read.
public struct MergeKitError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        // Files in general
        case fileNotFound, fileUnreadable, isDirectory
        // safetensors format (docs/METHODS.md §1)
        case fileTooSmall, headerTooLarge, headerPastEndOfFile, headerNotUTF8, headerInvalidJSON
        case headerNotObject, metadataInvalid, tensorEntryInvalid, unknownDType, invalidShape
        case elementCountOverflow, invalidOffsets, offsetsReversed, offsetsOverlap, offsetsGap
        case dataPastEndOfFile, trailingBytes, byteSizeMismatch, duplicateTensor
        // Checkpoints (single files, sharded directories)
        case notACheckpoint, indexInvalid, shardMissing, shardPathUnsafe, tensorInTwoShards
        case tensorMissingFromShard, tensorNotInIndex, ambiguousCheckpoint
        // PyTorch checkpoints (the zip archive torch.save writes, its pickle, its storages)
        case legacyCheckpointFormat, archiveInvalid, archiveTooLarge, pickleInvalid, pickleForbidden, pickleTooLarge
        case stateDictInvalid, storageInvalid
        // Merges
        case missingTensor, extraTensor, shapeMismatch, dtypeMismatch, baseMismatch
        case invalidArgument, outputIsInput, outputExists, writeFailed, nonFiniteValue
        // Vocabularies and tokenizers (a malformed tokenizer.json, vocabularies that differ)
        case tokenizerInvalid, vocabularyMismatch
        // Outputs that are never replaced (a directory holding files MergeKit did not write, the
        // working or home directory, a directory where a file is written or vice versa)
        case outputNotReplaceable
        // Resources
        case insufficientMemory
        // The Hugging Face Hub: a model not in the cache (and not downloaded), a request that
        // failed (unreachable, not found, refused), a downloaded file that is not what the Hub
        // said it is (size, sha256)
        case notInHubCache, hubRequestFailed, hubFileCorrupt
        // Partitioned merges (`OutputParts`): a part not written (yet), a part of another merge
        // or division, a part whose files are not what its manifest says
        case partMissing, partMismatch, partCorrupt
        // A partitioned merge's statistics files (`PartitionStatistics`): a partition's file not
        // given, files of another merge, round or division (or given twice), a file that is not
        // one MergeKit wrote; statistics given before their last round
        case statisticsMissing, statisticsMismatch, statisticsCorrupt, statisticsIncomplete
        // A program MergeKit runs that is not installed (rsvg-convert, for PNG plots)
        case toolMissing
    }

    public var code: Code
    /// The file (or directory) the problem is in, as the user named it.
    public var file: String?
    /// The tensor concerned, when there is one.
    public var tensor: String?
    /// What went wrong.
    public var detail: String
    /// What the user can do about it.
    public var fix: String?
    /// When several problems are reported together (`detail` then says how many): each of them.
    public var problems: [MergeKitError] = []
    /// The phrases of `detail` and `fix` a front end may word its own way (`worded(by:)`).
    public var terms: [Term] = []

    public init(_ code: Code, file: String? = nil, tensor: String? = nil, _ detail: String, fix: String? = nil) {
        self.code = code
        self.file = file
        self.tensor = tensor
        self.detail = detail
        self.fix = fix
    }

    /// The message: "file: tensor 'name': detail. Fix", one line per problem after the first
    /// when there are several. Names from files are printed with their control characters
    /// escaped (`TerminalText`), so no name can break or forge a line.
    public var description: String {
        var parts: [String] = []
        if let file { parts.append(file) }
        if let tensor { parts.append("tensor '\(tensor)'") }
        var message = parts.isEmpty ? detail : parts.joined(separator: ": ") + ": " + detail
        if let fix { message += ". " + fix }
        message = TerminalText.escaped(message)
        for problem in problems { message += "\n  - " + problem.description }
        return message
    }
}
