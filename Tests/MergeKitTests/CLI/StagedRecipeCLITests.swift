import Foundation
import Testing
@testable import MergeKit

/// What `merge-cli run` adds for recipe files of several stages: its flags, the exit statuses,
/// the lines it prints, `--dry-run` and `--json`.
@Suite("CLI: multi-document recipes")
struct StagedRecipeCLITests {
    static func recipe(in dir: String) -> String {
        let path = dir + "/multi.yml"
        StagedRunTests.write(StagedRunTests.pair + "\n---\n" + StagedRunTests.final("pair") + "\n", to: path)
        return path
    }

    @Test("--keep-intermediates needs --work-dir (exit 64); a graph problem exits 1 with its line; --target picks the output")
    func arguments() throws {
        let dir = TestSupport.temporaryDirectory("staged-cli-args")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = Self.recipe(in: dir)
        let keep = try CLI.run(["run", recipe, "-o", dir + "/out", "--keep-intermediates"])
        #expect(keep.status == 64 && keep.stderr.contains("--keep-intermediates needs --work-dir DIR"), "\(keep.stderr)")
        let target = try CLI.run(["run", recipe, "-o", dir + "/out", "--target", "pairs", "--json"])
        #expect(target.status == 1 && target.stderr.contains("there is no document named \"pairs\" to make the output from (--target) (did you mean \"pair\"?)"),
                "\(target.stderr)")
        let error = try JSONParser.parse(Array(target.stdout.utf8))
        #expect(error["error"]?["exit_status"] == .int(1))
        let only = try CLI.run(["run", recipe, "-o", dir + "/pair-only", "--target", "pair", "--quiet"])
        #expect(only.status == 0 && only.stderr.isEmpty, "\(only.stderr)")
        #expect(try Checkpoint(path: dir + "/pair-only").metadata?["mergekit.method"] == Linear.info.name)
        #expect(TestSupport.listing(dir) == ["multi.yml", "pair-only"])
    }

    @Test("--dry-run describes every stage (as JSON with --json) and writes nothing; a run prints a line per stage and --json its summary")
    func describeAndRun() throws {
        let dir = TestSupport.temporaryDirectory("staged-cli-run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = Self.recipe(in: dir)
        let text = try CLI.run(["run", recipe, "-o", dir + "/out", "--dry-run"])
        #expect(text.status == 0 && text.stdout.contains("# stage 1 of 2: document \"pair\" (line 1), an intermediate, written to <work directory>/stage-000")
                && text.stdout.contains("# stage 2 of 2: the unnamed document (line 10), the output")
                && text.stdout.contains("reads \"pair\": planned on their planned layout; values checked when it runs"), "\(text.stdout)")
        let dry = try CLI.run(["run", recipe, "-o", dir + "/out", "--dry-run", "--json", "--work-dir", dir + "/work"])
        let plan = try JSONParser.parse(Array(dry.stdout.utf8))
        let stages = try #require(plan["stages"]?.arrayValue)
        #expect(stages.count == 2 && stages[0]["name"] == .string("pair") && stages[0]["role"] == .string("intermediate")
                && stages[0]["location"] == .string(dir + "/work/pair") && stages[1]["reads"] == .array([.string("pair")]))
        #expect(stages[1]["plans"]?.arrayValue?.first?["inputs"]?.arrayValue?.first?["path"] == .string("pair"))
        #expect(plan["work_directory"]?["path"] == .string(dir + "/work") && plan["work_directory"]?["keep"] == .bool(false))
        #expect(TestSupport.listing(dir) == ["multi.yml"])

        let run = try CLI.run(["run", recipe, "-o", dir + "/out", "--json", "--work-dir", dir + "/work", "--keep-intermediates"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("made document \"pair\" (line 1) in \(dir)/work/pair (kept): 21 tensors merged, 1 copied")
                && run.stderr.contains("wrote \(dir)/out: 21 tensors merged"), "\(run.stderr)")
        let summary = try JSONParser.parse(Array(run.stdout.utf8))
        #expect(summary["output"] == .string(dir + "/out") && summary["method"] == .string(TIES.info.name))
        let stage = try #require(summary["stages"]?.arrayValue?.first)
        #expect(stage["stage"]?["name"] == .string("pair") && stage["stage"]?["kept"] == .bool(true) && stage["output"] == .string(dir + "/work/pair"))
        #expect(stage["files"]?.arrayValue?.first?["sha256"] != nil)
        #expect(TestSupport.listing(dir) == ["multi.yml", "out", "work"] && TestSupport.listing(dir + "/work") == ["pair"])
    }
}
