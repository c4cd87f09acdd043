import Foundation

/// A square matrix as a heat map in SVG text — analyze's pairwise cosines and sign conflicts.
///
/// What it draws: the title; one cell per entry, coloured on `scale` (values outside it take the
/// end colour; the printed value stays exact), with the value printed in it to 2 decimals;
/// undefined entries (NaN, ±∞) grey with "n/a"; the labels left of the rows and, rotated, above
/// the columns; a colour bar with ticks beside the matrix, and under it a grey swatch "n/a:
/// undefined" when there is an undefined cell.
///
/// Bounds: the matrix is at most 480 pixels wide (cells of 64 pixels, fewer pixels for more than 7
/// labels); values are printed while a cell is at least 34 pixels (up to 14 labels), labels while
/// it is at least 9 (up to 53), cut with "…" beyond 150 pixels; at most 200 labels are drawn (the
/// first 200, with a note saying so). Entries missing from a short row count as undefined. The same
/// map gives the same bytes.
public struct HeatMap: Sendable {
    public enum Scale: Sendable {
        /// Blue (lower end) – white (middle) – red (upper end), e.g. cosines on -1...1.
        case diverging(ClosedRange<Double>)
        /// Light yellow to dark blue (YlGnBu), e.g. fractions on 0...1.
        case sequential(ClosedRange<Double>)
    }

    public var title: String
    public var labels: [String]
    /// Row-major, `labels.count` × `labels.count`; NaN is undefined (grey, "n/a").
    public var values: [[Double]]
    public var scale: Scale

    public init(title: String, labels: [String], values: [[Double]], scale: Scale) {
        self.title = title
        self.labels = labels
        self.values = values
        self.scale = scale
    }

    public func svg() -> String {
        var canvas = SVGCanvas()
        let size = draw(into: &canvas)
        return canvas.document(width: size.width, height: size.height, title: title)
    }
}

extension HeatMap: PlotPanel {
    static let maximumLabels = 200
    static let matrixWidth = 480.0

    /// The entry (i, j), NaN when missing or not finite.
    func value(_ i: Int, _ j: Int) -> Double {
        guard i < values.count, j < values[i].count, values[i][j].isFinite else { return .nan }
        return values[i][j]
    }

    /// A cell's printed value: 2 decimals, never "-0.00".
    static func cellText(_ value: Double) -> String {
        guard value.isFinite else { return "n/a" }
        let text = String(format: "%.2f", value)
        return text == "-0.00" ? "0.00" : text
    }

    var range: (lower: Double, upper: Double, stops: [Palette.RGB]) {
        let (r, stops) = switch scale {
        case .diverging(let r): (r, Palette.diverging)
        case .sequential(let r): (r, Palette.sequential)
        }
        guard r.lowerBound.isFinite, r.upperBound.isFinite, r.upperBound > r.lowerBound else { return (0, 1, stops) }
        return (r.lowerBound, r.upperBound, stops)
    }

    func color(_ value: Double) -> Palette.RGB {
        let (lower, upper, stops) = range
        return Palette.color(stops, at: (value - lower) / (upper - lower))
    }

    func draw(into canvas: inout SVGCanvas) -> (width: Double, height: Double) {
        let n = min(labels.count, Self.maximumLabels)
        let cell = n == 0 ? 64 : min(64, Self.matrixWidth / Double(n))
        let valueFont = min(13, cell * 0.28), labelFont = min(12, cell * 0.8), titleFont = 16.0, tickFont = 12.0
        let showValues = cell >= 34, showLabels = cell >= 9
        let names = showLabels ? labels.prefix(n).map { SVGCanvas.truncated($0, width: 150, size: labelFont) } : []
        let labelWidth = names.map { SVGCanvas.textWidth($0, size: labelFont) }.max() ?? 0
        let note = labels.count > n ? "showing the first \(n) of \(labels.count)" : nil

        let top = 44 + (note == nil ? 0 : 18) + labelWidth * 0.71 + 10
        let left = 14 + labelWidth + 8
        let side = cell * Double(n)
        let barX = left + side + 28, barHeight = max(side, 180.0)
        let (lower, upper, stops) = range
        let barScale = AxisScale(values: [lower, upper], target: 6)
        let barTicks = barScale.ticks.filter { $0 >= lower - 1e-9 && $0 <= upper + 1e-9 }
        let barLabelWidth = barTicks.map { SVGCanvas.textWidth(barScale.label($0), size: tickFont) }.max() ?? 0
        let hasUndefined = (0..<n).contains { i in (0..<n).contains { j in value(i, j).isNaN } }
        let undefinedText = "n/a: undefined"
        var width = barX + 16 + 8 + barLabelWidth + 14
        if hasUndefined { width = max(width, barX + 20 + SVGCanvas.textWidth(undefinedText, size: tickFont) + 14) }
        // The last column's rotated label reaches up and to the right of the matrix.
        width = max(width, left + side - cell / 2 + labelWidth * 0.71 + 14)
        width = max(320, width, min(640, SVGCanvas.textWidth(title, size: titleFont, bold: true) + 24))
        let height = top + barHeight + (hasUndefined ? 34 : 0) + 24

        canvas.open("title")
        canvas.text(SVGCanvas.truncated(title, width: width - 24, size: titleFont, bold: true), x: width / 2, y: 28, size: titleFont,
                    anchor: .middle, bold: true)
        if let note { canvas.text(note, x: width / 2, y: 46, size: tickFont, anchor: .middle, fill: Palette.axis) }
        canvas.close()

        canvas.open("cells")
        for i in 0..<n {
            for j in 0..<n {
                let v = value(i, j)
                let x = left + Double(j) * cell, y = top + Double(i) * cell
                let fill = v.isNaN ? Palette.undefined : color(v)
                canvas.rect(x: x, y: y, width: cell, height: cell, fill: fill.hex,
                            stroke: cell >= 10 ? "#ffffff" : nil, strokeWidth: 1)
                if showValues {
                    canvas.text(Self.cellText(v), x: x + cell / 2, y: y + cell / 2 + valueFont * 0.36, size: valueFont,
                                anchor: .middle, fill: Palette.textColor(on: fill))
                }
            }
        }
        canvas.close()

        if showLabels {
            canvas.open("labels")
            for (i, name) in names.enumerated() {
                let center = Double(i) * cell + cell / 2
                canvas.text(name, x: left - 8, y: top + center + labelFont * 0.36, size: labelFont, anchor: .end)
                canvas.text(name, x: left + center, y: top - 8, size: labelFont, rotate: -45)
            }
            canvas.close()
        }

        canvas.open("color-bar")
        let steps = 64
        for k in 0..<steps {
            let y = top + barHeight * Double(k) / Double(steps)
            let t = 1 - (Double(k) + 0.5) / Double(steps)
            canvas.rect(x: barX, y: y, width: 16, height: barHeight / Double(steps) + 0.5, fill: Palette.color(stops, at: t).hex)
        }
        canvas.rect(x: barX, y: top, width: 16, height: barHeight, fill: "none", stroke: Palette.axis)
        for t in barTicks {
            let y = top + barHeight * (upper - t) / (upper - lower)
            canvas.line(barX + 16, y, barX + 21, y, stroke: Palette.axis)
            canvas.text(barScale.label(t), x: barX + 24, y: y + 4, size: tickFont)
        }
        if hasUndefined {
            let y = top + barHeight + 14
            canvas.rect(x: barX, y: y, width: 16, height: 16, fill: Palette.undefined.hex, stroke: Palette.axis)
            canvas.text(undefinedText, x: barX + 22, y: y + 12.5, size: tickFont)
        }
        canvas.close()
        return (width, height)
    }
}
