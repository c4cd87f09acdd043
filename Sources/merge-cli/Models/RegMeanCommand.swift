import ArgumentParser
import Foundation
import MergeKit

extension SingularGramPolicy: ExpressibleByArgument {}

/// How `--others` names `OtherTensorMerge`.
enum OtherTensorsOption: String, ExpressibleByArgument, CaseIterable {
    case average
    case taskArithmetic = "task-arithmetic"
}

struct RegMeanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "regmean",
        abstract: "RegMean (Jin et al., ICLR 2023) and RegMean++: merge every linear layer as the least-squares fit of the models' outputs on their own task's inputs.",
        discussion: """
            Pair every --model with its task's --data (unlabeled images), in order. For each linear layer \
            (q, k, v, out_proj, fc1, fc2, visual_projection), Gₜ = XₜᵀXₜ/rows over the layer's inputs on \
            --samples images of task t, Gₜ′ = α·Gₜ + (1−α)·diag(Gₜ), and W = (Σₜ Wₜ·Gₜ′)(Σₜ Gₜ′)⁻¹ (Cholesky in \
            double precision; a singular sum uses the pseudo-inverse unless --singular error). Every other \
            tensor is averaged (--others task-arithmetic --base B --scale λ: θ₀ + λ·Σₜ(θₜ − θ₀)). With \
            --plusplus (RegMean++), layer l's inputs come from the merged layers before it. Defaults are \
            FusionBench's CLIP configs: 256 images per task, batch 32, α 0.95.
            Example: merge-cli regmean --model ft-mnist --data mnist.safetensors --model ft-svhn --data svhn.safetensors -o merged
            """)

    @OptionGroup var common: DataMergeOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("α: the factor of the Gram matrices' off-diagonal elements (FusionBench's reduce_non_diagonal_ratio), in [0, 1].", valueName: "α"))
    var alpha = 0.95

    @Flag(name: .customLong("plusplus"), help: "RegMean++: form each layer's Gram matrices from the states the merged layers before it produce.")
    var plusPlus = false

    @Option(help: ArgumentHelp("How the tensors that are not linear weights are merged: average, or task-arithmetic (needs --base).", valueName: "average|task-arithmetic"))
    var others: OtherTensorsOption = .average

    @Option(help: ArgumentHelp("The pre-trained model θ₀ of --others task-arithmetic.", valueName: "path"))
    var base: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("λ of --others task-arithmetic.", valueName: "λ"))
    var scale: Double?

    @Option(help: ArgumentHelp("When the sum of a layer's Gram matrices is singular: pseudo-inverse (minimum-norm least squares) or error.", valueName: "pseudo-inverse|error"))
    var singular: SingularGramPolicy = .pseudoInverse

    func validate() throws {
        if let scale { try ArgumentCheck.value(scale, .scale, flag: "--scale") }
        if others == .taskArithmetic && base == nil { throw ValidationError("--others task-arithmetic needs --base, the pre-trained model θ₀.") }
        if others == .average && base != nil { throw ValidationError("--base is only used with --others task-arithmetic.") }
        if others == .average && scale != nil { throw ValidationError("--scale is only used with --others task-arithmetic.") }
        do throws(MergeKitError) {
            try options.validate()
        } catch {
            throw ValidationError(error.inCLIWords.detail)
        }
    }

    var options: RegMeanOptions {
        RegMeanOptions(samples: common.samples, batchSize: common.batchSize, alpha: Float(alpha), plusPlus: plusPlus,
                       others: others == .average ? .average : .taskArithmetic(scale: Float(scale ?? 0.3)), singular: singular,
                       seed: common.seed)
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let start = Date()
            // Every input is checked from its header before anything is loaded.
            let inputs = try DataMergeInputs(models: common.models, data: common.data, base: base, output: common.output,
                                             overwrite: common.overwrite, allowUnused: common.allowUnused, ignored: EngineInputs.warnIgnored)
            try EngineMemory.check(RegMean.memory(inputs, options: options), command: "regmean", budget: try EngineInputs.memoryBudget())
            let bar = common.progressLine()
            let result = try RegMean.run(inputs, options: options, threads: common.threads) { done, total in
                bar.update(done: done, total: total) { _ in "\(done)/\(total) layer passes " }
            }
            bar.finish()
            let notes = try inputs.write(result.merged, method: options.method, parameters: options.parameters)
            for (tensors, rank, size) in result.pseudoInverse where !common.quiet {
                FileHandle.standardError.write(Data("note: \(tensors.joined(separator: ", ")): the Gram sum is singular (rank \(rank) of \(size)); used the pseudo-inverse\n".utf8))
            }
            common.report(method: options.method, summary: "\(plusPlus ? "RegMean++" : "RegMean") of \(result.solved.count) linear layers",
                          seconds: Date().timeIntervalSince(start), notes: notes, members: options.parameters + [
                JSONMember("samples_per_task", .array(result.samples.map { .int($0) })),
                JSONMember("solved", .array(result.solved.map { .string($0) })),
                JSONMember("identical", .array(result.identical.map { .string($0) })),
                JSONMember("pseudo_inverse", .array(result.pseudoInverse.map { tensors, rank, size in
                    .object([JSONMember("tensors", .array(tensors.map { .string($0) })), JSONMember("rank", .int(rank)), JSONMember("size", .int(size))])
                })),
            ])
        }
    }
}
