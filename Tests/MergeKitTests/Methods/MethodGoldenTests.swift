import Foundation
import Testing
@testable import MergeKit

/// One case of Fixtures/method_goldens/cases.json, produced by Fixtures/make_method_goldens.py
/// (numpy re-implementations of the papers' code, and mergekit 0.1.5 run on the fixtures).
struct MethodGoldenCase: Sendable, CustomTestStringConvertible {
    let name: String
    let method: String
    let args: [String]
    let reference: String
    let file: String
    let tolerance: Double

    var testDescription: String { "\(name) (\(reference))" }

    static let all: [MethodGoldenCase] = {
        let json = try! JSONParser.parse(try! FileSystem.readFile(TestSupport.fixture("method_goldens/cases.json")))
        return json.arrayValue!.map { c in
            MethodGoldenCase(name: c["name"]!.stringValue!, method: c["method"]!.stringValue!,
                             args: c["args"]!.arrayValue!.map { $0.stringValue! }, reference: c["reference"]!.stringValue!,
                             file: c["file"]!.stringValue!, tolerance: c["tolerance"]!.doubleValue!)
        }
    }()
}

@Suite("Method goldens (numpy and mergekit references)")
struct MethodGoldenTests {
    @Test("The methods match the reference for each case", arguments: MethodGoldenCase.all)
    func matchesReference(_ golden: MethodGoldenCase) throws {
        let dir = TestSupport.temporaryDirectory("method-golden")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/out.safetensors"
        // The case's method flags, as the subcommand reads them.
        let (method, weights) = try LibraryMerge.method(golden.method, flags: golden.args)
        try LibraryMerge.run(method, LibraryMerge.Inputs(base: "f32/base", models: ["f32/ft_a", "f32/ft_b", "f32/ft_c"], weights: weights),
                             output: OutputSpec(path: output))
        let actual = TestSupport.values(try Checkpoint(path: output))
        let expected = TestSupport.values(try Checkpoint(path: TestSupport.fixture(golden.file)))
        #expect(!expected.isEmpty)
        for (name, reference) in expected {
            // mergekit leaves out the integer buffer merge-cli copies; compare the golden's tensors.
            let mine = try #require(actual[name], "\(name) missing")
            #expect(mine.info.shape == reference.info.shape)
            expectClose(mine.values, reference.values, tolerance: golden.tolerance, name)
        }
    }

    @Test("The goldens cover every method family and both references")
    func coverage() {
        let methods = Set(MethodGoldenCase.all.map(\.method))
        #expect(methods.isSuperset(of: ["ties", "dare", "linear", "breadcrumbs", "model-stock", "metagpt", "magmax", "task-arithmetic"]))
        #expect(Set(MethodGoldenCase.all.map(\.reference)) == ["numpy", "mergekit"])
    }

    @Test("The counter-based random stream matches the numpy implementation's test vectors")
    func counterRandomVectors() throws {
        let json = try JSONParser.parse(try FileSystem.readFile(TestSupport.fixture("method_goldens/counter_random.json")))
        func hex(_ v: JSONValue?) -> UInt64 { UInt64(v!.stringValue!.dropFirst(2), radix: 16)! }
        for pair in json["mix"]!.arrayValue! {
            #expect(CounterRandom.mix(hex(pair.arrayValue![0])) == hex(pair.arrayValue![1]))
        }
        for pair in json["threshold"]!.arrayValue! {
            #expect(UInt64(CounterRandom.threshold(dropProbability: pair.arrayValue![0].doubleValue!)) == hex(pair.arrayValue![1]))
        }
        for pair in json["fnv1a64"]!.arrayValue! {
            #expect(CounterRandom.fnv1a(pair.arrayValue![0].stringValue!) == hex(pair.arrayValue![1]))
        }
        let streams = json["streams"]!.arrayValue!
        #expect(!streams.isEmpty)
        for s in streams {
            let random = CounterRandom(seed: hex(s["seed"]), tensor: s["tensor"]!.stringValue!, input: s["input"]!.nonNegativeInt!)
            #expect(random.stream == hex(s["stream"]))
            var filled = [UInt32](repeating: 0, count: 8), portable = [UInt32](repeating: 0, count: 8)
            filled.withUnsafeMutableBufferPointer { random.fill($0.baseAddress!, count: 8, start: 0) }
            portable.withUnsafeMutableBufferPointer { BLAS.randomBitsPortable($0.baseAddress!, count: 8, a: random.a, b: random.b, start: 0) }
            for (j, bits) in s["bits_first8"]!.arrayValue!.enumerated() {
                #expect(UInt64(random.bits(j)) == hex(bits))
                #expect(UInt64(filled[j]) == hex(bits) && portable[j] == filled[j])
            }
        }
        // Dropped counts per tensor and input for p = 0.5, seed 7 over the f32 fixtures.
        let base = try Checkpoint(path: TestSupport.fixture("f32/base"))
        let limit = CounterRandom.threshold(dropProbability: 0.5)
        for member in json["dropped_p0.5_seed7"]!.objectMembers! {
            let n = try #require(base.entry(named: member.key)).info.elementCount
            for (i, count) in member.value.arrayValue!.enumerated() {
                let random = CounterRandom(seed: 7, tensor: member.key, input: i)
                #expect((0..<n).filter { random.bits($0) < limit }.count == count.nonNegativeInt!, "\(member.key) input \(i)")
            }
        }
    }

    @Test("Global TIES on sharded checkpoints equals global TIES on the same tensors in single files")
    func shardedEqualsSingleFile() throws {
        let dir = TestSupport.temporaryDirectory("sharded-ties")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Re-shard every f32 fixture into 4 shards with the merge itself (task arithmetic with λ = 0
        // adds nothing: the output is the input, laid out in shards).
        for model in ["base", "ft_a", "ft_b", "ft_c"] {
            try LibraryMerge.run(try TaskArithmetic(scale: 0), LibraryMerge.Inputs(base: "f32/\(model)", models: ["f32/\(model)"]),
                                 output: OutputSpec(path: dir + "/" + model, maxShardSize: ByteCount.parse("6KB")))
            let checkpoint = try Checkpoint(path: dir + "/" + model)
            #expect(checkpoint.files.count >= 4)
            expectCheckpointsMatch(checkpoint, try Checkpoint(path: TestSupport.fixture("f32/\(model)")), ulps: 0)
        }
        let (ties, _) = try LibraryMerge.method("ties", flags: ["--density", "0.2", "--merge", "sum", "--scale", "0.3"])
        try LibraryMerge.run(ties, LibraryMerge.Inputs(base: dir + "/base", models: [dir + "/ft_a", dir + "/ft_b", dir + "/ft_c"]),
                             output: OutputSpec(path: dir + "/sharded.safetensors"))
        try LibraryMerge.run(ties, LibraryMerge.Inputs(base: "f32/base/model.safetensors",
                                                       models: ["f32/ft_a/model.safetensors", "f32/ft_b/model.safetensors", "f32/ft_c/model.safetensors"]),
                             output: OutputSpec(path: dir + "/single.safetensors"))
        let a = try Checkpoint(path: dir + "/sharded.safetensors"), b = try Checkpoint(path: dir + "/single.safetensors")
        for entry in b.entries {
            let other = try #require(a.entry(named: entry.name))
            #expect(Array(other.file.bytes(of: other.info)) == Array(entry.file.bytes(of: entry.info)), "\(entry.name)")
        }
    }
}
