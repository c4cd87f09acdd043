/// A numeric merge parameter and the values it accepts: the one place where each range is stated.
///
/// The method initialisers check their arguments with it, and each front end checks the values it
/// was given with the same rule before any file is opened, naming the parameter in its own words:
/// the command line by its flag (`--density must be in (0, 1], not 1.5 (…)`), a recipe by its key
/// and line (`line 7: density must be in (0, 1], not 1.5 (…)`). Library errors use the neutral
/// `name`, never a flag, so that neither front end shows the other's vocabulary.
public struct MethodParameter: Sendable, Equatable {
    public enum Domain: Sendable, Equatable {
        /// Any finite number.
        case finite
        /// (0, 1]: a fraction of entries that is kept (0 would keep nothing).
        case keptFraction
        /// [0, 1): a probability or a dropped fraction (1 would drop everything).
        case fractionBelowOne
        /// A whole number in [0, 2⁶⁴): a seed.
        case seed
        /// [0, 1]: a position between two endpoints (both included).
        case unitInterval
        /// (0, ∞): a small positive constant or tolerance.
        case positive
        /// A whole number in [0, `maximumIterations`]: an iteration count.
        case iterationCount
    }

    /// The most iterations an iterative method may be asked for (each costs a few products of
    /// numbers per tensor, not a pass over the tensor, but a typo such as 1e9 should not run for hours).
    public static let maximumIterations = 1_000_000

    /// The neutral name, used in library messages.
    public let name: String
    public let domain: Domain
    /// What the value means, with an example: the end of every message about it.
    public let meaning: String

    public static let density = MethodParameter(name: "density", domain: .keptFraction,
                                                meaning: "the fraction of τ entries kept, e.g. 0.2")
    public static let gamma = MethodParameter(name: "gamma", domain: .fractionBelowOne,
                                              meaning: "the fraction of largest |τ| entries dropped as outliers, e.g. 0.01")
    public static let dropRate = MethodParameter(name: "drop rate", domain: .fractionBelowOne,
                                                 meaning: "the probability of dropping each τ entry, e.g. 0.9")
    public static let scale = MethodParameter(name: "scale", domain: .finite,
                                              meaning: "the factor λ applied to the merged task vector, e.g. 0.5")
    public static let weight = MethodParameter(name: "weight", domain: .finite,
                                               meaning: "an input's weight wᵢ, e.g. 1, or -1 to subtract")
    public static let seed = MethodParameter(name: "seed", domain: .seed, meaning: "the seed of the random masks, e.g. 0")
    public static let t = MethodParameter(name: "t", domain: .unitInterval,
                                          meaning: "the position between the base model (0) and the other model (1), e.g. 0.5")
    public static let normEpsilon = MethodParameter(name: "eps", domain: .positive,
                                                    meaning: "the small constant that keeps divisions by norms finite, e.g. 1e-8")
    public static let tolerance = MethodParameter(name: "tol", domain: .positive,
                                                  meaning: "the angle and norm below which the iteration stops or skips a model, e.g. 1e-5")
    public static let iterations = MethodParameter(name: "max_iter", domain: .iterationCount,
                                                   meaning: "the most iterations of the Karcher mean, e.g. 10")

    /// Whether `value` is allowed.
    public func accepts(_ value: Double) -> Bool {
        switch domain {
        case .finite: return value.isFinite
        case .keptFraction: return value > 0 && value <= 1
        case .fractionBelowOne: return value >= 0 && value < 1
        case .seed: return value >= 0 && value < 0x1p64 && value.rounded(.towardZero) == value
        case .unitInterval: return value >= 0 && value <= 1
        case .positive: return value > 0 && value.isFinite
        case .iterationCount: return value >= 0 && value <= Double(Self.maximumIterations) && value.rounded(.towardZero) == value
        }
    }

    /// What an allowed value is, completing "must be …".
    public var requirement: String {
        switch domain {
        case .finite: return "a finite number"
        case .keptFraction: return "in (0, 1]"
        case .fractionBelowOne: return "in [0, 1)"
        case .seed: return "a whole number from 0 to 2⁶⁴ − 1"
        case .unitInterval: return "in [0, 1]"
        case .positive: return "a positive number"
        case .iterationCount: return "a whole number from 0 to \(Self.maximumIterations)"
        }
    }

    /// nil when `value` is allowed; otherwise the message naming the parameter as `label`:
    /// "`label` must be in (0, 1], not 1.5 (the fraction of τ entries kept, e.g. 0.2)".
    public func problem(_ value: Double, label: String) -> String? {
        accepts(value) ? nil : "\(label) must be \(requirement), not \(Self.format(value)) (\(meaning))"
    }

    /// Throws the neutral message when `value` is not allowed.
    func check(_ value: Double) throws(MergeKitError) {
        if let problem = problem(value, label: name) { throw MergeKitError(.invalidArgument, problem) }
    }

    /// Checks every value of a per-input parameter.
    func check(_ values: TaskVectorMerge.PerInput) throws(MergeKitError) {
        for value in values.values { try check(value) }
    }

    /// A value as people write it: 2 rather than 2.0, nan, inf.
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
