import Foundation
import Testing
@testable import MergeKit

/// The SVD wrappers of Kernels/LAPACK*.swift: exact thin SVD (both drivers and the fallback path),
/// polar factor, Householder orthonormalisation and the randomized SVD, on seeded random matrices
/// with known spectra. Tolerances are multiples of the element type's ε scaled by the dimension,
/// well inside LAPACK's backward-error bounds.
@Suite("LAPACK")
struct LAPACKTests {
    // MARK: - Helpers

    /// A rows×columns matrix of independent standard normals (row-major).
    static func gaussian<T: LAPACKScalar>(_ rows: Int, _ columns: Int, seed: UInt64) -> [T] {
        var g = GaussianGenerator(seed: seed)
        return (0..<(rows * columns)).map { _ in T(g.next()) }
    }

    /// A rows×k matrix with orthonormal columns (row-major), in Double.
    static func orthonormal(_ rows: Int, _ k: Int, seed: UInt64) -> [Double] {
        // orthonormalizeColumns works on the column-major matrix, i.e. the row-major transpose.
        var columnMajor: [Double] = gaussian(k, rows, seed: seed)
        try! LAPACK.orthonormalizeColumns(&columnMajor, rows: rows, columns: k, tensor: "test")
        return transpose(columnMajor, rows: k, columns: rows)
    }

    static func transpose<T>(_ a: [T], rows: Int, columns: Int) -> [T] {
        var out = a
        for i in 0..<rows { for j in 0..<columns { out[j * rows + i] = a[i * columns + j] } }
        return out
    }

    /// U·diag(σ)·Vᵀ with random orthonormal U (rows×k) and V (columns×k), k = σ.count, formed in
    /// Double and rounded once to T.
    static func withSpectrum<T: LAPACKScalar>(_ rows: Int, _ columns: Int, _ sigma: [Double], seed: UInt64) -> [T] {
        let k = sigma.count
        let u = orthonormal(rows, k, seed: seed)
        let v = orthonormal(columns, k, seed: seed &+ 0x5555)
        var us = u
        for i in 0..<rows { for j in 0..<k { us[i * k + j] *= sigma[j] } }
        var a = [Double](repeating: 0, count: rows * columns)
        us.withUnsafeBufferPointer { up in
            v.withUnsafeBufferPointer { vp in
                a.withUnsafeMutableBufferPointer { ap in
                    LAPACK.gemm(transposeA: false, transposeB: true, m: rows, n: columns, k: k,
                                up.baseAddress!, lda: k, vp.baseAddress!, ldb: k, ap.baseAddress!, ldc: columns)
                }
            }
        }
        return a.map { T($0) }
    }

    static func frobenius<T: LAPACKScalar>(_ a: [T]) -> Double {
        a.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
    }

    static func frobeniusDistance<T: LAPACKScalar>(_ a: [T], _ b: [T]) -> Double {
        precondition(a.count == b.count)
        var sum = 0.0
        for i in a.indices { let d = Double(a[i]) - Double(b[i]); sum += d * d }
        return sum.squareRoot()
    }

    /// max |XᵀX − I| for the `count` columns of the row-major `length`×`count` matrix X, in Double.
    static func columnOrthonormalityError<T: LAPACKScalar>(_ x: [T], length: Int, count: Int) -> Double {
        var worst = 0.0
        for a in 0..<count {
            for b in a..<count {
                var dot = 0.0
                for i in 0..<length { dot += Double(x[i * count + a]) * Double(x[i * count + b]) }
                worst = max(worst, abs(dot - (a == b ? 1 : 0)))
            }
        }
        return worst
    }

    struct Shape: Sendable, CustomTestStringConvertible {
        let rows: Int, columns: Int
        /// nil: full-rank Gaussian; otherwise a product of Gaussians of this rank.
        let rank: Int?
        var testDescription: String { "\(rows)×\(columns)" + (rank.map { " rank \($0)" } ?? "") }
    }

    static let shapes: [Shape] = [
        Shape(rows: 60, columns: 40, rank: nil), Shape(rows: 40, columns: 60, rank: nil),
        Shape(rows: 50, columns: 50, rank: nil), Shape(rows: 1, columns: 30, rank: nil),
        Shape(rows: 30, columns: 1, rank: nil), Shape(rows: 1, columns: 1, rank: nil),
        Shape(rows: 64, columns: 48, rank: 5), Shape(rows: 48, columns: 64, rank: 1),
        Shape(rows: 200, columns: 120, rank: nil),
    ]

    static func matrix<T: LAPACKScalar>(_ shape: Shape, seed: UInt64) -> [T] {
        guard let r = shape.rank else { return gaussian(shape.rows, shape.columns, seed: seed) }
        let left: [Double] = gaussian(shape.rows, r, seed: seed)
        let right: [Double] = gaussian(r, shape.columns, seed: seed &+ 1)
        var a = [Double](repeating: 0, count: shape.rows * shape.columns)
        left.withUnsafeBufferPointer { lp in
            right.withUnsafeBufferPointer { rp in
                a.withUnsafeMutableBufferPointer { ap in
                    LAPACK.gemm(transposeA: false, transposeB: false, m: shape.rows, n: shape.columns, k: r,
                                lp.baseAddress!, lda: r, rp.baseAddress!, ldb: shape.columns, ap.baseAddress!, ldc: shape.columns)
                }
            }
        }
        return a.map { T($0) }
    }

    /// Checks every property of an exact thin SVD of `a`: shapes, reconstruction, orthonormality of
    /// U and V, descending non-negative singular values.
    static func checkSVD<T: LAPACKScalar>(_ d: LAPACK.Decomposition<T>, of a: [T], _ shape: Shape, _ label: String) {
        let k = min(shape.rows, shape.columns)
        let eps = Double(T.ulpOfOne)
        #expect(d.rank == k && d.u.count == shape.rows * k && d.s.count == k && d.vt.count == k * shape.columns, "\(label): shapes")
        let error = frobeniusDistance(d.reconstruct(), a) / max(frobenius(a), .leastNormalMagnitude)
        #expect(error <= 4 * eps * Double(k).squareRoot() + 2 * eps, "\(label): relative reconstruction error \(error)")
        let bound = 4 * eps * Double(max(shape.rows, shape.columns))
        let uError = columnOrthonormalityError(d.u, length: shape.rows, count: k)
        let v = transpose(d.vt, rows: k, columns: shape.columns)
        let vError = columnOrthonormalityError(v, length: shape.columns, count: k)
        #expect(uError <= bound, "\(label): ‖UᵀU − I‖max = \(uError)")
        #expect(vError <= bound, "\(label): ‖VᵀV − I‖max = \(vError)")
        #expect(d.s.allSatisfy { $0 >= 0 }, "\(label): negative singular value")
        #expect(zip(d.s, d.s.dropFirst()).allSatisfy { $0 >= $1 }, "\(label): singular values not descending: \(d.s)")
    }

    // MARK: - Exact SVD

    @Test("thin SVD: reconstruction, orthonormal U and V, descending σ (Float, both drivers)",
          arguments: shapes, [LAPACK.Driver.divideAndConquer, .qrIteration])
    func exactFloat(shape: Shape, driver: LAPACK.Driver) throws {
        let a: [Float] = Self.matrix(shape, seed: UInt64(shape.rows * 1000 + shape.columns))
        let d = try LAPACK.svd(a, rows: shape.rows, columns: shape.columns, tensor: "t", driver: driver)
        #expect(d.driver == driver)
        Self.checkSVD(d, of: a, shape, "Float \(shape.testDescription) \(driver)")
        if let r = shape.rank {
            #expect(d.numericalRank() == r, "rank: \(d.s)")
        }
    }

    @Test("thin SVD in Double", arguments: shapes)
    func exactDouble(shape: Shape) throws {
        let a: [Double] = Self.matrix(shape, seed: UInt64(shape.rows * 7 + shape.columns))
        let d = try LAPACK.svd(a, rows: shape.rows, columns: shape.columns, tensor: "t")
        #expect(d.driver == .divideAndConquer)
        Self.checkSVD(d, of: a, shape, "Double \(shape.testDescription)")
        if let r = shape.rank { #expect(d.numericalRank() == r) }
    }

    @Test("the input buffer is left untouched")
    func inputPreserved() throws {
        let a: [Float] = Self.gaussian(20, 13, seed: 3)
        let copy = a
        for driver in LAPACK.Driver.allCases {
            _ = try LAPACK.svd(a, rows: 20, columns: 13, tensor: "t", driver: driver)
        }
        #expect(a == copy)
    }

    @Test("known spectrum: singular values recovered to ε·σ₁, numerical rank of rank-k products",
          arguments: [1, 3, 7, 16])
    func knownSpectrum(k: Int) throws {
        let sigma = (0..<k).map { 3.0 * pow(0.7, Double($0)) }
        let a: [Float] = Self.withSpectrum(40, 24, sigma, seed: UInt64(100 + k))
        let d = try LAPACK.svd(a, rows: 40, columns: 24, tensor: "t")
        for (i, expected) in sigma.enumerated() {
            #expect(abs(Double(d.s[i]) - expected) <= 16 * Double(Float.ulpOfOne) * sigma[0], "σ\(i) = \(d.s[i]), expected \(expected)")
        }
        for i in k..<d.rank { #expect(Double(d.s[i]) <= 16 * Double(Float.ulpOfOne) * sigma[0]) }
        #expect(d.numericalRank() == k)
    }

    @Test("zero and empty matrices")
    func degenerate() throws {
        let zero = [Float](repeating: 0, count: 12)
        let d = try LAPACK.svd(zero, rows: 3, columns: 4, tensor: "zero")
        #expect(d.s == [0, 0, 0])
        #expect(d.reconstruct().allSatisfy { $0 == 0 })
        #expect(d.numericalRank() == 0)
        for (rows, columns) in [(0, 5), (5, 0), (0, 0)] {
            let e = try LAPACK.svd([Float](), rows: rows, columns: columns, tensor: "empty")
            #expect(e.rank == 0 && e.u.isEmpty && e.s.isEmpty && e.vt.isEmpty)
            #expect(e.reconstruct().count == 0)
        }
    }

    @Test("truncation: reconstruct(rank:) = truncated(to:).reconstruct(), error = tail of σ (Eckart–Young)")
    func truncation() throws {
        let a: [Float] = Self.gaussian(30, 20, seed: 11)
        let d = try LAPACK.svd(a, rows: 30, columns: 20, tensor: "t")
        for r in [0, 1, 5, 19, 20, 25] {
            let t = d.truncated(to: r)
            #expect(t.rank == min(r, 20) && t.u.count == 30 * t.rank && t.vt.count == t.rank * 20)
            let direct = d.reconstruct(rank: r), viaTruncated = t.reconstruct()
            #expect(Self.frobeniusDistance(direct, viaTruncated) <= 1e-5 * Self.frobenius(a))
            let actual = Self.frobeniusDistance(a, direct)
            let predicted = d.truncationError(rank: r)
            #expect(abs(actual - predicted) <= 1e-5 * Self.frobenius(a), "r = \(r): \(actual) vs \(predicted)")
        }
    }

    // MARK: - Fallback and errors

    @Test("sgesdd not converging falls back to sgesvd, which gives the same decomposition",
          arguments: [Shape(rows: 37, columns: 23, rank: nil), Shape(rows: 23, columns: 37, rank: nil), Shape(rows: 30, columns: 30, rank: 4)])
    func fallback(shape: Shape) throws {
        let a: [Float] = Self.matrix(shape, seed: 77)
        let normal = try LAPACK.svd(a, rows: shape.rows, columns: shape.columns, tensor: "t")
        #expect(normal.driver == .divideAndConquer)
        let fallback = try LAPACK.svd(a, rows: shape.rows, columns: shape.columns, tensor: "t",
                                      simulateNonConvergence: [.divideAndConquer])
        #expect(fallback.driver == .qrIteration)
        let direct = try LAPACK.svd(a, rows: shape.rows, columns: shape.columns, tensor: "t", driver: .qrIteration)
        #expect(fallback == direct, "the fallback must be exactly sgesvd on the original input")
        Self.checkSVD(fallback, of: a, shape, "fallback")
        let scale = Double(normal.s[0])
        for i in 0..<normal.rank {
            #expect(abs(Double(normal.s[i]) - Double(fallback.s[i])) <= 8 * Double(Float.ulpOfOne) * scale)
        }
        // Singular vectors agree up to sign where σ is simple and well separated from 0.
        let k = normal.rank
        for j in 0..<k where Double(normal.s[j]) > 1e-3 * scale {
            var dot = 0.0
            for i in 0..<shape.rows { dot += Double(normal.u[i * k + j]) * Double(fallback.u[i * k + j]) }
            #expect(abs(abs(dot) - 1) <= 1e-3, "column \(j) of U: |⟨u, u′⟩| = \(abs(dot))")
        }
    }

    @Test("a driver that does not converge (after the fallback, or alone) throws naming the tensor and both attempts")
    func notConverged() {
        let a: [Float] = Self.gaussian(12, 9, seed: 4)
        let both = #expect(throws: MergeKitError.self) {
            _ = try LAPACK.svd(a, rows: 12, columns: 9, tensor: "model.layers.3.self_attn.o_proj.weight",
                               simulateNonConvergence: [.divideAndConquer, .qrIteration])
        }
        #expect(both?.code == .invalidArgument)
        #expect(both?.tensor == "model.layers.3.self_attn.o_proj.weight")
        #expect(both?.description.contains("12×9") == true && both?.description.contains("sgesdd info = 1, sgesvd info = 1") == true,
                "\(String(describing: both))")
        #expect(both?.fix != nil)
        let alone = #expect(throws: MergeKitError.self) {
            _ = try LAPACK.svd(a, rows: 12, columns: 9, tensor: "w", driver: .divideAndConquer, simulateNonConvergence: [.divideAndConquer])
        }
        #expect(alone?.description.contains("sgesdd info = 1") == true && alone?.description.contains("sgesvd") == false)
    }

    @Test("NaN or Inf input: .nonFiniteValue naming the tensor and the element",
          arguments: [Float.nan, .infinity, -.infinity])
    func nonFinite(value: Float) {
        var a: [Float] = Self.gaussian(6, 5, seed: 1)
        a[2 * 5 + 3] = value
        for driver in LAPACK.Driver.allCases {
            let error = #expect(throws: MergeKitError.self) {
                _ = try LAPACK.svd(a, rows: 6, columns: 5, tensor: "model.layers.0.mlp.down_proj.weight", driver: driver)
            }
            #expect(error?.code == .nonFiniteValue)
            #expect(error?.tensor == "model.layers.0.mlp.down_proj.weight")
            #expect(error?.description.contains("[2, 3]") == true, "\(String(describing: error))")
        }
        let randomized = #expect(throws: MergeKitError.self) {
            _ = try LAPACK.randomizedSVD(a, rows: 6, columns: 5, rank: 1, oversampling: 1, seed: 0, tensor: "lora")
        }
        #expect(randomized?.code == .nonFiniteValue && randomized?.tensor == "lora")
        let polar = #expect(throws: MergeKitError.self) {
            _ = try LAPACK.polar(a, rows: 6, columns: 5, tensor: "tsv")
        }
        #expect(polar?.code == .nonFiniteValue && polar?.tensor == "tsv")
    }

    // MARK: - Polar factor

    @Test("polar factor: orthonormal, equal to U·Vᵀ, nearest orthonormal matrix, identity on orthonormal input",
          arguments: [Shape(rows: 30, columns: 12, rank: nil), Shape(rows: 12, columns: 30, rank: nil), Shape(rows: 16, columns: 16, rank: nil)])
    func polar(shape: Shape) throws {
        let (m, n) = (shape.rows, shape.columns)
        let a: [Float] = Self.gaussian(m, n, seed: 5)
        let p = try LAPACK.polar(a, rows: m, columns: n, tensor: "t")
        #expect(p.count == m * n)
        let eps = Double(Float.ulpOfOne)
        if m >= n {
            #expect(Self.columnOrthonormalityError(p, length: m, count: n) <= 8 * eps * Double(m))
        } else {
            #expect(Self.columnOrthonormalityError(Self.transpose(p, rows: m, columns: n), length: n, count: m) <= 8 * eps * Double(n))
        }
        // = U·Vᵀ of the SVD.
        let d = try LAPACK.svd(a, rows: m, columns: n, tensor: "t")
        var unit = d
        unit.s = [Float](repeating: 1, count: d.rank)
        #expect(Self.frobeniusDistance(p, unit.reconstruct()) <= 8 * eps * Double(max(m, n)))
        // Nearest: ‖A − P‖ = ‖σ − 1‖ and no other orthonormal matrix tried is closer.
        let distance = Self.frobeniusDistance(a, p)
        let predicted = d.s.reduce(0.0) { $0 + (Double($1) - 1) * (Double($1) - 1) }.squareRoot()
        #expect(abs(distance - predicted) <= 1e-4 * predicted)
        for seed in UInt64(1)...5 {
            let candidate: [Float] = Self.gaussian(m, n, seed: seed &* 31)
            let other = try LAPACK.polar(candidate, rows: m, columns: n)
            #expect(Self.frobeniusDistance(a, other) >= distance)
        }
        // polar(Q·S) = Q for orthonormal Q and symmetric positive definite S; polar(Q) = Q.
        let k = min(m, n)
        let q = Self.orthonormal(max(m, n), k, seed: 9).map { Float($0) }
        let qShaped = m >= n ? q : Self.transpose(q, rows: n, columns: m)
        let pq = try LAPACK.polar(qShaped, rows: m, columns: n)
        #expect(Self.frobeniusDistance(pq, qShaped) <= 8 * eps * Double(k))
    }

    // MARK: - Randomized SVD

    /// ‖A − Â_r‖_F of the randomized SVD divided by that of the exact rank-r truncation, averaged
    /// over `seeds`.
    static func randomizedRatio(spectrum sigma: [Double], rows: Int, columns: Int, rank r: Int,
                                powerIterations q: Int, seeds: ClosedRange<UInt64>) throws -> Double {
        let a: [Float] = withSpectrum(rows, columns, sigma, seed: 2024)
        let exact = try LAPACK.svd(a, rows: rows, columns: columns, tensor: "t")
        let optimal = frobeniusDistance(a, exact.reconstruct(rank: r))
        var total = 0.0
        for seed in seeds {
            let approx = try LAPACK.randomizedSVD(a, rows: rows, columns: columns, rank: r, powerIterations: q, seed: seed, tensor: "t")
            #expect(approx.rank == r && approx.u.count == rows * r && approx.vt.count == r * columns)
            total += frobeniusDistance(a, approx.reconstruct()) / optimal
        }
        return total / Double(seeds.count)
    }

    enum Spectrum: String, CaseIterable, Sendable {
        case harmonic = "i^-1", inverseSquare = "i^-2", exponential = "exp(-i/10)"
        func values(_ n: Int) -> [Double] {
            (1...n).map { i in
                switch self {
                case .harmonic: 1 / Double(i)
                case .inverseSquare: 1 / Double(i * i)
                case .exponential: exp(-Double(i) / 10)
                }
            }
        }
        /// Bounds on the mean error ratio for q = 0, 1, 2 (the measured values in LAPACK.swift's
        /// documentation, plus a margin).
        var bounds: [Double] {
            switch self {
            case .harmonic: [1.45, 1.02, 1.003]
            case .inverseSquare: [1.50, 1.005, 1.0002]
            case .exponential: [1.40, 1.003, 1.0001]
            }
        }
    }

    @Test("randomized SVD: Frobenius error vs the exact rank-r truncation (400×300, r = 20, p = 10)",
          arguments: Spectrum.allCases)
    func randomizedAccuracy(spectrum: Spectrum) throws {
        var previous = Double.infinity
        for q in 0...2 {
            let ratio = try Self.randomizedRatio(spectrum: spectrum.values(300), rows: 400, columns: 300, rank: 20,
                                                 powerIterations: q, seeds: 1...5)
            #expect(ratio >= 1 - 1e-6, "cannot beat Eckart–Young: \(ratio)")
            #expect(ratio <= spectrum.bounds[q], "\(spectrum.rawValue), q = \(q): error ratio \(ratio)")
            #expect(ratio <= previous + 1e-6, "power iterations must not hurt: \(ratio) after \(previous)")
            previous = ratio
        }
        #expect(previous <= 1.01, "within 1 % of the optimum with the default q = 2")
    }

    @Test("randomized SVD: factors orthonormal, singular values close to the exact leading ones")
    func randomizedFactors() throws {
        let sigma = Spectrum.inverseSquare.values(60)
        let a: [Float] = Self.withSpectrum(90, 60, sigma, seed: 8)
        let d = try LAPACK.randomizedSVD(a, rows: 90, columns: 60, rank: 8, seed: 42, tensor: "t")
        #expect(d.rank == 8 && d.s.count == 8)
        #expect(Self.columnOrthonormalityError(d.u, length: 90, count: 8) <= 1e-5)
        #expect(Self.columnOrthonormalityError(Self.transpose(d.vt, rows: 8, columns: 60), length: 60, count: 8) <= 1e-5)
        #expect(zip(d.s, d.s.dropFirst()).allSatisfy { $0 >= $1 })
        for i in 0..<8 { #expect(abs(Double(d.s[i]) - sigma[i]) <= 1e-3 * sigma[i], "σ\(i): \(d.s[i]) vs \(sigma[i])") }
    }

    @Test("randomized SVD is deterministic for a seed and depends on it")
    func randomizedDeterminism() throws {
        let a: [Float] = Self.gaussian(120, 80, seed: 6)
        let first = try LAPACK.randomizedSVD(a, rows: 120, columns: 80, rank: 10, seed: 1234, tensor: "t")
        let second = try LAPACK.randomizedSVD(a, rows: 120, columns: 80, rank: 10, seed: 1234, tensor: "t")
        #expect(first == second)
        let other = try LAPACK.randomizedSVD(a, rows: 120, columns: 80, rank: 10, seed: 1235, tensor: "t")
        #expect(other.u != first.u)
        let wide = try LAPACK.randomizedSVD(Self.transpose(a, rows: 120, columns: 80), rows: 80, columns: 120, rank: 10,
                                            seed: 1234, tensor: "t")
        #expect(wide.rank == 10)
    }

    @Test("randomized SVD: exact SVD when r + p ≥ min(rows, columns); rank clamped; rank 0 is empty")
    func randomizedSmall() throws {
        let a: [Float] = Self.gaussian(30, 14, seed: 2)
        let exact = try LAPACK.svd(a, rows: 30, columns: 14, tensor: "t")
        let viaRandomized = try LAPACK.randomizedSVD(a, rows: 30, columns: 14, rank: 6, oversampling: 8, seed: 9, tensor: "t")
        #expect(viaRandomized == exact.truncated(to: 6))
        let clamped = try LAPACK.randomizedSVD(a, rows: 30, columns: 14, rank: 50, seed: 9, tensor: "t")
        #expect(clamped == exact)
        let none = try LAPACK.randomizedSVD(a, rows: 30, columns: 14, rank: 0, seed: 9, tensor: "t")
        #expect(none.rank == 0 && none.reconstruct().allSatisfy { $0 == 0 })
    }

    @Test("randomized SVD recovers a rank-k matrix exactly when ℓ ≥ k")
    func randomizedLowRank() throws {
        let shape = Shape(rows: 100, columns: 70, rank: 6)
        let a: [Float] = Self.matrix(shape, seed: 13)
        let d = try LAPACK.randomizedSVD(a, rows: 100, columns: 70, rank: 6, oversampling: 4, powerIterations: 0, seed: 1, tensor: "t")
        let error = Self.frobeniusDistance(a, d.reconstruct()) / Self.frobenius(a)
        #expect(error <= 1e-5, "relative error \(error)")
    }

    // MARK: - Generator and QR

    @Test("Gaussian generator: deterministic, mean 0, variance 1")
    func generator() {
        var g = GaussianGenerator(seed: 99), h = GaussianGenerator(seed: 99)
        var sum = 0.0, squares = 0.0
        let n = 200_000
        for _ in 0..<n {
            let x = g.next()
            #expect(x == h.next())
            sum += x
            squares += x * x
        }
        let mean = sum / Double(n), variance = squares / Double(n) - mean * mean
        #expect(abs(mean) < 0.01 && abs(variance - 1) < 0.02, "mean \(mean), variance \(variance)")
    }

    @Test("orthonormalizeColumns: orthonormal basis of the same span")
    func qr() throws {
        let (rows, columns) = (50, 7)
        let original: [Float] = Self.gaussian(columns, rows, seed: 21) // column-major rows×columns
        var q = original
        try LAPACK.orthonormalizeColumns(&q, rows: rows, columns: columns, tensor: "t")
        let qRowMajor = Self.transpose(q, rows: columns, columns: rows)
        #expect(Self.columnOrthonormalityError(qRowMajor, length: rows, count: columns) <= 1e-5)
        // Each original column is reproduced by its projection QQᵀx.
        for c in 0..<columns {
            let x = Array(original[(c * rows)..<((c + 1) * rows)])
            var projection = [Double](repeating: 0, count: rows)
            for j in 0..<columns {
                let column = q[(j * rows)..<((j + 1) * rows)]
                let dot = zip(column, x).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                for (i, value) in column.enumerated() { projection[i] += dot * Double(value) }
            }
            #expect(Self.frobeniusDistance(projection, x.map { Double($0) }) <= 1e-5 * Self.frobenius(x))
        }
    }
}
