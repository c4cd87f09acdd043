import ArgumentParser
import MergeKit

/// The float dtypes a merge can write.
enum OutputDType: String, ExpressibleByArgument, CaseIterable {
    case F32, F16, BF16, F64

    init?(argument: String) {
        self.init(rawValue: argument.uppercased())
    }

    var dtype: DType { DType(rawValue: rawValue)! }
}
