import ArgumentParser
import Foundation
import MergeKit

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Top-1 accuracy and mean cross-entropy of a CLIP image encoder with a task head on a labelled dataset.",
        discussion: """
            --model is a Hugging Face CLIPVisionModel(WithProjection) or CLIPModel directory (config.json + \
            safetensors). --head is a safetensors file with `weight` [classes, projection_dim]: \
            logits = weight · e/‖e‖. --data is a safetensors file with `pixel_values` [N, 3, H, W] F32 \
            (preprocessed) and `labels` [N] I64. With --linearized --base DIR0, evaluates the model \
            linearized around the base, f(x; θ₀) + J·(θ − θ₀) (tangent-space task arithmetic); \
            --model may then also be a bare .safetensors file with the base's layout. A linearized \
            checkpoint (from `linearize`, `finetune --linearized` or a merge of those) is always \
            evaluated as f(x; θ₀) + J·(θ − θ₀) around its own θ₀, with or without --linearized. A WEMoE \
            checkpoint (from `merge-cli wemoe` / `wemoe-train`) is evaluated with per-image routing.
            """)

    @Option(help: ArgumentHelp("The model θ: a CLIP image-encoder directory or .safetensors file.", valueName: "path"))
    var model: String

    @Option(help: ArgumentHelp("The task head: safetensors with `weight` [classes, embedding].", valueName: "file"))
    var head: String

    @Option(help: ArgumentHelp("The dataset: safetensors with `pixel_values` [N,3,H,W] F32 and `labels` [N] I64.", valueName: "file"))
    var data: String

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per forward pass (default 32, fewer when 32 would not fit in the memory available).", valueName: "B"))
    var batchSize: Int?

    @Flag(name: .customLong("allow-unused"), help: "Ignore tensors of the model the encoder does not use (with a warning) instead of refusing the model.")
    var allowUnused = false

    @Flag(help: "Evaluate f(x; θ₀) + J·(θ − θ₀), the model linearized around --base.")
    var linearized = false

    @Option(help: ArgumentHelp("The base model θ₀ of --linearized.", valueName: "path"))
    var base: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads (default: every core).", valueName: "n"))
    var threads: Int?

    @Flag(help: "Print the result as JSON on stdout.")
    var json = false

    @Flag(help: "No progress bar on stderr.")
    var quiet = false

    func validate() throws {
        try ArgumentCheck.atLeast(batchSize, 1, flag: "--batch-size")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        if linearized && base == nil { throw ValidationError("--linearized needs --base, the model θ₀ to linearize around (a linearized checkpoint needs neither).") }
        if !linearized && base != nil { throw ValidationError("--base is only used with --linearized.") }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            // Everything is checked from headers first; the parameters are allocated last.
            let chosen = try EvaluatedEncoder(model: model, linearizedAround: linearized ? base : nil, allowUnused: allowUnused,
                                              ignored: EngineInputs.warnIgnored)
            let taskHead = try TaskHead(path: head)
            let dataset = try ImageDataset(path: data)
            try Evaluation.check(head: taskHead, data: dataset, config: chosen.config, embeddingSize: chosen.embeddingSize)
            let threadCount = ThreadCount.resolved(threads)
            let batchSize = try EngineInputs.batch(self.batchSize, default: 32, command: "eval", quiet: quiet) { b in
                EngineMemory.evaluation(config: chosen.config, hasProjection: chosen.hasProjection, form: chosen.form, batch: min(b, dataset.count),
                                        threads: threadCount, classes: taskHead.classes)
            }
            let encoder = try chosen.load(threads: threads)
            let bar = ProgressLine(enabled: !quiet && isatty(2) != 0)
            let result = try Evaluation.run(encoder, head: taskHead, data: dataset, batchSize: batchSize) { done, total in
                bar.update(done: done, total: total) { _ in String(format: "%d/%d images ", done, total) }
            }
            bar.finish()
            if json {
                let members: [JSONMember] = [
                    JSONMember("model", .string(model)),
                    JSONMember("base", base.map { .string($0) } ?? .null),
                    JSONMember("linearized", .bool(encoder is LinearizedCLIPVisionModel)),
                    JSONMember("head", .string(head)),
                    JSONMember("data", .string(data)),
                    JSONMember("images", .int(result.images)),
                    JSONMember("correct", .int(result.correct)),
                    JSONMember("accuracy", .double(result.accuracy)),
                    JSONMember("mean_loss", .double(result.meanLoss)),
                    JSONMember("batch_size", .int(batchSize)),
                    JSONMember("seconds", .double(result.seconds)),
                    JSONMember("images_per_second", .double(result.imagesPerSecond)),
                ]
                print(JSONValue.object(members).serialized(indent: 2))
            } else {
                print(String(format: "accuracy %.2f %% (%d/%d), mean loss %.4f; %.2f s, %.1f images/s",
                             result.accuracy * 100, result.correct, result.images, result.meanLoss, result.seconds,
                             result.imagesPerSecond))
            }
        }
    }
}
