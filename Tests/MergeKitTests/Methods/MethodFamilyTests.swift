import Foundation
import Testing
@testable import MergeKit

@Suite("DARE")
struct DARETests {
    /// 50,000 distinct non-zero task-vector entries for two models.
    static let taus: [[Double]] = (0..<2).map { (m: Int) -> [Double] in
        (0..<50_000).map { (j: Int) -> Double in
            let step: Int = (j * 7919 + m * 104_729) % 1999
            return Double(step + 1) / 4096
        }
    }

    @Test("Drops about p of the entries and rescales the survivors by 1/(1 − p)")
    func dropAndRescale() throws {
        let p = 0.3
        let merged = try mergeKnown(try DARE(dropRate: .init(p), seed: 11), [Self.taus[0]]).w
        let kept = merged.indices.filter { merged[$0] != 0 }
        let fraction = 1 - Double(kept.count) / Double(merged.count)
        #expect(abs(fraction - p) < 0.01, "dropped \(fraction)")
        for j in kept.prefix(1000) {
            #expect(abs(merged[j] - Double(Float(Self.taus[0][j])) / (1 - p)) <= 1e-6)
        }
    }

    @Test("The mask is exactly the counter-based stream: element j is dropped iff u_j < ⌊p·2⁵³⌋")
    func maskDefinition() throws {
        let merged = try mergeKnown(try DARE(dropRate: 0.5, seed: 42), Self.taus).w
        let a = CounterRandom(seed: 42, tensor: "w", input: 0), b = CounterRandom(seed: 42, tensor: "w", input: 1)
        let limit = CounterRandom.threshold(dropProbability: 0.5)
        for j in stride(from: 0, to: 50_000, by: 97) {
            let expected = (a.bits(j) >= limit ? Double(Float(Self.taus[0][j])) * 2 : 0)
                + (b.bits(j) >= limit ? Double(Float(Self.taus[1][j])) * 2 : 0)
            #expect(abs(merged[j] - expected) <= 2e-6, "element \(j)")
        }
    }

    @Test("Same seed: byte-identical output for 1 and 2 threads; another seed: another mask")
    func reproducible() throws {
        let one = try mergeKnown(try DARE(dropRate: 0.6, seed: 5, combination: .ties), Self.taus, threads: 1).w
        let two = try mergeKnown(try DARE(dropRate: 0.6, seed: 5, combination: .ties), Self.taus, threads: 2).w
        #expect(one.map { Float($0).bitPattern } == two.map { Float($0).bitPattern })
        let other = try mergeKnown(try DARE(dropRate: 0.6, seed: 6, combination: .ties), Self.taus, threads: 2).w
        #expect(one != other)
    }

    @Test("L1 rescaling restores each tensor's L1 norm (mergekit's rule)")
    func l1Rescale() throws {
        let merged = try mergeKnown(try DARE(dropRate: 0.7, seed: 3, rescale: .l1), [Self.taus[0]]).w
        let before = Self.taus[0].reduce(0) { $0 + abs(Double(Float($1))) }
        let after = merged.reduce(0) { $0 + abs($1) }
        #expect(abs(after - before) / before < 1e-5)
    }

    @Test("p = 0 keeps everything (task arithmetic); p outside [0, 1) is rejected")
    func bounds() throws {
        let kept = try mergeKnown(try DARE(dropRate: 0, seed: 1), [Self.taus[0]]).w
        #expect(kept == f32(Self.taus[0]))
        let error = try #require(throws: MergeKitError.self) { try DARE(dropRate: 1) }
        #expect(error.code == .invalidArgument && error.description == MethodParameter.dropRate.problem(1, label: "drop rate"))
    }
}

@Suite("Linear, Model Stock, MetaGPT, MagMax, Breadcrumbs")
struct OtherMethodTests {
    @Test("Linear: normalised weighted average and the plain weighted sum")
    func linear() throws {
        let base: [Double] = [1, 2, 3]
        let taus: [[Double]] = [[1, 0, -1], [3, 2, 1]]
        // θ₁ = [2, 2, 2], θ₂ = [4, 4, 4]; 0.75 θ₁ + 0.25 θ₂ = [2.5, 2.5, 2.5].
        expectClose(try mergeKnown(Linear(), taus, base: base, weights: [0.75, 0.25]).w, [2.5, 2.5, 2.5])
        // Not normalised: 2 θ₁ + 1 θ₂ = [8, 8, 8].
        expectClose(try mergeKnown(Linear(normalize: false), taus, base: base, weights: [2, 1]).w, [8, 8, 8])
        let zero = try #require(throws: MergeKitError.self) { try mergeKnown(Linear(), taus, base: base, weights: [1, -1]) }
        #expect(zero.code == .invalidArgument && zero.description.contains("sum to 0"))
    }

    @Test("Model Stock: t = 1 for parallel task vectors, 0 for opposite ones, the formula in between")
    func modelStock() throws {
        let base: [Double] = [1, 1]
        expectClose(try mergeKnown(ModelStock(), [[1, 2], [1, 2]], base: base).w, [2, 3])
        // Orthogonal: cos = 0 → t = 0 → θ₀.
        expectClose(try mergeKnown(ModelStock(), [[1, 0], [0, 1]], base: base).w, [1, 1])
        // cos = 0.6: t = 2·0.6/1.6 = 0.75; mean τ = (3.5, 2); θ = θ₀ + 0.75·mean.
        expectClose(try mergeKnown(ModelStock(), [[3, 4], [4, 0]], base: base).w, [1 + 0.75 * 3.5, 1 + 0.75 * 2], tolerance: 1e-6)
        let one = try #require(throws: MergeKitError.self) { try mergeKnown(ModelStock(), [[1, 2]]) }
        #expect(one.description.contains("at least 2"))
    }

    @Test("MetaGPT: λₜ = ‖τₜ‖²/Σ‖τₖ‖² over the whole model")
    func metaGPT() throws {
        // ‖τ₁‖² = 9 + 16 + 1 = 26 (over w and v), ‖τ₂‖² = 0 + 25 + 1 = 26 → λ = ½ each.
        let merged = try mergeKnown(MetaGPT(), [[3, 4], [0, 5]], second: [[1], [-1]])
        expectClose(merged.w, [1.5, 4.5])
        expectClose(merged.v, [0])
        let weights = try #require(throws: MergeKitError.self) { try mergeKnown(MetaGPT(), [[1], [2]], weights: [1, 2]) }
        #expect(weights.description.contains("metagpt") && weights.description.contains("Leave every weight at 1"))
    }

    @Test("MagMax: the largest magnitude per entry, the first input on ties")
    func magMax() throws {
        expectClose(try mergeKnown(try MagMax(), [[1, -3, 2, 0], [-2, 1, -2, 0]]).w, [-2, -3, 2, 0])
        expectClose(try mergeKnown(try MagMax(scale: 0.5), [[1, -3], [-2, 1]]).w, [-1, -1.5])
    }

    @Test("Breadcrumbs: drops the ⌊γn⌋ largest and the smallest, keeping ⌊density·n⌋")
    func breadcrumbs() throws {
        let tau: [Double] = [0.1, -0.9, 0.2, 0.8, -0.3, 0.7, 0.4, -0.6, 0.5, 1.0]
        // n = 10, keep 3, top 1, bottom 6: ascending ranks 6, 7, 8 → |τ| ∈ {0.7, 0.8, 0.9}.
        let merged = try mergeKnown(try Breadcrumbs(density: 0.3, gamma: 0.1), [tau]).w
        expectClose(merged, f32([0, -0.9, 0, 0.8, 0, 0.7, 0, 0, 0, 0]))
        // Ties: a stable ascending sort ranks earlier equals lower, so the later ones survive.
        let tied = try mergeKnown(try Breadcrumbs(density: 0.2, gamma: 0), [[1, 1, 1, 1, 1]]).w
        #expect(tied == [0, 0, 0, 0, 1])
    }
}

@Suite("Selections")
struct SelectionTests {
    @Test("Radix selection equals sorting, with heavy ties, for Float and Double keys")
    func radixMatchesSort() {
        var generator = SystemRandomNumberGenerator()
        for keyBits in [32, 64] {
            let values: [Float] = (0..<300_000).map { _ in Float(Int.random(in: -500...500, using: &generator)) / 64 }
            let keys = values.map { keyBits == 32 ? Float.magnitudeKey($0) : Float.wideMagnitudeKey($0) }.sorted()
            for rank in [0, 1, 150_000, 299_998, 299_999] {
                var selection = RadixSelection(rank: rank, keyBits: keyBits)
                while !selection.isDone {
                    // Two workers' halves, merged, as the statistics pass does.
                    var half = RadixSelection(rank: rank, keyBits: keyBits)
                    if selection.prefixBits > 0 { half = selection; half.clearCounts() }
                    values[..<150_000].withUnsafeBufferPointer { selection.observe($0) }
                    values[150_000...].withUnsafeBufferPointer { half.observe($0) }
                    selection.merge(half)
                    selection.finishPass()
                }
                #expect(selection.statistic == OrderStatistic(sortedKeys: keys, rank: rank), "rank \(rank), \(keyBits)-bit")
            }
        }
    }

    @Test("A rank window keeps exactly its size through ties, in both tie orders")
    func windowExactCount() {
        let values: [Float] = (0..<1000).map { Float($0 % 7 + 1) }  // never 0, so kept entries are the non-zero ones
        let keys = values.map { Float.magnitudeKey($0) }.sorted()
        for (lower, upper) in [(0, 10), (500, 1000), (123, 456), (990, 1000)] {
            for earlierHigher in [false, true] {
                var window = RankWindow(lower: lower, lowerStatistic: lower > 0 ? OrderStatistic(sortedKeys: keys, rank: lower) : nil,
                                        upper: upper, upperStatistic: upper < 1000 ? OrderStatistic(sortedKeys: keys, rank: upper - 1) : nil,
                                        earlierRanksHigher: earlierHigher)
                var copy = values
                let kept = copy.withUnsafeMutableBufferPointer { buffer in
                    // Visit in two chunks: ordinals must carry over.
                    window.apply(UnsafeMutableBufferPointer(rebasing: buffer[0..<400]))
                    window.apply(UnsafeMutableBufferPointer(rebasing: buffer[400...]))
                    return buffer.filter { $0 != 0 }.count
                }
                #expect(kept == upper - lower, "\(lower)..<\(upper) earlierHigher=\(earlierHigher)")
            }
        }
    }
}
