import ArgumentParser
import MergeKit

/// Range checks of command-line values. Every command runs them from `validate()`, so a bad value
/// is reported before any file is opened and exits 64 (ArgumentParser's status for a
/// `ValidationError`); 1 stays for inputs that cannot be merged.
///
/// Method parameters are judged by the library's `MethodParameter` rules, the same ones the
/// methods and recipes use, so `--density 1.5` gets the same words on every command that has
/// `--density` (and `density: 1.5` in a recipe the same words with its key and line). Numeric
/// options are declared with `parsing: .unconditional` (`.unconditionalSingleValue` when
/// repeatable) so that negative values such as `--weight -1` are values, not unknown options.
enum ArgumentCheck {
    /// `flag`'s value against a method parameter's rule.
    static func value(_ value: Double, _ parameter: MethodParameter, flag: String) throws {
        if let problem = parameter.problem(value, label: flag) { throw ValidationError(problem) }
    }

    /// An integer option's lower bound (nil: not given).
    static func atLeast(_ value: Int?, _ minimum: Int, flag: String) throws {
        if let value, value < minimum { throw ValidationError("\(flag) must be at least \(minimum), not \(value)") }
    }

    /// A path option that must name something.
    static func path(_ value: String, flag: String) throws {
        if value.isEmpty { throw ValidationError("\(flag) must name a file or directory, not an empty string") }
    }

    /// Builds the method as `run()` will and checks the inputs' weights against it, so that what
    /// the method itself refuses (a missing vote, weights a method cannot take, Σw = 0 for a
    /// normalised average) is an argument error too. Range checks come first, with the flags' words.
    static func method(_ build: () throws(MergeKitError) -> any MergeMethod, inputs: some MergeInputOptions) throws {
        do throws(MergeKitError) {
            let method = try build()
            let weights = inputs.weights.isEmpty ? Array(repeating: 1.0, count: inputs.count) : inputs.weights
            if weights.count == inputs.count && inputs.count > 0 { try method.validate(weights: weights) }
        } catch {
            throw ValidationError(error.description)
        }
    }
}
