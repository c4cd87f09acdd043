import ArgumentParser
import MergeKit

extension SVDNullSpace: ExpressibleByArgument {}

/// The options TSV-M and Iso-C share. Their inputs are `InputPaths`, without --weight: the methods
/// set their own per-task coefficients.
struct SVDMethodOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp("α, the scale of the merged task vector.", valueName: "α"))
    var scale = 1.0
    @Option(name: .customLong("null-space"), help: "drop: leave out singular triplets with numerically zero σ (their vectors are arbitrary); keep: the authors' code. Equal for full-rank task vectors.")
    var nullSpace: SVDNullSpace = .drop
}

struct TSVMCommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "tsv-m",
        abstract: "TSV-M: per matrix keep each task's top ⌊min(m,n)/T⌋ singular triplets, orthogonalise them across tasks.",
        discussion: """
            Every 2-D tensor is decomposed (exact SVD, LAPACK); other tensors get the mean task vector. \
            θ = θ₀ + α·τ with α = --scale (1, the authors' default). Matrices are merged whole, one per \
            thread: each needs about 9× its size in Float (the SVD's copy, U, Vᵀ and LAPACK's workspace, \
            the kept triplets); fewer run at once when they do not fit the available memory, and a \
            matrix that does not fit alone is refused before anything is written (--dry-run shows the \
            estimate; MERGEKIT_MEMORY_BUDGET caps it).
            """)

    @OptionGroup var inputs: InputPaths
    @OptionGroup var outputOptions: OutputOptions

    @OptionGroup var svd: SVDMethodOptions

    var checkedValues: [(value: Double, parameter: MethodParameter, flag: String)] { [(svd.scale, .scale, "--scale")] }

    func method() throws(MergeKitError) -> any MergeMethod { try TSVM(scale: svd.scale, nullSpace: svd.nullSpace) }
}

struct IsoCCommand: MethodCommand {
    static let configuration = CommandConfiguration(
        commandName: "iso-c",
        abstract: "Iso-C: per matrix replace every singular value of Σ τₜ by their mean (isotropic spectrum).",
        discussion: """
            Every 2-D tensor is decomposed (exact SVD, LAPACK); other tensors get the mean task vector. \
            θ = θ₀ + α·τ with α = --scale (the paper tunes it on validation data; `sweep --method iso-c \
            --grid lambda=…` tries several in one pass over the inputs). Each matrix needs about 7× its \
            size in Float while it is decomposed; see tsv-m --help for how memory is planned.
            """)

    @OptionGroup var inputs: InputPaths
    @OptionGroup var outputOptions: OutputOptions

    @OptionGroup var svd: SVDMethodOptions

    var checkedValues: [(value: Double, parameter: MethodParameter, flag: String)] { [(svd.scale, .scale, "--scale")] }

    func method() throws(MergeKitError) -> any MergeMethod { try IsoC(scale: svd.scale, nullSpace: svd.nullSpace) }
}
