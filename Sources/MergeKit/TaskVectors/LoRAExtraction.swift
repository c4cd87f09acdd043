import Foundation

/// Extracts a PEFT LoRA adapter approximating a fine-tune: for every 2-D weight W (`<name>.weight`)
/// of the base, τ = W_ft − W₀ is factorised by a truncated SVD τ ≈ U_k·diag(s_k)·V_kᵀ,
/// k = min(r, rows, columns), and stored with the singular values split evenly, as mergekit's
/// `extract_lora` does:
///
///     lora_B = U_k·diag(√s_k)   (rows × k),   lora_A = diag(√s_k)·V_kᵀ   (k × columns)
///
/// with lora_alpha = r, so PEFT's scale alpha/r is 1 and merge_and_unload() adds exactly B·A
/// (modules with k < r get `rank_pattern` and `alpha_pattern` entries k, keeping the scale 1). The
/// truncation is the best rank-k approximation in Frobenius norm (Eckart–Young) with the exact SVD
/// (LAPACK `sgesdd`); with `randomized` it comes from the seeded randomized range finder
/// (`LAPACK.randomizedSVD`, p = 10 oversampling, q = 4 power iterations by default), whose error is
/// within 1 % of the optimum at a fraction of the cost. q = 4 is chosen for the worst case, flat
/// spectra: on white-noise deltas (Benchmarks/extract_lora.sh) the error was 0.55 % above the
/// exact truncation on average with q = 4 (1.1 % at worst), 1.2 % (2.6 %) with q = 2 and 0.18 %
/// (0.30 %) with q = 8, each q costing more power iterations (the README has the timings).
/// Decaying spectra (real fine-tunes) need less: see LAPACK.swift for q = 1 and 2.
///
/// Weights stored transposed — embeddings (`lora_embedding_A` k × vocab, `lora_embedding_B`
/// dim × k) and, with `fanInFanOut`, GPT-2-style Conv1D weights — are factorised as τᵀ: A = √s·Uᵀ,
/// B = V·√s. Embeddings and output heads are skipped unless `includeEmbeddings`.
///
/// Reported per tensor: the relative Frobenius error ‖τ − B·A‖_F / ‖τ‖_F of the factors **as
/// stored** (after rounding to the adapter's dtype), computed row block by row block (0 when τ = 0).
///
/// Streaming: workers take one tensor at a time (largest first), read τ in the compute type
/// (Float), decompose it with single-threaded BLAS, and `pwrite` A and B at offsets laid out up
/// front. Memory per worker (`peakBytes`, checked before anything is written): τ plus the exact
/// SVD's copy, U, Vᵀ and workspace, about 7× the weight in Float for a square one; with the
/// randomized SVD τ plus thin (rows + columns)·(r + p) bases, 1.2–1.5× at rank 64 on 2000²–3000².
/// A weight that does not fit the available memory (`MemoryBudget`) is refused, naming it, the
/// estimate and (for the exact SVD) what the randomized SVD would need; weights that fit one at a time
/// but not together run on fewer workers. Results are byte-identical for any thread count (the
/// seed of each tensor's randomized SVD is derived from the seed and the tensor's name).
///
/// Range: τ is decomposed as τ·2⁻ᵉ (e even, largest entry in [1, 4)), and √σ·2^(e/2) goes into
/// both factors, so the factors of τ near ±3·10³⁸ or the smallest normals are exactly 2^(e/2)
/// times those of the scaled-down copy, never ±∞; factors that do not fit the adapter's dtype
/// are an error (F32 factors fit). A zero τ (a frozen weight) gets zero factors without an SVD.
/// Linearized checkpoints are refused (`refuseLinearized`).
public struct LoRAExtraction: Sendable {
    public struct Options: Sendable {
        public var rank: Int
        public var randomized: Bool
        public var oversampling: Int
        public var powerIterations: Int
        public var seed: UInt64
        /// Also factorise embeddings and the output head (`lm_head`).
        public var includeEmbeddings: Bool
        /// The base stores its Linear-like weights [in, out] (GPT-2's Conv1D): write an adapter with
        /// `fan_in_fan_out: true`.
        public var fanInFanOut: Bool
        /// dtype of the factors; nil = each weight's dtype in the base.
        public var dtype: DType?
        public var overwrite: Bool

        public init(rank: Int, randomized: Bool = false, oversampling: Int = 10, powerIterations: Int = 4, seed: UInt64 = 0,
                    includeEmbeddings: Bool = false, fanInFanOut: Bool = false, dtype: DType? = nil, overwrite: Bool = false) {
            self.rank = rank
            self.randomized = randomized
            self.oversampling = oversampling
            self.powerIterations = powerIterations
            self.seed = seed
            self.includeEmbeddings = includeEmbeddings
            self.fanInFanOut = fanInFanOut
            self.dtype = dtype
            self.overwrite = overwrite
        }
    }

    /// One factorised weight.
    public struct Target: Sendable {
        public let tensor: String
        public let module: String
        public let shape: [Int]
        public let rank: Int
        /// An embedding (`lora_embedding_A/B`) or a Conv1D weight: factors of τᵀ.
        public let transposed: Bool
        public let embedding: Bool
        let base: Checkpoint.Entry
        let model: Checkpoint.Entry
        let a: TensorInfo
        let b: TensorInfo
    }

    /// What one tensor's factorisation achieved.
    public struct TensorReport: Sendable {
        public let tensor: String
        public let module: String
        public let shape: [Int]
        public let rank: Int
        /// ‖τ − B·A‖_F / ‖τ‖_F with the stored factors.
        public let relativeError: Double
        public let deltaNorm: Double
        public let seconds: Double
    }

    public struct Result: Sendable {
        public let output: String
        public let files: [String]
        public let reports: [TensorReport]
        public let skipped: [String]
        public let seconds: Double
        /// What happened around the output (stale temporaries removed, …).
        public let notes: [OutputNote]
    }

    public let base: Checkpoint
    public let model: Checkpoint
    public let options: Options
    public let output: String
    public let targets: [Target]
    /// 2-D weights left out (embeddings and heads without `includeEmbeddings`), by name.
    public let skipped: [String]
    let layout: SafeTensorsLayout
    /// adapter_config.json.
    public let config: JSONValue

    // MARK: Plan

    /// Validates the inputs and lays out the adapter; nothing is written.
    public init(base: Checkpoint, model: Checkpoint, output: String, options: Options) throws(MergeKitError) {
        try Self.refuseLinearized(base: base, model: model)
        var problems = ProblemList()
        if options.rank < 1 {
            problems.add(MergeKitError(.invalidArgument, "rank \(options.rank) must be at least 1", fix: "\(term: .rankExample)"))
        }
        if options.oversampling < 0 || options.powerIterations < 0 {
            problems.add(MergeKitError(.invalidArgument, "oversampling and power iterations must be non-negative",
                                       fix: "Use the defaults \(term: .randomizedSVDDefaults)"))
        }
        if let dtype = options.dtype, !dtype.isMergeable {
            problems.add(MergeKitError(.invalidArgument, "adapter dtype \(dtype.rawValue) is not one MergeKit writes", fix: "Use one of F32, F16, BF16, F64"))
        }
        OutputGuard.check(output: output, isDirectory: true, overwrite: options.overwrite, inputs: [base.path, model.path], into: &problems)
        if OutputGuard.isFileOutput(output) {
            problems.add(MergeKitError(.invalidArgument, file: output, "an adapter is a directory (adapter_config.json + adapter_model.safetensors)",
                                       fix: "Give a directory path for -o"))
        }

        var targets: [Target] = []
        var skipped: [String] = []
        var specs: [TensorSpec] = []
        var rankPattern: [JSONMember] = []
        for entry in base.entries {
            let info = entry.info
            guard info.dtype.isMergeable, info.shape.count == 2, info.elementCount > 0, info.name.hasSuffix(".weight") else { continue }
            let module = String(info.name.dropLast(".weight".count))
            let kind = Self.embeddingKind(module)
            if kind != nil && !options.includeEmbeddings {
                skipped.append(info.name)
                continue
            }
            guard let other = model.entry(named: info.name) else {
                problems.add(MergeKitError(.missingTensor, file: model.path, tensor: info.name,
                    "is in the base (\(base.path)) but not in the fine-tuned model",
                    fix: "Extract from a model fine-tuned from this base (same architecture)"))
                continue
            }
            guard other.info.shape == info.shape else {
                problems.add(MergeKitError(.shapeMismatch, file: model.path, tensor: info.name,
                    "has shape \(other.info.shape) but the base (\(base.path)) has \(info.shape)",
                    fix: kind != nil ? "A resized vocabulary cannot be a LoRA delta: \(term: .leaveOutEmbeddings)" : "Extract from a model fine-tuned from this base"))
                continue
            }
            guard other.info.dtype.isMergeable else {
                problems.add(MergeKitError(.dtypeMismatch, file: model.path, tensor: info.name,
                    "is \(other.info.dtype.rawValue) but the base has \(info.dtype.rawValue)", fix: "Float weights can only be compared with float weights"))
                continue
            }
            let embedding = kind == .input
            let transposed = embedding || (kind == nil && options.fanInFanOut)
            let (rows, columns) = (info.shape[0], info.shape[1])
            if !options.randomized, let problem = LAPACK.exactSVDProblem(rows: rows, columns: columns) {
                problems.add(MergeKitError(.invalidArgument, file: base.path, tensor: info.name, "cannot take its exact SVD: \(problem)",
                    fix: "\(term: .randomizedReadsProducts)"))
                continue
            }
            let k = min(max(options.rank, 1), rows, columns)
            if k < options.rank { rankPattern.append(JSONMember(module, .int(k))) }
            let dtype = options.dtype ?? info.dtype
            let (aName, bName) = embedding
                ? ("\(LoRAAdapter.keyPrefix)\(module).lora_embedding_A", "\(LoRAAdapter.keyPrefix)\(module).lora_embedding_B")
                : ("\(LoRAAdapter.keyPrefix)\(module).lora_A.weight", "\(LoRAAdapter.keyPrefix)\(module).lora_B.weight")
            // A is k × in, B is out × k, where the stored weight is [out, in], or [in, out] when transposed.
            let (inFeatures, outFeatures) = transposed ? (rows, columns) : (columns, rows)
            specs.append(TensorSpec(name: aName, dtype: dtype, shape: [k, inFeatures]))
            specs.append(TensorSpec(name: bName, dtype: dtype, shape: [outFeatures, k]))
            targets.append(Target(tensor: info.name, module: module, shape: info.shape, rank: k, transposed: transposed, embedding: embedding,
                                  base: entry, model: other,
                                  a: TensorInfo(name: aName, dtype: dtype, shape: [k, inFeatures], begin: 0, end: 0),
                                  b: TensorInfo(name: bName, dtype: dtype, shape: [outFeatures, k], begin: 0, end: 0)))
        }
        if targets.isEmpty {
            problems.add(MergeKitError(.invalidArgument, file: base.path, "has no 2-D float weights to factorise",
                                       fix: options.includeEmbeddings ? "Check the base path" : "\(term: .includeEmbeddings)"))
        }
        try problems.throwIfAny()

        // Layout: sorted by name (as the safetensors reference writer does for one dtype).
        specs.sort { $0.name < $1.name }
        let layout = SafeTensorsLayout(specs: specs, metadata: ["format": "pt"])
        let placed = Dictionary(uniqueKeysWithValues: layout.tensors.map { ($0.name, $0) })
        self.targets = targets.map { t in
            Target(tensor: t.tensor, module: t.module, shape: t.shape, rank: t.rank, transposed: t.transposed, embedding: t.embedding,
                   base: t.base, model: t.model, a: placed[t.a.name]!, b: placed[t.b.name]!)
        }
        self.base = base
        self.model = model
        self.options = options
        self.output = output
        self.skipped = skipped
        self.layout = layout
        config = Self.adapterConfig(base: base, options: options, modules: targets.map(\.module), rankPattern: rankPattern)
    }

    /// A linearized checkpoint (params0.* = θ₀, params.* = θ) is refused: PEFT applies an adapter
    /// to the ordinary model, W₀ + B·A inside f(x; W), which is not the tangent-space model
    /// f(x; θ₀) + J·(θ − θ₀) a linearized fine-tune is, and the adapter's modules would be named
    /// params0.*/params.*, which no model has. A linearized fine-tune is merged as it is (with a
    /// linearized base); its τ = θ − θ₀ is `merge-cli task-vector`'s output.
    static func refuseLinearized(base: Checkpoint, model: Checkpoint) throws(MergeKitError) {
        guard let linearized = [model, base].first(where: { LinearizedCheckpoint.isLinearized($0) }) else { return }
        throw MergeKitError(.invalidArgument, file: linearized.path,
            "is a linearized checkpoint (params0.* = θ₀, params.* = θ): a LoRA adapter is applied by PEFT to the ordinary model (W₀ + B·A inside f(x; W)), not to the linearized f(x; θ₀) + J·(θ − θ₀), and its modules would be named params0.*/params.*",
            fix: "Extract from the ordinary checkpoints \(term: .extractionInputs); merge a linearized fine-tune as it is (\(term: .mergeModel(base: "BASE-LIN", model: "LIN"))), or write its τ = θ − θ₀ with \(term: .taskVectorExtraction())")
    }

    enum EmbeddingKind { case input, output }

    /// Embeddings (input: `embed_tokens`, `wte`, `wpe`, `word_embeddings`, …) and output heads
    /// (`lm_head`, `embed_out`), recognised by the module's last name component.
    static func embeddingKind(_ module: String) -> EmbeddingKind? {
        let leaf = module.split(separator: ".").last.map(String.init) ?? module
        if ["lm_head", "embed_out"].contains(leaf) { return .output }
        if leaf.contains("embed") || ["wte", "wpe"].contains(leaf) { return .input }
        return nil
    }

    static func adapterConfig(base: Checkpoint, options: Options, modules: [String], rankPattern: [JSONMember]) -> JSONValue {
        var taskType: JSONValue = .null
        if let directory = base.directory, let bytes = try? FileSystem.readFile(FileSystem.join(directory, "config.json")),
           let json = try? JSONParser.parse(bytes), let architectures = json["architectures"]?.arrayValue,
           architectures.contains(where: { $0.stringValue?.hasSuffix("ForCausalLM") == true }) {
            taskType = .string("CAUSAL_LM")
        }
        return .object([
            JSONMember("alpha_pattern", .object(rankPattern)),
            JSONMember("base_model_name_or_path", .string(base.path)),
            JSONMember("bias", .string("none")),
            JSONMember("fan_in_fan_out", .bool(options.fanInFanOut)),
            JSONMember("inference_mode", .bool(true)),
            JSONMember("init_lora_weights", .bool(true)),
            JSONMember("lora_alpha", .int(options.rank)),
            JSONMember("lora_dropout", .double(0)),
            JSONMember("modules_to_save", .null),
            JSONMember("peft_type", .string("LORA")),
            JSONMember("r", .int(options.rank)),
            JSONMember("rank_pattern", .object(rankPattern)),
            JSONMember("target_modules", .array(modules.sorted().map { .string($0) })),
            JSONMember("task_type", taskType),
            JSONMember("use_dora", .bool(false)),
            JSONMember("use_rslora", .bool(false)),
        ])
    }
}
