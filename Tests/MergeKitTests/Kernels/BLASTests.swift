import Testing
@testable import MergeKit

/// The level-1 BLAS wrappers against plain loops on seeded random data, within the textbook
/// rounding-error bounds (exact where the operation rounds only once), and on empty buffers.
@Suite("BLAS level 1")
struct BLASTests {
    enum Compute: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case float = "Float", double = "Double"
        var testDescription: String { rawValue }
    }

    /// Lengths around the kernels' unrolling widths, plus a few large ones.
    static let lengths = [1, 2, 3, 7, 8, 9, 16, 17, 31, 100, 1023, 4099]

    static func vector<T: ComputeScalar>(_ n: Int, _ rng: inout SplitMix64) -> [T] {
        (0..<n).map { _ in T(rng.value()) }
    }

    static func seed(_ n: Int, _ salt: UInt64) -> UInt64 { UInt64(n) &* 0x1000_0001 &+ salt }

    // MARK: - Generic checks

    static func checkAxpy<T: ComputeScalar>(_: T.Type, n: Int) {
        var rng = SplitMix64(seed: seed(n, 1))
        let x: [T] = vector(n, &rng)
        let y0: [T] = vector(n, &rng)
        for alpha in [T(rng.value()), -1, 0.5, 0] {
            var y = y0
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { T.axpy(alpha, xp, $0) } }
            var worst = 0.0, worstIndex = 0
            for i in 0..<n {
                let a = Double(alpha), xi = Double(x[i]), yi = Double(y0[i])
                let exact = yi.addingProduct(a, xi) // one rounding (of an exact Float result for T = Float)
                // BLAS may or may not fuse: allow two roundings of the result, relative to the terms.
                let bound = 2 * Double(T.ulpOfOne) * (Swift.abs(a * xi) + Swift.abs(yi))
                let error = Swift.abs(Double(y[i]) - exact)
                let ratio = bound > 0 ? error / bound : (error == 0 ? 0 : .infinity)
                if !(ratio <= worst) { worst = ratio; worstIndex = i }
            }
            #expect(worst <= 1, "\(T.self).axpy(\(alpha)), n = \(n): element \(worstIndex) off by \(worst) × the bound")
        }
    }

    static func checkScal<T: ComputeScalar>(_: T.Type, n: Int) {
        var rng = SplitMix64(seed: seed(n, 2))
        let x0: [T] = vector(n, &rng)
        for alpha in [T(rng.value()), -1, 3, 0.125] {
            var x = x0
            x.withUnsafeMutableBufferPointer { T.scal(alpha, $0) }
            // A single multiplication rounds once: the result is exact to the bit.
            let expected = x0.map { alpha * $0 }
            #expect(x == expected, "\(T.self).scal(\(alpha)), n = \(n)")
        }
    }

    static func checkDot<T: ComputeScalar>(_: T.Type, n: Int) {
        var rng = SplitMix64(seed: seed(n, 3))
        let x: [T] = vector(n, &rng)
        let y: [T] = vector(n, &rng)
        let result = x.withUnsafeBufferPointer { xp in y.withUnsafeBufferPointer { T.dot(xp, $0) } }
        var reference = 0.0, magnitude = 0.0
        for i in 0..<n {
            reference = reference.addingProduct(Double(x[i]), Double(y[i]))
            magnitude += Swift.abs(Double(x[i]) * Double(y[i]))
        }
        // γ_n bound for a sum of n products in T, doubled for the reference's own error in Double.
        let bound = 2 * Double(n + 1) * Double(T.ulpOfOne) * magnitude
        #expect(Swift.abs(Double(result) - reference) <= bound,
                "\(T.self).dot, n = \(n): \(result), loop gives \(reference) (bound \(bound))")
    }

    static func checkNrm2<T: ComputeScalar>(_: T.Type, n: Int) {
        var rng = SplitMix64(seed: seed(n, 4))
        let x: [T] = vector(n, &rng)
        let result = x.withUnsafeBufferPointer { T.nrm2($0) }
        let reference = x.reduce(0.0) { $0.addingProduct(Double($1), Double($1)) }.squareRoot()
        let bound = 2 * Double(n + 2) * Double(T.ulpOfOne) * reference
        #expect(Swift.abs(Double(result) - reference) <= bound,
                "\(T.self).nrm2, n = \(n): \(result), loop gives \(reference) (bound \(bound))")
    }

    static func checkCopy<T: ComputeScalar>(_: T.Type, n: Int) {
        var rng = SplitMix64(seed: seed(n, 5))
        let x: [T] = vector(n, &rng)
        var y: [T] = x.map { $0 + 1 } // every element differs before the copy
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { T.copy(xp, $0) } }
        #expect(y == x, "\(T.self).copy, n = \(n)")
    }

    static func checkEmpty<T: ComputeScalar>(_: T.Type) {
        // Zero-length buffers may have no base address; the wrappers must not hand nil to BLAS.
        let empty = UnsafeBufferPointer<T>(start: nil, count: 0)
        let mutableEmpty = UnsafeMutableBufferPointer<T>(start: nil, count: 0)
        T.axpy(2, empty, mutableEmpty)
        T.scal(2, mutableEmpty)
        T.copy(empty, mutableEmpty)
        #expect(T.dot(empty, empty) == 0)
        #expect(T.nrm2(empty) == 0)
        // Empty Swift arrays go through the same path.
        var none: [T] = []
        let dot = none.withUnsafeBufferPointer { a in none.withUnsafeBufferPointer { T.dot(a, $0) } }
        let norm = none.withUnsafeBufferPointer { T.nrm2($0) }
        none.withUnsafeMutableBufferPointer { T.scal(3, $0) }
        #expect(dot == 0 && norm == 0)
    }

    /// ‖(3s, 4s)‖ = 5s even when s² over- or underflows the element type.
    static func checkNrm2Scaling<T: ComputeScalar>(_: T.Type, scales: [T]) {
        for s in scales {
            let x: [T] = [3 * s, 4 * s]
            let result = x.withUnsafeBufferPointer { T.nrm2($0) }
            let expected = 5 * s
            #expect(Swift.abs(result - expected) <= 4 * T.ulpOfOne * expected,
                    "\(T.self).nrm2([3, 4] × \(s)) = \(result), expected \(expected)")
        }
    }

    // MARK: - Tests

    @Test("axpy matches a plain loop within rounding", arguments: Compute.allCases, lengths)
    func axpy(compute: Compute, n: Int) {
        switch compute {
        case .float: Self.checkAxpy(Float.self, n: n)
        case .double: Self.checkAxpy(Double.self, n: n)
        }
    }

    @Test("scal matches a plain loop exactly", arguments: Compute.allCases, lengths)
    func scal(compute: Compute, n: Int) {
        switch compute {
        case .float: Self.checkScal(Float.self, n: n)
        case .double: Self.checkScal(Double.self, n: n)
        }
    }

    @Test("dot matches a plain loop within the summation error bound", arguments: Compute.allCases, lengths)
    func dot(compute: Compute, n: Int) {
        switch compute {
        case .float: Self.checkDot(Float.self, n: n)
        case .double: Self.checkDot(Double.self, n: n)
        }
    }

    @Test("nrm2 matches a plain loop within the summation error bound", arguments: Compute.allCases, lengths)
    func nrm2(compute: Compute, n: Int) {
        switch compute {
        case .float: Self.checkNrm2(Float.self, n: n)
        case .double: Self.checkNrm2(Double.self, n: n)
        }
    }

    @Test("nrm2 does not overflow or underflow when the squares would")
    func nrm2Scaling() {
        Self.checkNrm2Scaling(Float.self, scales: [1e30, 1e37, 1e-25, 1e-35, 1])
        Self.checkNrm2Scaling(Double.self, scales: [1e200, 1e300, 1e-200, 1e-300, 1])
    }

    @Test("copy copies every element exactly", arguments: Compute.allCases, lengths)
    func copy(compute: Compute, n: Int) {
        switch compute {
        case .float: Self.checkCopy(Float.self, n: n)
        case .double: Self.checkCopy(Double.self, n: n)
        }
    }

    @Test("Empty buffers (nil base address included): no BLAS call, dot and nrm2 are 0", arguments: Compute.allCases)
    func empty(compute: Compute) {
        switch compute {
        case .float: Self.checkEmpty(Float.self)
        case .double: Self.checkEmpty(Double.self)
        }
    }
}

extension SplitMix64 {
    /// Uniform in [-1, 1) times a random power of two in 2^-4...2^4, so magnitudes vary.
    mutating func value() -> Double {
        let unit = Double(next() >> 11) * 0x1p-53
        let exponent = Int(next() % 9) - 4
        return (2 * unit - 1) * Double(sign: .plus, exponent: exponent, significand: 1)
    }
}
