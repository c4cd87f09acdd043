import Foundation
import Testing
@testable import MergeKit

/// Hostile config.json files and metadata: every size read from a file is range-checked and every
/// size derived from them overflow-checked, so that a bad value is an error naming the field, never
/// an arithmetic-overflow trap.
@Suite("Hostile engine configs")
struct EngineConfigTests {
    /// (key, JSON value, text the message must contain); the model loader's answers are checked by
    /// `CLIPEngineErrorTests.badConfig`, eval's (`EvaluatedEncoder`) here.
    static let hostile: [(String, String, String)] = [
        ("image_size", "4294967296", "image_size is 4294967296, more than 65536"),
        ("hidden_size", "1099511627776", "hidden_size is 1099511627776, more than 65536"),
        ("intermediate_size", "4611686018427387904", "intermediate_size is 4611686018427387904, more than 262144"),
        ("intermediate_size", "18446744073709551616", "intermediate_size is 18446744073709551616, too large"),
        ("num_hidden_layers", "100000", "num_hidden_layers is 100000, more than 4096"),
        ("num_attention_heads", "0", "num_attention_heads is 0; it must be at least 1"),
        ("num_attention_heads", "5", "hidden_size 32 is not a multiple of num_attention_heads 5"),
        ("num_channels", "3.5", "num_channels is 3.5, not a whole number"),
        ("projection_dim", "-16", "projection_dim is -16, not a whole number"),
        ("patch_size", "\"8\"", "patch_size is a string, not a whole number"),
        ("patch_size", "64", "patch_size 64 is larger than image_size 32"),
        ("image_size", "[32, 16]", "image_size is [32, 16]; the engine runs square images"),
        ("hidden_size", "[32, 32]", "hidden_size is an array"),
        ("layer_norm_eps", "1e39", "layer_norm_eps inf is not a finite number"),
        ("layer_norm_eps", "true", "layer_norm_eps is a boolean, not a number"),
    ]

    @Test("The encoder eval chooses refuses every hostile config.json with the field's name, never a crash; merge-cli eval exits 1")
    func evaluatedEncoder() throws {
        let overflow = [("image_size", "65536"), ("patch_size", "1")]
        for (changes, message) in Self.hostile.map({ ([($0.0, $0.1)], $0.2) }) + [(overflow, "tokens per image")] {
            let dir = try CLIPEngineErrorTests.modifiedModel("hostile-eval", config: try EngineTestFiles.config(changes))
            let (key, value) = changes[0]
            defer { try? FileManager.default.removeItem(atPath: dir) }
            // What eval does first: choose the encoder from the files, then load it.
            let error = try #require(throws: MergeKitError.self, "\(key) = \(value)") { _ = try EvaluatedEncoder(model: dir).load() }
            #expect(error.file == dir + "/config.json" && error.description.contains(message), "\(key) = \(value): \(error)")
        }
        // The command line: exit 1, the message naming config.json.
        let dir = try CLIPEngineErrorTests.modifiedModel("hostile-cli", config: try EngineTestFiles.config(overflow))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try CLI.run(["eval", "--model", dir, "--head", EngineFixtures.path("quick/head.safetensors"),
                                  "--data", EngineFixtures.path("quick/data.safetensors"), "--quiet"])
        #expect(result.status == 1, "status \(result.status), \(result.stderr)")
        #expect(result.stderr.contains("tokens per image") && result.stderr.contains("config.json"), "\(result.stderr)")
    }

    @Test("An image of 65536² pixels in 1-pixel patches is refused before its attention size overflows")
    func attentionOverflow() throws {
        let config = CLIPVisionConfig(hiddenSize: 4, intermediateSize: 4, numHiddenLayers: 1, numAttentionHeads: 4,
                                      imageSize: 65536, patchSize: 1, projectionDim: 4)
        do {
            try config.validate(file: "config.json")
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("gives 4294967297 tokens per image") && error.description.contains("num_attention_heads 4"))
        }
        // The largest sizes the limits allow still give a representable parameter count.
        var largest = CLIPVisionConfig()
        for (key, limit) in CLIPVisionConfig.limits {
            switch key {
            case "hidden_size": largest.hiddenSize = limit
            case "intermediate_size": largest.intermediateSize = limit
            case "num_hidden_layers": largest.numHiddenLayers = limit
            case "num_channels": largest.numChannels = limit
            case "projection_dim": largest.projectionDim = limit
            default: break
            }
        }
        largest.imageSize = 1 << 16
        largest.patchSize = 1 << 16
        largest.numAttentionHeads = 1 << 16
        try largest.validate()
        let count = try #require(CLIPVisionParameters.parameterCount(largest, projection: true))
        #expect(count > 1 << 57)
    }

    @Test("A hostile config inside a linearized checkpoint's or a WEMoE model's metadata names the field")
    func metadataConfigs() throws {
        let dir = TestSupport.temporaryDirectory("hostile-metadata")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tensors = try LinearizedCheckpointTests.linearize("quick/base", nil, into: dir, "lin.safetensors")
        var metadata = tensors.metadata ?? [:]
        metadata[LinearizedCheckpoint.configKey] = #"{"hidden_size": 1099511627776}"#
        let hostile = dir + "/hostile-lin.safetensors"
        EngineTestFiles.rewrite(tensors, to: hostile, metadata: metadata)
        do {
            _ = try LinearizedCheckpoint.model(try Checkpoint(path: hostile))
            Issue.record("accepted")
        } catch {
            #expect(error.file == hostile && error.description.contains("hidden_size is 1099511627776"))
        }
    }

    @Test("WEMoE metadata that contradicts the tensors or is not a number is named",
          arguments: [("wemoe.num_experts", "4", "says 4 experts but it holds 3"),
                      ("wemoe.router_depth", "1", "says router depth 1 but layer 0's router has depth 2"),
                      ("wemoe.init_lambda", "nan", "wemoe.init_lambda \"nan\" is not a finite number"),
                      ("wemoe.trained_steps", "-3", "wemoe.trained_steps \"-3\" is not a count"),
                      ("wemoe.trained_steps", "9223372036854775807", "is not a count"),
                      ("wemoe.config", #"{"hidden_size": 32, "num_hidden_layers": 99999}"#, "num_hidden_layers is 99999")])
    func wemoeMetadata(_ key: String, _ value: String, _ message: String) throws {
        let dir = TestSupport.temporaryDirectory("hostile-wemoe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/moe.safetensors"
        try WEMoEFixtures.upscaled().save(to: path)
        let checkpoint = try Checkpoint(path: path)
        var metadata = checkpoint.metadata ?? [:]
        metadata[key] = value
        let hostile = dir + "/hostile.safetensors"
        EngineTestFiles.rewrite(checkpoint, to: hostile, metadata: metadata)
        do {
            _ = try WEMoEParameters.load(path: hostile)
            Issue.record("\(key) = \(value) was accepted")
        } catch {
            #expect(error.file == hostile && error.description.contains(message), "\(error.description)")
        }
    }
}

/// Files the engine-input tests build from fixtures.
enum EngineTestFiles {
    /// The quick fixture's config.json with every (key, JSON text) of `changes` applied.
    static func config(_ changes: [(String, String)]) throws -> String {
        var text = try String(contentsOfFile: EngineFixtures.path("quick/base/config.json"), encoding: .utf8)
        for (key, value) in changes {
            let pattern = "\"\(key)\": "
            text = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
                guard let range = line.range(of: pattern) else { return String(line) }
                return String(line[..<range.upperBound]) + value + (line.hasSuffix(",") ? "," : "")
            }.joined(separator: "\n")
        }
        return text
    }

    /// A copy of `checkpoint` (one file) at `path` with `metadata`, its tensors edited by `edit`.
    static func rewrite(_ checkpoint: Checkpoint, to path: String, metadata: [String: String]?,
                        edit: (inout [(TensorSpec, [Double])]) -> Void = { _ in }) {
        let values = TestSupport.values(checkpoint)
        var tensors = checkpoint.entries.map { entry in
            (TensorSpec(name: entry.name, dtype: entry.info.dtype, shape: entry.info.shape), values[entry.name]!.values)
        }
        edit(&tensors)
        TestSupport.writeCheckpoint(path, tensors, metadata: metadata)
    }
}
