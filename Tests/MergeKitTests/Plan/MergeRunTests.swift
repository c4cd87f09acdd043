import Foundation
import Testing
@testable import MergeKit

/// Running plans to their outputs (`MergeRun`): a sweep written as one directory with its
/// manifest, summaries with SHA-256, model cards.
@Suite("Merge runs")
struct MergeRunTests {
    /// Task arithmetic of the f32 fixtures at each λ, written into `directory/point-00i`, sharing
    /// one base and the inputs (as a sweep's plans do; `sweep`: as the points of a sweep directory,
    /// which `MergeRun` checks as one output).
    static func plans(_ lambdas: [Double], into directory: String, sweep: Bool = false) throws -> [MergePlan] {
        let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
        let inputs = try ["f32/ft_a", "f32/ft_b"].map { MergeInput(kind: .model, checkpoint: try Checkpoint(path: TestSupport.fixture($0))) }
        return try lambdas.enumerated().map { i, lambda in
            var spec = OutputSpec(path: directory + "/" + OutputEntries.pointName(i, of: lambdas.count))
            spec.isSweepPoint = sweep
            return try MergePlan(base: base, inputs: inputs, method: try TaskArithmetic(scale: lambda), output: spec)
        }
    }

    @Test("A sweep is one directory: every point's output and a manifest with each point's parameters, files and SHA-256")
    func sweep() throws {
        let dir = TestSupport.temporaryDirectory("merge-run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lambdas = [0.5, 1.0]
        let outcome = try MergeRun.run(try Self.plans(lambdas, into: dir + "/sweep", sweep: true), threads: 2,
                                       points: lambdas.map { [(name: "lambda", value: String($0))] },
                                       sweepDirectory: dir + "/sweep", checksums: true)
        #expect(TestSupport.listing(dir + "/sweep") == ["manifest.json", "point-000", "point-001"])
        #expect(TestSupport.listing(dir).count == 1, "no temporary left: \(TestSupport.listing(dir))")
        let manifest = try JSONParser.parse(try FileSystem.readFile(dir + "/sweep/manifest.json"))
        #expect(manifest["method"] == .string(TaskArithmetic.info.name) && manifest["base"] == .string(TestSupport.fixture("f32/base")))
        let points = try #require(manifest["points"]?.arrayValue)
        #expect(points == outcome.summaries && points.count == 2 && outcome.results.count == 2)
        for (i, lambda) in lambdas.enumerated() {
            #expect(points[i]["sweep"]?["lambda"]?.doubleValue == lambda && points[i]["output"] == .string(dir + "/sweep/point-00\(i)"))
            let file = try #require(points[i]["files"]?.arrayValue?.first)
            let path = try #require(file["path"]?.stringValue)
            #expect(file["sha256"] == .string(try FileDigest.sha256(path: path)), "\(file)")
            // Each point equals the merge made on its own.
            try FileManager.default.createDirectory(atPath: dir + "/alone-\(i)", withIntermediateDirectories: false)
            let alone = try MergeRun.run(try Self.plans([lambda], into: dir + "/alone-\(i)"), threads: 1)
            #expect(alone.summaries.isEmpty && alone.results.count == 1)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path))
                    == Data(contentsOf: URL(fileURLWithPath: dir + "/alone-\(i)/point-000/model.safetensors")))
        }
    }

    @Test("An existing sweep directory needs overwriting, and is then replaced whole; without it nothing changes")
    func existingSweep() throws {
        let dir = TestSupport.temporaryDirectory("merge-run-existing")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sweep = dir + "/sweep"
        _ = try MergeRun.run(try Self.plans([0.25, 0.5, 0.75], into: sweep, sweep: true), threads: 1,
                             points: [0.25, 0.5, 0.75].map { [(name: "lambda", value: String($0))] }, sweepDirectory: sweep)
        let before = try FileSystem.readFile(sweep + "/manifest.json")
        let refused = try #require(throws: MergeKitError.self) {
            try MergeRun.run(try Self.plans([1], into: sweep, sweep: true), threads: 1, points: [[(name: "lambda", value: "1")]], sweepDirectory: sweep)
        }
        #expect(refused.code == .outputExists && refused.file == sweep && refused.description.contains("allow overwriting"), "\(refused)")
        #expect(try FileSystem.readFile(sweep + "/manifest.json") == before)
        _ = try MergeRun.run(try Self.plans([1], into: sweep, sweep: true), threads: 1, points: [[(name: "lambda", value: "1")]], sweepDirectory: sweep,
                             overwrite: true)
        #expect(TestSupport.listing(sweep) == ["manifest.json", "point-000"])
    }

    @Test("A summary names the output, the inputs and the files with SHA-256; model cards go to directory outputs without one")
    func summaryAndCards() throws {
        let dir = TestSupport.temporaryDirectory("merge-run-summary")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var plans = try Self.plans([0.5], into: dir)
        let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
        plans.append(try MergePlan(base: base, inputs: plans[0].inputs, method: try TaskArithmetic(scale: 0.5),
                                   output: OutputSpec(path: dir + "/file.safetensors")))
        let carded = MergeRun.withModelCards(plans, command: "merge-cli task-arithmetic …")
        #expect(carded[0].generatedFiles["README.md"].map { String(decoding: $0, as: UTF8.self).contains("merge-cli task-arithmetic …") } == true)
        #expect(carded[1].generatedFiles["README.md"] == nil)
        let outcome = try MergeRun.run([carded[0]], threads: 1, summarize: true)
        let summary = try #require(outcome.summaries.first)
        #expect(summary["sweep"] == nil && summary["output"] == .string(dir + "/point-000") && summary["emit"] == .string("model"))
        #expect(summary["inputs"]?.arrayValue?.map { $0["kind"] } == [.string("model"), .string("model")])
        let files = try #require(summary["files"]?.arrayValue)
        #expect(!files.isEmpty && files.allSatisfy { $0["sha256"]?.stringValue?.count == 64 })
        #expect(TestSupport.listing(dir + "/point-000").contains("README.md"))
        #expect(MergeRun.pointJSON([(name: "lambda", value: "0.5"), (name: "vote", value: "mass")])
                == .object([JSONMember("lambda", .double(0.5)), JSONMember("vote", .string("mass"))]))
    }
}
