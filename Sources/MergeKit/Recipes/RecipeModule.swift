extension Recipe {
    /// A layer-wise part of a recipe: mergekit's `modules:` entry, or the whole of a `slices:`
    /// recipe (then `name` is nil: the checkpoint's one module).
    ///
    /// ```yaml
    /// slices:                                  # the output's layers, slice after slice
    ///   - sources:                             # merged by merge_method, layer by layer
    ///       - model: path/to/a
    ///         layer_range: [0, 16]             # layers 0..15
    ///         parameters: {weight: [1, 0.5]}   # a gradient runs over the slice
    ///       - model: path/to/b
    ///         layer_range: [0, 16]
    ///     parameters: {weight: 0.5}           # the slice's, under its sources'
    ///   - sources:                             # a frankenmerge: one source, its layers copied
    ///       - model: path/to/b
    ///         layer_range: [8, 24]
    /// modules:                                 # or per module of the architecture
    ///   default: {slices: [...], parameters: {...}}   # or models: [...] (every layer)
    /// ```
    public struct Module: Sendable {
        /// The module's name under `modules:` (nil for a `slices:` recipe).
        public let name: String?
        public let slices: [Slice]
        /// The module's parameters, under its slices' and over the recipe's.
        public let parameters: [String: ParameterSetting]
        public let parameterLines: [String: Int]
        public let line: Int
    }

    /// One output slice: layers merged from its sources, which all give the same number of layers.
    public struct Slice: Sendable {
        public struct Source: Sendable {
            public let path: String
            /// `layer_range: [start, end]`: layers start..<end (nil: every layer of the module, for
            /// a module's `models:` entry).
            public let start: Int?
            public let end: Int?
            public let parameters: [String: ParameterSetting]
            public let line: Int

            /// The number of layers the source gives (nil without a range).
            public var length: Int? { start.flatMap { s in end.map { $0 - s } } }
        }

        public let sources: [Source]
        /// The slice's own base model (over the recipe's).
        public let baseModel: String?
        public let parameters: [String: ParameterSetting]
        public let parameterLines: [String: Int]
        public let line: Int
        /// Made from a module's `models:`: as in a whole-model recipe, the base model is the base
        /// without being listed.
        public let fromModels: Bool
    }
}

extension Recipe {
    /// Every text the recipe names a model by (`base_model`, each `model:` of `models:`, each
    /// slice's base model and sources), with its line: what a multi-document recipe resolves
    /// against the names of its documents.
    var modelUses: [(text: String, line: Int)] {
        var uses: [(text: String, line: Int)] = baseModel.map { [($0, baseLine)] } ?? []
        uses += inputs.filter { $0.kind == .model }.map { ($0.path, $0.line) }
        for slice in modules.flatMap(\.slices) {
            if let base = slice.baseModel { uses.append((base, slice.line)) }
            uses += slice.sources.map { ($0.path, $0.line) }
        }
        return uses
    }
}
