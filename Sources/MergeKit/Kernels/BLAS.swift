import CBLAS
import Foundation

/// The element types merges compute in: `Float` for F32/F16/BF16 tensors, `Double` whenever an
/// input or the output is F64 (so F64 never loses precision silently).
///
/// This file is the only one that imports `CBLAS`: every BLAS call of the library goes through the
/// static functions below. Counts are `Int` on the Swift side and checked to fit BLAS's 32-bit
/// integers (`blasint`); callers pass chunks far smaller than that.
public protocol ComputeScalar: BinaryFloatingPoint, Sendable where Self.RawSignificand: FixedWidthInteger {
    /// y ← αx + y (a product then a sum, element by element: the same bits on every machine)
    static func axpy(_ alpha: Self, _ x: UnsafeBufferPointer<Self>, _ y: UnsafeMutableBufferPointer<Self>)
    /// x ← αx
    static func scal(_ alpha: Self, _ x: UnsafeMutableBufferPointer<Self>)
    /// xᵀy, accumulated in the element type in one fixed order on every machine (`BLAS.levelOneKernels`).
    static func dot(_ x: UnsafeBufferPointer<Self>, _ y: UnsafeBufferPointer<Self>) -> Self
    /// ‖x‖₂ (BLAS scales to avoid overflow).
    static func nrm2(_ x: UnsafeBufferPointer<Self>) -> Self
    /// Σ|xᵢ|, in the dot product's fixed order on every machine
    static func asum(_ x: UnsafeBufferPointer<Self>) -> Self
    /// y ← x
    static func copy(_ x: UnsafeBufferPointer<Self>, _ y: UnsafeMutableBufferPointer<Self>)
}

@inline(__always)
private func blasCount(_ n: Int) -> blasint {
    precondition(n >= 0 && n <= Int(blasint.max), "BLAS vector length \(n) out of range")
    return blasint(n)
}

extension Float: ComputeScalar {
    @inline(__always)
    public static func axpy(_ alpha: Float, _ x: UnsafeBufferPointer<Float>, _ y: UnsafeMutableBufferPointer<Float>) {
        precondition(x.count == y.count)
        guard x.count > 0 else { return }
        mk_saxpy(alpha, x.baseAddress, y.baseAddress, x.count, BLAS.levelOneKernels)
    }
    @inline(__always)
    public static func scal(_ alpha: Float, _ x: UnsafeMutableBufferPointer<Float>) {
        guard x.count > 0 else { return }
        cblas_sscal(blasCount(x.count), alpha, x.baseAddress, 1)
    }
    @inline(__always)
    public static func dot(_ x: UnsafeBufferPointer<Float>, _ y: UnsafeBufferPointer<Float>) -> Float {
        precondition(x.count == y.count)
        guard x.count > 0 else { return 0 }
        return mk_sdot(x.baseAddress, y.baseAddress, x.count, BLAS.levelOneKernels)
    }
    @inline(__always)
    public static func nrm2(_ x: UnsafeBufferPointer<Float>) -> Float {
        guard x.count > 0 else { return 0 }
        return cblas_snrm2(blasCount(x.count), x.baseAddress, 1)
    }
    @inline(__always)
    public static func asum(_ x: UnsafeBufferPointer<Float>) -> Float {
        guard x.count > 0 else { return 0 }
        return mk_sasum(x.baseAddress, x.count, BLAS.levelOneKernels)
    }
    @inline(__always)
    public static func copy(_ x: UnsafeBufferPointer<Float>, _ y: UnsafeMutableBufferPointer<Float>) {
        precondition(x.count == y.count)
        guard x.count > 0 else { return }
        cblas_scopy(blasCount(x.count), x.baseAddress, 1, y.baseAddress, 1)
    }
}

extension Double: ComputeScalar {
    @inline(__always)
    public static func axpy(_ alpha: Double, _ x: UnsafeBufferPointer<Double>, _ y: UnsafeMutableBufferPointer<Double>) {
        precondition(x.count == y.count)
        guard x.count > 0 else { return }
        mk_daxpy(alpha, x.baseAddress, y.baseAddress, x.count, BLAS.levelOneKernels)
    }
    @inline(__always)
    public static func scal(_ alpha: Double, _ x: UnsafeMutableBufferPointer<Double>) {
        guard x.count > 0 else { return }
        cblas_dscal(blasCount(x.count), alpha, x.baseAddress, 1)
    }
    @inline(__always)
    public static func dot(_ x: UnsafeBufferPointer<Double>, _ y: UnsafeBufferPointer<Double>) -> Double {
        precondition(x.count == y.count)
        guard x.count > 0 else { return 0 }
        return mk_ddot(x.baseAddress, y.baseAddress, x.count, BLAS.levelOneKernels)
    }
    @inline(__always)
    public static func nrm2(_ x: UnsafeBufferPointer<Double>) -> Double {
        guard x.count > 0 else { return 0 }
        return cblas_dnrm2(blasCount(x.count), x.baseAddress, 1)
    }
    @inline(__always)
    public static func asum(_ x: UnsafeBufferPointer<Double>) -> Double {
        guard x.count > 0 else { return 0 }
        return mk_dasum(x.baseAddress, x.count, BLAS.levelOneKernels)
    }
    @inline(__always)
    public static func copy(_ x: UnsafeBufferPointer<Double>, _ y: UnsafeMutableBufferPointer<Double>) {
        precondition(x.count == y.count)
        guard x.count > 0 else { return }
        cblas_dcopy(blasCount(x.count), x.baseAddress, 1, y.baseAddress, 1)
    }
}

/// Process-wide BLAS settings and the CPU-dependent C helpers of the shim.
public enum BLAS {
    /// Keeps OpenBLAS single-threaded. Every parallel loop of MergeKit is its own, over work units
    /// fixed by the problem (tensors, image shards, GEMM tiles), because OpenBLAS's threading changes
    /// the bits of a result with the thread count: on kernels such as Haswell's or the Prescott
    /// fallback, a threaded `sgemm` rounds differently from a single-threaded one, and which `sgemm`
    /// path OpenBLAS takes can depend on its thread count. The setting is process-wide, so it is
    /// never raised: a concurrent caller cannot change another's results.
    static func useOneThread() {
        openblas_set_num_threads(1)
    }

    /// OpenBLAS's current thread count (tests check that it stays 1).
    static var openBLASThreads: Int { Int(openblas_get_num_threads()) }

    /// The kernel family OpenBLAS chose for this CPU ("Prescott", "Haswell", "SkylakeX", …).
    public static var coreName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// The kernel family OpenBLAS should be told to use (`OPENBLAS_CORETYPE`), or nil to keep its
    /// choice. A DYNAMIC_ARCH OpenBLAS picks its kernels by CPU model and falls back to its SSE3
    /// ("Prescott") kernels on a model it does not know — as many virtual machines present their
    /// CPUs — even when the CPU has AVX2 or AVX-512: its GEMMs then cost about 3.5× more CPU (the
    /// CLIP engine, RegMean, the SVD methods). Only that fallback is corrected, to SkylakeX on a
    /// CPU with AVX-512 F/CD/BW/DQ/VL, else Haswell with AVX2 and FMA; an `OPENBLAS_CORETYPE`
    /// already set (the user's choice) or `MERGEKIT_OPENBLAS_AUTO=0` keeps OpenBLAS's choice.
    /// OpenBLAS reads the variable once, when it is loaded, so the command line re-executes itself
    /// with it (`merge-cli`'s `main`).
    public static func preferredCoreType(environment: [String: String]) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil, environment["MERGEKIT_OPENBLAS_AUTO"] != "0",
              let config = openblas_get_config().map({ String(cString: $0) }), config.contains("DYNAMIC_ARCH"),
              coreName.lowercased() == "prescott" else { return nil }
        switch mk_cpu_blas_level() {
        case 1: return "SkylakeX"
        case 2: return "Haswell"
        default: return nil
        }
    }

    /// For a program's `main`, before anything else: when `preferredCoreType` names better kernels,
    /// re-executes the program with `OPENBLAS_CORETYPE` set to them (OpenBLAS reads it only when
    /// it is loaded). Returns when there is nothing to do, or when the re-execution failed — the
    /// program then runs on with the kernels it has.
    public static func reexecutingWithPreferredKernels() {
        #if os(Linux)
        guard let core = preferredCoreType(environment: ProcessInfo.processInfo.environment) else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE")
        #endif
    }

    /// Whether the F16C half-precision conversion instructions are used on this machine.
    public static let hasF16C: Bool = mk_cpu_has_f16c() != 0

    /// Converts `count` IEEE half values at `source` (any alignment) to Float.
    @inline(__always)
    static func halfToFloat(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        mk_half_to_float(source, destination, count, hasF16C ? 1 : 0)
    }

    /// Converts `count` floats to IEEE half (round to nearest even) at `destination` (any alignment).
    @inline(__always)
    static func floatToHalf(_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, count: Int) {
        mk_float_to_half(source, destination, count, hasF16C ? 1 : 0)
    }

    /// Whether the AVX2 kernels (DARE's random bits, float -> bf16) are used on this machine.
    public static let hasAVX2: Bool = mk_cpu_has_avx2() != 0

    /// Converts `count` floats to bf16 (round to nearest even, NaN -> 0x7FC0) at `destination`
    /// (any alignment).
    @inline(__always)
    static func floatToBFloat16(_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, count: Int) {
        mk_float_to_bf16(source, destination, count, hasAVX2 ? 1 : 0)
    }

    /// The portable float -> bf16 loop, for tests.
    static func floatToBFloat16Portable(_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, count: Int) {
        mk_float_to_bf16(source, destination, count, 0)
    }

    /// out[k] = lowbias32(lowbias32((start + k) ⊕ a) + b) for k < count (DARE's random stream).
    @inline(__always)
    static func randomBits(_ out: UnsafeMutablePointer<UInt32>, count: Int, a: UInt32, b: UInt32, start: UInt32) {
        mk_random_bits(out, count, a, b, start, hasAVX2 ? 1 : 0)
    }

    /// The portable random-bit generator, for tests.
    static func randomBitsPortable(_ out: UnsafeMutablePointer<UInt32>, count: Int, a: UInt32, b: UInt32, start: UInt32) {
        mk_random_bits_portable(out, count, a, b, start)
    }

    /// Whether the AVX-512F build of the divergence kernel is used on this machine.
    public static let hasAVX512F: Bool = mk_cpu_has_avx512f() != 0

    /// KL(softmax(θ₁) + 10⁻⁸ ‖ softmax(θ₀) + 10⁻⁸) of one row of `count` ≥ 1 values, θ₀ = `base`
    /// and θ₁ = `base` + `delta` in Double (Arcee Fusion's divergence; the formula and its
    /// accuracy are in the kernel's comment in shim.h), with `scratch0` and `scratch1` room for
    /// `count` Doubles each. `level` picks the build: 2 AVX-512F, 1 AVX2, 0 portable (nil: the
    /// best this CPU has); all give the same bits.
    static func softmaxDivergence(base: UnsafePointer<Float>, delta: UnsafePointer<Float>, count: Int,
                                  scratch0: UnsafeMutablePointer<Double>, scratch1: UnsafeMutablePointer<Double>, level: Int32? = nil) -> Double {
        mk_softmax_kl_f32(base, delta, scratch0, scratch1, count, level ?? divergenceLevel)
    }
    static func softmaxDivergence(base: UnsafePointer<Double>, delta: UnsafePointer<Double>, count: Int,
                                  scratch0: UnsafeMutablePointer<Double>, scratch1: UnsafeMutablePointer<Double>, level: Int32? = nil) -> Double {
        mk_softmax_kl_f64(base, delta, scratch0, scratch1, count, level ?? divergenceLevel)
    }
    private static let divergenceLevel: Int32 = hasAVX512F ? 2 : hasAVX2 ? 1 : 0

    /// Which build of the dot-product and axpy kernels `ComputeScalar` uses (2 AVX-512F, 1 AVX2,
    /// 0 portable). They are the project's own rather than OpenBLAS's: OpenBLAS chooses its level-1
    /// kernels by CPU model (an old SSE kernel on a CPU it does not recognise, as on many virtual
    /// machines) and sums a dot product in a kernel-specific order, so a merge's bits would depend
    /// on the machine. Every build computes the same bits (the order is in shim.h).
    static let levelOneKernels: Int32 = divergenceLevel

    /// The dot product and axpy of one build (`level`), for tests that compare the builds.
    static func dot(_ x: UnsafeBufferPointer<Float>, _ y: UnsafeBufferPointer<Float>, level: Int32) -> Float {
        mk_sdot(x.baseAddress, y.baseAddress, x.count, level)
    }
    static func dot(_ x: UnsafeBufferPointer<Double>, _ y: UnsafeBufferPointer<Double>, level: Int32) -> Double {
        mk_ddot(x.baseAddress, y.baseAddress, x.count, level)
    }
    static func asum(_ x: UnsafeBufferPointer<Float>, level: Int32) -> Float { mk_sasum(x.baseAddress, x.count, level) }
    static func asum(_ x: UnsafeBufferPointer<Double>, level: Int32) -> Double { mk_dasum(x.baseAddress, x.count, level) }
    static func axpy(_ alpha: Float, _ x: UnsafeBufferPointer<Float>, _ y: UnsafeMutableBufferPointer<Float>, level: Int32) {
        mk_saxpy(alpha, x.baseAddress, y.baseAddress, x.count, level)
    }
    static func axpy(_ alpha: Double, _ x: UnsafeBufferPointer<Double>, _ y: UnsafeMutableBufferPointer<Double>, level: Int32) {
        mk_daxpy(alpha, x.baseAddress, y.baseAddress, x.count, level)
    }

    /// Arcee Fusion's importance keys of a row of τ (`SignedOrder` keys of Float(|τ|·`divergence`)):
    /// all `count` of them into `out` (`prefixes` nil), or only those whose key >> `shift` is one
    /// of `prefixes`, appended in order; returns how many were written. `level` as for
    /// `softmaxDivergence`.
    static func fusionKeys(_ tau: UnsafePointer<Float>, count: Int, divergence: Double, into out: UnsafeMutablePointer<UInt64>,
                           under prefixes: (UInt32, UInt32, UInt32)?, shift: Int, level: Int32? = nil) -> Int {
        guard var p = prefixes else { return mk_fusion_keys(tau, count, divergence, out, UInt32(shift), nil, level ?? divergenceLevel) }
        return withUnsafePointer(to: &p) {
            $0.withMemoryRebound(to: UInt32.self, capacity: 3) { mk_fusion_keys(tau, count, divergence, out, UInt32(shift), $0, level ?? divergenceLevel) }
        }
    }

    /// out = τ where Float(|τ|·`divergence`) ≥ `threshold`, else 0, over a row of `count` values.
    static func fusionSelect(_ tau: UnsafePointer<Float>, count: Int, divergence: Double, threshold: Float,
                             into out: UnsafeMutablePointer<Float>, level: Int32? = nil) {
        mk_fusion_select(tau, count, divergence, threshold, out, level ?? divergenceLevel)
    }

    /// TIES's trim on Float magnitude keys (bits & 0x7FFFFFFF): x[k] = +0 where the key is below
    /// `threshold`. Integer compares only: every build (`level` as for `levelOneKernels`) gives
    /// the bits of the portable loop.
    static func zeroBelow(_ x: UnsafeMutableBufferPointer<Float>, threshold: UInt32, level: Int32 = levelOneKernels) {
        guard let start = x.baseAddress else { return }
        mk_zero_below(start, x.count, threshold, level)
    }

    /// The threshold histogram of the statistics pass: returns how many Float magnitude keys of
    /// `x` are below `low`, and adds one to counts[key − low] for each key in low…low + `span`.
    static func bracketCount(_ x: UnsafeBufferPointer<Float>, low: UInt32, span: UInt32, into counts: UnsafeMutablePointer<Int>,
                             level: Int32 = levelOneKernels) -> Int {
        guard let start = x.baseAddress else { return 0 }
        return counts.withMemoryRebound(to: Int64.self, capacity: Int(span) + 1) { Int(mk_bracket_count(start, x.count, low, span, $0, level)) }
    }

    /// out = bf16(s·(d + b)) − b in one pass (passthrough's scale in bfloat16, mergekit's
    /// rounding: nearest even, NaN to the quiet NaN). Every build gives the same bits.
    static func scaleRoundBFloat16(_ d: UnsafeBufferPointer<Float>, base b: UnsafeBufferPointer<Float>, scale s: Float,
                                   into out: UnsafeMutableBufferPointer<Float>, level: Int32 = levelOneKernels) {
        precondition(d.count == out.count && b.count == out.count)
        guard let start = out.baseAddress else { return }
        mk_scale_round_bf16(d.baseAddress!, b.baseAddress!, s, start, out.count, level)
    }

    /// TIES's sign election and disjoint merge of a chunk in one pass (`mk_ties_merge`, whose
    /// comment lists the steps): `aggregation` 0 sum, 1 mean, 2 normalized (`increments` the
    /// per-input amounts counted for agreeing entries). Returns Σ sign(S) and, in `resolved`, the
    /// elements whose S is 0 and result nonzero. Every build gives the same bits.
    static func tiesMerge(_ deltas: [UnsafeMutableBufferPointer<Float>], increments: [Float], aggregation: Int32, tie: Float,
                          into out: UnsafeMutableBufferPointer<Float>, resolved: inout Int, level: Int32 = levelOneKernels) -> Int {
        precondition(deltas.count == increments.count && deltas.allSatisfy { $0.count == out.count })
        guard let start = out.baseAddress else { resolved = 0; return 0 }
        let pointers: [UnsafePointer<Float>?] = deltas.map { UnsafePointer($0.baseAddress) }
        var ties: Int64 = 0
        let votes = pointers.withUnsafeBufferPointer { p in
            increments.withUnsafeBufferPointer { mk_ties_merge(p.baseAddress, deltas.count, $0.baseAddress, aggregation, tie, start, out.count, &ties, level) }
        }
        resolved = Int(ties)
        return Int(votes)
    }

    /// The kernel's e^x (x ≤ 0) and log y (y > 0 normal), for tests of their accuracy.
    static func divergenceExp(_ x: Double) -> Double { mk_kl_exp_scalar(x) }
    static func divergenceLog(_ y: Double) -> Double { mk_kl_log_scalar(y) }

    /// The AVX2 kernels of the finiteness checks (`FiniteCheck`): each returns whether some value
    /// (a difference; a sum or element whose magnitude key reaches 2³¹ − `bias`, see `reachBias`)
    /// is non-finite or over the limit, or nil when the CPU lacks AVX2 (or `portable` is set),
    /// and then the caller runs its portable loop, which computes the same bits.
    static func bfloat16Difference(_ source: UnsafeRawPointer, minus base: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
                                   count: Int, portable: Bool = false) -> Bool? {
        verdict(mk_bf16_difference(source, base, destination, count, hasAVX2 && !portable ? 1 : 0))
    }
    static func float32Difference(_ source: UnsafeRawPointer, minus base: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
                                  count: Int, portable: Bool = false) -> Bool? {
        verdict(mk_f32_difference(source, base, destination, count, hasAVX2 && !portable ? 1 : 0))
    }
    static func addReaches(_ out: UnsafeMutablePointer<Float>, base: UnsafePointer<Float>, count: Int, bias: UInt32, portable: Bool = false) -> Bool? {
        verdict(mk_add_reaches(out, base, count, bias, hasAVX2 && !portable ? 1 : 0))
    }
    static func reaches(_ x: UnsafePointer<Float>, count: Int, bias: UInt32, portable: Bool = false) -> Bool? {
        verdict(mk_reaches(x, count, bias, hasAVX2 && !portable ? 1 : 0))
    }
    private static func verdict(_ result: Int32) -> Bool? { result < 0 ? nil : result != 0 }

    /// The portable (non-F16C) conversions, exposed so tests can check both paths agree bit for bit.
    static func halfToFloatPortable(_ source: UnsafeRawPointer, _ destination: UnsafeMutablePointer<Float>, count: Int) {
        mk_half_to_float_portable(source, destination, count)
    }
    static func floatToHalfPortable(_ source: UnsafePointer<Float>, _ destination: UnsafeMutableRawPointer, count: Int) {
        mk_float_to_half_portable(source, destination, count)
    }
}

// MARK: - GEMM (engine)

/// Matrix products for the inference engine (`Engine/`). All matrices are row-major Float32;
/// `lda`/`ldb`/`ldc` are row strides in elements, so a head's columns inside a wider activation
/// matrix are addressed without copying.
///
/// A pass that runs as one shard (`EngineParallelism.blas`, WEMoE's batch-averaged routing, a
/// one-image batch) sets `productWorkers`: each product is then cut into the fixed tiles of
/// `GEMMTiles` (from m and n alone), and up to `productWorkers` threads compute the tiles with
/// single-threaded BLAS. The tiles are the same for any thread count, so the bits are too.
/// Outside such a pass every product is one single-threaded `cblas_sgemm`.
extension BLAS {
    /// The threads that split each product of the current pass into tiles; nil: one call, no tiles.
    @TaskLocal static var productWorkers: Int?

    /// C ← α·op(A)·op(B) + β·C, where op(A) is m×k, op(B) is k×n and C is m×n (`cblas_sgemm`).
    /// With β = 0, C is written without being read.
    static func gemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        precondition(lda >= (transposeA ? m : k) && ldb >= (transposeB ? k : n) && ldc >= n, "GEMM leading dimension too small")
        guard let workers = productWorkers else {
            sgemm(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        let tiles = GEMMTiles(m: m, n: n)
        WorkQueue.run(tiles.count, workers: workers) { t in
            let r = tiles.range(t)
            if tiles.byRows {
                // Rows r of op(A): rows of A, or columns of A when it is transposed.
                sgemm(transposeA, transposeB, r.count, n, k, alpha, transposeA ? a + r.lowerBound : a + r.lowerBound * lda, lda,
                      b, ldb, beta, c + r.lowerBound * ldc, ldc)
            } else {
                // Columns r of op(B): columns of B, or rows of B when it is transposed.
                sgemm(transposeA, transposeB, m, r.count, k, alpha, a, lda, transposeB ? b + r.lowerBound * ldb : b + r.lowerBound, ldb,
                      beta, c + r.lowerBound, ldc)
            }
        }
    }

    @inline(__always)
    private static func sgemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                              _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                              _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    blasCount(m), blasCount(n), blasCount(k), alpha, a, blasCount(lda), b, blasCount(ldb),
                    beta, c, blasCount(ldc))
    }

    /// `count` independent GEMMs C_i ← α·op(A_i)·op(B_i) + β·C_i whose operands start `strideA`,
    /// `strideB` and `strideC` elements apart (a loop of `gemm`).
    @inline(__always)
    static func gemmStridedBatched(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
                                   alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, strideA: Int,
                                   b: UnsafePointer<Float>, ldb: Int, strideB: Int, beta: Float = 0,
                                   c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int, count: Int) {
        for i in 0..<count {
            gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                 a: a + i * strideA, lda: lda, b: b + i * strideB, ldb: ldb, beta: beta, c: c + i * strideC, ldc: ldc)
        }
    }

    /// C ← α·AᵀA + β·C on the upper triangle of the n×n C (`cblas_ssyrk`), for a row-major k×n A:
    /// the Gram matrix of A's rows. The strictly lower triangle is not touched.
    static func syrkUpper(n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, beta: Float,
                          c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard n > 0 else { return }
        precondition(lda >= n && ldc >= n, "SYRK leading dimension too small")
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, blasCount(n), blasCount(k), alpha, a, blasCount(lda), beta, c, blasCount(ldc))
    }

    /// y ← α·op(A)·x + β·y for an m×n row-major A (`cblas_sgemv`); op(A) is n×m when transposed.
    @inline(__always)
    static func gemv(transpose: Bool = false, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                     x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>) {
        guard m > 0, n > 0 else { return }
        cblas_sgemv(CblasRowMajor, transpose ? CblasTrans : CblasNoTrans, blasCount(m), blasCount(n), alpha, a,
                    blasCount(lda), x, 1, beta, y, 1)
    }
}

/// The tiles a product C (m×n) is cut into when a pass splits its products over threads: blocks
/// of whole rows of C when m is large, else blocks of whole columns when n is, else C itself.
/// Every tile is one `cblas_sgemm` over the full inner dimension, so an element of C is computed
/// by the same call whatever thread runs it. Blocks hold at least 128 rows or 256 columns (smaller
/// calls lose more to OpenBLAS's packing than a split gains) and there are at most 64 of them; the
/// last block holds the remainder. Row blocks are about 256 rows, an even number of them (from 512
/// rows on): every row block packs the whole of op(B) again, so on ViT-B/32's 800-row products
/// (16 images) 4 blocks pack the weights 4 times where 128-row blocks packed them 7 times.
struct GEMMTiles {
    static let minimumRows = 128, minimumColumns = 256, maximumTiles = 64
    /// The row block aimed at when there are rows for more than one.
    static let targetRows = 256

    /// Whether the tiles are blocks of rows (else of columns).
    let byRows: Bool
    /// Rows or columns per tile (the last may hold fewer).
    let size: Int
    let count: Int
    private let extent: Int

    init(m: Int, n: Int) {
        func blocks(_ total: Int, minimum: Int) -> Int {
            let even = (total + Self.maximumTiles - 1) / Self.maximumTiles
            return max(minimum, (even + 15) / 16 * 16)
        }
        if m > Self.minimumRows {
            var count = (m + Self.targetRows - 1) / Self.targetRows
            if count > 1 && count % 2 == 1 { count += 1 }
            count = min(count, Self.maximumTiles)
            let size = count == 1 ? Self.minimumRows : max(Self.minimumRows, ((m + count - 1) / count + 15) / 16 * 16)
            (byRows, extent, self.size) = (true, m, size)
        } else if n > Self.minimumColumns {
            (byRows, extent, size) = (false, n, blocks(n, minimum: Self.minimumColumns))
        } else {
            (byRows, extent, size) = (true, m, max(1, m))
        }
        count = (extent + size - 1) / size
    }

    /// The rows (or columns) of tile `t`.
    func range(_ t: Int) -> Range<Int> {
        t * size..<min(extent, (t + 1) * size)
    }
}
