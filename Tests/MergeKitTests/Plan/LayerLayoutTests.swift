import Foundation
import Testing
@testable import MergeKit

/// Which tensors form which layer (`LayerLayout`): the table's families chosen from config.json or
/// from the tensor names, places and gradient positions, and the refusals.
@Suite("Layer layouts")
struct LayerLayoutTests {
    /// A checkpoint directory holding one F32 scalar-ish tensor per name (and `config` as config.json).
    static func checkpoint(_ names: [String], config: String? = nil, in dir: String, name: String = "model") throws -> Checkpoint {
        let folder = dir + "/" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        TestSupport.writeCheckpoint(folder + "/model.safetensors", names.map { (TensorSpec(name: $0, dtype: .F32, shape: [2]), [0, 0]) })
        if let config { FileManager.default.createFile(atPath: folder + "/config.json", contents: Data(config.utf8)) }
        return try Checkpoint(path: folder)
    }

    static func layers(_ prefix: String, _ count: Int, _ suffixes: [String]) -> [String] {
        (0..<count).flatMap { i in suffixes.map { prefix + "\(i)." + $0 } }
    }

    @Test("Llama-style names: layers, what comes before and after them, and t = i/(n − 1) within the stack")
    func llama() throws {
        let dir = TestSupport.temporaryDirectory("layout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let names = ["model.embed_tokens.weight"] + Self.layers("model.layers.", 5, ["self_attn.q_proj.weight", "mlp.up_proj.weight"])
            + ["model.norm.weight", "lm_head.weight", "model.rotary_emb.inv_freq"]
        let layout = try LayerLayout.detect(try Self.checkpoint(names, in: dir))
        #expect(layout.modules.map(\.name) == ["default"] && layout.modules[0].layerCount == 5)
        #expect(layout.place(of: "model.layers.3.mlp.up_proj.weight") == .layer(module: 0, index: 3, suffix: "mlp.up_proj.weight"))
        #expect(layout.place(of: "model.embed_tokens.weight") == .outside(module: 0, after: false))
        #expect(layout.place(of: "model.rotary_emb.inv_freq") == .outside(module: 0, after: false))
        #expect(layout.place(of: "model.norm.weight") == .outside(module: 0, after: true))
        #expect(layout.place(of: "lm_head.weight") == .outside(module: 0, after: true))
        #expect(layout.t(of: "model.layers.1.mlp.up_proj.weight") == 0.25)
        #expect(layout.t(of: "model.layers.4.mlp.up_proj.weight") == 1)
        #expect(layout.t(of: "lm_head.weight") == 0)
        #expect(layout.layerName(module: 0, index: 7, suffix: "mlp.up_proj.weight") == "model.layers.7.mlp.up_proj.weight")
        // A name that only starts like a layer is not one.
        #expect(layout.place(of: "model.layers.x.y") == .outside(module: 0, after: false))
    }

    @Test("GPT-2, GPT-NeoX, Falcon and BERT names are told from the tensors alone")
    func otherDecodersAndEncoders() throws {
        let dir = TestSupport.temporaryDirectory("layout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gpt2 = try LayerLayout.detect(try Self.checkpoint(["transformer.wte.weight"] + Self.layers("transformer.h.", 3, ["attn.c_attn.weight"])
                                                              + ["transformer.ln_f.weight"], in: dir, name: "gpt2"))
        #expect(gpt2.family.hasPrefix("GPT-2") && gpt2.modules[0].layerCount == 3)
        #expect(gpt2.place(of: "transformer.ln_f.weight") == .outside(module: 0, after: true))
        #expect(gpt2.place(of: "transformer.h.2.attn.c_attn.weight") == .layer(module: 0, index: 2, suffix: "attn.c_attn.weight"))
        let neox = try LayerLayout.detect(try Self.checkpoint(["gpt_neox.embed_in.weight"] + Self.layers("gpt_neox.layers.", 2, ["mlp.w"])
                                                              + ["gpt_neox.final_layer_norm.weight", "embed_out.weight"], in: dir, name: "neox"))
        #expect(neox.family.hasPrefix("GPT-NeoX") && neox.place(of: "embed_out.weight") == .outside(module: 0, after: true))
        let bert = try LayerLayout.detect(try Self.checkpoint(["bert.embeddings.word_embeddings.weight"] + Self.layers("bert.encoder.layer.", 2, ["output.dense.weight"])
                                                              + ["bert.pooler.dense.weight", "cls.predictions.bias"], in: dir, name: "bert"))
        #expect(bert.family.hasPrefix("BERT") && bert.modules[0].layerPrefix == "bert.encoder.layer.")
        #expect(bert.place(of: "cls.predictions.bias") == .outside(module: 0, after: true))
        #expect(bert.place(of: "bert.embeddings.word_embeddings.weight") == .outside(module: 0, after: false))
    }

    @Test("T5 and CLIP have a module per stack and one for what they share; CLIP's vision tower alone is one module")
    func severalStacks() throws {
        let dir = TestSupport.temporaryDirectory("layout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t5 = try LayerLayout.detect(try Self.checkpoint(["shared.weight"] + Self.layers("encoder.block.", 3, ["layer.0.SelfAttention.q.weight"])
                                                            + ["encoder.final_layer_norm.weight"] + Self.layers("decoder.block.", 2, ["layer.1.EncDecAttention.q.weight"])
                                                            + ["decoder.final_layer_norm.weight", "lm_head.weight"],
                                                            config: #"{"model_type": "t5", "num_layers": 3, "num_decoder_layers": 2}"#, in: dir, name: "t5"))
        #expect(t5.modules.map(\.name) == ["encoder", "decoder", "shared"])
        #expect(t5.modules.map(\.layerCount) == [3, 2, 0])
        #expect(t5.place(of: "decoder.block.1.layer.1.EncDecAttention.q.weight") == .layer(module: 1, index: 1, suffix: "layer.1.EncDecAttention.q.weight"))
        #expect(t5.place(of: "decoder.final_layer_norm.weight") == .outside(module: 1, after: true))
        #expect(t5.place(of: "shared.weight") == .outside(module: 2, after: false))
        #expect(t5.place(of: "lm_head.weight") == .outside(module: 2, after: true))
        // Each stack its own positions: layer 1 of the decoder's 2 is at t = 1, of the encoder's 3 at 0.5.
        #expect(t5.t(of: "decoder.block.1.layer.1.EncDecAttention.q.weight") == 1)
        #expect(t5.t(of: "encoder.block.1.layer.0.SelfAttention.q.weight") == 0.5)

        let clip = try LayerLayout.detect(try Self.checkpoint(["text_model.embeddings.token_embedding.weight"] + Self.layers("text_model.encoder.layers.", 2, ["mlp.fc1.weight"])
                                                              + ["text_model.final_layer_norm.weight", "vision_model.embeddings.class_embedding"]
                                                              + Self.layers("vision_model.encoder.layers.", 3, ["mlp.fc1.weight"])
                                                              + ["vision_model.post_layernorm.weight", "visual_projection.weight", "text_projection.weight", "logit_scale"],
                                                              in: dir, name: "clip"))
        #expect(clip.modules.map(\.name) == ["text_model", "vision_model", "shared"])
        #expect(clip.place(of: "vision_model.post_layernorm.weight") == .outside(module: 1, after: true))
        #expect(clip.place(of: "visual_projection.weight") == .outside(module: 2, after: true))
        let vision = try LayerLayout.detect(try Self.checkpoint(["vision_model.embeddings.class_embedding"] + Self.layers("vision_model.encoder.layers.", 2, ["mlp.fc1.weight"])
                                                                + ["vision_model.post_layernorm.weight"], in: dir, name: "vision"))
        #expect(vision.modules.map(\.name) == ["default"] && vision.modules[0].layerCount == 2)
        #expect(vision.place(of: "vision_model.post_layernorm.weight") == .outside(module: 0, after: true))
    }

    @Test("config.json's model_type chooses the family, and a checkpoint that does not follow it is refused")
    func fromConfig() throws {
        let dir = TestSupport.temporaryDirectory("layout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let names = ["transformer.wte.weight"] + Self.layers("transformer.h.", 2, ["mlp.c_fc.weight"])
        let gpt2 = try LayerLayout.detect(try Self.checkpoint(names, config: #"{"model_type": "gpt2", "n_layer": 2}"#, in: dir, name: "a"))
        #expect(gpt2.family.hasPrefix("GPT-2"))
        let wrong = try Self.checkpoint(names, config: #"{"model_type": "llama", "num_hidden_layers": 2}"#, in: dir, name: "b")
        let error = #expect(throws: MergeKitError.self) { try LayerLayout.detect(wrong, config: LayerLayout.config(of: wrong)) }
        #expect(error?.file == wrong.path && error?.detail.contains("model_type llama") == true && error?.detail.contains("none of its tensors") == true)
        // An unknown model_type falls back to the names.
        let unknown = try Self.checkpoint(names, config: #"{"model_type": "something_new"}"#, in: dir, name: "c")
        #expect(try LayerLayout.detect(unknown, config: LayerLayout.config(of: unknown)).family.hasPrefix("GPT-2"))
    }

    @Test("Unknown layouts are refused with the file and the fix: no known layer names, or a second stack the table does not know")
    func unknown() throws {
        let dir = TestSupport.temporaryDirectory("layout")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let timm = try Self.checkpoint(["patch_embed.proj.weight"] + Self.layers("blocks.", 2, ["attn.qkv.weight"]), in: dir, name: "timm")
        let error = #expect(throws: MergeKitError.self) { try LayerLayout.detect(timm) }
        #expect(error?.file == timm.path && error?.detail.contains("model.layers.N.") == true && error?.fix?.contains("models:") == true)
        let vlm = try Self.checkpoint(Self.layers("model.layers.", 2, ["mlp.w"]) + Self.layers("visual.blocks.", 2, ["attn.qkv.weight"]), in: dir, name: "vlm")
        let second = #expect(throws: MergeKitError.self) { try LayerLayout.detect(vlm) }
        #expect(second?.file == vlm.path && second?.tensor == "visual.blocks.0.attn.qkv.weight" && second?.detail.contains("visual.blocks.N.") == true)
    }
}
