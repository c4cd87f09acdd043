import ArgumentParser
import MergeKit

extension TIES.TrimScope: ExpressibleByArgument {}
extension TaskVectorMerge.Consensus: ExpressibleByArgument {}
extension TaskVectorMerge.Aggregation: ExpressibleByArgument {}
extension TaskVectorMerge.Rescale: ExpressibleByArgument {}
extension DARE.Combination: ExpressibleByArgument {}

/// Plans and runs a merge of `inputs` with `method` (errors on stderr, exit 1).
func runMerge(_ inputs: some MergeInputOptions, _ outputs: OutputOptions, _ method: () throws(MergeKitError) -> any MergeMethod) throws {
    try reportingErrors { () throws(MergeKitError) in
        let (base, opened) = try inputs.open()
        let plan = try MergePlan(base: base, inputs: opened, method: try method(), output: outputs.spec())
        try MergeRunner.run([plan], options: outputs, command: CommandLine.arguments.joined(separator: " "))
    }
}

struct TIESCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ties",
        abstract: "TIES-Merging: trim small |τ|, elect a sign per entry, merge the agreeing entries.",
        discussion: """
            Paper semantics (default): --trim-scope global --vote mass --merge mean (K = 0.2, λ = 1).
            mergekit semantics: --trim-scope tensor --vote weighted --merge normalized.
            """)

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(help: ArgumentHelp("Fraction K of entries kept per task, in (0, 1].", valueName: "K"))
    var density = 0.2
    @Option(name: .customLong("trim-scope"), help: "global: one threshold per task over the whole model (paper); tensor: exactly ⌊K·n⌋ entries per tensor (mergekit).")
    var trimScope: TIES.TrimScope = .global
    @Option(help: "mass: sign of the summed entries, ties by the model-wide majority (paper); weighted: zero counts as + (mergekit).")
    var vote: TaskVectorMerge.Consensus = .mass
    @Option(help: "mean (paper), sum, max, or normalized (÷ the agreeing weights, mergekit).")
    var merge: TaskVectorMerge.Aggregation = .mean
    @Option(help: ArgumentHelp("λ, applied after merging.", valueName: "λ"))
    var scale = 1.0

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in
            try TIES(density: .init(density), trimScope: trimScope, vote: vote, merge: merge, scale: scale)
        }
    }
}

struct DARECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dare",
        abstract: "DARE: drop each τ entry with probability p, rescale the rest, then task arithmetic or TIES.",
        discussion: "The same --seed gives byte-identical output for any --threads. mergekit's dare_ties is --combine ties --vote weighted --merge sum --rescale l1.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(name: .customLong("drop-rate"), help: ArgumentHelp("Probability p of dropping each entry, in [0, 1).", valueName: "p"))
    var dropRate = 0.9
    @Option(help: "Seed of the random mask.")
    var seed: UInt64 = 0
    @Option(help: "inverse: × 1/(1 − p) (paper); l1: restore each tensor's L1 norm (mergekit).")
    var rescale: TaskVectorMerge.Rescale = .inverse
    @Option(help: "How the dropped task vectors are combined.")
    var combine: DARE.Combination = .taskArithmetic
    @Option(help: "Sign vote when combining with ties.")
    var vote: TaskVectorMerge.Consensus = .mass
    @Option(help: "Merge of agreeing entries when combining with ties.")
    var merge: TaskVectorMerge.Aggregation = .mean
    @Option(help: ArgumentHelp("λ.", valueName: "λ"))
    var scale = 1.0

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in
            try DARE(dropRate: .init(dropRate), seed: seed, rescale: rescale, combination: combine, vote: vote, merge: merge, scale: scale)
        }
    }
}

struct LinearCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "linear",
        abstract: "Weighted average Σwᵢθᵢ/Σwᵢ of the models (--no-normalize: the plain weighted sum).")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Flag(name: .customLong("normalize"), inversion: .prefixedNo, help: "Divide by the sum of the weights.")
    var normalize = true

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in Linear(normalize: normalize) }
    }
}

struct BreadcrumbsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "breadcrumbs",
        abstract: "Model Breadcrumbs: per tensor drop the largest γ and the smallest |τ|, keep a density band, then add.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(help: ArgumentHelp("Fraction of entries kept per tensor, in (0, 1].", valueName: "d"))
    var density = 0.1
    @Option(help: ArgumentHelp("Fraction of largest entries dropped as outliers, in [0, 1).", valueName: "γ"))
    var gamma = 0.01
    @Option(help: ArgumentHelp("λ.", valueName: "λ"))
    var scale = 1.0

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in try Breadcrumbs(density: .init(density), gamma: .init(gamma), scale: scale) }
    }
}

struct ModelStockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-stock",
        abstract: "Model Stock: per tensor θ₀ + t·mean(τᵢ), t from the task vectors' mean pairwise cosine.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in ModelStock() }
    }
}

struct MetaGPTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metagpt",
        abstract: "MetaGPT (data-free): θ₀ + Σ λₜτₜ with λₜ = ‖τₜ‖²/Σ‖τₖ‖² over the whole model.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in MetaGPT() }
    }
}

struct MagMaxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "magmax",
        abstract: "MagMax: per entry keep the task vector with the largest magnitude, θ₀ + λ·τ*.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(help: ArgumentHelp("λ.", valueName: "λ"))
    var scale = 1.0

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in try MagMax(scale: scale) }
    }
}
