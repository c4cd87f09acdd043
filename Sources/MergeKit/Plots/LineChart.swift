/// A line chart as SVG text — a sweep's score against one swept parameter, one line per task plus
/// the average, the chosen point marked.
///
/// What it draws: the title; axes with ticks at steps of 1, 2 or 5 × 10ᵏ (`AxisScale`), tick
/// labels, axis titles and light grid lines; each series as a line (a gap where y is NaN or
/// infinite) with a dot at each point (up to 40 points per series; lines only beyond that), in the
/// Okabe–Ito colours, then dash patterns once the 7 colours are used (21 combinations, then they
/// repeat); emphasized series (the average) in black, thicker and drawn last, on top; the mark as a
/// black ring with a dashed drop line to the x axis; a legend to the right of the plot with each
/// series' swatch and name and, last, a ring with the mark's label (in the legend, so the label
/// never covers a line).
///
/// Bounds: names and titles longer than their space are cut with "…"; the legend shows as many
/// rows as fit beside the plot (16 at the default size, the mark's included) — the emphasized
/// series first, then the others in order, and a row "… and N more" when some do not fit — while
/// every series is still drawn. Points beyond the shorter of a series' `x` and `y` are ignored. A
/// chart of at least 320 × 240 pixels is drawn. The same chart gives the same bytes.
public struct LineChart: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var x: [Double]
        public var y: [Double]
        /// The average: black, thicker, drawn last.
        public var emphasized: Bool

        public init(name: String, x: [Double], y: [Double], emphasized: Bool = false) {
            self.name = name
            self.x = x
            self.y = y
            self.emphasized = emphasized
        }
    }

    /// A point to point out (the chosen grid point): a ring at (x, y) and `label` beside it.
    public struct Mark: Sendable {
        public var x: Double
        public var y: Double
        public var label: String

        public init(x: Double, y: Double, label: String) {
            self.x = x
            self.y = y
            self.label = label
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var mark: Mark?
    /// The y range to show at least (e.g. 0...1 for accuracy); the data widens it if outside.
    /// nil: the data's range, widened to whole ticks.
    public var yRange: ClosedRange<Double>?
    /// The picture's size in pixels (SVG user units).
    public var width: Double = 720
    public var height: Double = 440

    public init(title: String, xLabel: String, yLabel: String, series: [Series], mark: Mark? = nil,
                yRange: ClosedRange<Double>? = nil) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.mark = mark
        self.yRange = yRange
    }

    public func svg() -> String {
        var canvas = SVGCanvas()
        let size = draw(into: &canvas)
        return canvas.document(width: size.width, height: size.height, title: title)
    }
}

extension LineChart: PlotPanel {
    static let legendRow = 20.0
    static let maximumDottedPoints = 40

    /// The series' finite points, in order, cut into runs at non-finite values.
    static func runs(_ series: Series) -> [[(x: Double, y: Double)]] {
        var runs: [[(x: Double, y: Double)]] = [[]]
        for i in 0..<min(series.x.count, series.y.count) {
            let (x, y) = (series.x[i], series.y[i])
            if x.isFinite && y.isFinite {
                runs[runs.count - 1].append((x, y))
            } else if !runs[runs.count - 1].isEmpty {
                runs.append([])
            }
        }
        return runs.filter { !$0.isEmpty }
    }

    /// The legend's entries: (series index, name) — the emphasized series first, then the
    /// others in order — and how many were left out, for `rows` rows.
    static func legendEntries(_ series: [Series], rows: Int) -> (shown: [Int], omitted: Int) {
        let order = series.indices.filter { series[$0].emphasized } + series.indices.filter { !series[$0].emphasized }
        guard order.count > rows else { return (order, 0) }
        let shown = Array(order.prefix(max(0, rows - 1)))
        return (shown, order.count - shown.count)
    }

    func draw(into canvas: inout SVGCanvas) -> (width: Double, height: Double) {
        let width = max(320, width), height = max(240, height)
        let points = series.map { Array(zip($0.x, $0.y)) }
        var xs = points.flatMap { $0.map(\.0) }, ys = points.flatMap { $0.map(\.1) }
        if let mark { xs.append(mark.x); ys.append(mark.y) }
        let xScale = AxisScale(values: xs, target: 6)
        let yScale = AxisScale(values: ys, including: yRange, target: 6)
        let tickFont = 12.0, labelFont = 13.0, titleFont = 16.0

        // Layout: the legend to the right, tick labels and axis titles left and below.
        let legendNames = series.map { SVGCanvas.truncated($0.name, width: 150, size: tickFont, bold: $0.emphasized) }
        let legendText = zip(legendNames, series).map { SVGCanvas.textWidth($0, size: tickFont, bold: $1.emphasized) }.max() ?? 0
        let markLabel = SVGCanvas.truncated(mark?.label ?? "", width: 190, size: tickFont, bold: true)
        let markWidth = mark == nil ? 0 : SVGCanvas.textWidth(markLabel, size: tickFont, bold: true)
        let legendWidth = series.isEmpty && mark == nil ? 0
            : min(190, max(legendText, markWidth, SVGCanvas.textWidth("… and 99 more", size: tickFont))) + 46
        let yTickWidth = yScale.ticks.map { SVGCanvas.textWidth(yScale.label($0), size: tickFont) }.max() ?? 0
        let left = 22 + labelFont + yTickWidth + 10, top = 46.0, bottom = 58.0
        let right = width - 14 - (legendWidth > 0 ? legendWidth + 14 : 0)
        let plotBottom = height - bottom
        func px(_ x: Double) -> Double { xScale.position(x, from: left, to: right) }
        func py(_ y: Double) -> Double { yScale.position(y, from: plotBottom, to: top) }

        canvas.open("title")
        canvas.text(SVGCanvas.truncated(title, width: width - 24, size: titleFont, bold: true), x: width / 2, y: 28, size: titleFont,
                    anchor: .middle, bold: true)
        canvas.close()

        canvas.open("grid")
        for t in yScale.ticks { canvas.line(left, py(t), right, py(t), stroke: Palette.grid) }
        for t in xScale.ticks { canvas.line(px(t), top, px(t), plotBottom, stroke: Palette.grid) }
        canvas.close()

        canvas.open("x-axis")
        canvas.line(left, plotBottom, right, plotBottom, stroke: Palette.axis, width: 1.5)
        for t in xScale.ticks {
            canvas.line(px(t), plotBottom, px(t), plotBottom + 5, stroke: Palette.axis)
            canvas.text(xScale.label(t), x: px(t), y: plotBottom + 19, size: tickFont, anchor: .middle)
        }
        canvas.text(SVGCanvas.truncated(xLabel, width: right - left, size: labelFont, bold: true), x: (left + right) / 2, y: height - 14,
                    size: labelFont, anchor: .middle, bold: true)
        canvas.close()

        canvas.open("y-axis")
        canvas.line(left, top, left, plotBottom, stroke: Palette.axis, width: 1.5)
        for t in yScale.ticks {
            canvas.line(left - 5, py(t), left, py(t), stroke: Palette.axis)
            canvas.text(yScale.label(t), x: left - 8, y: py(t) + 4, size: tickFont, anchor: .end)
        }
        canvas.text(SVGCanvas.truncated(yLabel, width: plotBottom - top, size: labelFont, bold: true), x: 20, y: (top + plotBottom) / 2,
                    size: labelFont, anchor: .middle, bold: true, rotate: -90)
        canvas.close()

        // Ordinary series first, emphasized ones last (on top).
        let order = series.indices.filter { !series[$0].emphasized } + series.indices.filter { series[$0].emphasized }
        var styleIndex = [Int](repeating: 0, count: series.count)
        var next = 0
        for i in series.indices where !series[i].emphasized { styleIndex[i] = next; next += 1 }
        func style(_ i: Int) -> (color: String, dash: String?, width: Double, dot: Double) {
            if series[i].emphasized { return (Palette.emphasized, nil, 3.5, 4) }
            let (color, dash) = Palette.lineStyle(styleIndex[i])
            return (color, dash, 2, 3)
        }
        for i in order {
            let s = style(i)
            canvas.open("series", attributes: "data-name=\"\(SVGCanvas.escaped(series[i].name))\"")
            let runs = Self.runs(series[i])
            for run in runs { canvas.polyline(run.map { (px($0.x), py($0.y)) }, stroke: s.color, width: s.width, dash: s.dash) }
            if runs.reduce(0, { $0 + $1.count }) <= Self.maximumDottedPoints {
                for point in runs.joined() { canvas.circle(x: px(point.x), y: py(point.y), radius: s.dot, fill: s.color) }
            }
            canvas.close()
        }

        let marked = mark.flatMap { $0.x.isFinite && $0.y.isFinite ? $0 : nil }
        if let marked {
            let (mx, my) = (px(marked.x), py(marked.y))
            canvas.open("mark")
            canvas.line(mx, my + 9, mx, plotBottom, stroke: Palette.axis, width: 1, dash: "3 3")
            canvas.circle(x: mx, y: my, radius: 9, fill: "none", stroke: Palette.emphasized, strokeWidth: 2.5)
            canvas.close()
        }

        if legendWidth > 0 {
            let x0 = right + 14
            let markRows = marked == nil ? 0 : 1
            let rows = max(1, Int((plotBottom - top - 8) / Self.legendRow) - markRows)
            let (shown, omitted) = Self.legendEntries(series, rows: rows)
            let boxHeight = Double(shown.count + (omitted > 0 ? 1 : 0) + markRows) * Self.legendRow + 8
            canvas.open("legend")
            canvas.rect(x: x0, y: top, width: legendWidth, height: boxHeight, fill: "#ffffff", stroke: "#cccccc")
            for (row, i) in shown.enumerated() {
                let y = top + 4 + Self.legendRow * (Double(row) + 0.5)
                let s = style(i)
                canvas.line(x0 + 8, y, x0 + 32, y, stroke: s.color, width: s.width, dash: s.dash)
                canvas.circle(x: x0 + 20, y: y, radius: s.dot, fill: s.color)
                canvas.text(legendNames[i], x: x0 + 40, y: y + 4, size: tickFont, bold: series[i].emphasized)
            }
            if omitted > 0 {
                let y = top + 4 + Self.legendRow * (Double(shown.count) + 0.5)
                canvas.text("… and \(omitted) more", x: x0 + 40, y: y + 4, size: tickFont, fill: Palette.axis)
            }
            if let marked {
                let y = top + 4 + Self.legendRow * (Double(shown.count + (omitted > 0 ? 1 : 0)) + 0.5)
                canvas.open("mark-entry", attributes: "data-x=\"\(SVGCanvas.number(marked.x))\"")
                canvas.circle(x: x0 + 20, y: y, radius: 6, fill: "none", stroke: Palette.emphasized, strokeWidth: 2)
                canvas.text(markLabel, x: x0 + 40, y: y + 4, size: tickFont, bold: true)
                canvas.close()
            }
            canvas.close()
        }
        return (width, height)
    }
}
