import Foundation
import Testing
@testable import MergeKit

/// The SVD-based commands (tsv-m, iso-c, extract-lora) on inputs built to break them: matrices
/// too large to decompose or to hold, values at the ends of Float's range, zero task vectors.
@Suite("SVD commands under hostile input")
struct SVDHostileInputTests {
    // MARK: - Memory

    /// A safetensors file whose one F32 tensor has `shape`, its data a hole (ftruncate): any size
    /// costs no disk.
    static func sparseCheckpoint(_ path: String, name: String = "layer.weight", shape: [Int]) throws {
        let layout = SafeTensorsLayout(specs: [TensorSpec(name: name, dtype: .F32, shape: shape)], metadata: ["format": "pt"])
        #expect(FileManager.default.createFile(atPath: path, contents: Data(layout.prefix)))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: UInt64(layout.fileSize))
        try handle.close()
    }

    @Test("A huge matrix (sparse file) is refused before any output, naming the tensor and why; nothing is left in the output's directory or TMPDIR",
          arguments: [[100_000, 100_000], [40_000, 40_000]])
    func hugeMatrixRefused(shape: [Int]) throws {
        let dir = TestSupport.temporaryDirectory("svd-huge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.sparseCheckpoint(dir + "/base.safetensors", shape: shape)
        try Self.sparseCheckpoint(dir + "/ft.safetensors", shape: shape)
        try FileManager.default.createDirectory(atPath: dir + "/tmp", withIntermediateDirectories: false)
        let environment = ["MERGEKIT_MEMORY_BUDGET": "1G", "TMPDIR": dir + "/tmp"]
        let tooManyElements = shape[0] * shape[1] > Int(Int32.max)
        let runs: [(arguments: [String], expected: [String])] = [
            (["tsv-m", "--base", "base.safetensors", "--model", "ft.safetensors", "-o", "out.safetensors"],
             tooManyElements ? ["tsv-m cannot merge this", "2³¹ − 1", "task-arithmetic"] : ["tsv-m needs about", "but 1.0 GB is available"]),
            (["iso-c", "--base", "base.safetensors", "--model", "ft.safetensors", "--threads", "4", "-o", "out"],
             tooManyElements ? ["iso-c cannot merge this", "2³¹ − 1"] : ["iso-c needs about", "GB of memory", "fewer --threads does not help"]),
            (["sweep", "--method", "iso-c", "--base", "base.safetensors", "--model", "ft.safetensors", "--scale", "0.5,1", "-o", "sweep"],
             [tooManyElements ? "cannot merge this" : "needs about"]),
            (["extract-lora", "--base", "base.safetensors", "--model", "ft.safetensors", "--rank", "8", "-o", "adapter"],
             tooManyElements ? ["cannot take its exact SVD", "Pass --randomized"] : ["exact SVD) needs about", "--randomized would still need about"]),
            (["extract-lora", "--base", "base.safetensors", "--model", "ft.safetensors", "--rank", "8", "--randomized", "-o", "adapter"],
             ["randomized SVD) needs about", "τ alone is \(ByteCount.describe(4 * shape[0] * shape[1])) in Float"]),
        ]
        for (arguments, expected) in runs {
            let run = try CLI.run(arguments, in: dir, environment: environment)
            #expect(run.status == 1, "\(arguments[0]): \(run.stderr)")
            #expect(run.stderr.contains("tensor 'layer.weight'"), "\(run.stderr)")
            for text in expected { #expect(run.stderr.contains(text), "\(arguments[0]): no \"\(text)\" in \(run.stderr)") }
            #expect(TestSupport.listing(dir) == ["base.safetensors", "ft.safetensors", "tmp"], "\(arguments[0]) left files behind")
            #expect(TestSupport.listing(dir + "/tmp").isEmpty)
        }
    }

    /// base (zeros) and two models with matrices of these shapes (entries ~0.1) and a bias.
    static func writeModels(_ dir: String, shapes: [[Int]]) throws {
        var rng = SplitMix64(seed: 5)
        var specs = shapes.enumerated().map { TensorSpec(name: "m\($0.offset).weight", dtype: .F32, shape: $0.element) }
        specs.append(TensorSpec(name: "bias", dtype: .F32, shape: [7]))
        for file in ["base", "ft_a", "ft_b"] {
            let tensors = specs.map { spec in (spec, (0..<spec.elementCount).map { _ in file == "base" ? 0 : rng.uniform() * 0.2 - 0.1 }) }
            TestSupport.writeCheckpoint("\(dir)/\(file).safetensors", tensors)
        }
    }

    static func plan(_ dir: String, method: any MergeMethod, output: String) throws -> MergePlan {
        try MergePlan(base: try Checkpoint(path: dir + "/base.safetensors"),
                      inputs: try ["ft_a", "ft_b"].map { MergeInput(kind: .model, checkpoint: try Checkpoint(path: "\(dir)/\($0).safetensors")) },
                      method: method, output: OutputSpec(path: dir + "/" + output))
    }

    @Test("A budget that fits the matrices one at a time merges them one at a time, with the same bytes; below the largest it is refused",
          arguments: ["tsv-m", "iso-c"])
    func budget(method name: String) throws {
        let dir = TestSupport.temporaryDirectory("svd-budget")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeModels(dir, shapes: [[120, 90], [200, 160], [150, 150]])
        let method: any MergeMethod = name == "tsv-m" ? try TSVM() : try IsoC()
        let free = try Self.plan(dir, method: method, output: "free.safetensors")
        _ = try MergeExecutor.run(free, threads: 1, memoryBudget: nil)

        func index(_ name: String) -> Int { free.tensors.firstIndex { $0.name == name }! }
        let bytes = try (0..<3).map { i in try #require(try MergeExecutor.wholeTensorBytes([free], tensor: index("m\(i).weight"))) }
        #expect(try MergeExecutor.wholeTensorBytes([free], tensor: index("bias")) == nil)
        #expect(bytes[1] > bytes[2] && bytes[2] > bytes[0], "\(bytes)")
        // At least the decomposition's copy, U and Vᵀ besides the result: 4× the 200×160 matrix.
        #expect(bytes[1] >= 4 * 4 * 200 * 160)
        let perWorker = MergeExecutor.perWorkerBytes([free])

        // Room for 3 workers and the largest matrix, not for the two largest: one at a time.
        let tight = 3 * perWorker + bytes[1] + bytes[2] - 1
        #expect(try MergeExecutor.memoryPlan([free], threads: 3, budget: tight)
                == MergeExecutor.MemoryPlan(workers: 3, wholeTensorSlots: 1, largestBytes: bytes[1]))
        #expect(try MergeExecutor.memoryPlan([free], threads: 3, budget: tight + 1).wholeTensorSlots == 2)
        #expect(try MergeExecutor.memoryPlan([free], threads: 3, budget: nil).wholeTensorSlots == 3)
        // Room for the largest matrix and 2 workers' buffers only: 2 workers.
        #expect(try MergeExecutor.memoryPlan([free], threads: 3, budget: 2 * perWorker + bytes[1]).workers == 2)
        let gated = try Self.plan(dir, method: method, output: "gated.safetensors")
        _ = try MergeExecutor.run(gated, threads: 3, memoryBudget: tight)
        let a = try Checkpoint(path: dir + "/free.safetensors"), b = try Checkpoint(path: dir + "/gated.safetensors")
        for entry in a.entries {
            let other = try #require(b.entry(named: entry.name))
            #expect(Array(other.file.bytes(of: other.info)) == Array(entry.file.bytes(of: entry.info)), "\(entry.name)")
        }

        let refused = try Self.plan(dir, method: method, output: "refused.safetensors")
        do throws(MergeKitError) {
            _ = try MergeExecutor.run(refused, threads: 3, memoryBudget: perWorker + bytes[1] - 1)
            Issue.record("a matrix larger than the budget was merged")
        } catch {
            #expect(error.code == .insufficientMemory && error.tensor == "m1.weight", "\(error)")
            #expect(error.description.contains("[200, 160] matrix whole with \(name) needs about \(ByteCount.describe(perWorker + bytes[1]))"),
                    "\(error)")
        }
        #expect(TestSupport.listing(dir) == ["base.safetensors", "free.safetensors", "ft_a.safetensors", "ft_b.safetensors", "gated.safetensors"])
    }

    @Test("extract-lora: an exact SVD that does not fit is refused suggesting --randomized, which then runs within the budget")
    func extractionBudget() throws {
        let dir = TestSupport.temporaryDirectory("lora-budget")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeModels(dir, shapes: [[1200, 1000], [300, 200]])
        let base = try Checkpoint(path: dir + "/base.safetensors"), model = try Checkpoint(path: dir + "/ft_a.safetensors")
        let exact = try LoRAExtraction(base: base, model: model, output: dir + "/exact", options: .init(rank: 4))
        let randomized = try LoRAExtraction(base: base, model: model, output: dir + "/randomized", options: .init(rank: 4, randomized: true))
        let large = exact.targets.first { $0.tensor == "m0.weight" }!, small = exact.targets.first { $0.tensor == "m1.weight" }!
        let exactBytes = exact.peakBytes(large, randomized: false), randomizedBytes = exact.peakBytes(large, randomized: true)
        // The exact SVD holds τ, its copy, U, Vᵀ and gesdd's workspace (≥ 5× τ); the randomized one τ and thin bases.
        #expect(exactBytes >= 5 * 4 * 1200 * 1000 && randomizedBytes < 2 * 4 * 1200 * 1000 + MergeExecutor.itemElements * 12 + MemoryBudget.workerSlack,
                "\(exactBytes) \(randomizedBytes)")
        let budget = (exactBytes + randomizedBytes) / 2
        do throws(MergeKitError) {
            _ = try exact.run(threads: 2, memoryBudget: budget)
            Issue.record("an extraction larger than the budget ran")
        } catch {
            #expect(error.code == .insufficientMemory && error.tensor == "m0.weight", "\(error)")
            #expect(error.description.contains("Use the randomized SVD (about \(ByteCount.describe(randomizedBytes)) for this weight)"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/exact"))
        // Two randomized extractions do not fit together: one worker.
        #expect(try randomized.workers(threads: 2, budget: randomizedBytes + randomized.peakBytes(small, randomized: true) - 1) == 1)
        #expect(try randomized.workers(threads: 2, budget: nil) == 2)
        let result = try randomized.run(threads: 2, memoryBudget: budget)
        #expect(result.reports.count == 2 && result.reports.allSatisfy { $0.relativeError > 0 && $0.relativeError < 1 })
    }

    @Test("Tensor-sized buffers the system cannot give are an error naming the tensor, not a crash")
    func allocationFailure() throws {
        for count in [Int.max / 4, Int.max] {
            do throws(MergeKitError) {
                let buffer = try ScratchMemory.allocate(Float.self, count: count, tensor: "huge", purpose: "a test")
                ScratchMemory.release(buffer)
                Issue.record("allocated \(count) floats")
            } catch {
                #expect(error.code == .insufficientMemory && error.tensor == "huge" && error.description.contains("could not allocate"), "\(error)")
            }
        }
        let small = try ScratchMemory.allocate(Double.self, count: 3, tensor: "t", purpose: "a test")
        small.initialize(repeating: 1)
        #expect(Array(small) == [1, 1, 1])
        ScratchMemory.release(small)
    }

    @Test("Memory budget: MERGEKIT_MEMORY_BUDGET's syntax, concurrency from the largest items, estimates of LAPACK's limits")
    func budgetArithmetic() {
        // MERGEKIT_MEMORY_BUDGET takes sizes as --max-shard-size does (ByteCount).
        #expect(ByteCount.parse("123") == 123 && ByteCount.parse("8G") == 8_000_000_000 && ByteCount.parse("1.5k") == 1500)
        #expect(ByteCount.parse("2 GB") == 2_000_000_000 && ByteCount.parse("8GiB") == 8 << 30)
        #expect(ByteCount.parse("64MB") == 64_000_000 && ByteCount.parse("1T") == 1_000_000_000_000)
        for bad in ["-5", "abc", "", "nanG", "1e300"] { #expect(ByteCount.parse(bad) == nil, "\(bad)") }
        #expect(MemoryBudget.available().map { $0.bytes > 0 } ?? true)
        // The k largest must fit together with every worker's buffers.
        #expect(MemoryBudget.concurrency([50, 40, 30, 10], workers: 4, budget: 90) == 2)
        #expect(MemoryBudget.concurrency([50, 40, 30, 10], workers: 4, budget: 89) == 1)
        #expect(MemoryBudget.concurrency([50, 40, 30, 10], workers: 4, perWorker: 5, budget: 110) == 2)
        #expect(MemoryBudget.concurrency([50, 40], workers: 4, budget: 1000) == 4)
        #expect(MemoryBudget.concurrency([50, 40, 30], workers: 2, budget: 1000) == 2)
        // LAPACK: 2³¹ − 1 elements at most; gesdd's workspace (3k² + 7k for a square matrix) beyond
        // 32 bits hands over to gesvd.
        #expect(LAPACK.exactSVDProblem(rows: 100_000, columns: 100_000)?.contains("2³¹ − 1") == true)
        #expect(LAPACK.exactSVDProblem(rows: 40_000, columns: 40_000) == nil)
        #expect(LAPACK.divideAndConquerWorkspace(rows: 40_000, columns: 40_000) == nil)
        #expect(LAPACK.divideAndConquerWorkspace(rows: 3000, columns: 3000) == 3 * 3000 * 3000 + 7 * 3000 + 1)
        #expect(LAPACK.divideAndConquerWorkspace(rows: 5632, columns: 2048)! >= 4 * 2048 * 2048 + 7 * 2048)
        let square = LAPACK.svdBytes(rows: 3000, columns: 3000, elementSize: 4)
        #expect(square >= 6 * 4 * 3000 * 3000 && square < 7 * 4 * 3000 * 3000, "\(square)")
    }

    // MARK: - The ends of Float's range

    /// A rows×columns matrix with entries of magnitude in [2⁻⁵, `bulk`) and random signs, and
    /// `spike` at `spikeAt`: its largest magnitude is in [1, 2), and 2⁻¹²⁰ times it is still normal.
    static func matrix(_ rows: Int, _ columns: Int, seed: UInt64, bulk: Double = 0.5, spike: Float = 1.25, at spikeAt: Int) -> [Float] {
        var rng = SplitMix64(seed: seed)
        var values = (0..<(rows * columns)).map { _ -> Float in
            let magnitude = 0x1p-5 + rng.uniform() * (bulk - 0x1p-5)
            return Float(rng.next() & 1 == 0 ? magnitude : -magnitude)
        }
        values[spikeAt] = spike
        return values
    }

    static func merge(_ method: String, _ taus: [[Float]], shape: [Int]) throws(MergeKitError) -> [Float] {
        var out = [Float](repeating: .nan, count: shape[0] * shape[1])
        var failure: MergeKitError?
        out.withUnsafeMutableBufferPointer { o in
            do throws(MergeKitError) {
                let deltas = TensorDeltas(tensor: "w", shape: shape, values: taus)
                let weights = [Float](repeating: 1, count: taus.count), context = SVDMethodTests.context(shape)
                if method == "tsv-m" {
                    try TSVM().combineTensor(deltas, weights: weights, into: o, context: context)
                } else {
                    try IsoC().combineTensor(deltas, weights: weights, into: o, context: context)
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return out
    }

    static func powerOfTwo(_ k: Int) -> Float { Float(sign: .plus, exponent: k, significand: 1) }

    @Test("Entries near ±3·10³⁸ and near the smallest normals: τ is exactly 2ᵏ times the scaled-down copy's (tasks at different scales too)",
          arguments: ["tsv-m", "iso-c"], [127, -120])
    func extremeMagnitudes(method: String, k: Int) throws {
        let shape = [40, 30]
        let taus = [Self.matrix(40, 30, seed: 1, bulk: 0.3, at: 0), Self.matrix(40, 30, seed: 2, bulk: 0.3, at: 517)]
        let reference = try Self.merge(method, taus, shape: shape)
        let largest = reference.map { abs($0) }.max()!
        try #require(largest > 0.1 && largest < 1.9, "the reference must fit at 2^127: \(largest)")
        let scaled = try Self.merge(method, taus.map { $0.map { $0 * Self.powerOfTwo(k) } }, shape: shape)
        #expect(scaled == reference.map { $0 * Self.powerOfTwo(k) }, "\(method) at 2^\(k) is not 2^\(k) × its result at 1")
        // Tasks 2⁹⁰ apart: the same as 2¹⁰ and 1, times 2⁹⁰.
        let apart = try Self.merge(method, [taus[0].map { $0 * Self.powerOfTwo(100) }, taus[1].map { $0 * Self.powerOfTwo(90) }], shape: shape)
        let near = try Self.merge(method, [taus[0].map { $0 * Self.powerOfTwo(10) }, taus[1]], shape: shape)
        #expect(apart == near.map { $0 * Self.powerOfTwo(90) })
        #expect(near.contains { $0 != 0 } && apart.allSatisfy(\.isFinite))
    }

    @Test("Iso-C: a sum of finite task vectors that overflows Float is formed from τₜ·2⁻¹ instead, exactly")
    func isocSumOverflow() throws {
        let shape = [40, 30]
        let taus = [Self.matrix(40, 30, seed: 3, spike: 1.5, at: 99), Self.matrix(40, 30, seed: 4, spike: 1.75, at: 99)]
        let reference = try Self.merge("iso-c", taus, shape: shape)
        try #require(reference.map { abs($0) }.max()! < 1.9)
        let big = taus.map { $0.map { $0 * Self.powerOfTwo(127) } }
        #expect((big[0][99] + big[1][99]).isInfinite, "the plain sum must overflow")
        #expect(try Self.merge("iso-c", big, shape: shape) == reference.map { $0 * Self.powerOfTwo(127) })
    }

    @Test("A merged matrix beyond Float's range is an error naming the tensor (not ±Inf or a silent zero)")
    func resultOutOfRange() throws {
        let shape = [30, 30]
        let tau = Self.matrix(30, 30, seed: 6, bulk: 1.9, spike: 1.9, at: 0)
        let reference = try Self.merge("iso-c", [tau], shape: shape)
        try #require(reference.map { abs($0) }.max()! >= 2, "the result at 2^127 must overflow")
        do throws(MergeKitError) {
            _ = try Self.merge("iso-c", [tau.map { $0 * Self.powerOfTwo(127) }], shape: shape)
            Issue.record("an overflowing result was returned")
        } catch {
            #expect(error.code == .nonFiniteValue && error.tensor == "w" && error.description.contains("exceeds the largest Float"), "\(error)")
        }
    }

    /// Writes base (zeros) and model = `tau` as F32 [rows, columns] checkpoints into `dir`.
    static func writePair(_ dir: String, _ tau: [Float], shape: [Int], name: String = "model") {
        let spec = TensorSpec(name: "layer.weight", dtype: .F32, shape: shape)
        TestSupport.writeCheckpoint(dir + "/base.safetensors", [(spec, [Double](repeating: 0, count: tau.count))])
        TestSupport.writeCheckpoint("\(dir)/\(name).safetensors", [(spec, tau.map { Double($0) })])
    }

    @Test("LoRA extraction near ±3·10³⁸ and the smallest normals: factors exactly 2^(k/2) times the scaled-down copy's, same error",
          arguments: [false, true], [126, -120])
    func extractionExtremes(randomized: Bool, k: Int) throws {
        let dir = TestSupport.temporaryDirectory("lora-range")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tau = Self.matrix(40, 30, seed: 7, bulk: 1.9, spike: 3.5, at: 3)  // largest 3.5·2¹²⁶ ≈ 3·10³⁸
        Self.writePair(dir, tau, shape: [40, 30], name: "one")
        Self.writePair(dir, tau.map { $0 * Self.powerOfTwo(k) }, shape: [40, 30], name: "scaled")
        var reports: [JSONValue] = []
        for name in ["one", "scaled"] {
            let extraction = try Self.extraction(dir, model: name, output: name + "-adapter", options: .init(rank: 3, randomized: randomized))
            let result = try extraction.run()
            // The report as --json prints it.
            reports.append(try JSONParser.parse(Array(result.json(extraction).serialized(indent: 2).utf8)))
        }
        let one = TestSupport.values(try Checkpoint(path: dir + "/one-adapter/adapter_model.safetensors"))
        let scaled = TestSupport.values(try Checkpoint(path: dir + "/scaled-adapter/adapter_model.safetensors"))
        #expect(one.count == 2)
        for (name, reference) in one {
            let factor = try #require(scaled[name]).values
            #expect(factor == reference.values.map { $0 * Double(Self.powerOfTwo(k / 2)) }, "\(name)")
            #expect(factor.allSatisfy(\.isFinite) && reference.values.contains { $0 != 0 })
        }
        let errors = reports.map { $0["tensors"]?.arrayValue?.first?["relative_error"]?.doubleValue }
        #expect(errors[0] != nil && errors[0] == errors[1], "\(errors)")
    }

    @Test("LoRA extraction: factors that do not fit the adapter's dtype are an error naming the weight and the fix; nothing is written")
    func extractionDTypeOverflow() throws {
        let dir = TestSupport.temporaryDirectory("lora-f16")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Self.writePair(dir, Self.matrix(40, 30, seed: 8, at: 0).map { $0 * Self.powerOfTwo(40) }, shape: [40, 30])
        let error = try #require(throws: MergeKitError.self) {
            try Self.extraction(dir, model: "model", output: "adapter", options: .init(rank: 3, dtype: .F16)).run()
        }
        #expect(error.tensor == "layer.weight" && error.description.contains("does not fit F16") && error.uses(.factorsIn("F32")), "\(error)")
        #expect(TestSupport.listing(dir) == ["base.safetensors", "model.safetensors"])
        _ = try Self.extraction(dir, model: "model", output: "adapter", options: .init(rank: 3)).run()
    }

    /// The extraction of `dir`/`model`.safetensors against `dir`/base.safetensors into `dir`/`output`.
    static func extraction(_ dir: String, model: String, output: String, options: LoRAExtraction.Options) throws -> LoRAExtraction {
        try LoRAExtraction(base: try Checkpoint(path: dir + "/base.safetensors"), model: try Checkpoint(path: "\(dir)/\(model).safetensors"),
                           output: dir + "/" + output, options: options)
    }

    // MARK: - Zero matrices

    /// Peak resident memory of a merge-cli run (its --json report).
    static func peak(_ arguments: [String], in dir: String) throws -> Int {
        let run = try CLI.run(arguments + ["--json", "--threads", "1"], in: dir)
        #expect(run.status == 0, "\(run.stderr)")
        return try #require(try JSONParser.parse(Array(run.stdout.utf8))["peak_memory_bytes"]?.nonNegativeInt)
    }

    @Test("Zero task vectors skip the SVD: iso-c on a zero sum, tsv-m with every task zero, extract-lora of a frozen weight stay near the matrix's own buffers")
    func zeroMatricesSkipTheSVD() throws {
        let dir = TestSupport.temporaryDirectory("svd-zero")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (m, n) = (1500, 1500)
        let matrixBytes = 4 * m * n
        let spec = TensorSpec(name: "layer.weight", dtype: .F32, shape: [m, n])
        var rng = SplitMix64(seed: 9)
        let tau = (0..<(m * n)).map { _ in rng.uniform() - 0.5 }
        for (name, values) in [("zero", [Double](repeating: 0, count: m * n)), ("plus", tau), ("minus", tau.map { -$0 })] {
            TestSupport.writeCheckpoint("\(dir)/\(name).safetensors", [(spec, values)])
        }
        let cases: [(label: String, zero: [String], nonzero: [String])] = [
            ("iso-c", ["iso-c", "--base", "zero.safetensors", "--model", "plus.safetensors", "--model", "minus.safetensors", "-o", "a.safetensors"],
             ["iso-c", "--base", "zero.safetensors", "--model", "plus.safetensors", "--model", "plus.safetensors", "-o", "b.safetensors"]),
            ("tsv-m", ["tsv-m", "--base", "plus.safetensors", "--model", "plus.safetensors", "--model", "plus.safetensors", "-o", "c.safetensors"],
             ["tsv-m", "--base", "zero.safetensors", "--model", "plus.safetensors", "--model", "minus.safetensors", "-o", "d.safetensors"]),
            ("extract-lora", ["extract-lora", "--base", "plus.safetensors", "--model", "plus.safetensors", "--rank", "4", "-o", "e"],
             ["extract-lora", "--base", "zero.safetensors", "--model", "plus.safetensors", "--rank", "4", "-o", "f"]),
        ]
        for (label, zero, nonzero) in cases {
            let skipped = try Self.peak(zero, in: dir), decomposed = try Self.peak(nonzero, in: dir)
            // The SVD holds its copy, U, Vᵀ and 3× the matrix of workspace: skipping it saves well over 3×.
            #expect(decomposed - skipped > 3 * matrixBytes, "\(label): peak \(skipped) without the SVD, \(decomposed) with it")
        }
        // The results: θ₀ (τ = 0) and zero factors.
        for output in ["a.safetensors", "c.safetensors"] {
            let merged = try #require(TestSupport.values(try Checkpoint(path: dir + "/" + output))["layer.weight"]).values
            #expect(merged == (output == "a.safetensors" ? [Double](repeating: 0, count: m * n) : tau.map { Double(Float($0)) }), "\(output)")
        }
        let factors = TestSupport.values(try Checkpoint(path: dir + "/e/adapter_model.safetensors"))
        #expect(factors.count == 2 && factors.values.allSatisfy { $0.values.allSatisfy { $0 == 0 } })
    }
}
