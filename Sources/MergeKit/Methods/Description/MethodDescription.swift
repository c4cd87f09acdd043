/// Everything the front ends know about one merge method, in one value beside the method itself:
/// its names, its parameters with their rules and defaults, its presets, what kind of method it is
/// and how to build it from parameter values. The command line's subcommand and help, the recipe
/// vocabulary and validation, `merge-cli methods` and sweeps are all derived from it, so adding a
/// method is one file (the method and its description) and one entry in `MethodRegistry`.
///
/// **Presets.** Where references disagree on a method's semantics or defaults (TIES as in the paper
/// or as in mergekit), each reading is a `Preset`: named defaults, plus values it fixes. One rule
/// says which applies where: the subcommand `merge-cli NAME` uses the method's first preset (the
/// paper's), and a recipe or a sweep uses the preset its method name selects (`recipeNames`):
/// mergekit's names (`ties`, `dare_ties`, `dare_linear`, `breadcrumbs_ties`, …) select mergekit's
/// semantics and defaults, so that mergekit configs port unchanged; MergeKit's own names (`dare`,
/// `breadcrumbs`, `tsv_m`, …) the same preset as the subcommand.
public struct MethodDescription: Sendable {
    /// What a method needs and how it computes, as far as planning and help are concerned.
    public struct Kind: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// `combine` works on chunks of every tensor (element by element or with per-tensor statistics).
        public static let perChunk = Kind(rawValue: 1 << 0)
        /// The method has a λ (`MergeMethod.lambda`), applied by the executor: sweep points over λ share one merge.
        public static let scaled = Kind(rawValue: 1 << 1)
        /// Some tensors are merged whole (`WholeTensorMergeMethod`).
        public static let wholeTensor = Kind(rawValue: 1 << 2)
        /// Needs numbers over the whole model before merging (a statistics pass).
        public static let modelStatistics = Kind(rawValue: 1 << 3)
        /// Needs data (activations, a validation set) besides the checkpoints.
        public static let data = Kind(rawValue: 1 << 4)
        /// Decomposes matrices (exact SVD per 2-D tensor).
        public static let svd = Kind(rawValue: 1 << 5)
        /// Averages the models: a recipe may leave out the base (the first model anchors τ).
        public static let baseOptional = Kind(rawValue: 1 << 6)
    }

    /// How the command line takes the inputs.
    public enum Inputs: Sendable {
        /// Checkpoints and a --weight per input.
        case weighted
        /// Checkpoints only: the method sets its own per-task coefficients.
        case unweighted
    }

    /// One reading of the method: the defaults of its parameters, and values it fixes whatever a
    /// recipe says (mergekit's `dare_ties` is DARE combined by TIES, whatever `combine` says).
    public struct Preset: Sendable {
        /// The preset's name in help text: "paper", "mergekit", …
        public let name: String
        /// The default of each parameter (by key) under this preset; a parameter without one has
        /// a default derived from others (see the method's factory).
        public let defaults: [String: ParameterSetting]
        /// Values this preset imposes.
        public let fixed: [String: ParameterSetting]
        /// mergekit's convention: a `normalize` given without `merge` selects the merge, true
        /// `normalized` and false `sum` (`MethodArguments.aggregation()`).
        public let normalizeSelectsMerge: Bool

        public init(_ name: String, defaults: [String: ParameterSetting], fixed: [String: ParameterSetting] = [:],
                    normalizeSelectsMerge: Bool = false) {
            self.name = name
            self.defaults = defaults
            self.fixed = fixed
            self.normalizeSelectsMerge = normalizeSelectsMerge
        }
    }

    /// The command's help text: its one-line abstract and the paragraphs after it.
    public struct Help: Sendable {
        public let abstract: String
        public let discussion: String

        public init(abstract: String, discussion: String = "") {
            self.abstract = abstract
            self.discussion = discussion
        }
    }

    /// Name (the subcommand), summary and reference, as `merge-cli methods` and metadata show them.
    public let info: MethodInfo
    public let kind: Kind
    public let inputs: Inputs
    /// The parameters, in the order the command line lists them.
    public let parameters: [Parameter]
    /// The presets; the first is the subcommand's.
    public let presets: [Preset]
    /// The names a recipe or a sweep gives the method, each with the preset it selects.
    public let recipeNames: [(name: String, preset: String)]
    public let help: Help
    /// Builds the method from parameter values (ranges already checked by the front end, and
    /// checked again by the method's initialiser).
    let factory: @Sendable (MethodArguments) throws(MergeKitError) -> any MergeMethod

    public init(info: MethodInfo, kind: Kind, inputs: Inputs = .weighted, parameters: [Parameter],
                presets: [Preset], recipeNames: [(name: String, preset: String)], help: Help,
                factory: @escaping @Sendable (MethodArguments) throws(MergeKitError) -> any MergeMethod) {
        precondition(!presets.isEmpty, "\(info.name) needs a preset")
        self.info = info
        self.kind = kind
        self.inputs = inputs
        self.parameters = parameters
        self.presets = presets
        self.recipeNames = recipeNames
        self.help = help
        self.factory = factory
    }

    /// The subcommand's preset.
    public var commandPreset: Preset { presets[0] }

    /// The preset named `name`.
    public func preset(named name: String) -> Preset? { presets.first { $0.name == name } }

    /// The parameter with recipe key `key`.
    public func parameter(_ key: String) -> Parameter? { parameters.first { $0.key == key } }

    /// The parameters the command line has (those with a flag).
    public var commandLineParameters: [Parameter] { parameters.filter { $0.flag != nil } }

    /// Recipe keys given per model (or once for all models), then those given once.
    public var perModelKeys: [String] { parameters.filter { $0.scope == .perModel }.map(\.key) }
    public var recipeKeys: [String] { perModelKeys + parameters.filter { $0.scope == .global }.map(\.key) }

    /// Builds the method from the values the subcommand parsed (one per command-line parameter,
    /// by key; the seed separately) under the subcommand's preset.
    public func build(commandLine values: [String: ParameterSetting], seed: UInt64) throws(MergeKitError) -> any MergeMethod {
        try factory(MethodArguments(preset: commandPreset, global: values, models: nil, tensor: "", t: 0, seed: seed))
    }

    /// Builds the method for one tensor of a recipe (see `MethodArguments`).
    func build(_ arguments: MethodArguments) throws(MergeKitError) -> any MergeMethod {
        try factory(arguments)
    }
}

/// A method whose description the front ends derive from.
public protocol DescribedMethod: MergeMethod {
    static var methodDescription: MethodDescription { get }
}
