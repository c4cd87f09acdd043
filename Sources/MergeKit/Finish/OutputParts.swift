import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the partitions of a partitioned merge (`Partition`) put their parts, and the step that
/// puts the parts together into the output.
///
/// Parts go into the **parts directory** `.NAME.mergekit-parts` beside the output `NAME`, which
/// the first partition to start creates (under a temporary name, with its mark
/// `mergekit-parts.json`, then renamed into place, so another partition never sees it unmarked).
/// A directory of that name without the mark is never written into, replaced or deleted.
/// Partition i of n writes
///
///     part-0000i-of-0000n/        its files, at their places in the output (point-NNN/… for
///                                 a sweep), moved into place complete (`StagedOutput`)
///     part-0000i-of-0000n.json    its manifest, written last: the partition, the plan's
///                                 fingerprint (`PlanFingerprint`), every file of the output,
///                                 its own files with their sizes and SHA-256
///
/// A partition first removes its previous manifest, so a part is complete exactly when its
/// manifest is there; rerunning a partition replaces its part and nothing else.
///
/// **Assembly** (`assemble`) checks the output as any output is checked (`OutputGuard`: a
/// directory holding files MergeKit did not write is refused and named), then every part: all n
/// manifests present, all of the same plan and division, together naming each output file
/// exactly once, and every file there with the manifest's size and SHA-256. Every problem is
/// reported together, each naming its part and the partition to rerun. Then it links (or, on
/// file systems without hard links, moves) the files into a temporary output directory, writes a
/// sweep's `manifest.json`, and moves the directory into place atomically (`StagedOutput`); only
/// then is the parts directory removed (only what MergeKit wrote in it). A failure before that
/// leaves the parts as they were, so assembling again (after rerunning a partition) recovers.
public enum OutputParts {
    /// The mark of a parts directory MergeKit created.
    static let markName = "mergekit-parts.json"
    static let markFormat = "mergekit-parts"
    /// Bump when the manifest's members change.
    static let manifestVersion = 1

    /// The parts directory of `output`: `.NAME.mergekit-parts` beside it.
    public static func directory(for output: String) -> String {
        let trimmed = FileSystem.trimmingTrailingSlashes(output)
        return FileSystem.join(FileSystem.parentDirectory(of: trimmed), ".\(FileSystem.lastComponent(of: trimmed)).mergekit-parts")
    }

    /// `part-0000i-of-0000n`: a part's directory, and with `.json` its manifest.
    static func partName(_ partition: Partition) -> String {
        "part-\(OutputLayout.fiveDigits(partition.index))-of-\(OutputLayout.fiveDigits(partition.count))"
    }

    /// The partition a part's directory or manifest name (`part-0000i-of-0000n[.json]`) belongs to.
    static func partition(named name: String) -> Partition? {
        let stem = name.hasSuffix(".json") ? String(name.dropLast(5)) : name
        let fields = stem.split(separator: "-", omittingEmptySubsequences: false)
        guard fields.count == 4, fields[0] == "part", fields[2] == "of",
              fields[1].count >= 5, fields[3].count >= 5,
              fields[1].allSatisfy({ $0.isASCII && $0.isNumber }), fields[3].allSatisfy({ $0.isASCII && $0.isNumber }),
              let index = Int(fields[1]), let count = Int(fields[3]) else { return nil }
        return try? Partition(index: index, count: count)
    }

    // MARK: The parts directory

    /// Creates the parts directory of `output` (marked as MergeKit's), or checks that the one
    /// there is MergeKit's. Returns its path.
    static func prepare(output: String) throws(MergeKitError) -> String {
        let parts = directory(for: output)
        if FileSystem.kind(of: parts, followingLinks: false) == .missing {
            let temporary = OutputTemporaries.newPath(for: parts, role: .writing)
            TemporaryFiles.register(directory: temporary)
            defer { TemporaryFiles.unregister([temporary]) }
            guard mkdir(temporary, 0o755) == 0 else { throw FileSystem.writeError(file: parts, errno: errno) }
            let markPath = FileSystem.join(temporary, markName)
            do throws(MergeKitError) {
                let mark = JSONValue.object([JSONMember("format", .string(markFormat)),
                                             JSONMember("output", .string(FileSystem.lastComponent(of: FileSystem.trimmingTrailingSlashes(output))))])
                try FileSystem.writeFile(markPath, Array((mark.serialized(indent: 2) + "\n").utf8))
            } catch {
                _ = unlink(markPath)
                _ = rmdir(temporary)
                throw error
            }
            // Another partition may have made it meanwhile: then its own is used.
            if FileSystem.kind(of: parts, followingLinks: false) != .missing || rename(temporary, parts) != 0 {
                _ = unlink(markPath)
                _ = rmdir(temporary)
            }
            FileSystem.syncDirectory(FileSystem.parentDirectory(of: parts))
        }
        try checkMark(parts)
        return parts
    }

    /// Refuses a parts directory MergeKit did not create (no mark, or not a directory).
    static func checkMark(_ parts: String) throws(MergeKitError) {
        let kind = FileSystem.kind(of: parts, followingLinks: false)
        let marked: Bool
        if kind == .directory, FileSystem.kind(of: FileSystem.join(parts, markName), followingLinks: false) == .file,
           let bytes = try? FileSystem.readFile(FileSystem.join(parts, markName), followSymlinks: false),
           let mark = try? JSONParser.parse(bytes), mark["format"]?.stringValue == markFormat {
            marked = true
        } else {
            marked = false
        }
        guard marked else {
            throw MergeKitError(.outputNotReplaceable, file: parts,
                "is where a partitioned merge keeps its parts, but it was not created by MergeKit (\(kind == .directory ? "it has no \(markName)" : "it is not a directory")); MergeKit never writes into, replaces or deletes it",
                fix: "Move it away, or choose another output path")
        }
    }

    // MARK: Manifests

    /// One file of a part, by its path inside the output.
    public struct File: Sendable, Equatable {
        public let path: String
        public let bytes: Int
        public let sha256: String
    }

    /// A part's manifest (`part-0000i-of-0000n.json`).
    struct Manifest {
        let partition: Partition
        let fingerprint: String
        /// The output, as the partition was given it.
        let output: String
        /// Every file of the output, by its path inside it, in output order.
        let outputFiles: [String]
        /// This part's files.
        let files: [File]
        /// A sweep's manifest.json without its files' SHA-256 (partition 0's; `sweepFilePath`
        /// members say which file each entry is, and are replaced at assembly).
        var sweepManifest: JSONValue?
        /// Whether the sweep's manifest gets every file's SHA-256 (--checksums or --json).
        var checksums = false

        var json: JSONValue {
            var members = [
                JSONMember("format", .string("mergekit-part")),
                JSONMember("version", .int(OutputParts.manifestVersion)),
                JSONMember("partition", .int(partition.index)),
                JSONMember("partitions", .int(partition.count)),
                JSONMember("fingerprint", .string(fingerprint)),
                JSONMember("output", .string(output)),
                JSONMember("output_files", .array(outputFiles.map { .string($0) })),
                JSONMember("files", .array(files.map { file in
                    .object([JSONMember("path", .string(file.path)), JSONMember("bytes", .int(file.bytes)),
                             JSONMember("sha256", .string(file.sha256))])
                })),
            ]
            if let sweepManifest {
                members.append(JSONMember("sweep_manifest", sweepManifest))
                members.append(JSONMember("checksums", .bool(checksums)))
            }
            return .object(members)
        }

        /// Parses a manifest; nil when it is not one (of this version).
        init?(_ json: JSONValue) {
            guard json["format"]?.stringValue == "mergekit-part", json["version"]?.nonNegativeInt == OutputParts.manifestVersion,
                  let index = json["partition"]?.nonNegativeInt, let count = json["partitions"]?.nonNegativeInt,
                  let partition = try? Partition(index: index, count: count),
                  let fingerprint = json["fingerprint"]?.stringValue, let output = json["output"]?.stringValue,
                  let outputFiles = json["output_files"]?.arrayValue?.compactMap(\.stringValue),
                  let files = json["files"]?.arrayValue else { return nil }
            var parsed: [File] = []
            for file in files {
                guard let path = file["path"]?.stringValue, let bytes = file["bytes"]?.nonNegativeInt,
                      let sha256 = file["sha256"]?.stringValue else { return nil }
                parsed.append(File(path: path, bytes: bytes, sha256: sha256))
            }
            self.init(partition: partition, fingerprint: fingerprint, output: output, outputFiles: outputFiles, files: parsed)
            sweepManifest = json["sweep_manifest"]
            if case .bool(let checksums)? = json["checksums"] { self.checksums = checksums }
        }

        init(partition: Partition, fingerprint: String, output: String, outputFiles: [String], files: [File]) {
            self.partition = partition
            self.fingerprint = fingerprint
            self.output = output
            self.outputFiles = outputFiles
            self.files = files
        }
    }

    /// The member of a sweep manifest's file entry naming the file inside the output, replaced
    /// by its SHA-256 (or dropped) at assembly.
    static let sweepFilePath = "part_path"

    /// Removes partition `partition`'s manifest, so that its part counts as incomplete until it
    /// is written again.
    static func removeManifest(_ partition: Partition, in parts: String) throws(MergeKitError) {
        let path = FileSystem.join(parts, partName(partition) + ".json")
        if unlink(path) != 0 && errno != ENOENT { throw FileSystem.writeError(file: path, errno: errno) }
    }

    /// Writes `manifest` into `parts` (under a temporary name, then renamed: never seen half-written).
    static func write(_ manifest: Manifest, in parts: String) throws(MergeKitError) {
        try OutputTemporaries.writeWhole(FileSystem.join(parts, partName(manifest.partition) + ".json"),
                                         Array((manifest.json.serialized(indent: 2) + "\n").utf8))
    }

    /// Sizes and SHA-256 of `paths` (inside the output) as they lie in `directory`.
    static func describe(_ paths: [String], in directory: String) throws(MergeKitError) -> [File] {
        let located = paths.map { FileSystem.join(directory, $0) }
        let digests = try FileDigest.sha256(of: located)
        var files: [File] = []
        for (path, at) in zip(paths, located) {
            var st = stat()
            guard lstat(at, &st) == 0 else { throw FileSystem.openError(path: at, errno: errno) }
            files.append(File(path: path, bytes: Int(st.st_size), sha256: digests[at]!))
        }
        return files
    }

    // MARK: Assembly

    /// What `assemble` made.
    public struct Assembly: Sendable {
        /// The output, as given.
        public let output: String
        /// Every file of the output, in output order, by its path inside the output.
        public let files: [File]
        /// The division the parts came from.
        public let partitions: Int
        public let fingerprint: String
        /// What happened around the output and the parts directory.
        public let notes: [OutputNote]
    }

    /// Puts the parts of `output` together and moves the output into place (see the type's
    /// documentation). With `expecting` (a partition assembling right after writing its part),
    /// the parts must be of that plan and division; otherwise of the plan and division most
    /// parts are of.
    public static func assemble(output: String, overwrite: Bool,
                                expecting: (fingerprint: String, count: Int)? = nil) throws(MergeKitError) -> Assembly {
        let output = FileSystem.trimmingTrailingSlashes(output)
        let parts = directory(for: output)
        guard FileSystem.kind(of: parts, followingLinks: false) != .missing else {
            throw MergeKitError(.partMissing, file: output, "has no parts to assemble: \(parts) does not exist",
                                fix: "Run every partition first (the same merge, each with its own partition INDEX/COUNT)")
        }
        try checkMark(parts)
        var problems = ProblemList()
        OutputGuard.check(output: output, isDirectory: true, overwrite: overwrite, inputs: [parts], into: &problems)
        try problems.throwIfAny()

        // Every manifest, and every part directory, found.
        var manifests: [Manifest] = []
        var partNames: [String] = []
        for name in try FileSystem.contents(of: parts).sorted() {
            guard let partition = partition(named: name) else { continue }
            partNames.append(name)
            guard name.hasSuffix(".json") else { continue }
            let path = FileSystem.join(parts, name)
            guard let bytes = try? FileSystem.readFile(path, followSymlinks: false), let json = try? JSONParser.parse(bytes),
                  let manifest = Manifest(json), manifest.partition == partition else {
                problems.add(MergeKitError(.partCorrupt, file: path, "is not a part manifest MergeKit wrote (unreadable, malformed or of another version)",
                                           fix: "Rerun partition \(partition) (it writes its part again)"))
                continue
            }
            manifests.append(manifest)
        }
        try problems.throwIfAny()
        guard !manifests.isEmpty || expecting != nil else {
            throw MergeKitError(.partMissing, file: output, "has no finished part in \(parts)",
                                fix: "Run every partition first (the same merge, each with its own partition INDEX/COUNT)")
        }

        // The merge being assembled: the caller's, or the one most parts are of.
        let wanted: (fingerprint: String, count: Int)
        if let expecting {
            wanted = expecting
        } else {
            var tally: [String: Int] = [:]
            for manifest in manifests { tally["\(manifest.partition.count) \(manifest.fingerprint)", default: 0] += 1 }
            let best = tally.max { a, b in a.value != b.value ? a.value < b.value : a.key > b.key }!
            if tally.values.filter({ $0 == best.value }).count > 1 {
                // No merge has more parts than another: which parts are stale cannot be told.
                let listed = manifests.map { "part \($0.partition) (plan \(String($0.fingerprint.prefix(12))))" }
                throw MergeKitError(.partMismatch, file: parts,
                    "holds parts of \(tally.count) different merges, none with more parts than another: \(OutputEntries.listed(listed, first: 8))",
                    fix: "Rerun every partition with the same command (each replaces its part)")
            }
            let fields = best.key.split(separator: " ")
            wanted = (String(fields[1]), Int(fields[0])!)
        }
        let short = { (fingerprint: String) in String(fingerprint.prefix(12)) }
        var current: [Int: Manifest] = [:]
        for manifest in manifests {
            let path = FileSystem.join(parts, partName(manifest.partition) + ".json")
            if manifest.partition.count != wanted.count {
                problems.add(MergeKitError(.partMismatch, file: path,
                    "is a part of a merge divided into \(manifest.partition.count) partitions, not \(wanted.count)",
                    fix: "Remove it and its directory (\(partName(manifest.partition))) from \(parts) if it is left from an earlier run, or run every partition with the same COUNT"))
            } else if manifest.fingerprint != wanted.fingerprint {
                problems.add(MergeKitError(.partMismatch, file: path,
                    "is a part of another merge (plan \(short(manifest.fingerprint)), not \(short(wanted.fingerprint))): another command, recipe or inputs, or a part left from an earlier run",
                    fix: "Rerun partition \(manifest.partition) with the same command as the others (it replaces its part)"))
            } else {
                current[manifest.partition.index] = manifest
            }
        }
        for index in 0..<wanted.count where current[index] == nil {
            let partition = try! Partition(index: index, count: wanted.count)
            if manifests.contains(where: { $0.partition == partition }) { continue }
            problems.add(MergeKitError(.partMissing, file: FileSystem.join(parts, partName(partition) + ".json"),
                "is missing: partition \(partition) has not finished (or failed)",
                fix: "Run (or rerun) partition \(partition)"))
        }
        try problems.throwIfAny()

        // Every output file exactly once, each as its manifest says.
        let outputFiles = current[0]!.outputFiles
        var owner: [String: Int] = [:]
        for index in 0..<wanted.count {
            let manifest = current[index]!
            let partDirectory = FileSystem.join(parts, partName(manifest.partition))
            for file in manifest.files {
                if owner[file.path] != nil || !outputFiles.contains(file.path) || file.path.split(separator: "/").contains("..") {
                    problems.add(MergeKitError(.partCorrupt, file: FileSystem.join(parts, partName(manifest.partition) + ".json"),
                        "lists \(file.path), which is not an output file or is in another part too",
                        fix: "Rerun partition \(manifest.partition)"))
                    continue
                }
                owner[file.path] = index
                let at = FileSystem.join(partDirectory, file.path)
                var st = stat()
                guard lstat(at, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                    problems.add(MergeKitError(.partCorrupt, file: at, "is missing from its part (or not a regular file)",
                                               fix: "Rerun partition \(manifest.partition)"))
                    continue
                }
                if Int(st.st_size) != file.bytes {
                    problems.add(MergeKitError(.partCorrupt, file: at,
                        "is \(Int(st.st_size)) bytes, not the \(file.bytes) its part's manifest says (truncated or changed since it was written)",
                        fix: "Rerun partition \(manifest.partition)"))
                }
            }
        }
        for path in outputFiles where owner[path] == nil {
            problems.add(MergeKitError(.partCorrupt, file: FileSystem.join(parts, partName(try! Partition(index: 0, count: wanted.count)) + ".json"),
                "names the output file \(path), but no part holds it", fix: "Rerun every partition"))
        }
        try problems.throwIfAny()
        // SHA-256 last (a full read of the output), on all cores.
        let located = outputFiles.map { path in FileSystem.join(FileSystem.join(parts, partName(try! Partition(index: owner[path]!, count: wanted.count))), path) }
        let digests = try FileDigest.sha256(of: located)
        var files: [File] = []
        for (path, at) in zip(outputFiles, located) {
            let manifest = current[owner[path]!]!
            let expected = manifest.files.first { $0.path == path }!
            if digests[at] != expected.sha256 {
                problems.add(MergeKitError(.partCorrupt, file: at, "does not have the SHA-256 its part's manifest says (changed or corrupted since it was written)",
                                           fix: "Rerun partition \(manifest.partition)"))
            }
            files.append(expected)
        }
        try problems.throwIfAny()

        let staged = try StagedOutput(destination: output, isDirectory: true, overwrite: overwrite)
        var moved: [(from: String, to: String)] = []
        do throws(MergeKitError) {
            for (path, at) in zip(outputFiles, located) {
                let destination = FileSystem.join(staged.temporaryPath, path)
                let directory = FileSystem.parentDirectory(of: destination)
                if FileSystem.kind(of: directory) == .missing, mkdir(directory, 0o755) != 0 {
                    throw FileSystem.writeError(file: output, errno: errno)
                }
                staged.registerFile(destination)
                if link(at, destination) != 0 {
                    // No hard links here: moved, and moved back if the assembly fails.
                    guard rename(at, destination) == 0 else { throw FileSystem.writeError(file: output, errno: errno) }
                    moved.append((at, destination))
                }
            }
            if let template = current[0]!.sweepManifest {
                let manifest = sweepManifest(template, digests: Dictionary(uniqueKeysWithValues: zip(outputFiles, located).map { ($0, digests[$1]!) }),
                                             checksums: current[0]!.checksums)
                let path = FileSystem.join(staged.temporaryPath, "manifest.json")
                staged.registerFile(path)
                try FileSystem.writeFile(path, Array((manifest.serialized(indent: 2) + "\n").utf8))
                files.append(try describe(["manifest.json"], in: staged.temporaryPath)[0])
            }
            for directory in Set(outputFiles.map { FileSystem.parentDirectory(of: FileSystem.join(staged.temporaryPath, $0)) }) {
                FileSystem.syncDirectory(directory)
            }
            try staged.commit()
        } catch {
            for (from, to) in moved.reversed() { _ = rename(to, from) }
            staged.abort()
            throw error
        }
        // The output is in place: the parts are no longer needed.
        var notes = staged.notes
        var left: [String] = []
        for name in partNames {
            let path = FileSystem.join(parts, name)
            if name.hasSuffix(".json") {
                if unlink(path) != 0 && errno != ENOENT { left.append(name) }
            } else {
                left += OutputEntries.removeRecognised(in: path).map { name + "/" + $0 }
                if rmdir(path) != 0 && errno != ENOENT { left.append(name + "/") }
            }
        }
        _ = unlink(FileSystem.join(parts, markName))
        if rmdir(parts) != 0 {
            notes.append(.leftEntries(parts, left + ((try? FileSystem.contents(of: parts)) ?? []).filter { !left.contains($0) },
                                      context: "the parts directory, after assembling \(output)"))
        }
        return Assembly(output: output, files: files, partitions: wanted.count, fingerprint: wanted.fingerprint, notes: notes)
    }

    /// A sweep's manifest.json from partition 0's template: each file entry's `sweepFilePath`
    /// replaced by the file's SHA-256 when `checksums`, else dropped (as a one-machine sweep writes it).
    static func sweepManifest(_ value: JSONValue, digests: [String: String], checksums: Bool) -> JSONValue {
        switch value {
        case .object(let members):
            return .object(members.compactMap { member in
                if member.key == sweepFilePath {
                    guard checksums, let path = member.value.stringValue, let digest = digests[path] else { return nil }
                    return JSONMember("sha256", .string(digest))
                }
                return JSONMember(member.key, sweepManifest(member.value, digests: digests, checksums: checksums))
            })
        case .array(let values):
            return .array(values.map { sweepManifest($0, digests: digests, checksums: checksums) })
        default:
            return value
        }
    }
}
