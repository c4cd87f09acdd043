import Foundation
import Testing
@testable import MergeKit

/// Arcee Fusion's C kernels (Sources/CBLAS/shim.h): the KL divergence of two softmax rows with its
/// own exp and log, the importance keys and the kept entries. Every build this CPU runs (portable,
/// AVX2, AVX-512F) against the others, and against references computed here.
@Suite("Arcee Fusion kernels")
struct DivergenceKernelTests {
    /// The builds of the kernels this CPU can run (0 portable, 1 AVX2, 2 AVX-512F).
    static var levels: [Int32] { [0] + (BLAS.hasAVX2 ? [1] : []) + (BLAS.hasAVX512F ? [2] : []) }

    /// A row: θ₀ ~ N(0, 0.02²) and τ ~ N(0, scale²), both rounded to Float (a fine-tune's rows
    /// for small scales; far from θ₀ for large ones, which takes the kernel's other forms).
    static func row(_ n: Int, scale: Double, seed: UInt64) -> (base: [Float], tau: [Float]) {
        var rng = SplitMix64(seed: seed)
        func normal() -> Double {
            let u = Swift.max(rng.uniform(), 1e-300), v = rng.uniform()
            return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
        }
        let base = (0..<n).map { _ in Float(0.02 * normal()) }
        let tau = (0..<n).map { _ in Float(scale * normal()) }
        return (base, tau)
    }

    /// KL(softmax(θ₁) + 10⁻⁸ ‖ softmax(θ₀) + 10⁻⁸) in Float80 with the C library's exp and log, as
    /// Σ (p·log(p/q) − p + q): the same value, as Σp = Σq, but without the error of Σp − Σq (10⁻¹⁸
    /// even in Float80), which Σ p·log(p/q) adds to a divergence as small as 10⁻⁹.
    static func reference(base: [Float], tau: [Float]) -> Double {
        let x0 = base.map { Float80($0) }, x1 = zip(base, tau).map { Float80(Double($0) + Double($1)) }
        let m0 = x0.max()!, m1 = x1.max()!
        let s0 = x0.reduce(Float80(0)) { $0 + Foundation.exp($1 - m0) }, s1 = x1.reduce(Float80(0)) { $0 + Foundation.exp($1 - m1) }
        var kl: Float80 = 0
        for j in x0.indices {
            let p = Foundation.exp(x1[j] - m1) / s1 + 1e-8, q = Foundation.exp(x0[j] - m0) / s0 + 1e-8
            kl += p * Foundation.log(p / q) - p + q
        }
        return Double(kl)
    }

    static func divergence(_ row: (base: [Float], tau: [Float]), level: Int32) -> Double {
        let n = row.base.count
        var x0 = [Double](repeating: 0, count: n), x1 = x0
        return BLAS.softmaxDivergence(base: row.base, delta: row.tau, count: n, scratch0: &x0, scratch1: &x1, level: level)
    }

    @Test("Every build gives the same bits, for Float and Double rows of any length, on every form of the terms",
          arguments: [1e-4, 2e-3, 0.05, 0.5, 5.0])
    func buildsAgree(scale: Double) {
        for (k, n) in [1, 3, 8, 13, 2_048, 5_003].enumerated() {
            let row = Self.row(n, scale: scale, seed: UInt64(k) &* 31 &+ 7)
            let wide = (base: row.base.map { Double($0) }, tau: row.tau.map { Double($0) })
            var x0 = [Double](repeating: 0, count: n), x1 = x0
            let results = Self.levels.map { Self.divergence(row, level: $0) }
            let fromDouble = Self.levels.map {
                BLAS.softmaxDivergence(base: wide.base, delta: wide.tau, count: n, scratch0: &x0, scratch1: &x1, level: $0)
            }
            #expect(Set((results + fromDouble).map(\.bitPattern)).count == 1, "n \(n): \(results) \(fromDouble)")
        }
    }

    @Test("The divergence is within 1e-11 of the exact value, relative (Σ p·log(p/q) in Double is 100× further off on a fine-tune's rows)",
          arguments: [1e-4, 2e-3, 0.05, 0.5, 5.0])
    func accurate(scale: Double) throws {
        for (k, n) in [7, 2_048, 5_632].enumerated() {
            let row = Self.row(n, scale: scale, seed: 100 + UInt64(k))
            let exact = Self.reference(base: row.base, tau: row.tau)
            let error = abs(Self.divergence(row, level: Self.levels.last!) - exact) / exact
            #expect(error < 1e-11, "n \(n), τ scale \(scale): relative error \(error)")
        }
    }

    @Test("The textbook formula in Double loses digits the kernel keeps (the reason for Σ q·g(p/q))")
    func textbookLosesDigits() {
        let row = Self.row(2_048, scale: 2e-3, seed: 5)
        let x0 = row.base.map { Double($0) }, x1 = zip(row.base, row.tau).map { Double($0) + Double($1) }
        let m0 = x0.max()!, m1 = x1.max()!
        let s0 = x0.reduce(0) { $0 + exp($1 - m0) }, s1 = x1.reduce(0) { $0 + exp($1 - m1) }
        var textbook = 0.0
        for j in x0.indices {
            let p = exp(x1[j] - m1) / s1 + 1e-8, q = exp(x0[j] - m0) / s0 + 1e-8
            textbook += p * log(p / q)
        }
        let exact = Self.reference(base: row.base, tau: row.tau)
        let kernel = abs(Self.divergence(row, level: Self.levels.last!) - exact) / exact
        #expect(kernel * 100 < abs(textbook - exact) / exact, "kernel \(kernel), textbook \(abs(textbook - exact) / exact)")
    }

    @Test("exp is within 2 ulp and log within 1 ulp of the exact values; exp is 0 below −708 and for −∞, NaN stays NaN")
    func expAndLog() {
        var rng = SplitMix64(seed: 3)
        var worstExp = 0.0, worstLog = 0.0
        func ulps(_ value: Double, _ exact: Float80) -> Double {
            Double(abs(Float80(value) - exact)) / Double(exact).magnitude.ulp
        }
        for _ in 0..<200_000 {
            let x = -rng.uniform() * 708
            worstExp = Swift.max(worstExp, ulps(BLAS.divergenceExp(x), Foundation.exp(Float80(x))))
            let y = Foundation.exp((rng.uniform() - 0.5) * 40), near = 1 + (rng.uniform() - 0.5) * 1e-3
            worstLog = Swift.max(worstLog, ulps(BLAS.divergenceLog(y), Foundation.log(Float80(y))),
                                 ulps(BLAS.divergenceLog(near), Foundation.log(Float80(near))))
        }
        #expect(worstExp <= 2 && worstLog <= 1, "exp \(worstExp) ulp, log \(worstLog) ulp")
        #expect(BLAS.divergenceExp(0) == 1 && BLAS.divergenceLog(1) == 0)
        #expect(BLAS.divergenceExp(-708.5) == 0 && BLAS.divergenceExp(-.infinity) == 0 && BLAS.divergenceExp(.nan).isNaN)
    }

    @Test("Importance keys, the keys under three prefixes and the kept entries are the Swift formulas', in every build")
    func keysAndSelection() {
        for n in [1, 8, 13, 2_053] {
            var tau = Self.row(n, scale: 2e-3, seed: UInt64(n)).tau
            if n > 2 { tau[1] = -0.0; tau[2] = .nan }
            let kl = 3.7e-6
            let keys = tau.map { SignedOrder.key(Float(Double($0.magnitude) * kl)) }
            let prefixes = (UInt32(keys[0] >> 16), UInt32(keys[n / 2] >> 16), UInt32(keys[n - 1] >> 16))
            let under = keys.filter { [prefixes.0, prefixes.1, prefixes.2].contains(UInt32($0 >> 16)) }
            let threshold = Float(Double(tau[n / 2].magnitude) * kl)
            let kept = tau.map { Float(Double($0.magnitude) * kl) >= threshold ? $0 : 0 }
            for level in Self.levels {
                var out = [UInt64](repeating: 0, count: n)
                #expect(BLAS.fusionKeys(tau, count: n, divergence: kl, into: &out, under: nil, shift: 16, level: level) == n)
                #expect(out == keys, "level \(level), n \(n)")
                let gathered = BLAS.fusionKeys(tau, count: n, divergence: kl, into: &out, under: prefixes, shift: 16, level: level)
                #expect(Array(out[0..<gathered]) == under, "level \(level), n \(n)")
                var selected = [Float](repeating: 1, count: n)
                BLAS.fusionSelect(tau, count: n, divergence: kl, threshold: threshold, into: &selected, level: level)
                #expect(selected.map(\.bitPattern) == kept.map(\.bitPattern), "level \(level), n \(n)")
            }
        }
    }
}
