import Foundation
import Testing
@testable import MergeKit

/// The statistics rounds of a partitioned merge on the command line (`--write-stats`, `--stats`,
/// `--stats-rounds`, `merge-cli stats`), as separate processes: the assembled bytes against one
/// machine's, exit statuses and JSON documents. The library's rounds are tested in
/// Finish/PartitionStatisticsTests.
@Suite("merge-cli statistics rounds")
struct PartitionStatisticsCLITests {
    let fixtures = TestSupport.fixture("")
    static let command = ["ties", "--density", "0.4", "--max-shard-size", "3KB"] + PartitionCLITests.inputs

    static func json(_ output: CLI.Output) throws -> JSONValue { try JSONParser.parse(Array(output.stdout.utf8)) }

    @Test("Paper TIES in 3 partitions: --stats-rounds, every round (--json), the merge with the last round's files, assemble: one machine's bytes")
    func rounds() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        let whole = try CLI.run(Self.command + ["-o", output, "--quiet"], in: fixtures)
        #expect(whole.status == 0, "\(whole.stderr)")
        try FileManager.default.moveItem(atPath: output, toPath: output + ".reference")

        let counted = try CLI.run(Self.command + ["-o", output, "--stats-rounds"], in: fixtures)
        #expect(counted.status == 0 && counted.stdout == "3\n", "\(counted.stdout) \(counted.stderr)")
        var previous: [String] = []
        for round in 1...3 {
            let running = try (0..<3).map { index in
                try PartitionCLITests.start(Self.command + ["-o", output, "--partition", "\(index)/3", "--json",
                                                            "--write-stats", "\(dir)/r\(round)-\(index).json"]
                                            + (previous.isEmpty ? [] : ["--stats"] + previous), in: fixtures)
            }
            for wait in running {
                let result = wait()
                #expect(result.status == 0, "\(result.stderr)")
                let document = try Self.json(result)
                #expect(document["round"]?.nonNegativeInt == round && document["rounds"]?.nonNegativeInt == 3)
                #expect(document["complete"] == .bool(round == 3))
                #expect(result.stderr.contains(round == 3 ? "complete" : "next: round \(round + 1)"), "\(result.stderr)")
            }
            previous = (0..<3).map { "\(dir)/r\(round)-\($0).json" }
        }
        let shown = try CLI.run(["stats", "--json"] + previous, in: fixtures)
        #expect(shown.status == 0, "\(shown.stderr)")
        let combined = try Self.json(shown)
        #expect(combined["complete"] == .bool(true) && combined["groups"]?.arrayValue?.first?["thresholds"]?.arrayValue?.count == 3)

        let running = try (0..<3).map { index in
            try PartitionCLITests.start(Self.command + ["-o", output, "--quiet", "--partition", "\(index)/3", "--stats"] + previous, in: fixtures)
        }
        for wait in running {
            let result = wait()
            #expect(result.status == 0 && result.stderr.isEmpty, "\(result.stderr)")
        }
        let assembled = try CLI.run(["assemble", output], in: fixtures)
        #expect(assembled.status == 0, "\(assembled.stderr)")
        // The model card records the one-machine command (without --partition and --stats FILES).
        #expect(try PartitionTests.contents(output) == PartitionTests.contents(output + ".reference"))
    }

    @Test("Statistics flags without --partition, or for a merge without statistics: exit 64")
    func argumentErrors() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [[String]] = [
            Self.command + ["-o", dir + "/m", "--write-stats", dir + "/s.json"],
            Self.command + ["-o", dir + "/m", "--stats", dir + "/s.json"],
            Self.command + ["-o", dir + "/m", "--partition", "0/2", "--write-stats", dir + "/s.json", "--assemble"],
            ["task-arithmetic"] + PartitionCLITests.inputs + ["-o", dir + "/m", "--partition", "0/2", "--write-stats", dir + "/s.json"],
            ["task-arithmetic"] + PartitionCLITests.inputs + ["-o", dir + "/m", "--partition", "0/2", "--stats", dir + "/s.json"],
        ]
        for arguments in cases {
            let result = try CLI.run(arguments + ["--json"], in: fixtures)
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
            #expect(try Self.json(result)["error"]?["code"]?.stringValue == "invalidArgument", "\(result.stdout)")
        }
        // A sweep learns it once planned: also 64.
        let sweep = try CLI.run(["sweep", "--method", "ties", "--density", "0.5,0.6"] + PartitionCLITests.inputs
                                + ["-o", dir + "/sweep", "--partition", "0/2", "--write-stats", dir + "/s.json"], in: fixtures)
        #expect(sweep.status == 64 && sweep.stderr.contains("needs no whole-model statistics"), "\(sweep.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        // A global trim keeping everything with the weighted vote needs no statistics: it partitions as is.
        let keepAll = try CLI.run(["ties", "--density", "1", "--vote", "weighted"] + PartitionCLITests.inputs
                                  + ["-o", dir + "/all", "--partition", "0/1", "--assemble", "--quiet"], in: fixtures)
        #expect(keepAll.status == 0, "\(keepAll.stderr)")
    }

    @Test("A missing partition's file and incomplete statistics: exit 1 naming them (--json error documents)")
    func fileErrors() throws {
        let dir = TestSupport.temporaryDirectory("partition-stats-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let metagpt = ["metagpt", "--max-shard-size", "3KB"] + PartitionCLITests.inputs + ["-o", dir + "/meta"]
        for index in 0..<2 {
            let round = try CLI.run(metagpt + ["--partition", "\(index)/2", "--write-stats", "\(dir)/n\(index).json", "--quiet"], in: fixtures)
            #expect(round.status == 0, "\(round.stderr)")
        }
        let missing = try CLI.run(metagpt + ["--partition", "0/2", "--stats", dir + "/n0.json", "--json"], in: fixtures)
        #expect(missing.status == 1, "\(missing.stderr)")
        let error = try Self.json(missing)["error"]
        #expect(error?["code"]?.stringValue == "statisticsMissing" && error?["file"]?.stringValue == dir, "\(missing.stdout)")
        #expect(missing.stderr.contains("partition 1/2"), "\(missing.stderr)")

        let paper = Self.command + ["-o", dir + "/ties"]
        for index in 0..<2 {
            let round = try CLI.run(paper + ["--partition", "\(index)/2", "--write-stats", "\(dir)/t\(index).json", "--quiet"], in: fixtures)
            #expect(round.status == 0, "\(round.stderr)")
        }
        let files = ["\(dir)/t0.json", "\(dir)/t1.json"]
        let incomplete = try CLI.run(paper + ["--partition", "1/2", "--json", "--stats"] + files, in: fixtures)
        #expect(incomplete.status == 1)
        #expect(try Self.json(incomplete)["error"]?["code"]?.stringValue == "statisticsIncomplete", "\(incomplete.stdout)")
        let shown = try CLI.run(["stats"] + files, in: fixtures)
        #expect(shown.status == 0 && shown.stdout.contains("round 1 of 3") && shown.stdout.contains("not complete"), "\(shown.stdout)")
        let shownMissing = try CLI.run(["stats", "--json", files[0]], in: fixtures)
        let missingDocument = try Self.json(shownMissing)
        #expect(shownMissing.status == 1 && missingDocument["error"]?["code"]?.stringValue == "statisticsMissing")
        #expect(!FileManager.default.fileExists(atPath: dir + "/ties") && !FileManager.default.fileExists(atPath: dir + "/meta"))
    }
}
