import Foundation

/// Sweep grids: "start:stop:step" (inclusive of stop, within rounding) or a comma list "a,b,c".
///
/// A grid is refused when it is empty, when start:stop:step is malformed (three finite numbers,
/// step > 0, stop ≥ start), when two of its points are equal (a repeated list value, or a step so
/// small that points round together: they would be two identical outputs under two names), or
/// when it has more than `maximumPoints` points. A sweep's points are the product of its axes,
/// also at most `maximumPoints` (checked when the sweep is planned).
public enum SweepGrid {
    /// The most points one sweep writes (each is a whole output).
    public static let maximumPoints = 10_000

    /// Why a grid was refused, completing "GRID: …".
    public struct Failure: Error, Sendable, Equatable {
        public let reason: String
    }

    /// The grid's points, or why it is refused.
    public static func values(_ text: String) -> Result<[Double], Failure> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { return .failure(Failure(reason: "the grid is empty; use start:stop:step or a comma list")) }
        let values: [Double]
        if trimmed.contains(":") {
            let parts = trimmed.split(separator: ":", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 3, let start = parts[0], let stop = parts[1], let step = parts[2],
                  start.isFinite, stop.isFinite, step.isFinite else {
                return .failure(Failure(reason: "\(trimmed) is not start:stop:step with three finite numbers, e.g. 0:1:0.05"))
            }
            guard step > 0, stop >= start else {
                return .failure(Failure(reason: "\(trimmed) needs a positive step and stop ≥ start"))
            }
            let span = (stop - start) / step + 1e-9
            guard span.isFinite, span < Double(maximumPoints) else {
                return .failure(Failure(reason: "\(trimmed) has more than \(maximumPoints) points, the most a sweep writes"))
            }
            // start + i·step shown to 12 significant digits, so that 0:1:0.05 gives 0.15, not 0.15000000000000002.
            values = (0...Int(span.rounded(.down))).map { rounded(start + Double($0) * step) }
        } else {
            var list: [Double] = []
            for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
                let item = part.trimmingCharacters(in: .whitespaces)
                guard let value = Double(item) else {
                    return .failure(Failure(reason: item.isEmpty ? "\(trimmed) has an empty entry" : "\(item) is not a number"))
                }
                list.append(value)
            }
            guard list.count <= maximumPoints else {
                return .failure(Failure(reason: "the list has \(list.count) points; a sweep writes at most \(maximumPoints)"))
            }
            values = list
        }
        if let repeated = firstRepeat(values) {
            return .failure(Failure(reason: trimmed.contains(":")
                ? "the step is so small that points round to the same value (\(MethodParameter.format(repeated)))"
                : "\(MethodParameter.format(repeated)) appears twice"))
        }
        return .success(values)
    }

    /// The grid's points, nil when it is refused.
    public static func parse(_ text: String) -> [Double]? {
        try? values(text).get()
    }

    /// The first value that equals an earlier one (NaN never does), or that prints like one.
    static func firstRepeat(_ values: [Double]) -> Double? {
        var seen = Set<String>()
        for value in values where !seen.insert(MethodParameter.format(value)).inserted { return value }
        return nil
    }

    /// `value` to 12 significant digits.
    static func rounded(_ value: Double) -> Double {
        Double(String(format: "%.12g", value)) ?? value
    }
}
