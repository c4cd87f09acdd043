/// Memory estimates of the engine's commands, made from a config and the command's settings
/// before anything large is allocated, and the decision they feed: run, run with a smaller batch,
/// or refuse with the estimate and the way out.
///
/// An estimate is the sum of what the command holds at its peak: the parameters and the copies it
/// makes of them (AdamW's moments, per-shard gradients, task vectors, a copy being loaded — counted
/// as held throughout, a slight overestimate), the activations of one batch (every buffer of the
/// shard passes alive at once — all of them for a gradient, one per thread at work otherwise —
/// measured exactly by building the passes on a measuring `Workspace`), and the
/// batch's pixels, embeddings and logits. It leaves out the process itself, OpenBLAS's buffers and
/// the memory-mapped inputs (their pages are the kernel's to evict).
///
/// Policy (`batch`): when the estimate exceeds the budget (`MemoryBudget`) and the user did not
/// choose the batch size, `eval` and `disentanglement` use the largest batch that fits — their
/// results do not depend on it — and say so; a chosen batch size, and `finetune`'s and `wemoe-train`'s,
/// whose batch is part of the recipe, are never changed: the command refuses, naming the estimate,
/// the budget and the largest batch that fits.
public enum EngineMemory {
    // MARK: Saturating arithmetic

    static func sum(_ a: Int, _ b: Int) -> Int {
        let (s, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : s
    }

    static func product(_ factors: Int...) -> Int {
        var result = 1
        for factor in factors {
            let (p, overflow) = result.multipliedReportingOverflow(by: max(0, factor))
            if overflow { return .max }
            result = p
        }
        return result
    }

    // MARK: Passes

    /// Shards up to this size are measured; beyond it every buffer grows linearly with the shard
    /// (WEMoE's mixing chunk is full), so the last step is extrapolated.
    static let measuredShard = 64

    /// Floats of one shard of `size` images: `measure(size)` up to `measuredShard`, extrapolated
    /// (saturating) beyond, so that a huge shard is never built even on a measuring workspace.
    static func perShard(_ size: Int, _ measure: (Int) -> Int) -> Int {
        guard size > measuredShard else { return size > 0 ? measure(size) : 0 }
        let top = measure(measuredShard), step = top - measure(measuredShard - 1)
        return sum(top, product(size - measuredShard, step))
    }

    /// The shards a pass splits `batch` images into (`EngineParallelism.images`, as
    /// `CLIPVisionModel.shardRanges`): `count` near-equal shards (by default
    /// `CLIPVisionModel.shardCount(batch:)`), whatever the thread count, as (size, how many), the larger first.
    static func shards(batch: Int, count: Int? = nil) -> [(size: Int, count: Int)] {
        let count = count ?? CLIPVisionModel.shardCount(batch: batch)
        let (q, r) = batch.quotientAndRemainder(dividingBy: count)
        return [(q + 1, r), (q, count - r)].filter { $0.count > 0 && $0.size > 0 }
    }

    /// Σ over every shard of a gradient pass (`CLIPVisionModel.gradientShardRanges`) of
    /// `floats(size)`: the gradient pass keeps every shard's activations.
    static func overShards(_ c: CLIPVisionConfig, batch: Int, _ floats: (Int) -> Int) -> Int {
        shards(batch: batch, count: gradientShards(c, batch: batch)).reduce(0) { sum($0, product($1.count, perShard($1.size, floats))) }
    }

    /// The shards of a gradient pass of `batch` images (`CLIPVisionModel.gradientShardCount`).
    static func gradientShards(_ c: CLIPVisionConfig, batch: Int) -> Int {
        CLIPVisionModel.gradientShardCount(batch: batch, tokens: c.numTokens)
    }

    /// Σ of `floats(size)` over the shards alive at once in a pass that builds each shard's buffers
    /// when a thread takes it (forward, JVP): the min(threads, shards) largest.
    static func inFlight(batch: Int, threads: Int, _ floats: (Int) -> Int) -> Int {
        var left = max(1, threads), total = 0
        for (size, count) in shards(batch: batch) where left > 0 {
            total = sum(total, product(min(count, left), perShard(size, floats)))
            left -= min(count, left)
        }
        return total
    }

    /// A forward pass for inference (`CLIPVisionModel.forward`).
    static func forwardFloats(_ c: CLIPVisionConfig, _ batch: Int) -> Int {
        ShardPass(c, batch: batch, keepActivations: false, workspace: Workspace(measuring: true)).workspace.floatCount
    }

    /// A JVP: the primal and tangent passes and the tangent's attention scratch (`CLIPVisionModel.jvp`).
    static func jvpFloats(_ c: CLIPVisionConfig, _ batch: Int) -> Int {
        let primal = ShardPass(c, batch: batch, keepActivations: false, workspace: Workspace(measuring: true))
        let tangent = ShardPass(c, batch: batch, keepActivations: false, tangent: true, workspace: Workspace(measuring: true))
        _ = EncoderScratch(primal.workspace, primal.shape, backward: false)
        return sum(primal.workspace.floatCount, tangent.workspace.floatCount)
    }

    /// A forward pass keeping every activation, then the backward pass's buffers
    /// (`CLIPVisionModel.backward`: ∂pooled, ∂class tokens, ∂stream, the layers' scratch,
    /// ∂embedded and, for the input gradient, ∂patches).
    static func gradientFloats(_ c: CLIPVisionConfig, _ batch: Int, inputGradient: Bool) -> Int {
        let pass = ShardPass(c, batch: batch, keepActivations: true, workspace: Workspace(measuring: true))
        _ = EncoderScratch(pass.workspace, pass.shape, backward: true)
        let d = c.hiddenSize, rows = pass.shape.rows
        let extra = 2 * batch * d + 2 * rows * d + (inputGradient ? batch * c.numPatches * c.patchInputs : 0)
        return sum(pass.workspace.floatCount, extra)
    }

    /// A WEMoE forward pass with per-image routing, and the shard's routing record.
    static func wemoeForwardFloats(_ c: CLIPVisionConfig, experts: Int, routerDepth: Int, _ batch: Int) -> Int {
        let pass = WEMoEShardPass(c, experts: experts, routerDepth: routerDepth, batch: batch, keepActivations: false, backward: false,
                                  chunk: WEMoEModel.defaultMixingChunk, workspace: Workspace(measuring: true))
        return sum(pass.pass.workspace.floatCount, c.numHiddenLayers * batch * experts)
    }

    /// A WEMoE training step's pass (batch-reduced routing, keeping activations, backward to the
    /// routers; `WEMoEModel.backward`'s ∂pooled, ∂class tokens and ∂stream).
    static func wemoeTrainingFloats(_ c: CLIPVisionConfig, experts: Int, routerDepth: Int, _ batch: Int) -> Int {
        let pass = WEMoEShardPass(c, experts: experts, routerDepth: routerDepth, batch: batch, keepActivations: true, backward: true,
                                  chunk: 1, workspace: Workspace(measuring: true))
        return sum(pass.pass.workspace.floatCount, 2 * batch * c.hiddenSize + pass.pass.shape.rows * c.hiddenSize)
    }

    /// Floats of a WEMoE model's expert stacks and routers beyond the merged encoder.
    static func wemoeFloats(_ c: CLIPVisionConfig, experts: Int, routerDepth: Int) -> (stacks: Int, routers: Int) {
        let d = c.hiddenSize, f = c.intermediateSize
        let stacks = product(c.numHiddenLayers, experts + 1, sum(product(2, f, d), f + d))
        let routers = product(c.numHiddenLayers, WEMoEParameters.routerSize(depth: routerDepth, width: d, experts: experts))
        return (stacks, routers)
    }

    // MARK: Commands

    /// `eval` of an encoder of `form` on batches of `batch` images with `classes` classes.
    public static func evaluation(config c: CLIPVisionConfig, hasProjection: Bool, form: EncoderCheckpoint.Form,
                                  batch: Int, threads: Int, classes: Int) -> MemoryEstimate {
        let p = CLIPVisionParameters.parameterCount(c, projection: hasProjection) ?? .max
        let e = hasProjection ? c.projectionDim : c.hiddenSize
        var estimate = MemoryEstimate()
        let images = "a batch of \(counted(batch, "image"))"
        switch form {
        case .plain:
            estimate.add("parameters", floats: p)
            estimate.add("activations of \(images)", floats: inFlight(batch: batch, threads: threads) { forwardFloats(c, $0) })
        case .linearized:
            estimate.add("parameters (θ₀, θ and θ − θ₀)", floats: product(3, p))
            estimate.add("activations and tangents of \(images)", floats: inFlight(batch: batch, threads: threads) { jvpFloats(c, $0) })
            estimate.add("tangent embeddings", floats: product(batch, e))
        case .wemoe(let experts, let depth):
            let (stacks, routers) = wemoeFloats(c, experts: experts, routerDepth: depth)
            estimate.add("parameters (merged encoder, \(experts + 1) MLPs per layer, routers)", floats: sum(sum(p, stacks), routers))
            estimate.add("activations of \(images)", floats: inFlight(batch: batch, threads: threads) {
                wemoeForwardFloats(c, experts: experts, routerDepth: depth, $0)
            })
            estimate.add("routing weights", floats: product(2, c.numHiddenLayers, batch, experts))
        }
        estimate.add("pixels, embeddings and logits of the batch", floats: product(batch, sum(sum(c.pixelsPerImage, product(2, e)), classes)))
        return estimate
    }

    /// `finetune` with batches of `batch` images (ordinary or linearized).
    public static func fineTuning(config c: CLIPVisionConfig, hasProjection: Bool, linearized: Bool,
                                  batch: Int, threads: Int, classes: Int) -> MemoryEstimate {
        let p = CLIPVisionParameters.parameterCount(c, projection: hasProjection) ?? .max
        let e = hasProjection ? c.projectionDim : c.hiddenSize
        // The sum and one scratch set per thread at work (`ShardGradientSum`).
        let gradientSets = 1 + min(max(1, threads), gradientShards(c, batch: batch))
        var estimate = MemoryEstimate()
        estimate.add(linearized ? "parameters (θ₀, θ, θ − θ₀ and AdamW's two moments)" : "parameters (θ and AdamW's two moments)",
                     floats: product(linearized ? 5 : 3, p))
        estimate.add("gradients (the sum and one set per thread at work, \(gradientSets) sets)", floats: product(gradientSets, p))
        var activations = overShards(c, batch: batch) { gradientFloats(c, $0, inputGradient: false) }
        if linearized { activations = max(activations, inFlight(batch: batch, threads: threads) { jvpFloats(c, $0) }) }
        estimate.add("activations of a batch of \(batch)", floats: activations)
        estimate.add("pixels, embeddings, logits and their gradients",
                     floats: product(batch, sum(sum(c.pixelsPerImage, product(linearized ? 6 : 5, e)), product(3, classes))))
        return estimate
    }

    /// `wemoe`: the base, the merged encoder, one expert and its task vector at a time, the stacks and routers.
    public static func upscaling(config c: CLIPVisionConfig, hasProjection: Bool, experts: Int, routerDepth: Int) -> MemoryEstimate {
        let p = CLIPVisionParameters.parameterCount(c, projection: hasProjection) ?? .max
        let (stacks, routers) = wemoeFloats(c, experts: experts, routerDepth: routerDepth)
        var estimate = MemoryEstimate()
        estimate.add("the base, the merged encoder, one expert and its task vector", floats: product(4, p))
        estimate.add("\(experts + 1) MLPs per layer and the routers", floats: sum(stacks, routers))
        return estimate
    }

    /// `wemoe-train` with batches of `batch` images per task.
    public static func routerTraining(config c: CLIPVisionConfig, hasProjection: Bool, experts: Int, routerDepth: Int,
                                      batch: Int, classes: Int) -> MemoryEstimate {
        let p = CLIPVisionParameters.parameterCount(c, projection: hasProjection) ?? .max
        let e = hasProjection ? c.projectionDim : c.hiddenSize
        let (stacks, routers) = wemoeFloats(c, experts: experts, routerDepth: routerDepth)
        var estimate = MemoryEstimate()
        estimate.add("parameters (merged encoder, \(experts + 1) MLPs per layer)", floats: sum(p, stacks))
        estimate.add("routers, their gradients and Adam's moments", floats: product(6, routers))
        estimate.add("activations of a batch of \(batch)", floats: wemoeTrainingFloats(c, experts: experts, routerDepth: routerDepth, batch))
        estimate.add("pixels, embeddings, logits and their gradients",
                     floats: product(batch, sum(sum(c.pixelsPerImage, product(5, e)), product(3, classes))))
        return estimate
    }

    /// `disentanglement` of two tasks with `images[t]` images and `classes[t]` classes each.
    public static func disentanglement(config c: CLIPVisionConfig, hasProjection: Bool, linearized: Bool, batch: Int, threads: Int,
                                       images: [Int], classes: [Int]) -> MemoryEstimate {
        let p = CLIPVisionParameters.parameterCount(c, projection: hasProjection) ?? .max
        let e = hasProjection ? c.projectionDim : c.hiddenSize
        var estimate = MemoryEstimate()
        estimate.add("parameters (θ₀, two task vectors, and the copies made loading one or perturbing θ₀)", floats: product(6, p))
        if linearized {
            estimate.add("activations and tangents of a batch of \(batch)", floats: inFlight(batch: batch, threads: threads) { jvpFloats(c, $0) })
        } else {
            estimate.add("activations of a batch of \(batch)", floats: inFlight(batch: batch, threads: threads) { forwardFloats(c, $0) })
        }
        let perImage = sum(product(linearized ? 5 : 2, e), classes.max() ?? 0)
        estimate.add("embeddings\(linearized ? ", tangents" : "") and logits of a dataset", floats: product(images.max() ?? 0, perImage))
        estimate.add("pixels and embeddings of the batch", floats: product(batch, sum(c.pixelsPerImage, product(2, e))))
        return estimate
    }

    // MARK: Decisions

    /// The batch to run with. `estimate(b)` is the command's estimate with batches of b (it grows
    /// with b). Without a budget, or when `requested` fits, `requested`. Otherwise, when the user
    /// did not choose it (`chosen` false), the largest batch that fits; else an error naming the
    /// estimate, the budget and the largest batch that fits (or that none does).
    public static func batch(_ requested: Int, chosen: Bool, command: String, budget: MemoryBudget?,
                             estimate: (Int) -> MemoryEstimate) throws(MergeKitError) -> Int {
        guard let budget, requested >= 1 else { return requested }
        let needed = estimate(requested)
        if needed.bytes <= budget.bytes { return requested }
        // The largest b < requested that fits: estimates grow with b, so bisect.
        var low = 0, high = requested
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if estimate(mid).bytes <= budget.bytes { low = mid } else { high = mid }
        }
        if low >= 1 && !chosen { return low }
        let fix: MergeKitError.Text = low >= 1
            ? "\(term: .batchSizeAtMost(low).atStart), or free memory; \(MemoryBudget.variable)=SIZE sets the budget"
            : "Even a batch of 1 needs \(MemoryEstimate.format(estimate(1).bytes)): run on a machine with more memory, or set \(MemoryBudget.variable)=SIZE if the estimate is too cautious"
        let detail = "\(command) in batches of \(requested) needs about \(needed), "
            + "more than the \(MemoryEstimate.format(budget.bytes)) available (\(budget.source))"
        throw MergeKitError(.insufficientMemory, "\(detail)", fix: fix)
    }

    /// Throws when `estimate` exceeds the budget (a command without a batch).
    public static func check(_ estimate: MemoryEstimate, command: String, budget: MemoryBudget?) throws(MergeKitError) {
        guard let budget, estimate.bytes > budget.bytes else { return }
        throw MergeKitError(.insufficientMemory, "\(command) needs about \(estimate), more than the "
                            + "\(MemoryEstimate.format(budget.bytes)) available (\(budget.source))",
                            fix: "Run on a machine with more memory, or set \(MemoryBudget.variable)=SIZE if the estimate is too cautious")
    }
}
