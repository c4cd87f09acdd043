import Dispatch
import Foundation
import Synchronization

extension LoRAExtraction {
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
        let threads = try workers(threads: max(1, min(ThreadCount.resolved(requested), targets.count)),
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
