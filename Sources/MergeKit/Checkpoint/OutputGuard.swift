import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The check every command that writes runs on its output before any work, against every path
/// the command reads. An output is refused when
///
/// 1. it is `/`, the home directory, the working directory or one of its ancestors (always,
///    even when overwriting is allowed);
/// 2. it is, contains, lies inside, or is a symbolic or hard link to an input: a checkpoint, a
///    LoRA adapter, a task vector, a recipe, a dataset, a task head, a config file (paths are
///    compared after resolving symbolic links and `..`; hard links by device and inode);
/// 3. its parent directory does not exist;
/// 4. something is already there that an output of its kind never replaces: a directory where a
///    file is written (a path ending in `.safetensors`, in any case), a file where a directory is
///    written, a FIFO, socket or device, a symbolic link where a directory is written, or a
///    directory holding anything an output does not consist of (`OutputEntries`: files MergeKit
///    did not write, other subdirectories, symbolic links). The unexpected entries are named;
/// 5. something replaceable is there and `overwrite` is off.
///
/// A symbolic link where a file is written is replaced as a link: the new file takes the link's
/// place and the file it pointed to is left untouched (unless it is an input: then rule 2).
///
/// The output kind is decided by `isFileOutput` wherever it matters. At commit, `StagedOutput`
/// re-checks what it can and deletes only recognised entries of a replaced directory.
public enum OutputGuard {
    /// Whether `path` is written as one safetensors file: it ends in `.safetensors`, in any case.
    /// Every other path is written as a directory.
    public static func isFileOutput(_ path: String) -> Bool {
        FileSystem.trimmingTrailingSlashes(path).lowercased().hasSuffix(".safetensors")
    }

    /// Checks `output` against `inputs` (every path the command reads) and what is on disk;
    /// throws the problems found (see the type's documentation).
    public static func check(output: String, overwrite: Bool, inputs: [String]) throws(MergeKitError) {
        var problems = ProblemList()
        check(output: output, isDirectory: !isFileOutput(output), overwrite: overwrite, inputs: inputs, into: &problems)
        try problems.throwIfAny()
    }

    /// `check(output:overwrite:inputs:)` for a small file written beside a checkpoint (a JSON or
    /// YAML file: learned coefficients, a recipe), whatever its name ends in: a regular file there
    /// is replaced with `overwrite`, a directory never.
    public static func check(file output: String, overwrite: Bool, inputs: [String]) throws(MergeKitError) {
        var problems = ProblemList()
        check(output: output, isDirectory: false, overwrite: overwrite, inputs: inputs, into: &problems)
        try problems.throwIfAny()
    }

    static func check(output: String, isDirectory: Bool, overwrite: Bool, inputs: [String], into problems: inout ProblemList) {
        let path = FileSystem.trimmingTrailingSlashes(output)
        let target = FileSystem.canonicalPath(forNew: path)
        if let danger = dangerousPlace(target) {
            problems.add(MergeKitError(.outputNotReplaceable, file: output, "is \(danger); an output there could replace everything in it",
                fix: "Give a new path for the output, e.g. ./merged"))
            return
        }
        if let error = inputProblem(output: output, target: target, inputs: inputs) {
            problems.add(error)
            return
        }
        let parent = FileSystem.parentDirectory(of: target)
        if FileSystem.kind(of: parent) != .directory {
            problems.add(MergeKitError(.fileNotFound, file: output, "cannot be created: the directory \(parent) does not exist",
                fix: "Create the directory first"))
            return
        }
        let existing = FileSystem.kind(of: path, followingLinks: false)
        if existing == .missing { return }
        if let error = replacementProblem(output: output, path: path, isDirectory: isDirectory, existing: existing) {
            problems.add(error)
        } else if !overwrite {
            problems.add(MergeKitError(.outputExists, file: output, "already exists",
                fix: "Choose a new output path, or \(term: .overwrite) to replace it once the new output is complete"))
        }
    }

    /// Rule 2 alone: `output` is not, does not contain, lie inside or link to any of `inputs`.
    /// For an output whose other rules its own plan checks (a multi-stage recipe's output, against
    /// the inputs of the recipe's other stages).
    static func checkApart(output: String, from inputs: [String], into problems: inout ProblemList) {
        let target = FileSystem.canonicalPath(forNew: FileSystem.trimmingTrailingSlashes(output))
        if let error = inputProblem(output: output, target: target, inputs: inputs) { problems.add(error) }
    }

    /// "the root directory", "your home directory", "the working directory"… when `target` is one.
    private static func dangerousPlace(_ target: String) -> String? {
        if target == "/" { return "the root directory" }
        if let home = ProcessInfo.processInfo.environment["HOME"].flatMap(FileSystem.realPath), home == target {
            return "your home directory"
        }
        if let cwd = FileSystem.realPath(FileManager.default.currentDirectoryPath) {
            if cwd == target { return "the working directory" }
            if cwd.hasPrefix(target + "/") { return "a parent of the working directory" }
        }
        return nil
    }

    /// The first input that `output` (canonically `target`) is, contains, lies inside or links to.
    private static func inputProblem(output: String, target: String, inputs: [String]) -> MergeKitError? {
        let outputIdentity = FileSystem.kind(of: target, followingLinks: false) == .file ? FileSystem.identity(of: target) : nil
        for input in inputs {
            guard let source = FileSystem.realPath(input) else { continue }
            if target == source || target.hasPrefix(source + "/") || source.hasPrefix(target + "/") || source == "/" {
                return MergeKitError(.outputIsInput, file: output,
                    "is, contains or lies inside the input \(input); writing there could destroy an input",
                    fix: "Choose an output path outside every input")
            }
            if let outputIdentity, identities(of: source).contains(outputIdentity) {
                return MergeKitError(.outputIsInput, file: output, "is a hard link to (a file of) the input \(input); writing there could destroy an input",
                    fix: "Choose an output path outside every input")
            }
        }
        return nil
    }

    /// The identities of a file, or of the files directly inside a directory (a checkpoint's shards).
    private static func identities(of path: String) -> [FileIdentity] {
        switch FileSystem.kind(of: path) {
        case .file:
            return FileSystem.identity(of: path).map { [$0] } ?? []
        case .directory:
            return ((try? FileSystem.contents(of: path)) ?? []).compactMap { name in
                let file = FileSystem.join(path, name)
                return FileSystem.kind(of: file) == .file ? FileSystem.identity(of: file) : nil
            }
        default:
            return []
        }
    }

    /// Why the `existing` entry at `path` can never be replaced by this output, if it cannot.
    private static func replacementProblem(output: String, path: String, isDirectory: Bool, existing: FileSystem.Kind) -> MergeKitError? {
        var linkTarget: String?
        if existing == .other, let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
            linkTarget = destination
        }
        if !isDirectory {
            // A regular file is replaced; so is a symbolic link (the link itself, see above).
            if existing == .file || linkTarget != nil { return nil }
            return StagedOutput.notReplaceable(output, isDirectory: false, found: existing)
        }
        guard existing == .directory else {
            return StagedOutput.notReplaceable(output, isDirectory: true, found: existing, linkTarget: linkTarget)
        }
        let unexpected: [String]
        do throws(MergeKitError) {
            unexpected = try OutputEntries.unexpectedEntries(in: path)
        } catch {
            return MergeKitError(.outputNotReplaceable, file: output, "cannot be listed to check what it holds (\(error.detail))",
                fix: "Check the directory's permissions, or choose a new output path")
        }
        guard !unexpected.isEmpty else { return nil }
        let count = unexpected.count == 1 ? "an entry" : "\(unexpected.count) entries"
        return MergeKitError(.outputNotReplaceable, file: output,
            "holds \(count) MergeKit does not write (\(OutputEntries.listed(unexpected))); an existing directory is only replaced when it holds nothing but an output's files (safetensors weights and index, config and tokenizer files, README.md, recipe.yml, manifest.json, point-NNN directories)",
            fix: "Move \(unexpected.count == 1 ? "it" : "them") out of the directory, or choose a new output path")
    }
}
