import Foundation

/// A merge recipe: a YAML (or JSON) file in mergekit's vocabulary.
///
/// ```yaml
/// merge_method: ties
/// base_model: path/to/base
/// models:
///   - model: path/to/finetuned-a
///     parameters: {weight: 1.0, density: 0.5}
///   - task_vector: path/to/tau-b.safetensors      # a MergeKit extension
///     parameters:
///       weight: [{filter: self_attn, value: 0.5}, {value: 1.0}]
///   - lora: path/to/peft-adapter                  # a MergeKit extension: τ = (α/r)·B·A
/// # or, instead of models: (see `Module`), slices: [{sources: [{model: PATH, layer_range: [0, 8]}]}]
/// parameters: {lambda: 1.0, normalize: true}
/// dtype: float32
/// out_dtype: bfloat16
/// tokenizer_source: union                           # or the tokenizer: block; chat_template (`TokenizerSettings`)
/// sweep: {lambda: "0:1:0.05"}                        # a MergeKit extension
/// ```
///
/// A `model:` or `base_model:` may be `MODEL+ADAPTER` (mergekit's model-plus-LoRA syntax: the
/// model with the PEFT adapter merged in, `ModelReference`), and a recipe file may hold several
/// documents separated by `---`, each with a `name` that the others use as a model
/// (mergekit-multi: `RecipeFile`, `RecipeGraph`).
///
/// Loading validates the whole schema and reports every problem at once, each with its line.
/// YAML merge keys (`<<: *defaults`, `<<: [*a, *b]`) are resolved as mergekit's loader (PyYAML)
/// resolves them; the text is bounded before it is parsed (`RecipeLimits`).
public struct Recipe: Sendable {
    public struct Input: Sendable {
        public enum Kind: String, Sendable { case model, taskVector = "task_vector", lora }
        public let kind: Kind
        public let path: String
        public let parameters: [String: ParameterSetting]
        public let line: Int

        public init(kind: Kind, path: String, parameters: [String: ParameterSetting] = [:], line: Int = 0) {
            self.kind = kind
            self.path = path
            self.parameters = parameters
            self.line = line
        }
    }

    /// One value given for a parameter (a scalar, or one number of a list), where it was given:
    /// recipes check each against its parameter's rule, reporting each at its own line.
    struct ValueSite: Sendable {
        let parameter: String
        let value: ParameterSetting
        let line: Int
        /// Given in a models entry (not under `parameters` or `sweep`).
        let perModel: Bool
    }

    /// The recipe file and its text (copied into the output).
    public let path: String
    public let text: String
    public let method: String
    public let methodLine: Int
    public let baseModel: String?
    public let baseLine: Int
    public let inputs: [Input]
    /// The layer-wise structure (`slices:` or `modules:`); empty for a whole-model recipe (`models:`).
    public let modules: [Module]
    public let parameters: [String: ParameterSetting]
    public let parameterLines: [String: Int]
    public let dtype: DType?
    public let outDType: DType?
    /// Sweep axes in file order: parameter name and its values.
    public let sweep: [(name: String, values: [ParameterSetting])]
    /// Schema problems found while parsing, reported with planning's (so that every problem is
    /// reported at once).
    let schemaProblems: [MergeKitError]
    /// Every value given for a parameter, with its line.
    let sites: [ValueSite]
    /// The output's vocabulary and tokenizer (`tokenizer_source`, `tokenizer`, `chat_template`);
    /// nil when the recipe gives none of them.
    public internal(set) var tokenizer: TokenizerSettings?
    /// How a sweep's points are scored (`eval:`; its paths resolved as the checkpoints' are);
    /// nil without one.
    public internal(set) var evaluation: SweepEvaluation?
    /// The document's `name` (mergekit-multi: other documents of the file use it as a model).
    public internal(set) var name: String?
    /// The line of `name`, and of the document's first line (0: none).
    public internal(set) var nameLine = 0
    public internal(set) var line = 0

    init(path: String, text: String, method: String, methodLine: Int, baseModel: String?, baseLine: Int, inputs: [Input],
         modules: [Module] = [], parameters: [String: ParameterSetting], parameterLines: [String: Int], dtype: DType?, outDType: DType?,
         sweep: [(name: String, values: [ParameterSetting])], schemaProblems: [MergeKitError], sites: [ValueSite]) {
        self.path = path
        self.text = text
        self.method = method
        self.methodLine = methodLine
        self.baseModel = baseModel
        self.baseLine = baseLine
        self.inputs = inputs
        self.modules = modules
        self.parameters = parameters
        self.parameterLines = parameterLines
        self.dtype = dtype
        self.outDType = outDType
        self.sweep = sweep
        self.schemaProblems = schemaProblems
        self.sites = sites
    }

    /// A recipe built from values rather than parsed (the `sweep` command builds its recipe from
    /// its flags this way, so no flag's text can become recipe syntax). It is validated and planned
    /// like a parsed one; problems have no line. `text`, written to directory outputs as
    /// recipe.yml, is the recipe emitted as YAML (every string quoted), which parses back to it.
    public init(method: String, baseModel: String?, inputs: [Input], parameters: [String: ParameterSetting] = [:],
                sweep: [(name: String, values: [ParameterSetting])] = [], path: String) {
        var sites: [ValueSite] = []
        for (name, setting) in parameters.sorted(by: { $0.key < $1.key }) {
            sites += setting.leaves.map { ValueSite(parameter: name, value: $0, line: 0, perModel: false) }
        }
        for input in inputs {
            for (name, setting) in input.parameters.sorted(by: { $0.key < $1.key }) {
                sites += setting.leaves.map { ValueSite(parameter: name, value: $0, line: 0, perModel: true) }
            }
        }
        for axis in sweep {
            sites += axis.values.flatMap(\.leaves).map { ValueSite(parameter: axis.name, value: $0, line: 0, perModel: false) }
        }
        self.init(path: path, text: Self.yaml(method: method, baseModel: baseModel, inputs: inputs, parameters: parameters, sweep: sweep),
                  method: method, methodLine: 0, baseModel: baseModel, baseLine: 0, inputs: inputs, parameters: parameters,
                  parameterLines: Dictionary(uniqueKeysWithValues: parameters.keys.map { ($0, 0) }), dtype: nil, outDType: nil,
                  sweep: sweep, schemaProblems: [], sites: sites)
    }
}
