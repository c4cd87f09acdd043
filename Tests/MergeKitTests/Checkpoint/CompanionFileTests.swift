import Foundation
import Testing
@testable import MergeKit

/// Which files of a base directory a merge copies: only known companions
/// (`Checkpoint.companionFileNames`), and a symlink only when it stays inside the model's tree.
@Suite("Companion files: an allow-list and a symlink policy")
struct CompanionFileTests {
    /// A temporary root holding a copy of Fixtures/f32/base as `base`, plus `secret.txt` outside it.
    struct Layout {
        let root: String
        var base: String { root + "/base" }
        var secret: String { root + "/secret.txt" }

        init() throws {
            root = TestSupport.temporaryDirectory("companions")
            try FileManager.default.copyItem(atPath: TestSupport.fixture("f32/base"), toPath: root + "/base")
            try Data("private: do not upload\n".utf8).write(to: URL(fileURLWithPath: root + "/secret.txt"))
        }

        func link(_ name: String, to target: String) throws {
            try FileManager.default.createSymbolicLink(atPath: base + "/" + name, withDestinationPath: target)
        }

        func write(_ name: String, _ text: String) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: base + "/" + name))
        }

        func remove() { try? FileManager.default.removeItem(atPath: root) }

        /// Merges f32/ft_a onto the base into `root/out` as `merge-cli task-arithmetic` does (with its
        /// model card); returns the plan's skipped files and the output's summary.
        func merge() throws -> (skipped: [Checkpoint.SkippedFile], summary: JSONValue?) {
            let inputs = LibraryMerge.Inputs(base: base, models: [TestSupport.fixture("f32/ft_a")])
            let plan = try LibraryMerge.plan(try TaskArithmetic(), inputs, output: OutputSpec(path: root + "/out"))
            let outcome = try LibraryMerge.run(try TaskArithmetic(), inputs, output: OutputSpec(path: root + "/out"), summarize: true,
                                               command: "merge-cli task-arithmetic")
            return (plan.skippedFiles, outcome.summaries.first)
        }
    }

    @Test("The allow-list holds the names transformers writes, and nothing that is a weight file")
    func allowList() {
        let names = Set(Checkpoint.companionFileNames)
        #expect(names.count == Checkpoint.companionFileNames.count, "no name twice")
        for name in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                     "added_tokens.json", "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "spiece.model",
                     "sentencepiece.bpe.model", "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
                     "processor_config.json"] {
            #expect(names.contains(name), "\(name)")
        }
        for name in names {
            #expect(!Checkpoint.weightSuffixes.contains { name.hasSuffix($0) } && !name.hasPrefix(".") && !name.contains("/"), "\(name)")
        }
        #expect(!names.contains("README.md"), "outputs get their own model card")
    }

    @Test("An unknown file is not copied and is reported; known companions are copied and listed in --json")
    func unknownFile() throws {
        let layout = try Layout()
        defer { layout.remove() }
        try layout.write("notes.txt", "my notes")
        try layout.write("trainer_state.json", "{}")
        try layout.write("chat_template.jinja", "{{ messages }}")
        try layout.write("README.md", "the base's card")
        try layout.write(".hidden", "x")
        try FileManager.default.createDirectory(atPath: layout.base + "/original", withIntermediateDirectories: false)

        let selection = try Checkpoint(path: layout.base).companionSelection()
        #expect(selection.companions.map(\.name) == ["chat_template.jinja", "config.json", "generation_config.json", "tokenizer_config.json"])
        #expect(selection.companions.allSatisfy { $0.source == FileSystem.realPath(layout.base + "/" + $0.name) })
        #expect(selection.skipped.map(\.name) == ["notes.txt", "original", "trainer_state.json"])
        #expect(selection.skipped[1].reason.hasPrefix("a directory"))

        let (skipped, summary) = try layout.merge()
        #expect(skipped.map(\.name) == ["notes.txt", "original", "trainer_state.json"])
        #expect(TestSupport.listing(layout.root + "/out") == ["README.md", "chat_template.jinja", "config.json", "generation_config.json",
                                                                "model.safetensors", "tokenizer_config.json"])
        #expect(try String(contentsOfFile: layout.root + "/out/chat_template.jinja", encoding: .utf8) == "{{ messages }}")
        #expect(summary?["companions"]?.arrayValue?.compactMap(\.stringValue) == ["chat_template.jinja", "config.json",
                                                                               "generation_config.json", "tokenizer_config.json"])
        #expect(summary?["skipped_files"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["notes.txt", "original", "trainer_state.json"])

        // merge-cli reports the skipped files in a note; --quiet drops it.
        let run = try CLI.run(["task-arithmetic", "--base", layout.base, "--model", TestSupport.fixture("f32/ft_a"), "-o", layout.root + "/cli"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("note: not copied from \(layout.base): notes.txt (") && run.stderr.contains("trainer_state.json ("),
                "\(run.stderr)")
        let quiet = try CLI.run(["task-arithmetic", "--base", layout.base, "--model", TestSupport.fixture("f32/ft_a"),
                                 "-o", layout.root + "/quiet", "--quiet"])
        #expect(quiet.status == 0 && quiet.stderr.isEmpty, "\(quiet.stderr)")
    }

    @Test("A companion linking out of the model's directory is not copied, and the link is named")
    func linkOutside() throws {
        let layout = try Layout()
        defer { layout.remove() }
        try FileManager.default.removeItem(atPath: layout.base + "/tokenizer_config.json")
        try layout.link("tokenizer_config.json", to: layout.secret)
        try layout.link("notes.txt", to: layout.secret)
        try layout.link("special_tokens_map.json", to: "../base/../secret.txt")
        try layout.link("added_tokens.json", to: layout.root + "/nothing-here")

        let selection = try Checkpoint(path: layout.base).companionSelection()
        #expect(selection.companions.map(\.name) == ["config.json", "generation_config.json"])
        let reasons = Dictionary(uniqueKeysWithValues: selection.skipped.map { ($0.name, $0.reason) })
        let secret = FileSystem.realPath(layout.secret)!
        #expect(reasons["tokenizer_config.json"] == "a symbolic link to \(secret), outside the model's directory")
        #expect(reasons["special_tokens_map.json"] == "a symbolic link to \(secret), outside the model's directory")
        #expect(reasons["added_tokens.json"] == "a symbolic link to nothing")
        #expect(reasons["notes.txt"] != nil)

        let (skipped, summary) = try layout.merge()
        let listing = TestSupport.listing(layout.root + "/out")
        #expect(listing == ["README.md", "config.json", "generation_config.json", "model.safetensors"])
        for name in listing where name != "model.safetensors" {
            let text = (try? String(contentsOfFile: layout.root + "/out/" + name, encoding: .utf8)) ?? ""
            #expect(!text.contains("private: do not upload"), "\(name) carries the secret")
        }
        // What merge-cli's note names: the plan's skipped files with their reasons.
        #expect(skipped.contains { $0.name == "tokenizer_config.json" && $0.reason == "a symbolic link to \(secret), outside the model's directory" },
                "\(skipped)")
        #expect(summary?["skipped_files"]?.arrayValue?.count == 4)
    }

    @Test("A companion linking inside the model's directory is copied with its target's bytes")
    func linkInside() throws {
        let layout = try Layout()
        defer { layout.remove() }
        try FileManager.default.createDirectory(atPath: layout.base + "/extra", withIntermediateDirectories: false)
        try Data("{\"chat\": 1}".utf8).write(to: URL(fileURLWithPath: layout.base + "/extra/template.json"))
        try layout.link("chat_template.json", to: "extra/template.json")
        try layout.link("tokenizer.json", to: layout.base + "/extra/template.json")

        let selection = try Checkpoint(path: layout.base).companionSelection()
        #expect(selection.companions.map(\.name).contains("chat_template.json") && selection.companions.map(\.name).contains("tokenizer.json"))
        #expect(selection.skipped.map(\.name) == ["extra"])
        _ = try layout.merge()
        #expect(try String(contentsOfFile: layout.root + "/out/chat_template.json", encoding: .utf8) == "{\"chat\": 1}")
        #expect(FileSystem.kind(of: layout.root + "/out/chat_template.json") == .file)
        var st = stat()
        #expect(lstat(layout.root + "/out/chat_template.json", &st) == 0 && st.st_mode & S_IFMT == S_IFREG, "copied as a file, not a link")
    }

    @Test("A Hugging Face cache snapshot, whose files link into the repository's blobs/, merges with its companions")
    func huggingFaceCache() throws {
        let root = TestSupport.temporaryDirectory("hf-cache")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let repository = root + "/hub/models--org--base"
        let snapshot = repository + "/snapshots/0123456789abcdef"
        try FileManager.default.createDirectory(atPath: repository + "/blobs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        let source = TestSupport.fixture("f32/base")
        for (i, name) in TestSupport.listing(source).enumerated() {
            let blob = "blob\(i)"
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: repository + "/blobs/" + blob)
            try FileManager.default.createSymbolicLink(atPath: snapshot + "/" + name, withDestinationPath: "../../blobs/" + blob)
        }
        // Another repository's blob is outside this model's tree.
        let other = root + "/hub/models--org--other/blobs"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: other + "/x"))
        try FileManager.default.createSymbolicLink(atPath: snapshot + "/vocab.json", withDestinationPath: "../../../models--org--other/blobs/x")

        let selection = try Checkpoint(path: snapshot).companionSelection()
        #expect(selection.companions.map(\.name) == ["config.json", "generation_config.json", "tokenizer_config.json"])
        #expect(selection.skipped.map(\.name) == ["vocab.json"])
        let inputs = LibraryMerge.Inputs(base: snapshot, models: [TestSupport.fixture("f32/ft_a")])
        let plan = try LibraryMerge.plan(try TaskArithmetic(), inputs, output: OutputSpec(path: root + "/out"))
        #expect(plan.skippedFiles.map(\.name) == ["vocab.json"] && plan.skippedFiles.first?.reason.hasPrefix("a symbolic link to") == true,
                "\(plan.skippedFiles)")
        try LibraryMerge.run(try TaskArithmetic(), inputs, output: OutputSpec(path: root + "/out"), command: "merge-cli task-arithmetic")
        #expect(TestSupport.listing(root + "/out") == ["README.md", "config.json", "generation_config.json", "model.safetensors",
                                                         "tokenizer_config.json"])
        #expect(FileManager.default.contentsEqual(atPath: root + "/out/tokenizer_config.json", andPath: source + "/tokenizer_config.json"))

        // The same tree seen through a symlinked snapshot path resolves the same way.
        try FileManager.default.createSymbolicLink(atPath: root + "/model", withDestinationPath: snapshot)
        #expect(try Checkpoint(path: root + "/model").companionFiles() == ["config.json", "generation_config.json", "tokenizer_config.json"])
    }

    @Test("A directory that is not a cache snapshot does not get the blobs/ exception")
    func notACache() throws {
        let root = TestSupport.temporaryDirectory("not-cache")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // "snapshots" but not under a models--… repository.
        let snapshot = root + "/mine/snapshots/v1"
        try FileManager.default.createDirectory(atPath: root + "/mine/blobs", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestSupport.fixture("f32/base"), toPath: snapshot)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: root + "/mine/blobs/b"))
        try FileManager.default.createSymbolicLink(atPath: snapshot + "/vocab.json", withDestinationPath: "../../blobs/b")
        let selection = try Checkpoint(path: snapshot).companionSelection()
        #expect(selection.skipped.map(\.name) == ["vocab.json"])
        #expect(Checkpoint.treeRoots(of: snapshot) == [FileSystem.realPath(snapshot)!])
    }

    @Test("Plans for single-file outputs and task vectors copy no companions and report nothing")
    func noDirectoryOutput() throws {
        let layout = try Layout()
        defer { layout.remove() }
        try layout.write("notes.txt", "my notes")
        let base = try Checkpoint(path: layout.base)
        let inputs = [MergeInput(kind: .model, checkpoint: try Checkpoint(path: TestSupport.fixture("f32/ft_a")))]
        let file = try MergePlan(base: base, inputs: inputs, method: try TaskArithmetic(scale: 1), output: OutputSpec(path: layout.root + "/o.safetensors"))
        #expect(file.companions.isEmpty && file.skippedFiles.isEmpty)
        let directory = try MergePlan(base: base, inputs: inputs, method: try TaskArithmetic(scale: 1), output: OutputSpec(path: layout.root + "/o"))
        #expect(directory.companions == ["config.json", "generation_config.json", "tokenizer_config.json"])
        #expect(directory.skippedFiles.map(\.name) == ["notes.txt"])
    }
}
