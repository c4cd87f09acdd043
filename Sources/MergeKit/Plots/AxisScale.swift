import Foundation

/// An axis's range and its tick values: steps of 1, 2 or 5 × 10ᵏ, about `target` of them, the
/// range widened to whole steps (so the axis starts and ends on a labelled tick), labels printed
/// with the decimals the step needs and no more.
struct AxisScale: Equatable {
    let lower: Double
    let upper: Double
    let ticks: [Double]
    let step: Double
    /// Decimals of the tick labels (-1: printed in exponent notation).
    let decimals: Int

    /// The scale for `values` (non-finite ones ignored), never narrower than `including`.
    init(values: [Double], including: ClosedRange<Double>? = nil, target: Int = 6) {
        var lo = Double.infinity, hi = -Double.infinity
        for v in values where v.isFinite { lo = min(lo, v); hi = max(hi, v) }
        if let including, including.lowerBound.isFinite, including.upperBound.isFinite {
            lo = min(lo, including.lowerBound); hi = max(hi, including.upperBound)
        }
        if lo > hi { lo = 0; hi = 1 }
        // Keep far from overflow: a span must be a finite number.
        lo = max(lo, -1e300); hi = min(hi, 1e300)
        if hi - lo <= abs(hi) * 1e-12 {
            let pad = lo == 0 ? 0.5 : abs(lo) * 0.05
            lo -= pad; hi += pad
        }
        let step = Self.niceStep((hi - lo) / Double(max(1, target - 1)))
        let first = (lo / step + 1e-9).rounded(.down), last = (hi / step - 1e-9).rounded(.up)
        guard step.isFinite, step > 0, last - first <= 100 else {
            self.init(lower: lo, upper: hi, ticks: [lo, hi], step: hi - lo, decimals: -1)
            return
        }
        let ticks = stride(from: first, through: last, by: 1).map { k -> Double in
            let v = k * step
            return abs(v) < step * 1e-9 ? 0 : v
        }
        let magnitude = max(abs(ticks.first ?? 0), abs(ticks.last ?? 0))
        let decimals = magnitude >= 1e7 || step < 1e-6 ? -1 : max(0, Int(-log10(step).rounded(.down)))
        self.init(lower: first * step, upper: last * step, ticks: ticks, step: step, decimals: decimals)
    }

    private init(lower: Double, upper: Double, ticks: [Double], step: Double, decimals: Int) {
        self.lower = lower
        self.upper = upper
        self.ticks = ticks
        self.step = step
        self.decimals = decimals
    }

    /// The smallest of 1, 2, 5, 10 × 10ᵏ at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw.isFinite, raw > 0 else { return 1 }
        let exponent = log10(raw).rounded(.down)
        let power = pow(10, exponent)
        let fraction = raw / power
        let nice: Double = fraction <= 1 + 1e-9 ? 1 : fraction <= 2 + 1e-9 ? 2 : fraction <= 5 + 1e-9 ? 5 : 10
        return nice * power
    }

    /// A tick's label: fixed decimals (or exponent notation), never "-0".
    func label(_ value: Double) -> String {
        let text = decimals < 0 ? String(format: "%.3g", value) : String(format: "%.\(decimals)f", value)
        return text.hasPrefix("-") && Double(text) == 0 ? String(text.dropFirst()) : text
    }

    /// Where `value` falls between `start` (the lower end) and `end` (the upper end) in pixels.
    func position(_ value: Double, from start: Double, to end: Double) -> Double {
        guard upper > lower else { return start }
        return start + (value - lower) / (upper - lower) * (end - start)
    }
}
