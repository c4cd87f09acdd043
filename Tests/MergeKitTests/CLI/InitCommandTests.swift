import Foundation
import Testing
@testable import MergeKit

/// `merge-cli init encoder` and `merge-cli init head`: what the commands add to the library (parsing,
/// exit codes, printed output, the files written and that the other engine commands take them).
@Suite("init command")
struct InitCommandTests {
    static let tiny = ["--hidden-size", "32", "--num-hidden-layers", "2", "--num-attention-heads", "4", "--intermediate-size", "64",
                       "--image-size", "8", "--patch-size", "4", "--projection-dim", "16"]

    func bytes(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }

    @Test("init encoder writes a model directory the engine runs; the same seed gives the same bytes; --json reports it")
    func encoder() throws {
        let dir = TestSupport.temporaryDirectory("init-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try CLI.run(["init", "encoder"] + Self.tiny + ["--seed", "5", "-o", dir + "/a", "--json"])
        #expect(a.status == 0, "\(a.stderr)")
        let json = try JSONParser.parse(Array(a.stdout.utf8))
        #expect(json["kind"] == .string("encoder") && json["hidden_size"] == .int(32) && json["seed"] == .string("5"))
        #expect(json["parameters"]?.nonNegativeInt == CLIPVisionParameters(config: try CLIPVisionConfig.load(path: dir + "/a/config.json")).count)
        #expect(a.stderr.contains("a random CLIP image encoder"))
        let b = try CLI.run(["init", "encoder"] + Self.tiny + ["--seed", "5", "-o", dir + "/b", "--quiet"])
        #expect(b.status == 0 && b.stderr.isEmpty, "\(b.stderr)")
        #expect(bytes(dir + "/a/model.safetensors") == bytes(dir + "/b/model.safetensors"))
        #expect(bytes(dir + "/a/config.json") == bytes(dir + "/b/config.json"))
        let c = try CLI.run(["init", "encoder"] + Self.tiny + ["--seed", "6", "-o", dir + "/c", "--quiet"])
        #expect(c.status == 0 && bytes(dir + "/a/model.safetensors") != bytes(dir + "/c/model.safetensors"))
        // --config gives the sizes; an option overrides one of them.
        let d = try CLI.run(["init", "encoder", "--config", dir + "/a/config.json", "--num-hidden-layers", "3", "-o", dir + "/d", "--quiet"])
        #expect(d.status == 0, "\(d.stderr)")
        let config = try CLIPVisionConfig.load(path: dir + "/d/config.json")
        #expect(config.numHiddenLayers == 3 && config.hiddenSize == 32 && config.imageSize == 8)
        // The engine commands take it: a random head for it, then fine-tuning and evaluation.
        let head = try CLI.run(["init", "head", "--model", dir + "/a", "--classes", "3", "--scale", "20", "-o", dir + "/h.safetensors", "--json"])
        #expect(head.status == 0, "\(head.stderr)")
        let headJSON = try JSONParser.parse(Array(head.stdout.utf8))
        #expect(headJSON["embedding_size"] == .int(16) && headJSON["rows"] == .string("random") && headJSON["classes"] == .int(3))
        let data = RandomInitializationTests.dataset([0, 1, 2, 1, 0, 2], in: dir)
        let tuned = try CLI.run(["finetune", "--base", dir + "/a", "--head", dir + "/h.safetensors", "--data", data, "--steps", "2",
                                 "--batch-size", "3", "-o", dir + "/ft", "--quiet"])
        #expect(tuned.status == 0, "\(tuned.stderr)")
        let eval = try CLI.run(["eval", "--model", dir + "/ft", "--head", dir + "/h.safetensors", "--data", data, "--quiet"])
        #expect(eval.status == 0 && eval.stdout.hasPrefix("accuracy"), "\(eval.stderr)")
    }

    @Test("init head --data writes the model's class-mean head: the same bytes for any --threads, the same values up to rounding for any --batch-size")
    func classMeanHead() throws {
        let dir = TestSupport.temporaryDirectory("init-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try CLI.run(["init", "encoder"] + Self.tiny + ["-o", dir + "/m", "--quiet"]).status == 0)
        let data = RandomInitializationTests.dataset([0, 1, 2, 1, 0, 2, 2], in: dir)
        let one = try CLI.run(["init", "head", "--model", dir + "/m", "--data", data, "--threads", "1", "-o", dir + "/one.safetensors", "--json"])
        #expect(one.status == 0, "\(one.stderr)")
        let json = try JSONParser.parse(Array(one.stdout.utf8))
        #expect(json["rows"] == .string("class-mean") && json["classes"] == .int(3) && json["seed"] == .null)
        let two = try CLI.run(["init", "head", "--model", dir + "/m", "--data", data, "--threads", "2", "--batch-size", "7",
                               "-o", dir + "/two.safetensors", "--quiet"])
        #expect(two.status == 0, "\(two.stderr)")
        // The same batch size on another number of threads: the same bytes.
        let three = try CLI.run(["init", "head", "--model", dir + "/m", "--data", data, "--threads", "3", "-o", dir + "/three.safetensors", "--quiet"])
        #expect(three.status == 0 && bytes(dir + "/one.safetensors") == bytes(dir + "/three.safetensors"), "\(three.stderr)")
        let (a, b) = (try TaskHead(path: dir + "/one.safetensors"), try TaskHead(path: dir + "/two.safetensors"))
        #expect(a.classes == 3 && a.dimension == 16)
        for (x, y) in zip(a.weight, b.weight) { #expect(abs(x - y) < 1e-5) }
        let model = try CLIPVisionModel(path: dir + "/m")
        let expected = try TaskHead.prototypes(of: model, data: try ImageDataset(path: data), scale: 100)
        for (x, y) in zip(a.weight, expected.weight) { #expect(abs(x - y) < 1e-5) }
        // A class without images is an input error naming the file and the class.
        let gap = try CLI.run(["init", "head", "--model", dir + "/m", "--data", data, "--classes", "5", "-o", dir + "/gap.safetensors"])
        #expect(gap.status == 1 && gap.stderr.contains("no image of class 3") && gap.stderr.contains("data.safetensors"), "\(gap.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/gap.safetensors"))
    }

    @Test("malformed arguments exit 64 naming the flag; inputs that cannot be used exit 1; --json reports both")
    func errors() throws {
        let dir = TestSupport.temporaryDirectory("init-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try CLI.run(["init", "encoder"] + Self.tiny + ["-o", dir + "/m", "--quiet"]).status == 0)
        let head = ["init", "head", "--classes", "2", "--embedding-size", "8"]
        let cases: [(String, [String], String)] = [
            ("file output", ["init", "encoder", "-o", dir + "/x.safetensors"], "--output"),
            ("zero size", ["init", "encoder", "--hidden-size", "0", "-o", dir + "/x"], "--hidden-size"),
            ("heads", ["init", "encoder", "--hidden-size", "30", "--num-attention-heads", "4", "-o", dir + "/x"], "num_attention_heads"),
            ("patch", ["init", "encoder", "--image-size", "8", "--patch-size", "16", "-o", dir + "/x"], "patch_size"),
            ("act", ["init", "encoder", "--hidden-act", "relu", "-o", dir + "/x"], "--hidden-act"),
            ("factor", ["init", "encoder", "--initializer-factor", "0", "-o", dir + "/x"], "--initializer-factor"),
            ("head dir", head + ["-o", dir + "/h"], "--output"),
            ("no width", ["init", "head", "--classes", "2", "-o", dir + "/h.safetensors"], "--embedding-size"),
            ("both widths", head + ["--model", dir + "/m", "-o", dir + "/h.safetensors"], "not both"),
            ("no classes", ["init", "head", "--embedding-size", "8", "-o", dir + "/h.safetensors"], "--classes"),
            ("scale", head + ["--scale", "-1", "-o", dir + "/h.safetensors"], "--scale"),
            ("data without model", ["init", "head", "--data", "d.safetensors", "-o", dir + "/h.safetensors"], "--model"),
            ("seed with data", ["init", "head", "--model", dir + "/m", "--data", "d.safetensors", "--seed", "1", "-o", dir + "/h.safetensors"], "--seed"),
            ("threads without data", head + ["--threads", "2", "-o", dir + "/h.safetensors"], "--data"),
        ]
        for (name, arguments, words) in cases {
            let result = try CLI.run(arguments + ["--json"])
            #expect(result.status == 64, "\(name): \(result.stderr)")
            #expect(result.stderr.contains(words), "\(name): \(result.stderr)")
            #expect((try? JSONParser.parse(Array(result.stdout.utf8)))?["error"]?["exit_status"] == .int(64), "\(name)")
        }
        // An existing output without --overwrite, and a config file that is not one, are inputs problems (exit 1).
        let exists = try CLI.run(["init", "encoder"] + Self.tiny + ["-o", dir + "/m", "--json"])
        #expect(exists.status == 1 && exists.stderr.contains("--overwrite"), "\(exists.stderr)")
        #expect((try? JSONParser.parse(Array(exists.stdout.utf8)))?["error"]?["exit_status"] == .int(1))
        #expect(try CLI.run(["init", "encoder"] + Self.tiny + ["-o", dir + "/m", "--overwrite", "--quiet"]).status == 0)
        _ = FileManager.default.createFile(atPath: dir + "/bad.json", contents: Data("{\"hidden_size\": \"wide\"}".utf8))
        let bad = try CLI.run(["init", "encoder", "--config", dir + "/bad.json", "-o", dir + "/y"])
        #expect(bad.status == 1 && bad.stderr.contains("bad.json") && bad.stderr.contains("hidden_size"), "\(bad.stderr)")
        // A head cannot replace the model it is made from.
        let over = try CLI.run(["init", "head", "--model", dir + "/m/model.safetensors", "--classes", "2", "-o", dir + "/m/model.safetensors",
                                "--overwrite"])
        #expect(over.status == 1, "\(over.stderr)")
    }
}
