import ArgumentParser
import MergeKit

extension TIES.TrimScope: ExpressibleByArgument {}
extension TaskVectorMerge.Consensus: ExpressibleByArgument {}
extension TaskVectorMerge.Aggregation: ExpressibleByArgument {}
extension TaskVectorMerge.Rescale: ExpressibleByArgument {}
extension DARE.Combination: ExpressibleByArgument {}

/// A command that merges its inputs with one method built from its options: `validate()` checks
/// the numeric options by their rules and builds the method (exit 64 before any file is opened),
/// `run()` plans and runs the merge (exit 1 when the inputs cannot be merged).
protocol MethodCommand: ParsableCommand {
    associatedtype Inputs: MergeInputOptions
    var inputs: Inputs { get }
    var outputOptions: OutputOptions { get }
    /// The numeric method options, each with its rule and its flag.
    var checkedValues: [(value: Double, parameter: MethodParameter, flag: String)] { get }
    func method() throws(MergeKitError) -> any MergeMethod
}

extension MethodCommand {
    var checkedValues: [(value: Double, parameter: MethodParameter, flag: String)] { [] }

    func validate() throws {
        for checked in checkedValues { try ArgumentCheck.value(checked.value, checked.parameter, flag: checked.flag) }
        try ArgumentCheck.method(method, inputs: inputs)
    }

    func run() throws {
        try runMerge(inputs, outputOptions, method)
    }
}

/// Plans and runs a merge of `inputs` with `method` (errors on stderr, exit 1).
func runMerge(_ inputs: some MergeInputOptions, _ outputs: OutputOptions, _ method: () throws(MergeKitError) -> any MergeMethod) throws {
    try reportingErrors { () throws(MergeKitError) in
        let (base, opened) = try inputs.open()
        let plan = try MergePlan(base: base, inputs: opened, method: try method(), output: outputs.spec())
        try MergeRunner.run([plan], options: outputs, command: CommandLine.arguments.joined(separator: " "))
    }
}

struct TIESCommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "ties",
        abstract: "TIES-Merging: trim small |τ|, elect a sign per entry, merge the agreeing entries.",
        discussion: """
            This command follows the paper by default: --trim-scope global --vote mass --merge mean, \
            K = 0.2, λ = 1. Recipes (`merge-cli run`) and `merge-cli sweep --method ties` follow \
            mergekit's ties instead, so that mergekit configs port unchanged: per-tensor trim, weighted \
            vote, normalized merge, density 1. For mergekit's semantics here, pass \
            --trim-scope tensor --vote weighted --merge normalized (and --density 1 for its default).
            """)

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("Fraction K of entries kept per task, in (0, 1].", valueName: "K"))
    var density = 0.2
    @Option(name: .customLong("trim-scope"), help: "global: one threshold per task over the whole model (paper); tensor: exactly ⌊K·n⌋ entries per tensor (mergekit).")
    var trimScope: TIES.TrimScope = .global
    @Option(help: "mass: sign of the summed entries, ties by the model-wide majority (paper); weighted: zero counts as + (mergekit).")
    var vote: TaskVectorMerge.Consensus = .mass
    @Option(help: "mean (paper), sum, max, or normalized (÷ the agreeing weights, mergekit).")
    var merge: TaskVectorMerge.Aggregation = .mean
    @Option(parsing: .unconditional, help: ArgumentHelp("λ, applied after merging.", valueName: "λ"))
    var scale = 1.0

    var checkedValues: [(value: Double, parameter: MethodParameter, flag: String)] {
        [(density, .density, "--density"), (scale, .scale, "--scale")]
    }

    func method() throws(MergeKitError) -> any MergeMethod {
        try TIES(density: .init(density), trimScope: trimScope, vote: vote, merge: merge, scale: scale)
    }
}

struct DARECommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "dare",
        abstract: "DARE: drop each τ entry with probability p, rescale the rest, then task arithmetic or TIES.",
        discussion: "The same --seed gives byte-identical output for any --threads. mergekit's dare_ties is --combine ties --vote weighted --merge sum --rescale l1.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(name: .customLong("drop-rate"), parsing: .unconditional, help: ArgumentHelp("Probability p of dropping each entry, in [0, 1).", valueName: "p"))
    var dropRate = 0.9
    @Option(parsing: .unconditional, help: "Seed of the random mask.")
    var seed: UInt64 = 0
    @Option(help: "inverse: × 1/(1 − p) (paper); l1: restore each tensor's L1 norm (mergekit).")
    var rescale: TaskVectorMerge.Rescale = .inverse
    @Option(help: "How the dropped task vectors are combined.")
    var combine: DARE.Combination = .taskArithmetic
    @Option(help: "Sign vote when combining with ties.")
    var vote: TaskVectorMerge.Consensus = .mass
    @Option(help: "Merge of agreeing entries when combining with ties.")
    var merge: TaskVectorMerge.Aggregation = .mean
    @Option(parsing: .unconditional, help: ArgumentHelp("λ.", valueName: "λ"))
    var scale = 1.0

    var checkedValues: [(value: Double, parameter: MethodParameter, flag: String)] {
        [(dropRate, .dropRate, "--drop-rate"), (scale, .scale, "--scale")]
    }

    func method() throws(MergeKitError) -> any MergeMethod {
        try DARE(dropRate: .init(dropRate), seed: seed, rescale: rescale, combination: combine, vote: vote, merge: merge, scale: scale)
    }
}

struct LinearCommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "linear",
        abstract: "Weighted average Σwᵢθᵢ/Σwᵢ of the models (--no-normalize: the plain weighted sum).")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Flag(name: .customLong("normalize"), inversion: .prefixedNo, help: "Divide by the sum of the weights.")
    var normalize = true

    func method() throws(MergeKitError) -> any MergeMethod { Linear(normalize: normalize) }
}

struct BreadcrumbsCommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "breadcrumbs",
        abstract: "Model Breadcrumbs: per tensor drop the largest γ and the smallest |τ|, keep a density band, then add.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("Fraction of entries kept per tensor, in (0, 1].", valueName: "d"))
    var density = 0.1
    @Option(parsing: .unconditional, help: ArgumentHelp("Fraction of largest entries dropped as outliers, in [0, 1).", valueName: "γ"))
    var gamma = 0.01
    @Option(parsing: .unconditional, help: ArgumentHelp("λ.", valueName: "λ"))
    var scale = 1.0

    var checkedValues: [(value: Double, parameter: MethodParameter, flag: String)] {
        [(density, .density, "--density"), (gamma, .gamma, "--gamma"), (scale, .scale, "--scale")]
    }

    func method() throws(MergeKitError) -> any MergeMethod {
        try Breadcrumbs(density: .init(density), gamma: .init(gamma), scale: scale)
    }
}

struct ModelStockCommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "model-stock",
        abstract: "Model Stock: per tensor θ₀ + t·mean(τᵢ), t from the task vectors' mean pairwise cosine.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    func method() throws(MergeKitError) -> any MergeMethod { ModelStock() }
}

struct MetaGPTCommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "metagpt",
        abstract: "MetaGPT (data-free): θ₀ + Σ λₜτₜ with λₜ = ‖τₜ‖²/Σ‖τₖ‖² over the whole model.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    func method() throws(MergeKitError) -> any MergeMethod { MetaGPT() }
}

struct MagMaxCommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "magmax",
        abstract: "MagMax: per entry keep the task vector with the largest magnitude, θ₀ + λ·τ*.")

    @OptionGroup var inputs: InputOptions
    @OptionGroup var outputOptions: OutputOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("λ.", valueName: "λ"))
    var scale = 1.0

    var checkedValues: [(value: Double, parameter: MethodParameter, flag: String)] { [(scale, .scale, "--scale")] }

    func method() throws(MergeKitError) -> any MergeMethod { try MagMax(scale: scale) }
}
