import Testing
@testable import MergeKit

/// The project's own dot-product and axpy kernels (`BLAS.levelOneKernels`): their documented
/// evaluation order, written out here as plain loops, and the same bits from the portable, AVX2
/// and AVX-512F builds (those the CPU has), so that a merge rounds the same on every machine.
@Suite("Level-1 kernels: one order on every machine")
struct LevelOneKernelTests {
    static let lengths = [0, 1, 5, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 100, 1000, 4099]

    /// The builds this CPU can run.
    static var levels: [Int32] { [0] + (BLAS.hasAVX2 ? [1] : []) + (BLAS.hasAVX512F ? [2] : []) }

    /// Values of mixed sign spread over ten binary orders of magnitude, so that a different
    /// summation order or a fused multiply-add would show in the low bits.
    static func vector<T: BinaryFloatingPoint>(_ n: Int, _ rng: inout SplitMix64) -> [T] {
        (0..<n).map { _ in T((rng.value() * 2 - 1) * Double(1 << (rng.next() % 10))) }
    }

    /// The order shim.h documents: `lanes` partial sums, lane l taking the elements i ≡ l (mod
    /// lanes), each step a rounded product then a rounded sum; then halves added pairwise until one
    /// is left (lanes 32: 16 sums of lanes l and l + 16, then 8, 4, 2, 1).
    static func referenceDot<T: BinaryFloatingPoint>(_ x: [T], _ y: [T], lanes: Int) -> T {
        var partial = [T](repeating: 0, count: lanes)
        for i in x.indices {
            let product = x[i] * y[i]
            partial[i % lanes] = partial[i % lanes] + product
        }
        // Fold: lanes 32 as two 16-lane accumulators (l and l + 16 first), then the 16 lanes as
        // 8 + 8, then 4 + 4, then (0 + 2) + (1 + 3).
        var width = lanes / 2
        while width >= 4 {
            for l in 0..<width { partial[l] = partial[l] + partial[l + width] }
            width /= 2
        }
        return (partial[0] + partial[2]) + (partial[1] + partial[3])
    }

    @Test("Float dot: the documented order, the same bits in every build", arguments: lengths)
    func floatDot(n: Int) {
        var rng = SplitMix64(seed: UInt64(n) &+ 11)
        let x: [Float] = Self.vector(n, &rng), y: [Float] = Self.vector(n, &rng)
        let expected = Self.referenceDot(x, y, lanes: 32)
        for level in Self.levels {
            let got = x.withUnsafeBufferPointer { xp in y.withUnsafeBufferPointer { BLAS.dot(xp, $0, level: level) } }
            #expect(got.bitPattern == expected.bitPattern, "n = \(n), level \(level): \(got) against \(expected)")
        }
        let viaProtocol = x.withUnsafeBufferPointer { xp in y.withUnsafeBufferPointer { Float.dot(xp, $0) } }
        #expect(viaProtocol.bitPattern == expected.bitPattern)
    }

    @Test("Double dot: the documented order, the same bits in every build", arguments: lengths)
    func doubleDot(n: Int) {
        var rng = SplitMix64(seed: UInt64(n) &+ 12)
        let x: [Double] = Self.vector(n, &rng), y: [Double] = Self.vector(n, &rng)
        let expected = Self.referenceDot(x, y, lanes: 16)
        for level in Self.levels {
            let got = x.withUnsafeBufferPointer { xp in y.withUnsafeBufferPointer { BLAS.dot(xp, $0, level: level) } }
            #expect(got.bitPattern == expected.bitPattern, "n = \(n), level \(level): \(got) against \(expected)")
        }
    }

    @Test("asum: Σ|xᵢ| in the dot product's order, the same bits in every build", arguments: lengths)
    func asum(n: Int) {
        var rng = SplitMix64(seed: UInt64(n) &+ 14)
        let x: [Float] = Self.vector(n, &rng), xd: [Double] = Self.vector(n, &rng)
        let expected = Self.referenceDot(x.map { Swift.abs($0) }, [Float](repeating: 1, count: n), lanes: 32)
        let expectedD = Self.referenceDot(xd.map { Swift.abs($0) }, [Double](repeating: 1, count: n), lanes: 16)
        for level in Self.levels {
            #expect(x.withUnsafeBufferPointer { BLAS.asum($0, level: level) }.bitPattern == expected.bitPattern, "n = \(n), level \(level)")
            #expect(xd.withUnsafeBufferPointer { BLAS.asum($0, level: level) }.bitPattern == expectedD.bitPattern, "n = \(n), level \(level)")
        }
        #expect(x.withUnsafeBufferPointer { Float.asum($0) }.bitPattern == expected.bitPattern)
    }

    @Test("axpy: y + (α·x) rounded twice (never fused), the same bits in every build", arguments: lengths)
    func axpy(n: Int) {
        var rng = SplitMix64(seed: UInt64(n) &+ 13)
        let x: [Float] = Self.vector(n, &rng), y0: [Float] = Self.vector(n, &rng)
        let xd: [Double] = Self.vector(n, &rng), yd0: [Double] = Self.vector(n, &rng)
        for alpha in [Float(0.3), -1.7, 1e-3] {
            let expected = zip(x, y0).map { xi, yi -> Float in let p = alpha * xi; return yi + p }
            let expectedD = zip(xd, yd0).map { xi, yi -> Double in let p = Double(alpha) * xi; return yi + p }
            for level in Self.levels {
                var y = y0, yd = yd0
                x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { BLAS.axpy(alpha, xp, $0, level: level) } }
                xd.withUnsafeBufferPointer { xp in yd.withUnsafeMutableBufferPointer { BLAS.axpy(Double(alpha), xp, $0, level: level) } }
                #expect(y.map(\.bitPattern) == expected.map(\.bitPattern), "Float, n = \(n), α = \(alpha), level \(level)")
                #expect(yd.map(\.bitPattern) == expectedD.map(\.bitPattern), "Double, n = \(n), α = \(alpha), level \(level)")
            }
        }
    }

    @Test("A fused multiply-add would give other bits: the data can tell the orders apart")
    func dataDistinguishesOrders() {
        var rng = SplitMix64(seed: 99)
        let x: [Float] = Self.vector(1000, &rng), y: [Float] = Self.vector(1000, &rng)
        let ours = Self.referenceDot(x, y, lanes: 32)
        var fused = [Float](repeating: 0, count: 32)
        for i in x.indices { fused[i % 32] = fused[i % 32].addingProduct(x[i], y[i]) }
        var sequential: Float = 0
        for i in x.indices { sequential = sequential + x[i] * y[i] }
        var width = 16
        while width >= 4 {
            for l in 0..<width { fused[l] = fused[l] + fused[l + width] }
            width /= 2
        }
        let foldedFused = (fused[0] + fused[2]) + (fused[1] + fused[3])
        #expect(ours.bitPattern != foldedFused.bitPattern)
        #expect(ours.bitPattern != sequential.bitPattern)
    }
}
