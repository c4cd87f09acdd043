import ArgumentParser
import Foundation
import MergeKit

extension FisherEstimator: ExpressibleByArgument {}

struct FisherCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fisher",
        abstract: "Fisher merging (Matena & Raffel, NeurIPS 2022): average every parameter weighted by each model's diagonal Fisher information on its task.",
        discussion: """
            Pair every --model with its task's --data (unlabeled images) and --head, in order. Fₜ is the \
            mean over --samples images of the squared gradient of log p(y|x), y drawn from the model's own \
            prediction (--estimator sampled, one backward pass per image); --estimator fusionbench squares \
            one gradient per batch of Σ √p·log p as FusionBench does. Then θ = Σₜ wₜ(Fₜ+ε)θₜ / Σₜ wₜ(Fₜ+ε), \
            wₜ = 1/(‖Fₜ‖+ε) (1 with --no-normalize). Defaults are FusionBench's: 256 images per task, batch 32, \
            normalised, ε 1e-6.
            Example: merge-cli fisher --model ft-mnist --data mnist.safetensors --head mnist-head.safetensors \\
                       --model ft-svhn --data svhn.safetensors --head svhn-head.safetensors -o merged
            """)

    @OptionGroup var common: DataMergeOptions

    @Option(name: .customLong("head"), help: ArgumentHelp("The same model's task head: safetensors with `weight` [classes, embedding]. One per --model, in order.", valueName: "file"))
    var heads: [String] = []

    @Option(help: ArgumentHelp("sampled (per image, labels drawn from the model's prediction) or fusionbench (per batch, as FusionBench).", valueName: "sampled|fusionbench"))
    var estimator: FisherEstimator = .sampled

    @Flag(name: .customLong("no-normalize"), help: "Do not divide each model's Fisher by its L2 norm before merging.")
    var noNormalize = false

    @Option(name: .customLong("epsilon"), parsing: .unconditional, help: ArgumentHelp("ε added to every Fisher value (FusionBench's minimal_fisher_weight).", valueName: "ε"))
    var epsilon = 1e-6

    func validate() throws {
        if heads.count != common.models.count {
            throw ValidationError("Got \(common.models.count) --model and \(heads.count) --head; give one --head per --model, in the same order.")
        }
        do throws(MergeKitError) {
            try options.validate()
        } catch {
            throw ValidationError(error.inCLIWords.detail)
        }
    }

    var options: FisherOptions {
        FisherOptions(samples: common.samples, batchSize: common.batchSize, estimator: estimator, normalize: !noNormalize,
                      epsilon: Float(epsilon), seed: common.seed)
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let start = Date()
            // Every input is checked from its header before anything is loaded.
            let inputs = try DataMergeInputs(models: common.models, data: common.data, heads: heads, output: common.output,
                                             overwrite: common.overwrite, allowUnused: common.allowUnused, ignored: EngineInputs.warnIgnored)
            try EngineMemory.check(FisherMerging.memory(inputs, options: options, threads: ThreadCount.resolved(common.threads)),
                                   command: "fisher", budget: try EngineInputs.memoryBudget())
            let bar = common.progressLine()
            let result = try FisherMerging.run(inputs, options: options, threads: common.threads) { done, total in
                bar.update(done: done, total: total) { _ in "\(done)/\(total) images " }
            }
            bar.finish()
            let notes = try inputs.write(result.merged, method: "fisher_merging", parameters: options.parameters)
            common.report(method: "fisher_merging", summary: "Fisher merging (\(estimator.rawValue))", seconds: Date().timeIntervalSince(start),
                          notes: notes, members: options.parameters + [
                JSONMember("heads", .array(heads.map { .string($0) })),
                JSONMember("samples_per_task", .array(result.samples.map { .int($0) })),
                JSONMember("fisher_norms", .array(result.fisherNorms.map { .double($0) })),
                JSONMember("identical", .array(result.identical.map { .string($0) })),
            ])
        }
    }
}
