/// A parameter whose values are a fixed set of words: the enums of the methods' options.
public protocol MethodChoice: RawRepresentable, CaseIterable, Sendable where RawValue == String {}

extension MethodChoice {
    /// Every accepted word, in declaration order.
    public static var words: [String] { allCases.map(\.rawValue) }
}

extension MethodDescription {
    /// One parameter of a method: what it is, where it is accepted and how it is spelled there.
    /// Its default is not here but in each preset (`Preset.defaults`), since that is where
    /// references disagree.
    public struct Parameter: Sendable {
        public enum ValueType: Sendable {
            /// A number, judged by its rule (the range and its wording).
            case number(MethodParameter)
            /// One of a set of words.
            case choice(any MethodChoice.Type)
            /// true or false (on the command line a --flag/--no-flag pair).
            case flag
            /// The seed of random masks: a whole number (a `UInt64` on the command line).
            case seed
        }

        public enum Scope: Sendable, Equatable {
            /// Once for the merge (under a recipe's `parameters`).
            case global
            /// Per model in a recipe (or once for all models under `parameters`); once on the command line.
            case perModel
        }

        /// The recipe key, as mergekit spells it (`density`, `lambda`, `trim_scope`).
        public let key: String
        /// The command line's long option name without dashes (`trim-scope`); nil: recipes only.
        public let flag: String?
        public let type: ValueType
        public let scope: Scope
        /// One line for help text.
        public let doc: String
        /// The value's name in help (`<K>`); nil: the flag's name.
        public let valueName: String?
        /// For a key mergekit accepts that has no effect here: the one-line note a recipe giving
        /// it gets (it is accepted, not refused). nil: the parameter has an effect.
        public let note: String?

        public init(_ key: String, flag: String?, _ type: ValueType, scope: Scope = .global, doc: String, valueName: String? = nil,
                    note: String? = nil) {
            self.key = key
            self.flag = flag
            self.type = type
            self.scope = scope
            self.doc = doc
            self.valueName = valueName
            self.note = note
        }

        /// The rule of a numeric parameter (nil for words and flags).
        public var rule: MethodParameter? {
            switch type {
            case .number(let rule): return rule
            case .seed: return .seed
            case .choice, .flag: return nil
            }
        }

        /// `weight`, each model's wᵢ (on the command line: --weight of the inputs).
        public static let weight = Parameter("weight", flag: nil, .number(.weight), scope: .perModel,
                                             doc: "An input's weight wᵢ; may be negative.")

        /// `lambda` (--scale), λ applied to the merged task vector.
        public static func lambda(_ doc: String, valueName: String = "λ") -> Parameter {
            Parameter("lambda", flag: "scale", .number(.scale), doc: doc, valueName: valueName)
        }

        /// mergekit's `normalize`: divide by the (agreeing) weights' sum.
        public static let normalize = Parameter("normalize", flag: nil, .flag, doc: "Divide by the sum of the (agreeing) weights.")

        /// mergekit's `int8_mask`: a memory saving there, accepted and ignored here.
        public static let int8Mask = Parameter("int8_mask", flag: nil, .flag, doc: "mergekit's mask storage; accepted and ignored.",
                                               note: "int8_mask has no effect here: masks are never stored as tensors (mergekit's int8 storage saves memory there)")

        /// `vote`, the sign election of TIES-style methods.
        public static func vote(flag: String?, doc: String) -> Parameter {
            Parameter("vote", flag: flag, .choice(TaskVectorMerge.Consensus.self), doc: doc)
        }

        /// `merge`, the aggregation of the agreeing entries.
        public static func merge(flag: String?, doc: String) -> Parameter {
            Parameter("merge", flag: flag, .choice(TaskVectorMerge.Aggregation.self), doc: doc)
        }
    }
}
