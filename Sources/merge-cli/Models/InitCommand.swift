import ArgumentParser
import Foundation
import MergeKit

/// `merge-cli init encoder` and `merge-cli init head`: random starting points from a seed.
struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a CLIP image encoder with random weights, or a task head (random, or a model's class means of labelled images).",
        discussion: """
            `init encoder` writes a model directory (config.json + model.safetensors, F32) shaped by --config \
            and the size options, initialised as transformers initialises CLIPVisionModelWithProjection. \
            `init head` writes a head (`weight` [classes, E]) whose rows are random directions of length --scale, \
            or with --data the class means of --model's embeddings of labelled images. The same seed and options \
            give the same bytes.
            Example: merge-cli init encoder --hidden-size 64 --num-hidden-layers 4 --num-attention-heads 4 \
            --intermediate-size 256 --image-size 8 --patch-size 2 --projection-dim 32 -o tiny-vit
            """,
        subcommands: [InitEncoderCommand.self, InitHeadCommand.self])
}

struct InitEncoderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encoder",
        abstract: "Write a CLIP image encoder (CLIPVisionModelWithProjection) with random weights.",
        discussion: """
            The shape is ViT-B/32's unless --config (a CLIPVisionConfig or CLIPConfig config.json) or the \
            size options say otherwise; an option overrides the config's value. Weights as transformers' \
            CLIP initialisation: class embedding and visual_projection N(0, D^-1·f²), patch and position \
            embeddings N(0, (r·f)²), q/k/v projections and mlp.fc2 N(0, (D·2L)^-1·f²), out_proj N(0, D^-1·f²), \
            mlp.fc1 N(0, (2D)^-1·f²), biases 0, LayerNorm weights 1 (D = hidden_size, L = layers, \
            f = --initializer-factor, r = --initializer-range). Each tensor's values depend on --seed and \
            its name only.
            """)

    @Option(help: ArgumentHelp("A config.json to take the sizes from (default: ViT-B/32's).", valueName: "file"))
    var config: String?

    @Option(name: .customLong("hidden-size"), parsing: .unconditional, help: ArgumentHelp("hidden_size D.", valueName: "n"))
    var hiddenSize: Int?

    @Option(name: .customLong("intermediate-size"), parsing: .unconditional, help: ArgumentHelp("intermediate_size, the MLP's width.", valueName: "n"))
    var intermediateSize: Int?

    @Option(name: .customLong("num-hidden-layers"), parsing: .unconditional, help: ArgumentHelp("num_hidden_layers L.", valueName: "n"))
    var layers: Int?

    @Option(name: .customLong("num-attention-heads"), parsing: .unconditional, help: ArgumentHelp("num_attention_heads (D must be a multiple of it).", valueName: "n"))
    var heads: Int?

    @Option(name: .customLong("num-channels"), parsing: .unconditional, help: ArgumentHelp("num_channels of the images.", valueName: "n"))
    var channels: Int?

    @Option(name: .customLong("image-size"), parsing: .unconditional, help: ArgumentHelp("image_size in pixels (square images).", valueName: "n"))
    var imageSize: Int?

    @Option(name: .customLong("patch-size"), parsing: .unconditional, help: ArgumentHelp("patch_size in pixels.", valueName: "n"))
    var patchSize: Int?

    @Option(name: .customLong("projection-dim"), parsing: .unconditional, help: ArgumentHelp("projection_dim E, the embedding's width.", valueName: "n"))
    var projectionDim: Int?

    @Option(name: .customLong("hidden-act"), help: ArgumentHelp("hidden_act: quick_gelu or gelu.", valueName: "name"))
    var hiddenAct: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of the weights.", valueName: "n"))
    var seed: UInt64 = 0

    @Option(name: .customLong("initializer-factor"), parsing: .unconditional, help: ArgumentHelp("transformers' initializer_factor f: every standard deviation × f.", valueName: "f"))
    var factor = 1.0

    @Option(name: .customLong("initializer-range"), parsing: .unconditional, help: ArgumentHelp("transformers' initializer_range r: the embeddings' standard deviation.", valueName: "r"))
    var range = 0.02

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Output: a model directory (config.json + model.safetensors).", valueName: "path"))
    var output: String

    @Flag(help: "Replace an existing output (only once the new one is complete).")
    var overwrite = false

    @Flag(help: "Print the result as JSON on stdout.")
    var json = false

    @Flag(help: "No summary line on stderr.")
    var quiet = false

    /// The sizes without --config: ViT-B/32's, overridden by the options.
    func overridden(_ base: CLIPVisionConfig) throws -> CLIPVisionConfig {
        var c = base
        c.hiddenSize = hiddenSize ?? c.hiddenSize
        c.intermediateSize = intermediateSize ?? c.intermediateSize
        c.numHiddenLayers = layers ?? c.numHiddenLayers
        c.numAttentionHeads = heads ?? c.numAttentionHeads
        c.numChannels = channels ?? c.numChannels
        c.imageSize = imageSize ?? c.imageSize
        c.patchSize = patchSize ?? c.patchSize
        c.projectionDim = projectionDim ?? c.projectionDim
        if let hiddenAct {
            guard let act = CLIPActivation(rawValue: hiddenAct) else {
                throw ValidationError("--hidden-act must be \(CLIPActivation.allCases.map(\.rawValue).joined(separator: " or ")), not \(hiddenAct).")
            }
            c.hiddenAct = act
        }
        do throws(MergeKitError) {
            try c.validate()
        } catch {
            throw ValidationError("The encoder's sizes are not valid: \(error.detail) (options --hidden-size … --projection-dim).")
        }
        return c
    }

    func validate() throws {
        try ArgumentCheck.path(output, flag: "--output")
        if OutputGuard.isFileOutput(output) {
            throw ValidationError("--output must be a directory: an encoder is written as config.json + model.safetensors, not \(output).")
        }
        for (value, flag) in [(hiddenSize, "--hidden-size"), (intermediateSize, "--intermediate-size"), (layers, "--num-hidden-layers"),
                              (heads, "--num-attention-heads"), (channels, "--num-channels"), (imageSize, "--image-size"),
                              (patchSize, "--patch-size"), (projectionDim, "--projection-dim")] {
            try ArgumentCheck.atLeast(value, 1, flag: flag)
        }
        guard factor.isFinite && factor > 0 else { throw ValidationError("--initializer-factor must be a finite number > 0, not \(factor).") }
        guard range.isFinite && range > 0 else { throw ValidationError("--initializer-range must be a finite number > 0, not \(range).") }
        if config == nil { _ = try overridden(.vitB32) }
    }

    func run() throws {
        let base: CLIPVisionConfig
        if let config {
            do throws(MergeKitError) {
                base = try CLIPVisionConfig.load(path: config)
            } catch {
                throw ErrorOutput.report(error)
            }
        } else {
            base = .vitB32
        }
        // A config file's sizes with the options over them are checked like the options alone (exit 64).
        let shape = try overridden(base)
        try reportingErrors { () throws(MergeKitError) in
            let parameters = RandomInitialization.encoder(config: shape, seed: seed, factor: factor, initializerRange: range)
            let record = JSONValue.object([JSONMember("seed", .string(String(seed))), JSONMember("initializer_factor", .double(factor)),
                                           JSONMember("initializer_range", .double(range))]).serialized()
            let notes = try parameters.save(directory: output, metadata: ["mergekit.init": record], overwrite: overwrite,
                                            inputs: config.map { [$0] } ?? [])
            printNotes(notes, quiet: quiet)
            if !quiet {
                FileHandle.standardError.write(Data(String(format: "wrote %@: a random CLIP image encoder, %d parameters (seed %@)\n",
                                                           TerminalText.escaped(output), parameters.count, String(seed)).utf8))
            }
            if json {
                print(JSONValue.object([
                    JSONMember("output", .string(output)), JSONMember("kind", .string("encoder")),
                    JSONMember("parameters", .int(parameters.count)), JSONMember("seed", .string(String(seed))),
                    JSONMember("hidden_size", .int(shape.hiddenSize)), JSONMember("intermediate_size", .int(shape.intermediateSize)),
                    JSONMember("num_hidden_layers", .int(shape.numHiddenLayers)), JSONMember("num_attention_heads", .int(shape.numAttentionHeads)),
                    JSONMember("num_channels", .int(shape.numChannels)), JSONMember("image_size", .int(shape.imageSize)),
                    JSONMember("patch_size", .int(shape.patchSize)), JSONMember("projection_dim", .int(shape.projectionDim)),
                ]).serialized(indent: 2))
            }
        }
    }
}

struct InitHeadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "head",
        abstract: "Write a task head (`weight` [classes, E]): random rows, or the class means of a model's embeddings of labelled images (--data).",
        discussion: """
            A head for `eval`, `finetune` and the merges that learn from data: logits = weight · e/‖e‖. \
            Random: rows are N(0, I) draws scaled to length --scale; E comes from --model (its projection_dim, \
            or hidden_size without a projection) or --embedding-size. With --data (and --model): row c is the \
            mean of --model's normalised embeddings of the images labelled c, normalised and scaled to --scale \
            (a nearest-class-mean head, as CLIP's zero-shot heads are unit class embeddings × exp(logit_scale) = 100).
            """)

    @Option(parsing: .unconditional, help: ArgumentHelp("Number of classes (with --data: default the largest label + 1).", valueName: "n"))
    var classes: Int?

    @Option(help: ArgumentHelp("The encoder the head is for (its embedding width E; with --data, the embeddings).", valueName: "path"))
    var model: String?

    @Option(name: .customLong("embedding-size"), parsing: .unconditional, help: ArgumentHelp("E, instead of --model (random heads).", valueName: "E"))
    var embeddingSize: Int?

    @Option(help: ArgumentHelp("Labelled images (`pixel_values` [N,3,H,W], `labels` [N]): the head's rows are --model's class means of them.", valueName: "file"))
    var data: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Length of every row (the logit scale).", valueName: "s"))
    var scale = 100.0

    @Option(parsing: .unconditional, help: ArgumentHelp("Seed of the random rows.", valueName: "n"))
    var seed: UInt64?

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per forward pass with --data (default 32, fewer when 32 would not fit in the memory available).", valueName: "B"))
    var batchSize: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads with --data (default: every core).", valueName: "n"))
    var threads: Int?

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Output: a .safetensors file.", valueName: "file"))
    var output: String

    @Flag(help: "Replace an existing output (only once the new one is complete).")
    var overwrite = false

    @Flag(help: "Print the result as JSON on stdout.")
    var json = false

    @Flag(help: "No summary line on stderr.")
    var quiet = false

    func validate() throws {
        try ArgumentCheck.path(output, flag: "--output")
        if !OutputGuard.isFileOutput(output) { throw ValidationError("--output must end in .safetensors: a head is one file, not \(output).") }
        try ArgumentCheck.atLeast(classes, 1, flag: "--classes")
        try ArgumentCheck.atLeast(embeddingSize, 1, flag: "--embedding-size")
        try ArgumentCheck.atLeast(batchSize, 1, flag: "--batch-size")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        if let classes, classes > 1 << 20 { throw ValidationError("--classes must be at most \(1 << 20), not \(classes).") }
        if let embeddingSize, embeddingSize > 1 << 16 { throw ValidationError("--embedding-size must be at most 65536, not \(embeddingSize).") }
        guard scale.isFinite && scale > 0 else { throw ValidationError("--scale must be a finite number > 0, not \(scale).") }
        if data != nil {
            if model == nil { throw ValidationError("--data needs --model, the encoder whose embeddings the head's rows average.") }
            if embeddingSize != nil { throw ValidationError("--embedding-size is for random heads; with --data, E is --model's.") }
            if seed != nil { throw ValidationError("--seed is for random heads; a head from --data is not random.") }
            return
        }
        if batchSize != nil || threads != nil { throw ValidationError("--batch-size and --threads are only used with --data.") }
        if classes == nil { throw ValidationError("Give --classes, the number of rows of a random head.") }
        switch (model, embeddingSize) {
        case (nil, nil): throw ValidationError("Give --model (the encoder the head is for) or --embedding-size.")
        case (.some, .some): throw ValidationError("Give --model or --embedding-size, not both.")
        default: break
        }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let head: TaskHead
            var record: [JSONMember] = [JSONMember("scale", .double(scale))]
            if let data, let model {
                let chosen = try EvaluatedEncoder(model: model, linearizedAround: nil, allowUnused: false, ignored: EngineInputs.warnIgnored)
                let dataset = try ImageDataset(path: data)
                let threadCount = ThreadCount.resolved(threads)
                let batch = try EngineInputs.batch(batchSize, default: 32, command: "init head", quiet: quiet) { b in
                    EngineMemory.evaluation(config: chosen.config, hasProjection: chosen.hasProjection, form: chosen.form,
                                            batch: min(b, dataset.count), threads: threadCount, classes: classes ?? 1)
                }
                try OutputGuard.check(output: output, overwrite: overwrite, inputs: [model, data])
                let encoder = try chosen.load(threads: threads)
                let bar = ProgressLine(enabled: !quiet && isatty(2) != 0)
                head = try TaskHead.prototypes(of: encoder, data: dataset, classes: classes, scale: scale, batchSize: batch) { done, total in
                    bar.update(done: done, total: total) { _ in String(format: "%d/%d images ", done, total) }
                }
                bar.finish()
                record += [JSONMember("data", .string(data)), JSONMember("model", .string(model))]
            } else {
                var dimension = embeddingSize ?? 0
                if let model { dimension = try EncoderCheckpoint(try Checkpoint(path: model)).embeddingSize }
                head = RandomInitialization.head(classes: classes!, dimension: dimension, seed: seed ?? 0, scale: scale)
                record.append(JSONMember("seed", .string(String(seed ?? 0))))
            }
            let notes = try head.save(to: output, metadata: ["mergekit.init": JSONValue.object(record).serialized()], overwrite: overwrite,
                                      inputs: [model, data].compactMap { $0 })
            printNotes(notes, quiet: quiet)
            let kind = data == nil ? "random" : "class-mean"
            if !quiet {
                FileHandle.standardError.write(Data("wrote \(TerminalText.escaped(output)): a \(kind) head, \(head.classes) classes × \(head.dimension)\n".utf8))
            }
            if json {
                print(JSONValue.object([
                    JSONMember("output", .string(output)), JSONMember("kind", .string("head")), JSONMember("rows", .string(kind)),
                    JSONMember("classes", .int(head.classes)), JSONMember("embedding_size", .int(head.dimension)),
                    JSONMember("scale", .double(scale)), JSONMember("seed", data == nil ? .string(String(seed ?? 0)) : .null),
                ]).serialized(indent: 2))
            }
        }
    }
}
