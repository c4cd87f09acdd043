import Dispatch
import Foundation
import Synchronization

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

    // MARK: Execute

    /// The most bytes factorising `target` holds at once: τ in Float, then the larger of the
    /// read's staging, the SVD (`LAPACK.svdBytes` or `randomizedSVDBytes`, with its truncation)
    /// and the factors (rounded copies and the residual's row block); plus the worker's share of
    /// BLAS's and the allocator's memory (`MemoryBudget.workerSlack`).
    func peakBytes(_ target: Target, randomized: Bool) -> Int {
        let (rows, columns) = (target.shape[0], target.shape[1])
        let k = target.rank, r = min(rows, columns)
        let decomposition: Int
        if randomized {
            decomposition = LAPACK.randomizedSVDBytes(rows: rows, columns: columns, rank: k, oversampling: options.oversampling, elementSize: 4)
        } else {
            decomposition = max(LAPACK.svdBytes(rows: rows, columns: columns, elementSize: 4),
                                LAPACK.decompositionBytes(rows: rows, columns: columns, rank: r, elementSize: 4)
                                    + LAPACK.decompositionBytes(rows: rows, columns: columns, rank: k, elementSize: 4))
        }
        let factors = LAPACK.decompositionBytes(rows: rows, columns: columns, rank: k, elementSize: 4)
            + 4 * k * (rows + columns) + max(target.a.byteCount, target.b.byteCount) + 4 * max(1 << 18, columns)
        return 4 * rows * columns + max(MergeExecutor.itemElements * 12, decomposition, factors) + MemoryBudget.workerSlack
    }

    /// How many workers may run: at most `threads`, and no more than the largest targets'
    /// working sets fit `budget` together (any that many do, whichever run at once). Throws,
    /// naming the weight, the estimate and the way out, when the largest does not fit alone.
    func workers(threads: Int, budget: Int?) throws(MergeKitError) -> Int {
        let bytes = targets.map { peakBytes($0, randomized: options.randomized) }
        guard let budget, let largest = bytes.indices.max(by: { bytes[$0] < bytes[$1] }) else { return threads }
        guard bytes[largest] <= budget else {
            let target = targets[largest]
            let memory = "Run on a machine with that much free memory (or raise \(MemoryBudget.variable) if it was set lower)"
            var fix = MergeKitError.Text(memory)
            if !options.randomized {
                let randomized = peakBytes(target, randomized: true)
                fix = randomized <= budget
                    ? "\(term: .useRandomized.atStart) (about \(ByteCount.describe(randomized)) for this weight), or \(memory.prefix(1).lowercased() + memory.dropFirst())"
                    : "\(memory); \(term: .randomized) would still need about \(ByteCount.describe(randomized))"
            }
            throw MergeKitError(.insufficientMemory, file: model.path, tensor: target.tensor,
                "factorising this \(target.shape) weight (\(options.randomized ? "randomized" : "exact") SVD) needs about \(ByteCount.describe(bytes[largest])) of memory (τ alone is \(ByteCount.describe(4 * target.shape[0] * target.shape[1])) in Float), but \(ByteCount.describe(budget)) is available",
                fix: "\(fix); \(term: .fewerThreads) does not help, since weights that do not fit together are already factorised one at a time")
        }
        return MemoryBudget.concurrency(bytes, workers: threads, budget: budget)
    }

    /// Factorises every target and writes the adapter atomically.
    ///
    /// - Parameter memoryBudget: bytes the workers may use together (nil: unlimited); by default
    ///   what the system has available (`MemoryBudget`). Checked before anything is written.
    public func run(threads requested: Int? = nil, memoryBudget: Int? = MemoryBudget.configuredBytes,
                    progress: (@Sendable (Int, Int) -> Void)? = nil) throws(MergeKitError) -> Result {
        let start = Date()
        let threads = try workers(threads: max(1, min(requested ?? ProcessInfo.processInfo.activeProcessorCount, targets.count)),
                                  budget: memoryBudget)
        BLAS.useOneThread()
        let shard = OutputShard(fileName: LoRAAdapter.weightsFileName, layout: layout)
        let writer = try CheckpointWriter(output: OutputSpec(path: output, overwrite: options.overwrite), shards: [shard])
        // Largest first, so that no large tensor starts last.
        let order = targets.indices.sorted { (targets[$0].shape[0] * targets[$0].shape[1], $1) > (targets[$1].shape[0] * targets[$1].shape[1], $0) }
        let next = Atomic<Int>(0)
        let done = Atomic<Int>(0)
        let failed = Atomic<Bool>(false)
        let failure = Mutex<MergeKitError?>(nil)
        let reports = Mutex<[Int: TensorReport]>([:])
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while !failed.load(ordering: .relaxed) {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < order.count else { break }
                do throws(MergeKitError) {
                    let report = try factorise(targets[order[i]], writer: writer)
                    reports.withLock { $0[order[i]] = report }
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                    failed.store(true, ordering: .relaxed)
                    break
                }
                progress?(done.wrappingAdd(1, ordering: .relaxed).newValue, targets.count)
            }
        }
        if let error = failure.withLock({ $0 }) {
            writer.abort()
            throw error
        }
        let configText = Array((config.serialized(indent: 2) + "\n").utf8)
        try writer.commit(companions: [], generated: [LoRAAdapter.configFileName: configText]) { _, bytes in bytes }
        let all = reports.withLock { r in targets.indices.map { r[$0]! } }
        return Result(output: output, files: [FileSystem.join(output, LoRAAdapter.weightsFileName), FileSystem.join(output, LoRAAdapter.configFileName)],
                      reports: all, skipped: skipped, seconds: Date().timeIntervalSince(start), notes: writer.notes)
    }

    /// τ of one weight → SVD → A and B (rounded to their dtype) → error → written.
    ///
    /// τ is decomposed as τ·2⁻ᵉ, e even and its largest entry in [1, 4) (`PowerOfTwoScaling`), so
    /// that no sum inside the SVD overflows or underflows; √σ then carries 2^(e/2) exactly into
    /// both factors. A zero τ (a frozen weight) gets zero factors without an SVD.
    private func factorise(_ target: Target, writer: CheckpointWriter) throws(MergeKitError) -> TensorReport {
        let start = Date()
        let (rows, columns) = (target.shape[0], target.shape[1])
        let n = rows * columns
        let tau = try ScratchMemory.allocate(Float.self, count: n, tensor: target.tensor, purpose: "its task vector")
        defer { ScratchMemory.release(tau) }
        try Self.readDelta(target, into: tau)
        let largest = PowerOfTwoScaling.largestMagnitude(UnsafeBufferPointer(tau))
        if !largest.isFinite {
            let index = tau.firstIndex { !$0.isFinite }!
            throw MergeKitError(.nonFiniteValue, file: model.path, tensor: target.tensor,
                "element [\(index / columns), \(index % columns)] of τ = θ_ft − θ₀ is \(tau[index].isNaN ? "NaN" : "±Inf"): θ_ft or the base (\(base.path)) holds NaN or ±Inf there, or their difference overflows Float",
                fix: "Check both checkpoints with \(term: .finitenessScan)")
        }
        let e = PowerOfTwoScaling.exponent(of: largest, even: true) ?? 0
        PowerOfTwoScaling.scale(tau, byPowerOfTwo: -e)
        var deltaSquares = 0.0
        for x in tau { deltaSquares += Double(x) * Double(x) }
        let k = target.rank
        let svd: LAPACK.SVD
        if largest == 0 {
            svd = LAPACK.SVD(rows: rows, columns: columns, rank: 0, u: [], s: [], vt: [], driver: .divideAndConquer)
        } else if options.randomized {
            svd = try LAPACK.randomizedSVD(UnsafeBufferPointer(tau), rows: rows, columns: columns, rank: k, oversampling: options.oversampling,
                                           powerIterations: options.powerIterations, seed: options.seed ^ Self.nameHash(target.tensor),
                                           tensor: target.tensor)
        } else {
            svd = try LAPACK.svd(UnsafeBufferPointer(tau), rows: rows, columns: columns, tensor: target.tensor).truncated(to: k)
        }
        // Split √s between the factors. Not transposed: B = U√s (rows × k), A = √s Vᵀ (k × columns).
        // Transposed: A = √s Uᵀ (k × rows), B = V√s (columns × k). √(σ·2ᵉ) = √σ·2^(e/2).
        let kept = svd.rank
        let half = Float(sign: .plus, exponent: e / 2, significand: 1)
        let roots = svd.s.map { $0.squareRoot() * half }
        let inFeatures = target.transposed ? rows : columns, outFeatures = target.transposed ? columns : rows
        var a = [Float](repeating: 0, count: k * inFeatures)
        var b = [Float](repeating: 0, count: outFeatures * k)
        for j in 0..<kept {
            let root = roots[j]
            if target.transposed {
                for i in 0..<rows { a[j * rows + i] = svd.u[i * kept + j] * root }
                for c in 0..<columns { b[c * k + j] = svd.vt[j * columns + c] * root }
            } else {
                for i in 0..<rows { b[i * k + j] = svd.u[i * kept + j] * root }
                for c in 0..<columns { a[j * columns + c] = svd.vt[j * columns + c] * root }
            }
        }
        // Round to the stored dtype, write, and measure the error of what was stored.
        for (index, info) in [target.a, target.b].enumerated() {
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, info.byteCount), alignment: 64)
            defer { raw.deallocate() }
            func roundTrip(_ v: UnsafeMutableBufferPointer<Float>) {
                Float.store(v.baseAddress!, count: v.count, as: info.dtype, into: raw.baseAddress!)
                Float.load(raw.baseAddress!, dtype: info.dtype, count: v.count, into: v.baseAddress!)
            }
            if index == 0 { a.withUnsafeMutableBufferPointer { roundTrip($0) } } else { b.withUnsafeMutableBufferPointer { roundTrip($0) } }
            let stored = index == 0 ? a : b
            if let bad = stored.firstIndex(where: { !$0.isFinite }) {
                throw MergeKitError(.nonFiniteValue, file: model.path, tensor: target.tensor,
                    "its LoRA factor \(info.name) does not fit \(info.dtype.rawValue): element \(bad) would be \(index == 0 ? a[bad] : b[bad]) (the factors carry √σ, and σ₁ of τ is about \(String(format: "%.3g", roots.first.map { Double($0) * Double($0) } ?? 0)))",
                    fix: "\(term: .factorsIn("F32").atStart) (the factors of a τ this large do not fit \(info.dtype.rawValue))")
            }
            try writer.write(UnsafeRawBufferPointer(start: raw.baseAddress, count: info.byteCount), dataOffset: info.begin, shard: 0)
        }
        // The error on τ·2⁻ᵉ with the stored factors times 2^(−e/2) each: the same relative error.
        let unhalf = Float(sign: .plus, exponent: -(e / 2), significand: 1)
        for i in a.indices { a[i] *= unhalf }
        for i in b.indices { b[i] *= unhalf }
        let errorSquares = Self.residual(tau, a: a, b: b, rank: k, rows: rows, columns: columns, transposed: target.transposed)
        let norm = deltaSquares.squareRoot()
        return TensorReport(tensor: target.tensor, module: target.module, shape: target.shape, rank: k,
                            relativeError: norm > 0 ? errorSquares.squareRoot() / norm : 0,
                            deltaNorm: PowerOfTwoScaling.scaled(norm, byPowerOfTwo: e),
                            seconds: Date().timeIntervalSince(start))
    }

    /// τ = W_ft − W₀ in Float, read a slab at a time.
    static func readDelta(_ target: Target, into tau: UnsafeMutableBufferPointer<Float>) throws(MergeKitError) {
        let slab = MergeExecutor.itemElements
        let staging = UnsafeMutableRawPointer.allocate(byteCount: slab * 8, alignment: 64)
        let baseValues = UnsafeMutablePointer<Float>.allocate(capacity: slab)
        defer {
            staging.deallocate()
            baseValues.deallocate()
        }
        var lower = 0
        while lower < tau.count {
            let count = min(slab, tau.count - lower)
            try TensorReader(target.base).read(elements: lower..<(lower + count), into: staging)
            Float.load(staging, dtype: target.base.info.dtype, count: count, into: baseValues)
            try TensorReader(target.model).read(elements: lower..<(lower + count), into: staging)
            // (loadDifference must not alias its base and destination: for some dtypes it loads first.)
            Float.loadDifference(staging, dtype: target.model.info.dtype, count: count, minus: baseValues, into: tau.baseAddress! + lower)
            lower += count
        }
    }

    /// ‖τ − B·A‖²_F (or with (B·A)ᵀ), accumulated in Double over blocks of rows.
    static func residual(_ tau: UnsafeMutableBufferPointer<Float>, a: [Float], b: [Float], rank: Int, rows: Int, columns: Int, transposed: Bool) -> Double {
        let block = max(1, min(rows, (1 << 18) / max(1, columns)))
        var scratch = [Float](repeating: 0, count: block * columns)
        var total = 0.0
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    var first = 0
                    while first < rows {
                        let count = min(block, rows - first)
                        if rank > 0 {
                            LoRAProduct<Float>.rows(first, count: count, a: ap.baseAddress!, b: bp.baseAddress!, rank: rank,
                                                    rows: rows, columns: columns, transposed: transposed, into: sp.baseAddress!)
                        } else {
                            sp.update(repeating: 0)
                        }
                        for i in 0..<(count * columns) {
                            let d = Double(tau[first * columns + i]) - Double(sp[i])
                            total += d * d
                        }
                        first += count
                    }
                }
            }
        }
        return total
    }

    /// FNV-1a of the name: each tensor's randomized SVD gets its own seed.
    static func nameHash(_ name: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }
}

extension LoRAExtraction.Result {
    /// The JSON report: options, per-tensor errors and a summary.
    public func json(_ extraction: LoRAExtraction) -> JSONValue {
        let errors = reports.map(\.relativeError)
        let worst = reports.max { $0.relativeError < $1.relativeError }
        return .object([
            JSONMember("output", .string(output)),
            JSONMember("base", .string(extraction.base.path)),
            JSONMember("model", .string(extraction.model.path)),
            JSONMember("rank", .int(extraction.options.rank)),
            JSONMember("svd", .string(extraction.options.randomized ? "randomized" : "exact")),
            JSONMember("oversampling", extraction.options.randomized ? .int(extraction.options.oversampling) : .null),
            JSONMember("power_iterations", extraction.options.randomized ? .int(extraction.options.powerIterations) : .null),
            JSONMember("seed", extraction.options.randomized ? .int(Int(truncatingIfNeeded: extraction.options.seed)) : .null),
            JSONMember("tensors", .array(reports.map { r in
                .object([JSONMember("tensor", .string(r.tensor)), JSONMember("module", .string(r.module)),
                         JSONMember("shape", .array(r.shape.map { .int($0) })), JSONMember("rank", .int(r.rank)),
                         JSONMember("relative_error", .double(r.relativeError)), JSONMember("delta_norm", .double(r.deltaNorm)),
                         JSONMember("seconds", .double(r.seconds))])
            })),
            JSONMember("skipped", .array(skipped.map { .string($0) })),
            JSONMember("mean_relative_error", .double(errors.isEmpty ? 0 : errors.reduce(0, +) / Double(errors.count))),
            JSONMember("max_relative_error", .double(worst?.relativeError ?? 0)),
            JSONMember("max_relative_error_tensor", worst.map { .string($0.tensor) } ?? .null),
            JSONMember("files", .array(files.map { .string($0) })),
            JSONMember("notes", .array(notes.map(\.json))),
            JSONMember("seconds", .double(seconds)),
            JSONMember("peak_memory_bytes", .int(ProcessMemory.peakResidentBytes)),
            JSONMember("largest_weight_memory_estimate_bytes",
                       .int(extraction.targets.map { extraction.peakBytes($0, randomized: extraction.options.randomized) }.max() ?? 0)),
        ])
    }
}
