import ArgumentParser
import MergeKit

/// `--compute-dtype`, for the commands that merge (`ComputeDType`).
struct ComputeOptions: ParsableArguments {
    @Option(name: .customLong("compute-dtype"), help: ArgumentHelp("Precision of the merge arithmetic: float32 (full precision), or float16 / bfloat16 (rounded to that dtype where mergekit rounds when it computes in it). Default: a recipe's dtype when that is float16 or bfloat16 (as mergekit computes), else float32; float32 for the method commands and sweep.", valueName: "dtype"))
    var computeDType: ComputeDType?
}

extension ComputeDType: ExpressibleByArgument {}
