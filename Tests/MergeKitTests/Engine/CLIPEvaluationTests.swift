import Foundation
import Testing
@testable import MergeKit

/// Evaluation on the fixture data against the accuracies and losses the reference script computed
/// with PyTorch (Fixtures/clip/expected.json), through the library and through `merge-cli eval`.
@Suite("CLIP evaluation")
struct CLIPEvaluationTests {
    struct Case: Sendable, CustomStringConvertible {
        let key: String          // expected.json path: folder, entry
        let folder: String
        let model: String
        let base: String?        // linearized around this model
        var description: String { key }
    }

    static let cases = [
        Case(key: "quick/eval.base", folder: "quick", model: "quick/base", base: nil),
        Case(key: "quick/eval.finetuned", folder: "quick", model: "quick/finetuned", base: nil),
        Case(key: "quick/eval.linearized", folder: "quick", model: "quick/finetuned", base: "quick/base"),
        Case(key: "gelu/eval.model", folder: "gelu", model: "gelu/model", base: nil),
    ]

    static func expected(_ c: Case) throws -> (correct: Int, images: Int, loss: Double) {
        let bytes = try FileSystem.readFile(EngineFixtures.path("expected.json"))
        let json = try JSONParser.parse(bytes)
        let parts = c.key.split(separator: "/").map(String.init)
        let entry = try #require(json[parts[0]]?[parts[1]])
        return (try #require(entry["correct"]?.nonNegativeInt), try #require(entry["images"]?.nonNegativeInt),
                try #require(entry["loss"]?.doubleValue))
    }

    @Test("Accuracy and mean loss match PyTorch's in every batch size", arguments: cases, [1, 3, 32])
    func library(_ c: Case, batchSize: Int) throws {
        let expected = try Self.expected(c)
        // The encoder the library chooses for the files (linearized around the base when one is given).
        let encoder = try EvaluatedEncoder(model: EngineFixtures.path(c.model), linearizedAround: c.base.map(EngineFixtures.path)).load()
        var calls: [Int] = []
        let result = try Evaluation.run(encoder, head: TaskHead(path: EngineFixtures.path(c.folder + "/head.safetensors")),
                                        data: EngineFixtures.dataset(c.folder), batchSize: batchSize) { done, total in
            #expect(total == expected.images)
            calls.append(done)
        }
        #expect(result.images == expected.images)
        #expect(result.correct == expected.correct)
        #expect(abs(result.meanLoss - expected.loss) <= 1e-5 * expected.loss, "\(result.meanLoss) vs \(expected.loss)")
        #expect(calls == Array(stride(from: batchSize, to: expected.images, by: batchSize)) + [expected.images])
    }

    @Test("merge-cli eval prints the same numbers as JSON", arguments: [cases[1], cases[2]])
    func command(_ c: Case) throws {
        let expected = try Self.expected(c)
        var arguments = ["eval", "--model", c.model, "--head", c.folder + "/head.safetensors", "--data", c.folder + "/data.safetensors",
                         "--batch-size", "3", "--json"]
        if let base = c.base { arguments += ["--linearized", "--base", base] }
        let result = try CLI.run(arguments, in: EngineFixtures.path(""))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.isEmpty, "no progress bar when stderr is not a terminal: \(result.stderr)")
        let json = try JSONParser.parse(Array(result.stdout.utf8))
        #expect(json["correct"]?.nonNegativeInt == expected.correct)
        #expect(json["images"]?.nonNegativeInt == expected.images)
        #expect(json["linearized"] == .bool(c.base != nil))
        let accuracy = try #require(json["accuracy"]?.doubleValue)
        #expect(abs(accuracy - Double(expected.correct) / Double(expected.images)) < 1e-12)
        let loss = try #require(json["mean_loss"]?.doubleValue)
        #expect(abs(loss - expected.loss) <= 1e-5 * expected.loss)
    }

    @Test("merge-cli eval's text output and its argument and input errors")
    func commandErrors() throws {
        let dir = EngineFixtures.path("")
        let text = try CLI.run(["eval", "--model", "quick/base", "--head", "quick/head.safetensors", "--data", "quick/data.safetensors"], in: dir)
        #expect(text.status == 0)
        #expect(text.stdout.hasPrefix("accuracy 37.50 % (3/8), mean loss 2.9570"), "\(text.stdout)")

        let noBase = try CLI.run(["eval", "--model", "quick/finetuned", "--head", "quick/head.safetensors", "--data", "quick/data.safetensors",
                                  "--linearized"], in: dir)
        #expect(noBase.status == 64 && noBase.stderr.contains("--linearized needs --base"))
        let batch = try CLI.run(["eval", "--model", "quick/base", "--head", "quick/head.safetensors", "--data", "quick/data.safetensors",
                                 "--batch-size", "0"], in: dir)
        #expect(batch.status == 64 && batch.stderr.contains("--batch-size"))

        // An input that cannot be evaluated: exit 1, the message naming the file.
        let missing = try CLI.run(["eval", "--model", "quick/nothing", "--head", "quick/head.safetensors", "--data", "quick/data.safetensors"], in: dir)
        #expect(missing.status == 1 && missing.stderr.hasPrefix("error: quick/nothing"), "\(missing.stderr)")
        // An input the library refuses (an empty dataset): exit 1, the message, and no accuracy (nor nan) printed.
        let empty = TestSupport.temporaryDirectory("eval-empty")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let data = EngineEdgeInputTests.dataset(empty, count: 0)
        let refused = try CLI.run(["eval", "--model", "quick/base", "--head", "quick/head.safetensors", "--data", data], in: dir)
        #expect(refused.status == 1 && refused.stderr.contains(data) && refused.stderr.contains("holds no images to evaluate on"), "\(refused.stderr)")
        #expect(!refused.stdout.contains("nan") && !refused.stdout.contains("accuracy"), "\(refused.stdout)")
    }

    @Test("Data of another image size than the encoder's is refused before any work, naming the tensor and image_size")
    func wrongData() throws {
        let chosen = try EvaluatedEncoder(model: EngineFixtures.path("quick/base"))
        let data = try EngineFixtures.dataset("gelu")
        let error = try #require(throws: MergeKitError.self) {
            try Evaluation.check(head: TaskHead(path: EngineFixtures.path("quick/head.safetensors")), data: data, config: chosen.config,
                                 embeddingSize: chosen.embeddingSize)
        }
        #expect(error.file == data.path && error.tensor == "pixel_values" && error.description.contains("image_size"), "\(error)")
    }
}
