import Foundation
import Testing
@testable import MergeKit

/// Outputs that would overwrite or contain an input are refused at planning, before any byte is
/// written, however the path reaches the input (symlinked directories, `..`, a parent directory).
/// Complements `MergeErrorTests.outputIsInput` (file, file symlink, inside a checkpoint directory).
@Suite("Output paths that reach an input")
struct OutputPathTests {
    struct Setup {
        let dir: String
        /// A directory checkpoint (the fine-tuned model).
        var modelDirectory: String { dir + "/ft" }
        var base: String { dir + "/base.safetensors" }

        init() throws {
            dir = TestSupport.temporaryDirectory("outpaths")
            try FileManager.default.createDirectory(atPath: modelDirectory, withIntermediateDirectories: true)
            TestSupport.writeCheckpoint(base, MergeErrorTests.specs())
            TestSupport.writeCheckpoint(modelDirectory + "/model.safetensors", MergeErrorTests.specs().map { ($0.0, $0.1.map { $0 + 1 }) })
            try Data("{}".utf8).write(to: URL(fileURLWithPath: modelDirectory + "/config.json"))
        }

        func planError(output: String, base: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> MergeKitError {
            try #require(throws: MergeKitError.self, sourceLocation: sourceLocation) {
                try MergePlan(base: try Checkpoint(path: base ?? self.base),
                              inputs: [MergeInput(kind: .model, checkpoint: try Checkpoint(path: modelDirectory))],
                              method: try TaskArithmetic(), output: OutputSpec(path: output, overwrite: true))
            }
        }

        /// Every file under `dir` with its bytes, to prove nothing changed.
        func snapshot() throws -> [String: Data] {
            var result: [String: Data] = [:]
            let enumerator = try #require(FileManager.default.enumerator(atPath: dir))
            while let relative = enumerator.nextObject() as? String {
                let path = dir + "/" + relative
                if FileSystem.kind(of: path) == .file { result[relative] = try Data(contentsOf: URL(fileURLWithPath: path)) }
                else if FileSystem.kind(of: path) == .directory { result[relative + "/"] = Data() }
            }
            return result
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test("A symlinked directory that leads to an input directory, or into it")
    func symlinkedDirectory() throws {
        let s = try Setup()
        defer { s.remove() }
        let link = s.dir + "/link-to-ft"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: s.modelDirectory)
        let before = try s.snapshot()
        for output in [link, link + "/", link + "/model.safetensors", link + "/merged", link + "/merged.safetensors",
                       link + "/sub/merged.safetensors"] {
            let error = try s.planError(output: output)
            #expect(error.code == .outputIsInput, "\(output): \(error)")
            #expect(error.file == output && error.description.contains(s.modelDirectory), "\(error)")
        }
        #expect(try s.snapshot() == before)
    }

    @Test("A path that reaches an input through .. or a relative symlink")
    func dotDotAndRelativeLinks() throws {
        let s = try Setup()
        defer { s.remove() }
        try FileManager.default.createDirectory(atPath: s.dir + "/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: s.dir + "/elsewhere/up", withDestinationPath: "..")
        let before = try s.snapshot()
        for output in [s.dir + "/elsewhere/../ft", s.dir + "/elsewhere/up/ft/merged.safetensors", s.dir + "/elsewhere/up/base.safetensors"] {
            let error = try s.planError(output: output)
            #expect(error.code == .outputIsInput, "\(output): \(error)")
        }
        #expect(try s.snapshot() == before)
    }

    @Test("An output directory that contains an input (the input lies inside the output)")
    func outputContainsInput() throws {
        let s = try Setup()
        defer { s.remove() }
        let before = try s.snapshot()
        // The directory holding both inputs, and one holding only the base file.
        for output in [s.dir, s.dir + "/", FileSystem.parentDirectory(of: s.dir) + "/" + FileSystem.lastComponent(of: s.dir)] {
            let error = try s.planError(output: output)
            #expect(error.code == .outputIsInput, "\(output): \(error)")
            #expect(error.description.contains("contains"), "\(error)")
        }
        // A base inside a subdirectory of the output.
        let nested = s.dir + "/models/base"
        try FileManager.default.createDirectory(atPath: nested, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: s.base, toPath: nested + "/model.safetensors")
        let error = try s.planError(output: s.dir + "/models", base: nested)
        #expect(error.code == .outputIsInput && error.description.contains(nested), "\(error)")
        var after = try s.snapshot()
        after["models/"] = nil
        after["models/base/"] = nil
        after["models/base/model.safetensors"] = nil
        #expect(after == before)
    }

    @Test("merge-cli refuses a symlinked directory output with exit 1 and writes nothing")
    func cli() throws {
        let s = try Setup()
        defer { s.remove() }
        let link = s.dir + "/link-to-ft"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: s.modelDirectory)
        let before = try s.snapshot()
        for output in [link, s.dir] {
            let result = try CLI.run(["negate", "--base", s.base, "--model", s.modelDirectory, "-o", output, "--overwrite"])
            #expect(result.status == 1)
            #expect(result.stderr.contains(output) && result.stderr.contains("input"), "\(result.stderr)")
        }
        #expect(try s.snapshot() == before)
    }
}
