import Foundation
import Testing
@testable import MergeKit

/// `--overwrite` replaces only what an output consists of (`OutputEntries`): a directory holding
/// anything else is refused before any work, naming what it holds; the working directory, its
/// parents, `/` and the home directory are never outputs; the output kind (file or directory) is
/// decided by a case-insensitive `.safetensors` suffix and an existing entry of the other kind is
/// refused; entries that appear in an old output while a merge runs are left, not deleted.
@Suite("Replacing outputs")
struct OutputReplacementTests {
    struct Setup {
        let dir: String
        var base: String { dir + "/base.safetensors" }
        var model: String { dir + "/ft.safetensors" }

        init() {
            dir = TestSupport.temporaryDirectory("replace")
            TestSupport.writeCheckpoint(base, MergeErrorTests.specs())
            TestSupport.writeCheckpoint(model, MergeErrorTests.specs().map { ($0.0, $0.1.map { $0 + 0.125 }) })
        }

        func plan(_ output: String, overwrite: Bool = true) throws -> MergePlan {
            try MergePlan(base: try Checkpoint(path: base), inputs: [MergeInput(kind: .model, checkpoint: try Checkpoint(path: model))],
                          method: try TaskArithmetic(scale: 0.5), output: OutputSpec(path: output, overwrite: overwrite))
        }

        func planError(_ output: String, overwrite: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws -> MergeKitError {
            try #require(throws: MergeKitError.self, sourceLocation: sourceLocation) { try plan(output, overwrite: overwrite) }
        }

        /// Every entry under `path` (directories end in "/") with the bytes of its files.
        func tree(_ path: String) throws -> [String: Data] {
            var result: [String: Data] = [:]
            let enumerator = try #require(FileManager.default.enumerator(atPath: path))
            while let relative = enumerator.nextObject() as? String {
                let full = path + "/" + relative
                switch FileSystem.kind(of: full, followingLinks: false) {
                case .file: result[relative] = try Data(contentsOf: URL(fileURLWithPath: full))
                case .directory: result[relative + "/"] = Data()
                default: result[relative + "@"] = Data()
                }
            }
            return result
        }

        func write(_ text: String, to path: String) throws {
            try FileManager.default.createDirectory(atPath: FileSystem.parentDirectory(of: path), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test("The hostile trial: --overwrite on a directory holding thesis.tex and a subdirectory is refused, naming them, and deletes nothing")
    func hostileTrial() throws {
        let s = Setup()
        defer { s.remove() }
        let output = s.dir + "/v"
        try s.write("x\n", to: output + "/thesis.tex")
        try FileManager.default.createDirectory(atPath: output + "/sub", withIntermediateDirectories: true)
        try s.write("old", to: output + "/model.safetensors")
        let before = try s.tree(output)
        let error = try s.planError(output)
        #expect(error.code == .outputNotReplaceable && error.file == output, "\(error)")
        #expect(error.description.contains("2 entries") && error.description.contains("thesis.tex") && error.description.contains("sub/"), "\(error)")
        #expect(error.fix?.contains("Move them out") == true, "\(error)")
        #expect(try s.tree(output) == before)

        // The same through merge-cli, with the path relative and absolute: exit 1, nothing touched.
        for path in ["v", output] {
            let run = try CLI.run(["task-arithmetic", "--base", s.base, "--model", s.model, "-o", path, "--overwrite"], in: s.dir)
            #expect(run.status == 1 && run.stderr.contains("thesis.tex"), "\(run.stderr)")
            #expect(try s.tree(output) == before)
        }
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors", "v"], "no temporaries left")
    }

    @Test("Every kind of entry an output does not consist of makes --overwrite refuse", arguments: [
        "notes.txt", "sub/", "link@", "fifo|", "point-000/notes.txt", "point-000/inner/", "point-7/", "tokenizer.json.bak", "model.bin",
    ])
    func unexpectedEntry(entry: String) throws {
        let s = Setup()
        defer { s.remove() }
        let output = s.dir + "/out"
        try s.write("old", to: output + "/model.safetensors")
        try s.write("{}", to: output + "/config.json")
        let path = output + "/" + entry.trimmingCharacters(in: CharacterSet(charactersIn: "/@|"))
        if entry.hasSuffix("/") {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } else if entry.hasSuffix("@") {
            // A link under a recognised-looking target still belongs to the user.
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: output + "/config.json")
        } else if entry.hasSuffix("|") {
            #expect(mkfifo(path, 0o644) == 0)
        } else {
            try s.write("mine", to: path)
        }
        let before = try s.tree(output)
        let error = try s.planError(output)
        #expect(error.code == .outputNotReplaceable, "\(entry): \(error)")
        #expect(error.description.contains(entry.trimmingCharacters(in: CharacterSet(charactersIn: "@|"))), "\(entry): \(error)")
        #expect(try s.tree(output) == before)
        // Without --overwrite the refusal is the same: --overwrite would not help.
        #expect(try s.planError(output, overwrite: false).code == .outputNotReplaceable)
    }

    @Test("Many unexpected entries: the first five are named, with the count")
    func manyEntries() throws {
        let s = Setup()
        defer { s.remove() }
        let output = s.dir + "/out"
        for i in 0..<8 { try s.write("\(i)", to: output + "/file\(i).txt") }
        let error = try s.planError(output)
        #expect(error.description.contains("8 entries") && error.description.contains("and 3 more"), "\(error)")
        #expect(error.description.contains("file0.txt") && !error.description.contains("file7.txt"), "\(error)")
    }

    @Test("A directory holding only an output's files (a sweep's points, stale temporaries) is replaced and none of it is left")
    func recognisedDirectoryIsReplaced() throws {
        let s = Setup()
        defer { s.remove() }
        let output = s.dir + "/out"
        for name in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                     "config.json", "tokenizer.json", "README.md", "recipe.yml", "manifest.json", "adapter_config.json",
                     "point-000/model.safetensors", "point-000/config.json", "point-012/README.md",
                     ".model.safetensors.mergekit-tmp-1-abc", ".point-001.mergekit-tmp-2-def/model.safetensors"] {
            try s.write("old", to: output + "/" + name)
        }
        let result = try MergeExecutor.run(try s.plan(output))
        #expect(result.notes.isEmpty, "\(result.notes)")
        #expect(TestSupport.listing(output) == ["model.safetensors"])
        #expect(try Checkpoint(path: output).entries.count == 4)
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors", "out"], "the old output is gone entirely")
    }

    @Test("Entries that appear in the old output while the merge runs are left, with the directory moved aside, and reported")
    func entriesAppearingDuringTheMerge() throws {
        let s = Setup()
        defer { s.remove() }
        let output = s.dir + "/out"
        try s.write("old", to: output + "/model.safetensors")
        try s.write("{}", to: output + "/config.json")
        let plan = try s.plan(output)
        // After the plan was checked, the user saves a file into the old output.
        try s.write("draft", to: output + "/thesis.tex")
        try FileManager.default.createDirectory(atPath: output + "/figures", withIntermediateDirectories: true)
        let result = try MergeExecutor.run(plan)
        #expect(try Checkpoint(path: output).entries.count == 4, "the new output is in place")
        #expect(TestSupport.listing(output) == ["model.safetensors"])
        let note = try #require(result.notes.first)
        #expect(result.notes.count == 1 && note.kind == .leftUnexpectedEntries && note.isWarning, "\(result.notes)")
        #expect(note.path.contains("/.out.mergekit-old-") && note.message.contains("thesis.tex") && note.message.contains("figures/"), "\(note)")
        #expect(TestSupport.listing(note.path) == ["figures", "thesis.tex"], "only the recognised entries were removed")
        #expect(try String(contentsOfFile: note.path + "/thesis.tex", encoding: .utf8) == "draft")
    }

    @Test("A temporary another running process holds inside the output is never removed: refused at the plan, left at the commit")
    func liveTemporaryInside() throws {
        let s = Setup()
        defer { s.remove() }
        let output = s.dir + "/out"
        try s.write("old", to: output + "/model.safetensors")
        let live = output + "/.x.safetensors.mergekit-tmp-\(getpid())-ab"
        try s.write("being written", to: live)
        let fd = open(live, O_RDONLY)
        defer { close(fd) }
        #expect(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
        let error = try s.planError(output)
        #expect(error.code == .outputNotReplaceable && error.description.contains(".x.safetensors.mergekit-tmp-"), "\(error)")
        #expect(error.description.contains("being written by a running process"), "\(error)")

        // It appears after the plan was checked: the replacement leaves it (in the aside directory).
        try FileManager.default.removeItem(atPath: live)
        let plan = try s.plan(output)
        try s.write("being written", to: live)
        let late = open(live, O_RDONLY)
        defer { close(late) }
        #expect(late >= 0 && flock(late, LOCK_EX | LOCK_NB) == 0)
        let result = try MergeExecutor.run(plan)
        let note = try #require(result.notes.first)
        #expect(note.kind == .leftUnexpectedEntries && TestSupport.listing(note.path) == [".x.safetensors.mergekit-tmp-\(getpid())-ab"], "\(result.notes)")
    }

    @Test("The working directory, its parents, / and the home directory are never outputs, even with --overwrite")
    func dangerousPlaces() throws {
        let cwd = FileManager.default.currentDirectoryPath
        var places = [cwd, cwd + "/", FileSystem.parentDirectory(of: cwd), "/", "/.", cwd + "/../" + FileSystem.lastComponent(of: cwd)]
        if let home = ProcessInfo.processInfo.environment["HOME"], FileSystem.kind(of: home) == .directory { places.append(home) }
        for place in places {
            let error = try #require(throws: MergeKitError.self) { try OutputGuard.check(output: place, overwrite: true, inputs: []) }
            #expect(error.code == .outputNotReplaceable && error.file == place, "\(place): \(error)")
            #expect(["working directory", "root directory", "home directory"].contains { error.description.contains($0) }, "\(error)")
        }
        // Through merge-cli, from inside the directory: "." and its absolute path.
        let s = Setup()
        defer { s.remove() }
        for output in [".", s.dir, ".."] {
            let run = try CLI.run(["task-arithmetic", "--base", "base.safetensors", "--model", "ft.safetensors", "-o", output, "--overwrite"], in: s.dir)
            #expect(run.status == 1 && run.stderr.contains("working directory"), "\(output): \(run.stderr)")
        }
        #expect(TestSupport.listing(s.dir) == ["base.safetensors", "ft.safetensors"])
    }

    @Test("A file output replaces a regular file, or a symbolic link itself (never the file it points to)")
    func fileOutputs() throws {
        let s = Setup()
        defer { s.remove() }
        let file = s.dir + "/merged.safetensors"
        try s.write("old", to: file)
        _ = try MergeExecutor.run(try s.plan(file))
        #expect(try Checkpoint(path: file).entries.count == 4)

        let target = s.dir + "/elsewhere/kept.safetensors"
        try s.write("the link's target", to: target)
        let link = s.dir + "/link.safetensors"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        _ = try MergeExecutor.run(try s.plan(link))
        #expect(FileSystem.kind(of: link, followingLinks: false) == .file, "the link was replaced by the output")
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "the link's target")
        // A dangling link too.
        let dangling = s.dir + "/dangling.safetensors"
        try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: s.dir + "/nowhere")
        _ = try MergeExecutor.run(try s.plan(dangling))
        #expect(FileSystem.kind(of: dangling, followingLinks: false) == .file)
        #expect(TestSupport.listing(s.dir).allSatisfy { !$0.contains("mergekit-") }, "\(TestSupport.listing(s.dir))")
    }

    @Test("A directory where a file is written, a file, link or FIFO where a directory is written: refused, untouched")
    func kindMismatches() throws {
        let s = Setup()
        defer { s.remove() }
        let directoryNamedLikeAFile = s.dir + "/x.safetensors"
        try FileManager.default.createDirectory(atPath: directoryNamedLikeAFile, withIntermediateDirectories: true)
        var error = try s.planError(directoryNamedLikeAFile)
        #expect(error.code == .outputNotReplaceable && error.description.contains("is a directory"), "\(error)")
        #expect(FileSystem.kind(of: directoryNamedLikeAFile) == .directory)

        let fileNamedLikeADirectory = s.dir + "/merged"
        try s.write("mine", to: fileNamedLikeADirectory)
        error = try s.planError(fileNamedLikeADirectory)
        #expect(error.code == .outputNotReplaceable && error.description.contains("is a file"), "\(error)")
        #expect(try String(contentsOfFile: fileNamedLikeADirectory, encoding: .utf8) == "mine")

        let realDirectory = s.dir + "/real"
        try s.write("old", to: realDirectory + "/model.safetensors")
        let link = s.dir + "/linked"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: realDirectory)
        for path in [link, link + "/"] {
            error = try s.planError(path)
            #expect(error.code == .outputNotReplaceable && error.description.contains("symbolic link"), "\(path): \(error)")
        }
        #expect(try String(contentsOfFile: realDirectory + "/model.safetensors", encoding: .utf8) == "old")

        let fifo = s.dir + "/pipe"
        #expect(mkfifo(fifo, 0o644) == 0)
        for path in [fifo, s.dir + "/pipe2.safetensors"] {
            if path != fifo { #expect(mkfifo(path, 0o644) == 0) }
            error = try s.planError(path)
            #expect(error.code == .outputNotReplaceable && error.description.contains("FIFO"), "\(path): \(error)")
        }
    }

    @Test("The output kind is decided case-insensitively: x.SAFETENSORS is a file everywhere")
    func suffixCase() throws {
        let s = Setup()
        defer { s.remove() }
        for name in ["x.SAFETENSORS", "y.SafeTensors", "z.safetensorS"] {
            #expect(OutputGuard.isFileOutput(name) && !OutputSpec(path: name).isDirectory)
            let output = s.dir + "/" + name
            _ = try MergeExecutor.run(try s.plan(output, overwrite: false))
            #expect(FileSystem.kind(of: output) == .file, "\(name)")
            #expect(try Checkpoint(path: output).entries.count == 4)
        }
        #expect(!OutputGuard.isFileOutput(s.dir + "/safetensors") && !OutputGuard.isFileOutput(s.dir + "/x.safetensors.d"))

        let fixtures = TestSupport.fixture("")
        let shard = try CLI.run(["task-arithmetic", "--base", s.base, "--model", s.model, "--max-shard-size", "1K", "-o", s.dir + "/a.SAFETENSORS"])
        #expect(shard.status == 64, "\(shard.stderr)")
        let sweep = try #require(throws: MergeKitError.self) {
            try LibraryMerge.run(LibraryMerge.sweep("task_arithmetic", LibraryMerge.Inputs(base: s.base, models: [s.model]), grids: [("lambda", [0.5, 1])]),
                                 output: s.dir + "/b.Safetensors")
        }
        #expect(sweep.description.contains("a sweep writes one output per point into a directory"), "\(sweep)")
        let adapter = try #require(throws: MergeKitError.self) {
            try LoRAExtraction(base: try Checkpoint(path: fixtures + "/f32/base"), model: try Checkpoint(path: fixtures + "/f32/ft_a"),
                               output: s.dir + "/c.SAFETENSORS", options: .init(rank: 2))
        }
        #expect(adapter.description.contains("an adapter is a directory"), "\(adapter)")
        #expect(!FileManager.default.fileExists(atPath: s.dir + "/a.SAFETENSORS") && !FileManager.default.fileExists(atPath: s.dir + "/b.Safetensors")
                && !FileManager.default.fileExists(atPath: s.dir + "/c.SAFETENSORS"))
    }

    @Test("The companions a merge copies are exactly the ones replacing its output may remove")
    func companionsAgree() throws {
        let s = Setup()
        defer { s.remove() }
        let base = s.dir + "/base-dir"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: s.base, toPath: base + "/model.safetensors")
        for name in ["config.json", "tokenizer.json", "notes.txt", "train.py", "README.md", ".hidden"] { try s.write("{}", to: base + "/" + name) }
        let companions = try Checkpoint(path: base).companionFiles()
        #expect(companions == ["config.json", "tokenizer.json"])
        #expect(companions.allSatisfy(OutputEntries.isOutputFile))
        let output = s.dir + "/out"
        let plan = try MergePlan(base: try Checkpoint(path: base), inputs: [MergeInput(kind: .model, checkpoint: try Checkpoint(path: s.model))],
                                 method: try TaskArithmetic(), output: OutputSpec(path: output))
        _ = try MergeExecutor.run(plan)
        #expect(try OutputEntries.unexpectedEntries(in: output).isEmpty, "whatever a merge writes, --overwrite may replace")
        _ = try MergeExecutor.run(try MergePlan(base: try Checkpoint(path: base), inputs: plan.inputs, method: try TaskArithmetic(),
                                                output: OutputSpec(path: output, overwrite: true)))
    }

    @Test("run r.yml -o r.yml --overwrite is refused: the recipe is an input")
    func recipeIsAnInput() throws {
        let s = Setup()
        defer { s.remove() }
        let recipe = s.dir + "/r.yml"
        let text = "merge_method: task_arithmetic\nbase_model: base.safetensors\nmodels:\n  - model: ft.safetensors\n"
        try s.write(text, to: recipe)
        for output in ["r.yml", recipe, s.dir + "/r.yml/../r.yml"] {
            let run = try CLI.run(["run", "r.yml", "-o", output, "--overwrite"], in: s.dir)
            #expect(run.status == 1 && run.stderr.contains("input r.yml"), "\(output): \(run.stderr)")
        }
        #expect(try String(contentsOfFile: recipe, encoding: .utf8) == text)
        // A sweep's directory may not hold the recipe either.
        try s.write(text + "sweep:\n  lambda: \"0.5:1:0.5\"\n", to: s.dir + "/sweep/r.yml")
        let sweep = try CLI.run(["run", "sweep/r.yml", "-o", "sweep", "--overwrite"], in: s.dir)
        #expect(sweep.status == 1 && sweep.stderr.contains("input sweep/r.yml"), "\(sweep.stderr)")
        #expect(TestSupport.listing(s.dir + "/sweep") == ["r.yml"])
    }
}
