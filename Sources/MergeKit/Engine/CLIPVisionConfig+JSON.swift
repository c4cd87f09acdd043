extension CLIPVisionConfig {
    /// This config as a transformers `CLIPVisionConfig` config.json (model_type
    /// `clip_vision_model`), which `CLIPVisionConfig.load` reads back unchanged.
    var json: JSONValue {
        .object([
            JSONMember("architectures", .array([.string("CLIPVisionModelWithProjection")])),
            JSONMember("model_type", .string("clip_vision_model")),
            JSONMember("hidden_size", .int(hiddenSize)),
            JSONMember("intermediate_size", .int(intermediateSize)),
            JSONMember("num_hidden_layers", .int(numHiddenLayers)),
            JSONMember("num_attention_heads", .int(numAttentionHeads)),
            JSONMember("num_channels", .int(numChannels)),
            JSONMember("image_size", .int(imageSize)),
            JSONMember("patch_size", .int(patchSize)),
            JSONMember("projection_dim", .int(projectionDim)),
            JSONMember("hidden_act", .string(hiddenAct.rawValue)),
            JSONMember("layer_norm_eps", .number("\(layerNormEps)")),  // Float's shortest form: 1e-05
        ])
    }
}
