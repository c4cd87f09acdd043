import Foundation
import Testing
@testable import MergeKit

/// `merge-cli regmean` and `merge-cli fisher`: what the commands add to the library (parsing,
/// exit codes, printed output, the written checkpoint).
@Suite("regmean and fisher commands")
struct DataMergeCLITests {
    static func taskArguments(heads: Bool = false) -> [String] {
        (0..<DataMergeFixtures.tasks).flatMap { t in
            ["--model", DataMergeFixtures.models[t], "--data", DataMergeFixtures.data[t]] + (heads ? ["--head", DataMergeFixtures.heads[t]] : [])
        }
    }

    func bytes(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }

    @Test("regmean writes an ordinary checkpoint (the first model's config.json, metadata), the same bytes for 1 and 2 threads; --json reports the run")
    func regmean() throws {
        let dir = TestSupport.temporaryDirectory("datamerge-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let one = try CLI.run(["regmean"] + Self.taskArguments() + ["--threads", "1", "--batch-size", "3", "-o", dir + "/one", "--json"])
        #expect(one.status == 0, "\(one.stderr)")
        let json = try JSONParser.parse(Array(one.stdout.utf8))
        #expect(json["method"] == .string("regmean") && json["samples_per_task"] == .array([.int(10), .int(10), .int(10)]))
        #expect(json["solved"]?.arrayValue?.count == 13 && json["pseudo_inverse"] == .array([]) && json["alpha"] == .double(0.95))
        #expect((json["peak_memory_bytes"]?.doubleValue ?? 0) > 0 && json["output"] == .string(dir + "/one"))
        let two = try CLI.run(["regmean"] + Self.taskArguments() + ["--threads", "2", "--batch-size", "3", "-o", dir + "/two", "--quiet"])
        #expect(two.status == 0 && two.stderr.isEmpty, "\(two.stderr)")
        #expect(bytes(dir + "/one/model.safetensors") == bytes(dir + "/two/model.safetensors"))
        #expect(bytes(dir + "/one/config.json") == bytes(DataMergeFixtures.models[0] + "/config.json"))
        let checkpoint = try Checkpoint(path: dir + "/one")
        #expect(checkpoint.metadata?["mergekit.method"] == "regmean")
        let parameters = try JSONParser.parse(Array((checkpoint.metadata?["mergekit.parameters"] ?? "").utf8))
        #expect(parameters["batch_size"] == .int(3) && parameters["data"]?.arrayValue?.count == 3)
        // The merged model evaluates like any other.
        let eval = try CLI.run(["eval", "--model", dir + "/one", "--head", DataMergeFixtures.heads[0], "--data", DataMergeFixtures.data[0], "--quiet"])
        #expect(eval.status == 0 && eval.stdout.hasPrefix("accuracy"), "\(eval.stderr)")
        // RegMean++ is another merge; the summary line names it.
        let plus = try CLI.run(["regmean", "--plusplus"] + Self.taskArguments() + ["-o", dir + "/pp.safetensors"])
        #expect(plus.status == 0 && plus.stderr.contains("RegMean++ of 13 linear layers of 3 models"), "\(plus.stderr)")
    }

    @Test("fisher: --seed reproduces the merge whatever the threads; another seed or the FusionBench estimator changes it")
    func fisher() throws {
        let dir = TestSupport.temporaryDirectory("datamerge-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func run(_ name: String, _ extra: [String]) throws -> CLI.Output {
            try CLI.run(["fisher"] + Self.taskArguments(heads: true) + extra + ["-o", dir + "/" + name + ".safetensors", "--quiet"])
        }
        for (name, extra) in [("a", ["--seed", "4", "--threads", "1"]), ("b", ["--seed", "4", "--threads", "2"]), ("c", ["--seed", "5"]),
                              ("d", ["--estimator", "fusionbench", "--json"])] {
            let result = try run(name, extra)
            #expect(result.status == 0, "\(name): \(result.stderr)")
        }
        #expect(bytes(dir + "/a.safetensors") == bytes(dir + "/b.safetensors"))
        #expect(bytes(dir + "/a.safetensors") != bytes(dir + "/c.safetensors"))
        #expect(bytes(dir + "/a.safetensors") != bytes(dir + "/d.safetensors"))
        #expect(try Checkpoint(path: dir + "/d.safetensors").metadata?["mergekit.method"] == "fisher_merging")
    }

    @Test("Malformed arguments exit 64 before any file is read")
    func arguments() throws {
        let dir = TestSupport.temporaryDirectory("datamerge-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tasks = Self.taskArguments(), withHeads = Self.taskArguments(heads: true), out = ["-o", dir + "/m"]
        let cases: [(String, [String])] = [
            ("alpha", ["regmean"] + tasks + ["--alpha", "1.5"] + out),
            ("samples", ["regmean"] + tasks + ["--samples", "0"] + out),
            ("batch", ["fisher"] + withHeads + ["--batch-size", "0"] + out),
            ("threads", ["regmean"] + tasks + ["--threads", "0"] + out),
            ("one model", ["regmean", "--model", DataMergeFixtures.models[0], "--data", DataMergeFixtures.data[0]] + out),
            ("data count", ["regmean"] + tasks.dropLast(2) + ["--model", DataMergeFixtures.models[2]] + out),
            ("no base", ["regmean"] + tasks + ["--others", "task-arithmetic"] + out),
            ("base unused", ["regmean"] + tasks + ["--base", DataMergeFixtures.path("base")] + out),
            ("scale unused", ["regmean"] + tasks + ["--scale", "0.5"] + out),
            ("others", ["regmean"] + tasks + ["--others", "median"] + out),
            ("singular", ["regmean"] + tasks + ["--singular", "ignore"] + out),
            ("heads", ["fisher"] + tasks + out),
            ("estimator", ["fisher"] + withHeads + ["--estimator", "exact"] + out),
            ("epsilon", ["fisher"] + withHeads + ["--epsilon", "0"] + out),
            ("no output", ["regmean"] + tasks),
        ]
        for (label, arguments) in cases {
            let result = try CLI.run(arguments)
            #expect(result.status == 64, "\(label): \(result.status) \(result.stderr)")
        }
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("Inputs that cannot be merged exit 1 with the file named, and write nothing")
    func unmergeable() throws {
        let dir = TestSupport.temporaryDirectory("datamerge-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let other = TestSupport.fixture("clip/quick/base")
        let mismatched = try CLI.run(["regmean", "--model", DataMergeFixtures.models[0], "--data", DataMergeFixtures.data[0],
                                      "--model", other, "--data", DataMergeFixtures.data[1], "-o", dir + "/m", "--json"])
        #expect(mismatched.status == 1 && mismatched.stderr.contains(other) && mismatched.stderr.contains("hidden_size"), "\(mismatched.stderr)")
        let json = try JSONParser.parse(Array(mismatched.stdout.utf8))
        #expect(json["error"]?["code"] == .string("shapeMismatch") && json["error"]?["file"] == .string(other))
        let wrongData = try CLI.run(["fisher", "--model", DataMergeFixtures.models[0], "--data", TestSupport.fixture("clip/quick/data.safetensors"),
                                     "--head", DataMergeFixtures.heads[0], "--model", DataMergeFixtures.models[1], "--data", DataMergeFixtures.data[1],
                                     "--head", DataMergeFixtures.heads[1], "-o", dir + "/f"])
        #expect(wrongData.status == 1 && wrongData.stderr.contains("pixel_values") && wrongData.stderr.contains("image_size"), "\(wrongData.stderr)")
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("A singular Gram sum with --singular error exits 1 naming the layers; by default the pseudo-inverse is noted")
    func singular() throws {
        let dir = TestSupport.temporaryDirectory("datamerge-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let models = try DataMergeFixtures.models.enumerated().map { t, path in
            try DataMergeSynthetic.edited(path, into: dir, name: "m\(t)") { name, values in
                guard name.hasPrefix("vision_model.encoder.layers.1.layer_norm2.") else { return values }
                var v = values
                v[0] = 0
                return v
            }
        }
        let arguments = ["regmean"] + (0..<3).flatMap { ["--model", models[$0], "--data", DataMergeFixtures.data[$0]] }
        let refused = try CLI.run(arguments + ["--singular", "error", "-o", dir + "/x"])
        #expect(refused.status == 1 && refused.stderr.contains("vision_model.encoder.layers.1.mlp.fc1.weight")
                && refused.stderr.contains("singular") && refused.stderr.contains("--singular pseudo-inverse"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
        let solved = try CLI.run(arguments + ["-o", dir + "/y"])
        #expect(solved.status == 0 && solved.stderr.contains("note: vision_model.encoder.layers.1.mlp.fc1.weight: the Gram sum is singular (rank 15 of 16)"),
                "\(solved.stderr)")
    }

    @Test("Both commands are listed under Model in merge-cli --help")
    func help() throws {
        let help = try CLI.run(["--help"])
        let model = help.stdout.components(separatedBy: "MODEL SUBCOMMANDS").last ?? ""
        #expect(model.contains("regmean") && model.contains("fisher"), "\(help.stdout)")
    }
}
