import Foundation
import Testing
@testable import MergeKit

/// Partitioned merges through the library (`Partition`, `MergeRun.runPartition`,
/// `OutputParts.assemble`): every partition run in turn, then assembled, against the same merge
/// on one machine, byte for byte; the parts' checks; what a partition reads.
@Suite("Partitioned merges")
struct PartitionTests {
    /// Bytes per output shard: the bf16 fixtures' ~12 KB of tensors become several shards.
    static let shardSize = 3000
    static let inputs = LibraryMerge.Inputs(base: "bf16/base", models: ["bf16/ft_a", "bf16/ft_b", "bf16/ft_c"])
    static let command = "merge-cli test --partition-free"

    /// The cases a partition refuses: whole-model statistics.
    static let modelWide: Set<String> = ["ties (global trim)", "metagpt"]

    /// A case's plans into the directory `output` (points, and the sweep's directory, for sweeps).
    static func plans(_ line: MethodCase, output: String) throws(MergeKitError) -> (plans: [MergePlan], points: [MergeRun.Point], sweep: String?) {
        var inputs = Self.inputs
        if line.singleInput { inputs.models = Array(inputs.models.suffix(1)) }
        // (nuslerp interpolates between exactly two models.)
        if line.method == "nuslerp" { inputs.models = Array(inputs.models.prefix(2)) }
        let spec = OutputSpec(path: output, maxShardSize: shardSize)
        switch line.form {
        case .command(let values):
            return (MergeRun.withModelCards([try LibraryMerge.plan(try LibraryMerge.method(line.method, values), inputs, output: spec)],
                                            command: command), [], nil)
        case .negate(let scale):
            inputs.models = Array(inputs.models.suffix(1))
            inputs.weights = [-1]
            return (MergeRun.withModelCards([try LibraryMerge.plan(try TaskArithmetic(scale: scale), inputs, output: spec)], command: command),
                    [], nil)
        case .sweep(let name, let grids):
            let recipe = LibraryMerge.sweep(name, inputs, grids: grids.map { ($0.name, $0.values) })
            let run = try recipe.plan(output: output, maxShardSize: shardSize)
            let points = run.points.map { $0.map { (name: $0.name, value: $0.value.description) } }
            return (MergeRun.withModelCards(run.plans, command: command), points, output)
        }
    }

    /// Every regular file under `directory`, by relative path, with its bytes (a sweep's
    /// manifest.json without its timings, which differ from run to run).
    static func contents(_ directory: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(atPath: directory)!
        while let relative = enumerator.nextObject() as? String {
            let path = directory + "/" + relative
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            if relative == "manifest.json" {
                let text = String(decoding: data, as: UTF8.self)
                    .replacingOccurrences(of: #""seconds": [0-9.e+-]+"#, with: "\"seconds\": 0", options: .regularExpression)
                data = Data(text.utf8)
            }
            files[relative] = data
        }
        return files
    }

    /// Runs every partition of `count` in turn, then assembles.
    @discardableResult
    static func partitioned(_ line: MethodCase, output: String, count: Int, checksums: Bool = false) throws(MergeKitError) -> OutputParts.Assembly {
        for index in 0..<count {
            let (plans, points, sweep) = try plans(line, output: output)
            try MergeRun.runPartition(plans, partition: try Partition(index: index, count: count), threads: 2, points: points,
                                      sweepDirectory: sweep, checksums: checksums)
        }
        return try OutputParts.assemble(output: output, overwrite: false)
    }

    /// The case merged on one machine into `output`.
    static func whole(_ line: MethodCase, output: String, checksums: Bool = false) throws(MergeKitError) {
        let (plans, points, sweep) = try plans(line, output: output)
        try MergeRun.run(plans, threads: 2, points: points, sweepDirectory: sweep, checksums: checksums)
    }

    @Test("Units go to partitions by their middle byte: contiguous runs of about equal bytes")
    func owners() {
        #expect(Partition.owners(ofUnits: [10, 10, 10, 10], count: 2) == [0, 0, 1, 1])
        #expect(Partition.owners(ofUnits: [10, 10, 10, 10], count: 4) == [0, 1, 2, 3])
        #expect(Partition.owners(ofUnits: [10, 10, 10, 10], count: 8) == [1, 3, 5, 7])
        #expect(Partition.owners(ofUnits: [10, 10, 10, 10], count: 1) == [0, 0, 0, 0])
        #expect(Partition.owners(ofUnits: [100, 1, 1, 1], count: 2) == [0, 1, 1, 1])
        #expect(Partition.owners(ofUnits: [1, 1, 1, 100], count: 2) == [0, 0, 0, 1])
        #expect(Partition.owners(ofUnits: [7], count: 3) == [1])
        // Sizes near the largest files do not overflow.
        #expect(Partition.owners(ofUnits: [1 << 50, 1 << 50], count: Partition.maximumCount) == [25_000, 75_000])
    }

    @Test("INDEX/COUNT parses from 0 to COUNT-1; anything else is an argument error",
          arguments: ["2/2", "-1/2", "1/0", "a/2", "1", "1/2/3", " 1/2", "1/", "/2", "0/100001", "1.0/2", "+1/2"])
    func malformed(_ text: String) {
        #expect(throws: MergeKitError.self) { try Partition(parsing: text) }
        do {
            _ = try Partition(parsing: text)
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test("Well-formed partitions parse")
    func wellFormed() throws {
        #expect(try Partition(parsing: "0/1") == Partition(index: 0, count: 1))
        #expect(try Partition(parsing: "3/4") == Partition(index: 3, count: 4))
        #expect(try Partition(parsing: "007/10").index == 7)
    }

    @Test("Every method without model-wide statistics: partitions assembled are byte-identical to one machine",
          arguments: MethodCase.all.filter { !PartitionTests.modelWide.contains($0.label) })
    func identical(_ line: MethodCase) throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        try Self.whole(line, output: output)
        let reference = try Self.contents(output)
        #expect(reference.keys.filter { $0.hasSuffix(".safetensors") }.count >= (line.isSweep ? 6 : 3), "\(reference.keys.sorted())")
        try FileManager.default.moveItem(atPath: output, toPath: dir + "/reference")
        let assembly = try Self.partitioned(line, output: output, count: 3)
        #expect(assembly.partitions == 3)
        #expect(try Self.contents(output) == reference)
        // The parts are gone; nothing else is beside the output.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["merged", "reference"])
    }

    @Test("A sweep's manifest gets every file's SHA-256 when asked, as on one machine")
    func sweepChecksums() throws {
        let line = MethodCase.all.first { $0.isSweep }!
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/sweep"
        try Self.whole(line, output: output, checksums: true)
        let reference = try Self.contents(output)
        #expect(String(decoding: reference["manifest.json"]!, as: UTF8.self).contains("\"sha256\""))
        try FileManager.default.moveItem(atPath: output, toPath: dir + "/reference")
        // More partitions than points: the points are divided too.
        try Self.partitioned(line, output: output, count: 5, checksums: true)
        #expect(try Self.contents(output) == reference)
    }

    @Test("More partitions than files: the empty parts still count, the output is the same")
    func morePartitionsThanFiles() throws {
        let line = MethodCase.all.first { $0.label == "task-arithmetic" }!
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.whole(line, output: dir + "/reference")
        try Self.partitioned(line, output: dir + "/merged", count: 1)
        try Self.partitioned(line, output: dir + "/many", count: 40)
        let reference = try Self.contents(dir + "/reference")
        // (The model card names no output path, so outputs under other names compare equal.)
        #expect(try Self.contents(dir + "/merged") == reference)
        #expect(try Self.contents(dir + "/many") == reference)
    }

    @Test("Methods with model-wide statistics are refused without their statistics files, naming the method and the rounds",
          arguments: MethodCase.all.filter { PartitionTests.modelWide.contains($0.label) })
    func modelWideRefused(_ line: MethodCase) throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (plans, points, sweep) = try Self.plans(line, output: dir + "/merged")
        let error = try #require(throws: MergeKitError.self) {
            try MergeRun.runPartition(plans, partition: Partition(index: 0, count: 2), threads: 1, points: points, sweepDirectory: sweep)
        }
        #expect(error.code == .invalidArgument)
        #expect(error.detail.contains(line.method) && error.detail.contains("statistics over the whole model"), "\(error)")
        #expect(error.fix?.contains("statistics round") == true, "\(error)")
        // Nothing was written.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    // MARK: Parts that are missing, stale, foreign or damaged

    static let taskArithmetic = MethodCase.all.first { $0.label == "task-arithmetic" }!

    /// Runs partition `index` of `count` of task arithmetic (λ = `lambda`) into `output`.
    static func part(_ index: Int, of count: Int, output: String, lambda: Double = 0.5) throws(MergeKitError) {
        let line = MethodCase(method: "task-arithmetic", label: "task-arithmetic", form: .command(["lambda": .number(lambda)]))
        let (plans, _, _) = try plans(line, output: output)
        try MergeRun.runPartition(plans, partition: try Partition(index: index, count: count), threads: 1)
    }

    static func assembleError(_ output: String) throws -> MergeKitError {
        try #require(throws: MergeKitError.self) { try OutputParts.assemble(output: output, overwrite: false) }
    }

    @Test("A missing part is an error naming it; running that partition recovers")
    func missingPart() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        try Self.part(0, of: 3, output: output)
        try Self.part(2, of: 3, output: output)
        let error = try Self.assembleError(output)
        #expect(error.code == .partMissing)
        #expect(error.file == OutputParts.directory(for: output) + "/part-00001-of-00003.json", "\(error)")
        #expect(error.description.contains("partition 1/3"))
        #expect(!FileManager.default.fileExists(atPath: output))
        try Self.part(1, of: 3, output: output)
        try OutputParts.assemble(output: output, overwrite: false)
        try Self.whole(Self.taskArithmetic, output: dir + "/reference")
        #expect(try Self.contents(output) == Self.contents(dir + "/reference"))
    }

    @Test("No parts at all: an error naming the parts directory")
    func noParts() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let error = try Self.assembleError(dir + "/merged")
        #expect(error.code == .partMissing)
        #expect(error.detail.contains(".merged.mergekit-parts"))
    }

    @Test("A part of another merge (other arguments) is named; rerunning it recovers")
    func foreignPart() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        try Self.part(0, of: 3, output: output)
        try Self.part(1, of: 3, output: output, lambda: 0.75)
        try Self.part(2, of: 3, output: output)
        let error = try Self.assembleError(output)
        #expect(error.code == .partMismatch)
        #expect(error.file == OutputParts.directory(for: output) + "/part-00001-of-00003.json", "\(error)")
        #expect(error.description.contains("another merge") && error.description.contains("partition 1/3"))
        try Self.part(1, of: 3, output: output)
        try OutputParts.assemble(output: output, overwrite: false)
        try Self.whole(Self.taskArithmetic, output: dir + "/reference")
        #expect(try Self.contents(output) == Self.contents(dir + "/reference"))
    }

    @Test("A part of other inputs is named")
    func otherInputs() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        // (Two parts of this merge, so that the other is the odd one out.)
        try Self.part(0, of: 3, output: output)
        try Self.part(2, of: 3, output: output)
        var inputs = Self.inputs
        inputs.models = ["bf16/ft_b", "bf16/ft_a", "bf16/ft_c"]
        let plan = try LibraryMerge.plan(try TaskArithmetic(scale: 0.5), inputs, output: OutputSpec(path: output, maxShardSize: Self.shardSize))
        try MergeRun.runPartition(MergeRun.withModelCards([plan], command: Self.command), partition: Partition(index: 1, count: 3), threads: 1)
        let error = try Self.assembleError(output)
        #expect(error.code == .partMismatch)
        #expect(error.file?.hasSuffix("part-00001-of-00003.json") == true, "\(error)")
    }

    @Test("Parts of two merges, one each: the parts directory is named with every part and its plan")
    func undecidable() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        try Self.part(0, of: 2, output: output)
        try Self.part(1, of: 2, output: output, lambda: 0.75)
        let error = try Self.assembleError(output)
        #expect(error.code == .partMismatch)
        #expect(error.file == OutputParts.directory(for: output))
        #expect(error.detail.contains("part 0/2 (plan ") && error.detail.contains("part 1/2 (plan "), "\(error)")
        // The partition that assembles knows its own merge: the other part is the stale one.
        let (plans, _, _) = try Self.plans(Self.taskArithmetic, output: output)
        let fingerprint = PlanFingerprint.compute(plans, points: [])
        let named = try #require(throws: MergeKitError.self) {
            try OutputParts.assemble(output: output, overwrite: false, expecting: (fingerprint, 2))
        }
        #expect(named.file?.hasSuffix("part-00001-of-00002.json") == true, "\(named)")
    }

    @Test("A part of another division is named, with the parts of the current one")
    func otherDivision() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        try Self.part(0, of: 2, output: output)
        try Self.part(1, of: 2, output: output)
        try Self.part(2, of: 3, output: output)
        let error = try Self.assembleError(output)
        #expect(error.code == .partMismatch)
        #expect(error.file?.hasSuffix("part-00002-of-00003.json") == true, "\(error)")
        #expect(error.description.contains("divided into 3"))
    }

    @Test("A truncated or corrupted part file is named, and rerunning its partition recovers", arguments: [true, false])
    func damagedPart(truncate: Bool) throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        for index in 0..<2 { try Self.part(index, of: 2, output: output) }
        let partDirectory = OutputParts.directory(for: output) + "/part-00001-of-00002"
        let shard = try #require(try FileManager.default.contentsOfDirectory(atPath: partDirectory).sorted().first { $0.hasSuffix(".safetensors") })
        let path = partDirectory + "/" + shard
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        if truncate {
            bytes.removeLast(10)
        } else {
            bytes[bytes.count - 3] ^= 0x40
        }
        try bytes.write(to: URL(fileURLWithPath: path))
        let error = try Self.assembleError(output)
        #expect(error.code == .partCorrupt)
        #expect(error.file == path, "\(error)")
        #expect(error.description.contains(truncate ? "bytes, not the" : "SHA-256"))
        #expect(error.description.contains("Rerun partition 1/2"))
        #expect(!FileManager.default.fileExists(atPath: output))
        try Self.part(1, of: 2, output: output)
        try OutputParts.assemble(output: output, overwrite: false)
        try Self.whole(Self.taskArithmetic, output: dir + "/reference")
        #expect(try Self.contents(output) == Self.contents(dir + "/reference"))
    }

    @Test("Assembling into a directory MergeKit did not write is refused, naming what it holds, and changes nothing")
    func foreignOutput() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        for index in 0..<2 { try Self.part(index, of: 2, output: output) }
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: false)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: output + "/notes.txt"))
        let error = try #require(throws: MergeKitError.self) { try OutputParts.assemble(output: output, overwrite: true) }
        #expect(error.code == .outputNotReplaceable)
        #expect(error.description.contains("notes.txt"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: output) == ["notes.txt"])
        // The parts are kept for the next attempt.
        #expect(FileManager.default.fileExists(atPath: OutputParts.directory(for: output) + "/part-00001-of-00002.json"))
        // An existing output of MergeKit's needs overwrite.
        try FileManager.default.removeItem(atPath: output)
        try Self.whole(Self.taskArithmetic, output: output)
        #expect(try Self.assembleError(output).code == .outputExists)
        try OutputParts.assemble(output: output, overwrite: true)
    }

    @Test("A parts directory MergeKit did not create is never written into: partitions and assembly refuse it, naming it")
    func foreignPartsDirectory() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/merged"
        let parts = OutputParts.directory(for: output)
        try FileManager.default.createDirectory(atPath: parts, withIntermediateDirectories: false)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: parts + "/part-00000-of-00002.json"))
        let error = try #require(throws: MergeKitError.self) { try Self.part(0, of: 2, output: output) }
        #expect(error.code == .outputNotReplaceable)
        #expect(error.file == parts)
        #expect(try Self.assembleError(output).file == parts)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parts) == ["part-00000-of-00002.json"])
        #expect(try String(contentsOfFile: parts + "/part-00000-of-00002.json", encoding: .utf8) == "mine")
    }

    @Test("A partition reads only the input tensors of its own shards")
    func readsOnlyItsTensors() throws {
        let dir = TestSupport.temporaryDirectory("partition")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // ft_a with a NaN in one merged tensor: only the partition writing that tensor reads it.
        try FileManager.default.copyItem(atPath: TestSupport.fixture("bf16/ft_a"), toPath: dir + "/ft_a")
        var inputs = Self.inputs
        inputs.models[0] = dir + "/ft_a"
        let output = dir + "/merged"
        let plan = try LibraryMerge.plan(try TaskArithmetic(scale: 0.5), inputs, output: OutputSpec(path: output, maxShardSize: Self.shardSize))
        let count = 3
        let owners = Partition.owners(ofUnits: plan.shards.map(\.layout.fileSize), count: count)
        let poisoned = try #require(plan.tensors.last { $0.action == .merge && $0.output.elementCount > 1 })
        let entry = try #require(plan.inputs[0].checkpoint.entry(named: poisoned.name))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: entry.file.path))
        try handle.seek(toOffset: UInt64(entry.file.fileOffset(of: entry.info)))
        handle.write(Data([0xC0, 0x7F]))   // bf16 NaN
        try handle.close()
        let reopened = try LibraryMerge.plan(try TaskArithmetic(scale: 0.5), inputs, output: OutputSpec(path: output, maxShardSize: Self.shardSize))
        for index in 0..<count {
            let run = { () throws(MergeKitError) in
                try MergeRun.runPartition([reopened], partition: try Partition(index: index, count: count), threads: 1, checkFinite: index == 0)
            }
            if owners[poisoned.shard] == index {
                let error = try #require(throws: MergeKitError.self) { try run() }
                #expect(error.code == .nonFiniteValue && error.tensor == poisoned.name, "\(error)")
            } else {
                try run()
            }
        }
    }
}
