import Foundation

/// How the tensors RegMean does not solve for (biases, LayerNorms, embeddings) are merged.
public enum OtherTensorMerge: Sendable, Equatable {
    /// The mean of the models' values (RegMean's and FusionBench's rule).
    case average
    /// Task arithmetic θ₀ + λ·Σₜ (θₜ − θ₀) around the base (needs one).
    case taskArithmetic(scale: Float)
}

/// Settings of RegMean and RegMean++; the defaults are FusionBench's CLIP configurations
/// (`clip_regmean.yaml`, `clip_regmean_plusplus.yaml`).
public struct RegMeanOptions: Sendable {
    /// Images per task the Gram matrices are formed from (`num_regmean_examples`, 256); a task
    /// with fewer uses all of its images.
    public var samples = 256
    /// Images per forward pass (FusionBench's data-loader batch, 32). It changes only the
    /// rounding of the sums, and the memory.
    public var batchSize = 32
    /// α, the factor of the Gram matrices' off-diagonal elements (`reduce_non_diagonal_ratio`,
    /// 0.95 in FusionBench's CLIP configs; 1 keeps the plain Gram matrix).
    public var alpha: Float = 0.95
    /// RegMean++: layer l's Gram matrices from the states the merged layers 0 … l−1 produce.
    public var plusPlus = false
    /// How the other tensors are merged.
    public var others: OtherTensorMerge = .average
    /// What a singular sum of Gram matrices does.
    public var singular: SingularGramPolicy = .pseudoInverse
    /// Seed of the choice of images when a task has more than `samples`.
    public var seed: UInt64 = 0

    public init(samples: Int = 256, batchSize: Int = 32, alpha: Float = 0.95, plusPlus: Bool = false,
                others: OtherTensorMerge = .average, singular: SingularGramPolicy = .pseudoInverse, seed: UInt64 = 0) {
        (self.samples, self.batchSize, self.alpha, self.plusPlus) = (samples, batchSize, alpha, plusPlus)
        (self.others, self.singular, self.seed) = (others, singular, seed)
    }

    /// The method's name as the output's metadata records it.
    public var method: String { plusPlus ? "regmean_plusplus" : "regmean" }

    /// The settings, as the output's metadata and `--json` record them.
    public var parameters: [JSONMember] {
        var scale: JSONValue = .null
        if case .taskArithmetic(let λ) = others { scale = .double(Double("\(λ)") ?? Double(λ)) }
        return [JSONMember("samples", .int(samples)), JSONMember("batch_size", .int(batchSize)),
                JSONMember("alpha", .double(Double("\(alpha)") ?? Double(alpha))), JSONMember("plusplus", .bool(plusPlus)),
                JSONMember("others", .string(others == .average ? "average" : "task-arithmetic")), JSONMember("scale", scale),
                JSONMember("singular", .string(singular.rawValue)), JSONMember("seed", .string(String(seed)))]
    }

    /// Checks every value (the CLI's `validate()` calls this too).
    public func validate() throws(MergeKitError) {
        func bad(_ what: MergeKitError.Text) -> MergeKitError { MergeKitError(.invalidArgument, what) }
        if samples < 1 { throw bad("\(term: .samples.atStart) must be at least 1, not \(samples)") }
        if batchSize < 1 { throw bad("\(term: .batchSize.atStart) must be at least 1, not \(batchSize)") }
        if !(0...1).contains(alpha) { throw bad("\(term: .alpha) must lie in [0, 1], not \(alpha)") }
        if case .taskArithmetic(let scale) = others, !scale.isFinite { throw bad("\(term: .othersScale) must be a finite number, not \(scale)") }
    }
}

/// What a RegMean merge did.
public struct RegMeanResult: Sendable {
    /// The merged encoder, in the first model's layout.
    public let merged: CLIPVisionParameters
    /// Images each task's Gram matrices were formed from.
    public let samples: [Int]
    /// Tensors solved by RegMean, and tensors the models share byte for byte (copied).
    public let solved: [String], identical: [String]
    /// Linear layers whose Gram sum was singular and that used the pseudo-inverse, with its rank.
    public let pseudoInverse: [(tensors: [String], rank: Int, size: Int)]
}

/// RegMean (Jin et al., "Dataless Knowledge Fusion by Merging Weights of Language Models",
/// ICLR 2023) and RegMean++ (Nguyen et al., 2025) on CLIP image encoders, as FusionBench runs them.
///
/// Every linear layer y = W·x + b (q, k, v, out_proj, fc1, fc2 in every encoder layer, and
/// `visual_projection`) is merged as the least-squares fit of the models' outputs on their own
/// inputs:
///
///     W = argmin Σₜ ‖Xₜ Wᵀ − Xₜ Wₜᵀ‖²  ⇒  Wᵀ = (Σₜ Gₜ′)⁻¹ Σₜ Gₜ′ Wₜᵀ,
///     Gₜ = Xₜᵀ Xₜ / rowsₜ,  Gₜ′ = α·Gₜ + (1 − α)·diag(Gₜ),
///
/// Xₜ the layer's inputs over `samples` images of task t (every token of every image a row), α
/// the off-diagonal factor; the solve is `GramSolver`'s. Every other tensor is averaged (or merged
/// by task arithmetic, `OtherTensorMerge`). A tensor all models share byte for byte is copied.
///
/// - RegMean: Xₜ flows through model t itself (its stem and layers).
/// - RegMean++: Xₜ flows through the merged model so far: the averaged stem, then merged layers
///   0 … l−1, then model t's own layer l up to the linear layer's input (FusionBench's
///   `RegMeanAlgorithmPlusPlus`); layer l is merged before layer l+1's inputs are formed.
///
/// Both run layer by layer over hidden states kept per task (`HiddenStates`, samples × tokens × D
/// floats each), reading one layer of one model at a time from its file: at any moment the memory
/// holds the merged encoder, the tasks' hidden states, one layer's Gram sums and one model's layer
/// — never a whole model per task nor a Gram matrix per task and layer. The visual projection's
/// inputs are post_layernorm(class token) through each model's own post_layernorm (FusionBench
/// leaves the projection outside its merged CLIP vision model; RegMean++ there also leaves
/// post_layernorm at the pre-trained values, where this averages it like RegMean does).
///
/// Deterministic for a seed and identical for any thread count (fixed image shards and Gram
/// tiles, `EncoderLayerPass` and `GramAccumulator`).
public enum RegMean {
    /// Runs the merge; calls `progress(done, total)` after each task's pass over a layer.
    public static func run(_ inputs: DataMergeInputs, options: RegMeanOptions, threads: Int? = nil,
                           progress: (Int, Int) -> Void = { _, _ in }) throws(MergeKitError) -> RegMeanResult {
        try options.validate()
        if case .taskArithmetic = options.others, inputs.base == nil {
            throw MergeKitError(.invalidArgument, "task arithmetic of the other tensors needs the base θ₀",
                                fix: "Give the pre-trained model the fine-tunes started from, or average the other tensors")
        }
        let merger = RegMeanMerger(inputs, options: options, threads: ThreadCount.resolved(threads))
        return try merger.run(progress: progress)
    }

    /// The memory a merge holds at its peak (Float32 buffers): the merged encoder, the tasks'
    /// hidden states, one layer's Gram sums and task Grams, one layer of one model, one chunk's
    /// activations, and the double-precision solve of the widest layer.
    public static func memory(_ inputs: DataMergeInputs, options: RegMeanOptions) -> MemoryEstimate {
        let c = inputs.config, d = c.hiddenSize, f = c.intermediateSize
        let samples = (0..<inputs.tasks).map { min(options.samples, inputs.data[$0].count) }
        var estimate = MemoryEstimate()
        estimate.add("merged model", floats: inputs.layout.last.map { $0.offset + $0.count } ?? 0)
        estimate.add("hidden states", floats: EngineMemory.product(samples.reduce(0, +), c.numTokens, d))
        estimate.add("Gram matrices", floats: EngineMemory.product(2, EngineMemory.sum(3 * d * d, f * f)))
        var one = c
        one.numHiddenLayers = 1
        estimate.add("one layer", floats: CLIPVisionParameters.parameterCount(one, projection: inputs.hasProjection) ?? .max)
        let measuring = Workspace(measuring: true)
        let shape = EncoderShape(config: c, batch: min(options.batchSize, samples.max() ?? 1))
        _ = EncoderLayerActivations(measuring, shape)
        estimate.add("activations", floats: EngineMemory.sum(measuring.floatCount, shape.rows * (2 * d + 2) + shape.batch * c.numPatches * (c.patchInputs + d)))
        estimate.add("solve", floats: EngineMemory.product(2, EngineMemory.sum(f * f, f * d)))
        return estimate
    }
}

/// One RegMean or RegMean++ merge (see `RegMean`).
private final class RegMeanMerger {
    let inputs: DataMergeInputs
    let options: RegMeanOptions
    let threads: Int
    let config: CLIPVisionConfig
    let merged: CLIPVisionParameters
    /// One encoder layer (and the stem and head) of one model at a time.
    let scratch: CLIPVisionParameters
    let index: [String: Int]

    /// The linear layers of an encoder layer, by the input they read (`EncoderLayerPass.run`'s
    /// Gram order): LN1 → q, k, v; the attention context → out_proj; LN2 → fc1; the activation → fc2.
    static let groups: [[String]] = [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.out_proj"],
                                     ["mlp.fc1"], ["mlp.fc2"]]

    init(_ inputs: DataMergeInputs, options: RegMeanOptions, threads: Int) {
        self.inputs = inputs
        self.options = options
        self.threads = threads
        config = inputs.config
        merged = CLIPVisionParameters(config: config, prefix: inputs.prefix, projectionName: inputs.projectionName)
        var one = config
        one.numHiddenLayers = 1
        scratch = CLIPVisionParameters(config: one, prefix: inputs.prefix, projectionName: inputs.projectionName)
        index = Dictionary(uniqueKeysWithValues: inputs.layout.enumerated().map { ($1.name, $0) })
    }

    func layerName(_ l: Int, _ local: String) -> String { inputs.prefix + "encoder.layers.\(l)." + local }

    /// Loads model t's tensors of layer `l` into the scratch's layer 0 (with `stemAndHead`, its
    /// stem and head too).
    func loadScratch(model t: Int, layer l: Int?, stemAndHead: Bool) {
        let layerPrefix = inputs.prefix + "encoder.layers.0."
        for tensor in scratch.tensors {
            let source: String
            if tensor.name.hasPrefix(layerPrefix) {
                guard let l else { continue }
                source = layerName(l, String(tensor.name.dropFirst(layerPrefix.count)))
            } else {
                guard stemAndHead else { continue }
                source = tensor.name
            }
            inputs.load(index[source]!, model: t, into: scratch.pointer(tensor.name))
        }
    }

    func run(progress: (Int, Int) -> Void) throws(MergeKitError) -> RegMeanResult {
        let c = config, tasks = inputs.tasks, layers = c.numHiddenLayers
        let projection = inputs.projectionName
        // The linear weights RegMean solves for, and which the models share byte for byte.
        var linear: [String] = (0..<layers).flatMap { l in RegMeanMerger.groups.joined().map { layerName(l, $0 + ".weight") } }
        if let projection { linear.append(projection) }
        let identical = Set(linear.filter { inputs.isIdenticalAcrossModels(index[$0]!) })
        mergeOthers(skipping: Set(linear))

        let indices = (0..<tasks).map { inputs.sampleIndices(task: $0, samples: options.samples, seed: options.seed) }
        let batch = max(1, min(options.batchSize, indices.map(\.count).max() ?? 1))
        let pass = EncoderLayerPass(config: c, batch: batch, threads: threads)
        let total = tasks * (1 + layers * (options.plusPlus ? 2 : 1) + (projection == nil ? 0 : 1))
        var done = 0
        func step() {
            done += 1
            progress(done, total)
        }

        // The stem: each model's own (RegMean) or the merged one (RegMean++).
        var states: [HiddenStates] = []
        for t in 0..<tasks {
            let s = HiddenStates(images: indices[t].count, config: c)
            if !options.plusPlus { loadScratch(model: t, layer: nil, stemAndHead: true) }
            let stem = options.plusPlus ? merged.views : scratch.views
            var first = 0
            while first < s.images {
                let chunk = Array(indices[t][first..<min(s.images, first + batch)])
                pass.embed(pixels: try inputs.pixels(task: t, chunk), count: chunk.count, into: s, first: first, stem: stem)
                first += chunk.count
            }
            states.append(s)
            step()
        }

        let d = c.hiddenSize, f = c.intermediateSize
        let taskGrams = [d, d, d, f].map { GramAccumulator(n: $0) }
        let sums = [d, d, d, f].map { FloatBuffer(count: $0 * $0) }
        var pseudoInverse: [(tensors: [String], rank: Int, size: Int)] = []
        for l in 0..<layers {
            let groups = RegMeanMerger.groups.map { $0.map { layerName(l, $0 + ".weight") } }
            let needed = groups.map { !$0.allSatisfy(identical.contains) }
            for sum in sums { sum.zero() }
            for t in 0..<tasks {
                loadScratch(model: t, layer: l, stemAndHead: false)
                for gram in taskGrams { gram.reset() }
                let layer = scratch.views.layers[0]
                pass.run(states[t], layer: layer, advance: !options.plusPlus, grams: needed.contains(true) ? taskGrams : nil)
                for (g, locals) in RegMeanMerger.groups.enumerated() where needed[g] {
                    try accumulate(taskGrams[g], into: sums[g], model: t, weights: locals.map { local in
                        (scratch.pointer(layerName(0, local + ".weight")), layerName(l, local + ".weight"))
                    })
                }
                step()
            }
            for (g, names) in groups.enumerated() {
                if let rank = try solve(names, gram: sums[g], n: taskGrams[g].n, identical: identical) {
                    pseudoInverse.append((names, rank, taskGrams[g].n))
                }
            }
            if options.plusPlus {
                for t in 0..<tasks {
                    pass.run(states[t], layer: merged.views.layers[l], advance: true, grams: nil)
                    step()
                }
            }
        }

        if let projection {
            let gram = GramAccumulator(n: d), sum = FloatBuffer(count: d * d)
            let post = inputs.prefix + "post_layernorm."
            for t in 0..<tasks {
                for name in [post + "weight", post + "bias", projection] { inputs.load(index[name]!, model: t, into: scratch.pointer(name)) }
                if !identical.contains(projection) {
                    gram.reset()
                    let pooled = pass.pooled(states[t], postLayerNorm: scratch.views.postLayerNorm)
                    GramAccumulator.add([(gram, UnsafePointer(pooled.pointer))], rows: states[t].images, threads: threads)
                    try accumulate(gram, into: sum, model: t, weights: [(scratch.pointer(projection), projection)])
                }
                step()
            }
            if let rank = try solve([projection], gram: sum, n: d, identical: identical) {
                pseudoInverse.append(([projection], rank, d))
            }
        }
        return RegMeanResult(merged: merged, samples: indices.map(\.count), solved: linear.filter { !identical.contains($0) },
                             identical: linear.filter(identical.contains), pseudoInverse: pseudoInverse)
    }

    /// Finishes model t's Gram G (→ Gₜ′), adds it to `sum` and adds Wₜ·Gₜ′ into the merged slot of
    /// each layer reading that input (`weights`: model t's W in the scratch, and the layer's name).
    func accumulate(_ gram: GramAccumulator, into sum: FloatBuffer, model t: Int,
                    weights: [(UnsafeMutablePointer<Float>, String)]) throws(MergeKitError) {
        guard gram.finish(alpha: options.alpha) else {
            throw MergeKitError(.nonFiniteValue, file: inputs.models[t].checkpoint.path, tensor: weights.first?.1,
                                "the inputs of this layer are not finite on the task's images (the pixels are): the model holds NaN or Inf, or overflows",
                                fix: "Check the model's weights with \(term: .finitenessScan)")
        }
        let n = gram.n
        Float.axpy(1, UnsafeBufferPointer(gram.matrix.buffer), sum.buffer)
        for (w, name) in weights {
            let rows = merged.tensor(named: name)!.shape[0]
            BLAS.$productWorkers.withValue(threads) {
                BLAS.gemm(m: rows, n: n, k: n, a: w, lda: n, b: gram.matrix.pointer, ldb: n, beta: 1, c: merged.pointer(name), ldc: n)
            }
        }
    }

    /// Solves for the merged weights of the layers `names` reading one input (their slots hold
    /// Σₜ Wₜ·Gₜ′), or copies them when every model shares them. Returns the rank when the
    /// pseudo-inverse was used.
    func solve(_ names: [String], gram: FloatBuffer, n: Int, identical: Set<String>) throws(MergeKitError) -> Int? {
        if names.allSatisfy(identical.contains) {
            for name in names { inputs.load(index[name]!, model: 0, into: merged.pointer(name)) }
            return nil
        }
        let rank = try GramSolver.solve(gram: gram.pointer, n: n, rightHandSides: names.map { (merged.pointer($0), merged.tensor(named: $0)!.shape[0]) },
                                        tensors: names, policy: options.singular)
        // A layer every model shares keeps its exact bytes (the solve reproduces it up to rounding).
        for name in names where identical.contains(name) { inputs.load(index[name]!, model: 0, into: merged.pointer(name)) }
        return rank
    }

    /// Every tensor outside `skipping`: the mean of the models' values, or θ₀ + λ·Σₜ (θₜ − θ₀), in
    /// double precision and rounded once; a tensor every model shares is copied when averaging.
    func mergeOthers(skipping: Set<String>) {
        let tasks = inputs.tasks
        for (i, tensor) in inputs.layout.enumerated() where !skipping.contains(tensor.name) {
            let target = merged.pointer(tensor.name)
            if options.others == .average && inputs.isIdenticalAcrossModels(i) {
                inputs.load(i, model: 0, into: target)
                continue
            }
            var sum = [Double](repeating: 0, count: tensor.count)
            var values = [Float](repeating: 0, count: tensor.count)
            var base = [Float]()
            if case .taskArithmetic = options.others {
                base = values
                inputs.load(i, model: nil, into: &base)
            }
            for t in 0..<tasks {
                inputs.load(i, model: t, into: &values)
                if base.isEmpty {
                    for k in 0..<tensor.count { sum[k] += Double(values[k]) }
                } else {
                    for k in 0..<tensor.count { sum[k] += Double(values[k]) - Double(base[k]) }
                }
            }
            switch options.others {
            case .average:
                for k in 0..<tensor.count { target[k] = Float(sum[k] / Double(tasks)) }
            case .taskArithmetic(let scale):
                for k in 0..<tensor.count { target[k] = Float(Double(base[k]) + Double(scale) * sum[k]) }
            }
        }
    }
}
