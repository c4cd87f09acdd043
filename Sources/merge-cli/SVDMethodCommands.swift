import ArgumentParser
import MergeKit

extension SVDNullSpace: ExpressibleByArgument {}

/// The options TSV-M and Iso-C share. Their inputs are `InputPaths`, without --weight: the methods
/// set their own per-task coefficients.
struct SVDMethodOptions: ParsableArguments {
    @Option(help: ArgumentHelp("α, the scale of the merged task vector.", valueName: "α"))
    var scale = 1.0
    @Option(name: .customLong("null-space"), help: "drop: leave out singular triplets with numerically zero σ (their vectors are arbitrary); keep: the authors' code. Equal for full-rank task vectors.")
    var nullSpace: SVDNullSpace = .drop
}

struct TSVMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tsv-m",
        abstract: "TSV-M: per matrix keep each task's top ⌊min(m,n)/T⌋ singular triplets, orthogonalise them across tasks.",
        discussion: """
            Every 2-D tensor is decomposed (exact SVD, LAPACK); other tensors get the mean task vector. \
            θ = θ₀ + α·τ with α = --scale (1, the authors' default). Tensors are merged whole, a few at \
            a time (--threads), so memory is a few times the largest tensor per thread.
            """)

    @OptionGroup var inputs: InputPaths
    @OptionGroup var outputOptions: OutputOptions

    @OptionGroup var svd: SVDMethodOptions

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in try TSVM(scale: svd.scale, nullSpace: svd.nullSpace) }
    }
}

struct IsoCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iso-c",
        abstract: "Iso-C: per matrix replace every singular value of Σ τₜ by their mean (isotropic spectrum).",
        discussion: """
            Every 2-D tensor is decomposed (exact SVD, LAPACK); other tensors get the mean task vector. \
            θ = θ₀ + α·τ with α = --scale (the paper tunes it on validation data; `sweep --method iso-c \
            --grid lambda=…` tries several in one pass over the inputs).
            """)

    @OptionGroup var inputs: InputPaths
    @OptionGroup var outputOptions: OutputOptions

    @OptionGroup var svd: SVDMethodOptions

    func run() throws {
        try runMerge(inputs, outputOptions) { () throws(MergeKitError) in try IsoC(scale: svd.scale, nullSpace: svd.nullSpace) }
    }
}
