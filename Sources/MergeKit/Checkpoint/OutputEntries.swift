#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What an output directory may hold, in one place: the entries MergeKit writes into an output
/// (a checkpoint directory, a LoRA adapter, a sweep), and so the only entries replacing an output
/// (when overwriting is allowed) may ever remove.
///
/// - weights: `*.safetensors` and their index `*.safetensors.index.json`;
/// - companions: the known Hugging Face files copied from a base checkpoint
///   (`Checkpoint.companionFileNames`: configs, tokenizer and processor files, licenses). A merge
///   copies only these, so whatever MergeKit copies it may later replace;
/// - MergeKit's own files: the model card README.md, recipe.yml, a sweep's manifest.json and a
///   LoRA adapter's adapter_config.json, and a scored sweep's plots `scores-NAME.svg` / `.png`;
/// - a sweep's point directories `point-NNN`, and the intermediates `stage-NNN` of a multi-document
///   recipe in its temporary work directory (`WorkDirectory`), holding only the above;
/// - MergeKit's temporary outputs (`.NAME.mergekit-tmp-…`, `.NAME.mergekit-old-…`, see
///   `OutputTemporaries`), files or directories holding only the above.
///
/// A temporary that a live process holds (another run writing inside this directory right now)
/// is not recognised: it is never removed.
///
/// Everything else — any other file, any other subdirectory, symbolic links (even under a
/// recognised name), FIFOs, sockets, devices — belongs to the user. An existing output holding
/// any of it is refused before any work (`OutputGuard`), and if some appears in an output while
/// it is being replaced, it is left where it is (`StagedOutput`).
enum OutputEntries {
    /// The companion files a checkpoint directory may hold besides its weights: exactly those a
    /// merge copies from a base checkpoint (`Checkpoint.companionFileNames`, one list for both).
    static let companionNames: Set<String> = Set(Checkpoint.companionFileNames)

    /// Files MergeKit generates in an output directory.
    static let generatedNames: Set<String> = ["README.md", "recipe.yml", "manifest.json", LoRAAdapter.configFileName]

    /// Nesting followed into point and temporary directories (a sweep's temporary directory holds
    /// points, which hold files).
    static let maximumDepth = 3

    /// Whether `name` is a companion file that is copied from a base checkpoint into its outputs.
    static func isCompanion(_ name: String) -> Bool {
        companionNames.contains(name)
    }

    /// Whether a regular file named `name` is one MergeKit writes into an output directory.
    static func isOutputFile(_ name: String) -> Bool {
        let lower = name.lowercased()
        return lower.hasSuffix(".safetensors") || lower.hasSuffix(".safetensors.index.json") || isCompanion(name)
            || generatedNames.contains(name) || isPlotName(name) || OutputTemporaries.isTemporaryName(name)
    }

    /// Whether `name` is a scored sweep's plot: `scores-` a parameter's name `.svg` or `.png`
    /// (`SweepPlots.fileName`).
    static func isPlotName(_ name: String) -> Bool {
        guard name.hasPrefix("scores-"), name.hasSuffix(".svg") || name.hasSuffix(".png") else { return false }
        let stem = name.dropFirst("scores-".count).dropLast(4)
        return !stem.isEmpty && stem.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }
    }

    /// Whether a directory named `name` is one MergeKit writes inside an output: a sweep point, a
    /// work directory's intermediate or a temporary output.
    static func isOutputDirectory(_ name: String) -> Bool {
        isPointName(name) || isStageName(name) || OutputTemporaries.isTemporaryName(name)
    }

    /// The directory of sweep point `index` of `count`: "point-" and the index zero-padded to the
    /// width of the largest index, at least 3 digits (`point-000`, …; `point-0000` … `point-1000`
    /// for 1001 points), so that names sort in point order.
    static func pointName(_ index: Int, of count: Int) -> String {
        numbered("point-", index, of: count)
    }

    static func isPointName(_ name: String) -> Bool {
        isNumbered(name, "point-")
    }

    /// The directory of stage `index` of `count` in a temporary work directory (`stage-000`, …),
    /// numbered as sweep points are.
    static func stageName(_ index: Int, of count: Int) -> String {
        numbered("stage-", index, of: count)
    }

    static func isStageName(_ name: String) -> Bool {
        isNumbered(name, "stage-")
    }

    private static func numbered(_ prefix: String, _ index: Int, of count: Int) -> String {
        let digits = String(index)
        let width = max(3, String(max(0, count - 1)).count)
        return prefix + String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    private static func isNumbered(_ name: String, _ prefix: String) -> Bool {
        guard name.hasPrefix(prefix) else { return false }
        let digits = name.dropFirst(prefix.count)
        return digits.count >= 3 && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// The entries of `directory` that no MergeKit output consists of, as paths relative to it
    /// (directories end in "/"), in listing order. Point and temporary directories are followed.
    static func unexpectedEntries(in directory: String) throws(MergeKitError) -> [String] {
        try unexpectedEntries(in: directory, prefix: "", depth: 0)
    }

    private static func unexpectedEntries(in directory: String, prefix: String, depth: Int) throws(MergeKitError) -> [String] {
        var unexpected: [String] = []
        for name in try FileSystem.contents(of: directory) {
            let path = FileSystem.join(directory, name)
            if OutputTemporaries.isTemporaryName(name) && OutputTemporaries.isInUse(path) {
                unexpected.append(prefix + name + " (being written by a running process)")
                continue
            }
            switch FileSystem.kind(of: path, followingLinks: false) {
            case .file where isOutputFile(name):
                continue
            case .directory where isOutputDirectory(name) && depth < maximumDepth:
                unexpected += try unexpectedEntries(in: path, prefix: prefix + name + "/", depth: depth + 1)
            case .directory:
                unexpected.append(prefix + name + "/")
            default:
                unexpected.append(prefix + name)
            }
        }
        return unexpected
    }

    /// Removes the entries of `directory` that MergeKit outputs consist of (following point and
    /// temporary directories, removing those left empty) and nothing else. Returns what it left,
    /// as paths relative to `directory`; `directory` itself is not removed.
    static func removeRecognised(in directory: String) -> [String] {
        removeRecognised(in: directory, prefix: "", depth: 0)
    }

    private static func removeRecognised(in directory: String, prefix: String, depth: Int) -> [String] {
        guard let names = try? FileSystem.contents(of: directory) else { return [prefix.isEmpty ? "." : prefix] }
        var left: [String] = []
        for name in names {
            let path = FileSystem.join(directory, name)
            if OutputTemporaries.isTemporaryName(name) && OutputTemporaries.isInUse(path) {
                left.append(prefix + name)
                continue
            }
            switch FileSystem.kind(of: path, followingLinks: false) {
            case .file where isOutputFile(name):
                if unlink(path) != 0 && errno != ENOENT { left.append(prefix + name) }
            case .directory where isOutputDirectory(name) && depth < maximumDepth:
                let inner = removeRecognised(in: path, prefix: prefix + name + "/", depth: depth + 1)
                if inner.isEmpty && rmdir(path) != 0 && errno != ENOENT { left.append(prefix + name + "/") }
                left += inner
            case .directory:
                left.append(prefix + name + "/")
            case .missing:
                continue
            default:
                left.append(prefix + name)
            }
        }
        return left
    }

    /// "a, b, c, d, e and 3 more": the first few of `entries` for a message.
    static func listed(_ entries: [String], first: Int = 5) -> String {
        let shown = entries.prefix(first).joined(separator: ", ")
        return entries.count > first ? shown + " and \(entries.count - first) more" : shown
    }
}
