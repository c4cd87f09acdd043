/// The shared implementation behind task arithmetic, TIES, DARE, DELLA and Breadcrumbs: each is a
/// configuration of the same per-element pipeline, not a copy of it.
///
/// For every input i, on its task vector τᵢ:
/// 1. **sparsify** τᵢ → τ̃ᵢ: nothing; a whole-model magnitude trim (paper TIES); an exact
///    per-tensor top-k (mergekit TIES); a rank window dropping outliers and small values
///    (Breadcrumbs); DARE's random drop with rescaling by 1/(1 − p) or to the tensor's L1 norm; or
///    DELLA's drop with probabilities ranked by magnitude within each row;
/// 2. **weight**: dᵢ = wᵢ τ̃ᵢ;
/// 3. **consensus** (optional): elect s = sign(Σᵢ dᵢ) per element. `mass` resolves s = 0 with
///    the sign of Σ s over the whole model (the TIES paper's code); `weighted` takes s = + (mergekit);
/// 4. **aggregate** the dᵢ that agree with s (sign(dᵢ) = s, zeros never agree; all dᵢ without
///    consensus): `sum`, `mean` (÷ the number of agreeing entries, at least 1), `max` (s·max|dᵢ|),
///    or `normalized` (÷ Σ of the agreeing wᵢ, 1 when that is 0 — mergekit's `normalize`);
/// 5. **scale** by λ.
///
/// NaN inputs propagate through sums; NaN never "agrees" with a sign, so consensus methods drop it.
public struct TaskVectorMerge: Sendable {
    public enum Sparsification: Sendable, Equatable {
        case none
        /// Keep |τ| ≥ the (d − int(d·keep))-th smallest |τ| over the whole model; ties kept.
        case globalMagnitude(keep: Double)
        /// Keep exactly max(1, ⌊density·n⌋) largest |τ| per tensor (among equals, earliest first).
        /// One density per input (mergekit's per-model `density`), or one for all.
        case tensorTopK(density: PerInput)
        /// Drop the ⌊γ·n⌋ largest |τ| and the smallest, keeping ⌊density·n⌋ per tensor (ranks from
        /// a stable ascending sort: among equals, earlier elements rank lower).
        case tensorOutliers(density: PerInput, gamma: PerInput)
        /// Drop each element with probability p (seeded; one p per input or one for all), then rescale.
        case random(DropMasks, rescale: Rescale)
        /// Keep each element with a probability that grows with its magnitude rank in its row
        /// (DELLA's MagPrune), then rescale (`inverse`: ÷ the element's keep probability).
        case magnitudeRandom(MagnitudeDropMasks, rescale: Rescale)
    }

    /// A parameter given once for all inputs or once per input.
    public struct PerInput: Sendable, Equatable, CustomStringConvertible, ExpressibleByFloatLiteral, ExpressibleByIntegerLiteral {
        public init(floatLiteral value: Double) { values = [value] }
        public init(integerLiteral value: Int) { values = [Double(value)] }
        public let values: [Double]
        public init(_ value: Double) { values = [value] }
        public init(_ values: [Double]) {
            precondition(!values.isEmpty)
            self.values = values
        }
        public subscript(input: Int) -> Double { values.count == 1 ? values[0] : values[input] }
        public var description: String { values.count == 1 ? "\(values[0])" : "\(values)" }
        var json: JSONValue { values.count == 1 ? .double(values[0]) : .array(values.map { .double($0) }) }
    }

    public enum Rescale: String, Sendable, CaseIterable {
        /// × 1/(1 − p), the DARE paper's rescaling (expected value preserved).
        case inverse
        /// × Σ|τ| / Σ|τ̃| per tensor, mergekit's rescaling (L1 norm preserved exactly).
        case l1
        /// No rescaling (mergekit's `rescale: false`).
        case none
    }

    public enum Consensus: String, Sendable, CaseIterable {
        case none, mass, weighted
    }

    public enum Aggregation: String, Sendable, CaseIterable {
        case sum, mean, max, normalized
    }

    public let sparsification: Sparsification
    public let consensus: Consensus
    public let aggregation: Aggregation
    /// λ.
    public let scale: Double

    init(sparsification: Sparsification, consensus: Consensus, aggregation: Aggregation, scale: Double) {
        self.sparsification = sparsification
        self.consensus = consensus
        self.aggregation = aggregation
        self.scale = scale
    }

    var statistics: StatisticsRequest {
        var request = StatisticsRequest()
        switch sparsification {
        case .none:
            break
        case .globalMagnitude(let keep):
            request.globalKeepFraction = keep
        case .tensorTopK(let densities):
            request.tensorRankWindow = { n, input in
                let density = densities[input]
                guard density < 1, n > 0 else { return 0..<n }
                let k = Swift.max(1, Int(density * Double(n)))
                return (n - k)..<n
            }
            request.tensorRankTiesEarlierHigher = true
        case .tensorOutliers(let densities, let gammas):
            request.tensorRankWindow = { n, input in
                let density = densities[input], gamma = gammas[input]
                guard density < 1 else { return 0..<n }
                let target = Int(density * Double(n))
                let top = Int(gamma * Double(n))
                let bottom = Swift.max(0, n - target - top)
                return bottom..<Swift.min(n, bottom + target)
            }
        case .random(let masks, let rescale):
            if rescale == .l1 { request.tensorDropL1 = masks }
        case .magnitudeRandom(let masks, let rescale):
            if rescale == .l1 { request.tensorDropL1 = masks }
        }
        request.majoritySign = consensus == .mass
        if consensus == .mass { request.tieSign = { [self] in tieSign(majority: $0) } }
        return request
    }

    func validate(weights: [Double]) throws(MergeKitError) {
        var perInput: [(String, PerInput)] = []
        switch sparsification {
        case .tensorTopK(let d): perInput = [("density", d)]
        case .tensorOutliers(let d, let g): perInput = [("density", d), ("gamma", g)]
        case .random(let masks, _): perInput = [("drop rate", masks.probabilities)]
        case .magnitudeRandom(let masks, _): perInput = [("density", masks.densities), ("epsilon", masks.epsilons)]
        default: break
        }
        for (name, values) in perInput where values.values.count != 1 && values.values.count != weights.count {
            throw MergeKitError(.invalidArgument, "\(values.values.count) values of \(name) for \(weights.count) inputs",
                fix: "Give one \(name) per input, or one for all")
        }
        if consensus == .none && aggregation == .normalized {
            let total = weights.reduce(0, +)
            if abs(total) < 1e-12 {
                throw MergeKitError(.invalidArgument,
                    "the weights \(weights) sum to 0, so the normalised average Σwᵢθᵢ/Σwᵢ is undefined",
                    fix: "Change the weights, or turn normalisation off")
            }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    /// The merged τ of one chunk before step 5: the executor multiplies it by λ (`lambda`).
    func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], weights: [T],
                                 into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        if let narrow = context.rounding {
            combineRounded(deltas, weights: weights, into: out, context: context, narrow: narrow)
            return
        }
        for (i, delta) in deltas.enumerated() {
            sparsify(delta, input: i, context: context)
            // Without consensus the weights fold into the accumulation below.
            if consensus != .none && weights[i] != 1 { T.scal(weights[i], delta) }
        }
        switch consensus {
        case .none:
            // τ = Σ (wᵢ / D) τ̃ᵢ with D = Σwᵢ when normalised, else 1.
            let denominator: T = aggregation == .normalized ? weights.reduce(0, +) : 1
            out.initialize(repeating: 0)
            for (delta, weight) in zip(deltas, weights) {
                T.axpy(weight / denominator, UnsafeBufferPointer(delta), out)
            }
        case .mass, .weighted:
            electAndMerge(deltas, weights: weights, into: out, context: context)
        }
    }

    /// `combine` as mergekit computes it in a 16-bit `dtype` (`ComputeDType`; the τᵢ arrive
    /// rounded to it): every elementwise result is rounded to `narrow`, sums over the inputs
    /// accumulate in Float and round once (PyTorch's reductions), in this order:
    /// 1. τ̃ᵢ = sparsified τᵢ (a rescaled drop rounds its product: `sparsify`);
    /// 2. dᵢ = wᵢτ̃ᵢ with wᵢ rounded to `narrow` (mergekit's weights tensor has the deltas' dtype);
    /// 3. without consensus: τ = Σ dᵢ, normalised: τ / D with D = Σ wᵢ (1 when |D| < 1e-8);
    ///    with consensus: S = Σ dᵢ, s = + where S ≥ 0 (−0 included), τ = Σ of the dᵢ agreeing
    ///    with s, normalised: τ / D with D = Σ of the agreeing wᵢ (1 where 0).
    /// λ and θ₀ follow in `MergeWorker.finish`. The paper's aggregations (mean, max, the mass vote)
    /// round their result the same way.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    private func combineRounded<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], weights: [T],
                                                into out: UnsafeMutableBufferPointer<T>, context: ChunkContext, narrow: DType) {
        let rounded = weights.map { T.roundedToNarrow($0, narrow) }
        for (i, delta) in deltas.enumerated() {
            sparsify(delta, input: i, context: context)
            if rounded[i] != 1 {
                T.scal(rounded[i], delta)
                T.roundToNarrow(delta, narrow)
            }
        }
        switch consensus {
        case .none:
            out.initialize(repeating: 0)
            for delta in deltas { T.axpy(1, UnsafeBufferPointer(delta), out) }
            T.roundToNarrow(out, narrow)
            if aggregation == .normalized {
                var divisor = T.roundedToNarrow(rounded.reduce(0, +), narrow)
                if abs(divisor) < T(1e-8) { divisor = 1 }
                for k in out.indices { out[k] = out[k] / divisor }
                T.roundToNarrow(out, narrow)
            }
        case .mass, .weighted:
            // The vote sees S rounded (a sum that underflows to −0 votes +, as in mergekit).
            electAndMerge(deltas, weights: rounded, into: out, context: context, narrow: narrow)
        }
    }

    /// Sign election and disjoint merge, input by input over whole chunks (branch-free kernels).
    ///
    /// A vote sum S elects + when S > 0 and − when S < 0 or S is NaN (mergekit's `S >= 0` is false
    /// for NaN, and the paper's `where(sign > 0, τ > 0, τ < 0)` keeps negatives). S = 0 is + for the
    /// weighted vote (mergekit) and takes the model-wide majority for the mass vote (the paper):
    /// see `tieSign`. The executor merges with a predicted majority, counts the real vote, and
    /// merges again in the rare case the prediction was wrong and mattered.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    /// Under a 16-bit compute dtype, `narrow`: the vote sum, the agreeing sum and the agreeing
    /// weights are each rounded to it once accumulated, and so is the quotient (`combineRounded`).
    private func electAndMerge<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], weights: [T],
                                               into out: UnsafeMutableBufferPointer<T>, context: ChunkContext, narrow: DType? = nil) {
        let tie: T = consensus == .weighted ? 1 : T(tieSign(majority: context.model.majority ?? 1))
        if narrow == nil, T.self == Float.self, aggregation != .max {
            // Float without compute-dtype rounding (the usual merge): the same steps in one pass.
            var resolved = 0
            let votes = BLAS.tiesMerge(deltas as! [UnsafeMutableBufferPointer<Float>],
                                       increments: weights.map { aggregation == .normalized ? $0 as! Float : 1 },
                                       aggregation: aggregation == .sum ? 0 : aggregation == .mean ? 1 : 2, tie: tie as! Float,
                                       into: out as! UnsafeMutableBufferPointer<Float>, resolved: &resolved)
            if consensus == .mass {
                context.signVotes += votes
                context.resolvedTies += resolved
            }
            return
        }
        let n = out.count
        let zero = T.zero
        let total: UnsafeMutableBufferPointer<T> = context.scratch(0, count: n)
        let count: UnsafeMutableBufferPointer<T> = context.scratch(1, count: n)
        let sign: UnsafeMutableBufferPointer<T> = context.scratch(2, count: n)
        total.initialize(repeating: zero)
        for delta in deltas { T.axpy(1, UnsafeBufferPointer(delta), total) }
        if let narrow { T.roundToNarrow(total, narrow) }
        let votes = T.electSigns(UnsafeBufferPointer(total), into: sign, tie: tie)
        out.initialize(repeating: zero)
        count.initialize(repeating: zero)
        for (delta, weight) in zip(deltas, weights) {
            switch aggregation {
            case .sum, .mean, .normalized:
                // `count` holds the number of agreeing entries (mean) or their weights (normalized).
                T.accumulateAgreeing(UnsafeBufferPointer(delta), sign: UnsafeBufferPointer(sign), out: out, count: count,
                                     increment: aggregation == .normalized ? weight : 1)
            case .max:
                T.maximumAgreeing(UnsafeBufferPointer(delta), sign: UnsafeBufferPointer(sign), out: out)
            }
        }
        if let narrow {
            T.roundToNarrow(out, narrow)
            T.roundToNarrow(count, narrow)
        }
        switch aggregation {
        case .sum: break
        case .mean: T.divideByCount(out, count: UnsafeBufferPointer(count), scale: 1)
        case .normalized: T.divideByWeights(out, weights: UnsafeBufferPointer(count), scale: 1)
        case .max: T.applySign(out, sign: UnsafeBufferPointer(sign), scale: 1)
        }
        if let narrow, aggregation == .mean || aggregation == .normalized { T.roundToNarrow(out, narrow) }
        if consensus == .mass {
            context.signVotes += votes
            context.resolvedTies += T.countResolvedTies(UnsafeBufferPointer(total), out: UnsafeBufferPointer(out))
        }
    }

    /// The sign an exact vote tie takes under a mass vote, given the model-wide majority: the
    /// majority's sign, except that a zero majority keeps negatives for `sum`/`mean`/`normalized`
    /// (the reference's `where(sign > 0, τ > 0, τ < 0)`) and yields 0 for `max` (0·max|τ|).
    func tieSign(majority: Int) -> Int {
        majority > 0 ? 1 : (majority < 0 || aggregation != .max ? -1 : 0)
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    private func sparsify<T: MergeScalar>(_ delta: UnsafeMutableBufferPointer<T>, input: Int, context: ChunkContext) {
        switch sparsification {
        case .none:
            break
        case .globalMagnitude:
            let threshold = context.model.thresholdKeys![input]
            T.zeroBelow(delta, key: threshold, wide: context.model.thresholdKeysAreWide)
        case .tensorTopK, .tensorOutliers:
            context.tensorStatistics.windows[input].apply(delta)
        case .random(let masks, let rescale):
            let mask = masks.mask(for: input)
            mask.apply(delta, tensor: context.tensor, input: input, offset: context.elementOffset, bits: context.bitsScratch)
            let factor: Double
            switch rescale {
            case .none:
                factor = 1
            case .inverse:
                factor = 1 / (1 - mask.probability)
            case .l1:
                // mergekit's rule: no rescaling when either norm is below 1e-7.
                let (before, after) = context.tensorStatistics.dropL1[input]
                factor = before < 1e-7 || after < 1e-7 ? 1 : before / after
            }
            if let narrow = context.rounding, rescale == .l1 {
                Self.rescaleRounded(delta, before: context.tensorStatistics.dropL1[input], narrow: narrow)
            } else if factor != 1 {
                T.scal(T(factor), delta)
                if let narrow = context.rounding { T.roundToNarrow(delta, narrow) }
            }
        case .magnitudeRandom(let masks, let rescale):
            let kept = context.tensorStatistics.kept
            if rescale == .l1 && !kept.isEmpty {
                // The statistics pass ranked the rows and kept its decisions.
                kept[input].withUnsafeBufferPointer { bits in
                    let offset = context.elementOffset
                    for k in delta.indices {
                        let j = offset + k, v = delta[k]
                        delta[k] = (bits[j >> 6] >> UInt64(j & 63)) & 1 == 0 ? 0 : v
                    }
                }
            } else {
                masks.apply(delta, input: input, offset: context.elementOffset, context: context, inverse: rescale == .inverse)
            }
            if let narrow = context.rounding {
                if rescale == .l1 {
                    Self.rescaleRounded(delta, before: context.tensorStatistics.dropL1[input], narrow: narrow)
                } else {
                    T.roundToNarrow(delta, narrow)
                }
            } else if rescale == .l1 {
                let (before, after) = context.tensorStatistics.dropL1[input]
                if !(before < 1e-7 || after < 1e-7) && before != after { T.scal(T(before / after), delta) }
            }
        }
    }

    /// mergekit's L1 rescaling of a dropped τ̃ in a 16-bit `dtype`: for float16 it works in
    /// float32 (the norms Σ|τ| and Σ|τ̃| and their quotient are Floats, τ̃·q is rounded to float16
    /// once), for bfloat16 in bfloat16 (the norms, the quotient and τ̃·q each rounded to it). No
    /// rescaling when either norm is below 1e-7.
    private static func rescaleRounded<T: MergeScalar>(_ delta: UnsafeMutableBufferPointer<T>, before norms: (before: Double, after: Double),
                                                       narrow: DType) {
        var before = Float(norms.before), after = Float(norms.after)
        if narrow == .BF16 {
            before = Float.roundedToNarrow(before, narrow)
            after = Float.roundedToNarrow(after, narrow)
        }
        if !(Double(before) < 1e-7 || Double(after) < 1e-7) {
            var factor = before / after
            if narrow == .BF16 { factor = Float.roundedToNarrow(factor, narrow) }
            T.scal(T(factor), delta)
        }
        T.roundToNarrow(delta, narrow)
    }

    /// Runs `combine` needs whole (`MergeMethod.chunkAlignment`): DELLA's rows.
    func chunkAlignment(shape: [Int]) -> Int {
        if case .magnitudeRandom = sparsification { return MagnitudeDropMasks.layout(shape).run }
        return 1
    }

    var parameters: [JSONMember] {
        var members: [JSONMember] = []
        switch sparsification {
        case .none: break
        case .globalMagnitude(let keep):
            members += [JSONMember("trim_scope", .string("global")), JSONMember("density", .double(keep))]
        case .tensorTopK(let density):
            members += [JSONMember("trim_scope", .string("tensor")), JSONMember("density", density.json)]
        case .tensorOutliers(let density, let gamma):
            members += [JSONMember("density", density.json), JSONMember("gamma", gamma.json)]
        case .random(let masks, let rescale):
            members += [JSONMember("drop_rate", masks.probabilities.json), JSONMember("seed", .int(Int(truncatingIfNeeded: masks.seed))),
                        JSONMember("rescale", .string(rescale.rawValue))]
        case .magnitudeRandom(let masks, let rescale):
            members += [JSONMember("density", masks.densities.json), JSONMember("epsilon", masks.epsilons.json),
                        JSONMember("seed", .int(Int(truncatingIfNeeded: masks.seed))), JSONMember("rescale", .string(rescale.rawValue))]
        }
        if consensus != .none { members.append(JSONMember("vote", .string(consensus.rawValue))) }
        if consensus != .none || aggregation == .normalized { members.append(JSONMember("merge", .string(aggregation.rawValue))) }
        members.append(JSONMember("scale", .double(scale)))
        return members
    }
}

/// Methods that are configurations of `TaskVectorMerge` forward to it.
protocol TaskVectorMergeConfiguration: MergeMethod {
    var core: TaskVectorMerge { get }
}

extension TaskVectorMergeConfiguration {
    public var parameters: [JSONMember] { core.parameters }
    public var statistics: StatisticsRequest { core.statistics }
    public func validate(weights: [Double]) throws(MergeKitError) { try core.validate(weights: weights) }
    public func combine<T: MergeScalar>(_ deltas: [UnsafeMutableBufferPointer<T>], base: UnsafeBufferPointer<T>,
                                        weights: [T], into out: UnsafeMutableBufferPointer<T>, context: ChunkContext) {
        core.combine(deltas, weights: weights, into: out, context: context)
    }
    public var lambda: Double? { core.scale }
    public func chunkAlignment(shape: [Int]) -> Int { core.chunkAlignment(shape: shape) }
    public var roundsTaskVectors: Bool { true }
}

/// Weight checks shared by the methods that set their own per-task coefficients.
enum ParameterCheck {
    /// Exactly one input (besides the base), weighing 1: the methods mergekit gives one model.
    static func oneModel(_ weights: [Double], method: String, what: String = "takes exactly one model") throws(MergeKitError) {
        guard weights.count == 1 else {
            throw MergeKitError(.invalidArgument, "\(method) \(what), got \(weights.count)", fix: "Give the base and one model")
        }
        try unitWeights(weights, method: method)
    }

    static func unitWeights(_ weights: [Double], method: String) throws(MergeKitError) {
        guard weights.allSatisfy({ $0 == 1 }) else {
            throw MergeKitError(.invalidArgument, "\(method) sets its own per-task coefficients; got weights \(weights)",
                fix: "Leave every weight at 1 for \(method)")
        }
    }
}

extension TaskVectorMerge.Rescale: MethodChoice {}
extension TaskVectorMerge.Consensus: MethodChoice {}
extension TaskVectorMerge.Aggregation: MethodChoice {}
