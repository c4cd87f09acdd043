import Foundation
import Testing
@testable import MergeKit

@Suite("Line charts")
struct LineChartTests {
    /// The tick labels of an axis group, and each tick's pixel position (from its tick mark).
    static func ticks(_ svg: String, _ axis: String) -> [(label: String, position: Double)] {
        let lines = SVGText.part(svg, axis)
        let marks = SVGText.elements("line", lines).dropFirst()  // the first line is the axis itself
        let labels = SVGText.texts(lines).dropLast()  // the last text is the axis title
        return zip(labels, marks).map { label, mark in
            (label, axis == "x-axis" ? SVGText.number("x1", mark)! : SVGText.number("y2", mark)!)
        }
    }

    @Test("Axes get ticks at steps of 1, 2 or 5 × 10ᵏ spanning the data, labelled with the decimals the step needs")
    func axisScales() {
        let unit = AxisScale(values: [0, 1], target: 6)
        #expect(unit.ticks == [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1] && unit.lower == 0 && unit.upper == 1)
        #expect(unit.ticks.map(unit.label) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        let data = AxisScale(values: [0.31, 0.87, .nan, .infinity], target: 6)
        #expect(data.ticks.map(data.label) == ["0.2", "0.4", "0.6", "0.8", "1.0"])
        let widened = AxisScale(values: [0.31, 0.87], including: 0...1, target: 6)
        #expect(widened.lower == 0 && widened.upper == 1)
        let large = AxisScale(values: [0, 1234], target: 6)
        #expect(large.ticks.map(large.label) == ["0", "500", "1000", "1500"])
        let flat = AxisScale(values: [5, 5], target: 6)
        #expect(flat.lower < 5 && flat.upper > 5 && flat.ticks.map(flat.label) == ["4.7", "4.8", "4.9", "5.0", "5.1", "5.2", "5.3"])
        let negative = AxisScale(values: [-0.35, 0.05], target: 6)
        #expect(negative.ticks.map(negative.label) == ["-0.4", "-0.3", "-0.2", "-0.1", "0.0", "0.1"], "never -0.0")
        let empty = AxisScale(values: [], target: 6)
        #expect(empty.lower == 0 && empty.upper == 1)
        let huge = AxisScale(values: [-1e308, 1e308], target: 6)
        #expect(huge.ticks.count <= 101 && huge.ticks.allSatisfy(\.isFinite))
    }

    @Test("The sweep chart has both axes with ticks 0.0…1.0 and titles, a title, and one line per series")
    func axesAndSeries() {
        let svg = PlotSamples.sweepChart.svg()
        let labels = ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
        #expect(Self.ticks(svg, "x-axis").map(\.label) == labels)
        #expect(Self.ticks(svg, "y-axis").map(\.label) == labels)
        #expect(SVGText.texts(SVGText.part(svg, "x-axis")).last == "λ (scaling coefficient)")
        #expect(SVGText.texts(SVGText.part(svg, "y-axis")).last == "accuracy")
        #expect(SVGText.texts(SVGText.part(svg, "title")) == ["Task arithmetic: accuracy against λ"])
        let series = SVGText.parts(svg, "series")
        #expect(series.count == 4)
        // The average is drawn last (on top), thicker, in black; each series has 11 dots.
        #expect(svg.range(of: "data-name=\"average\"")!.lowerBound > svg.range(of: "data-name=\"EuroSAT\"")!.lowerBound)
        #expect(SVGText.attribute("stroke-width", SVGText.elements("polyline", series[3])[0]) == "3.5")
        #expect(SVGText.attribute("stroke", SVGText.elements("polyline", series[3])[0]) == "#000000")
        #expect(series.allSatisfy { SVGText.elements("circle", $0).count == 11 })
        #expect(Set(series.map { SVGText.attribute("stroke", SVGText.elements("polyline", $0)[0])! }).count == 4)
    }

    @Test("The legend lists the average first, then the tasks, then the mark's label")
    func legend() {
        let legend = SVGText.part(PlotSamples.sweepChart.svg(), "legend")
        #expect(SVGText.texts(legend) == ["average", "MNIST", "SVHN", "EuroSAT", "best: λ = 0.6, 0.687"])
        // A swatch per series: a line in the series' colour.
        #expect(SVGText.elements("line", legend).compactMap { SVGText.attribute("stroke", $0) } == ["#000000", "#0072b2", "#e69f00", "#009e73"])
    }

    @Test("The mark's ring sits at its data coordinates on the axes as drawn")
    func markPosition() throws {
        let chart = PlotSamples.sweepChart
        let svg = chart.svg()
        let x = Self.ticks(svg, "x-axis"), y = Self.ticks(svg, "y-axis")
        // Pixel positions from the first and last ticks (0 and 1 on both axes).
        func px(_ v: Double) -> Double { x[0].position + v * (x[5].position - x[0].position) }
        func py(_ v: Double) -> Double { y[0].position + v * (y[5].position - y[0].position) }
        let ring = try #require(SVGText.elements("circle", SVGText.part(svg, "mark")).first)
        let mark = try #require(chart.mark)
        #expect(mark.x == 0.6 && abs(mark.y - 2.062 / 3) < 1e-9)
        #expect(abs(SVGText.number("cx", ring)! - px(mark.x)) <= 0.01)
        #expect(abs(SVGText.number("cy", ring)! - py(mark.y)) <= 0.01)
        #expect(SVGText.attribute("fill", ring) == "none" && SVGText.attribute("r", ring) == "9")
        // The average's dot at λ = 0.6 is under the ring.
        let dots = SVGText.elements("circle", SVGText.parts(svg, "series")[3])
        #expect(SVGText.number("cx", dots[6]) == SVGText.number("cx", ring) && SVGText.number("cy", dots[6]) == SVGText.number("cy", ring))
    }

    @Test("Text is XML-escaped and characters XML cannot hold are replaced")
    func escaping() {
        let chart = LineChart(title: "a < b & \"c\"\u{1}", xLabel: "x's", yLabel: "<y>",
                              series: [.init(name: "</text><script>", x: [0, 1], y: [0, 1])])
        let svg = chart.svg()
        #expect(!svg.contains("<script>") && svg.contains("&lt;/text&gt;&lt;script&gt;"))
        #expect(svg.contains("a &lt; b &amp; &quot;c&quot;\u{FFFD}") && svg.contains("x&apos;s") && svg.contains("&lt;y&gt;"))
        #expect(!svg.contains("\u{1}"))
        #expect(SVGCanvas.escaped("tab\tline\nend") == "tab line end")
    }

    @Test("The same chart gives the same bytes, numbers at fixed precision, no NaN or exponents")
    func deterministic() throws {
        let a = PlotSamples.sweepChart.svg(), b = PlotSamples.sweepChart.svg()
        #expect(a == b)
        #expect(a.hasPrefix(SVGCanvas.signature))
        let numbers = try Regex(#" (?:x|y|x1|y1|x2|y2|cx|cy|r|width|height|stroke-width)="([^"]*)""#)
        for match in a.matches(of: numbers) {
            let value = String(match.output[1].substring!)
            #expect(value.wholeMatch(of: /-?[0-9]+(\.[0-9]{1,2})?/) != nil, "\(value)")
        }
        #expect(!a.lowercased().contains("nan") && !a.contains("inf"))
        #expect(SVGCanvas.number(-0.001) == "0" && SVGCanvas.number(1.006) == "1.01" && SVGCanvas.number(2.5) == "2.5"
                && SVGCanvas.number(-3.04) == "-3.04" && SVGCanvas.number(.nan) == "0")
    }

    @Test("A NaN score leaves a gap in its line and no dot")
    func gaps() {
        let chart = LineChart(title: "t", xLabel: "x", yLabel: "y",
                              series: [.init(name: "a", x: [0, 1, 2, 3, 4], y: [0.1, 0.2, .nan, 0.4, 0.5])])
        let series = SVGText.part(chart.svg(), "series")
        #expect(SVGText.elements("polyline", series).count == 2)
        #expect(SVGText.elements("circle", series).count == 4)
        let empty = LineChart(title: "t", xLabel: "x", yLabel: "y", series: [.init(name: "a", x: [.nan], y: [1])]).svg()
        #expect(SVGText.elements("polyline", SVGText.part(empty, "series")).isEmpty && empty.contains("</svg>"))
    }

    @Test("Many series: all are drawn, colours then dash patterns tell them apart, the legend caps with '… and N more'")
    func manySeries() {
        let series = (0..<30).map { i in LineChart.Series(name: "task \(i)", x: [0, 1], y: [Double(i) / 30, 1 - Double(i) / 30]) }
            + [LineChart.Series(name: "average", x: [0, 1], y: [0.5, 0.5], emphasized: true)]
        let svg = LineChart(title: "t", xLabel: "x", yLabel: "y", series: series, mark: .init(x: 0, y: 0.5, label: "best")).svg()
        #expect(SVGText.parts(svg, "series").count == 31)
        let legend = SVGText.texts(SVGText.part(svg, "legend"))
        #expect(legend.first == "average" && legend.last == "best")
        #expect(legend.count == 16 && legend[14] == "… and 17 more", "\(legend)")
        let styles = Set(SVGText.parts(svg, "series").map { part in
            let line = SVGText.elements("polyline", part)[0]
            return "\(SVGText.attribute("stroke", line)!) \(SVGText.attribute("stroke-dasharray", line) ?? "solid")"
        })
        #expect(styles.count == 22, "21 colour × dash combinations and the average's black")
    }

    @Test("Long titles and names are cut with an ellipsis to fit")
    func truncation() {
        let long = String(repeating: "a very long task name ", count: 10)
        let svg = LineChart(title: long, xLabel: long, yLabel: long, series: [.init(name: long, x: [0, 1], y: [0, 1])]).svg()
        let title = SVGText.texts(SVGText.part(svg, "title"))[0]
        #expect(title.hasSuffix("…") && title.count < long.count)
        let name = SVGText.texts(SVGText.part(svg, "legend"))[0]
        #expect(name.hasSuffix("…") && SVGCanvas.textWidth(name, size: 12) <= 150)
        #expect(SVGText.texts(SVGText.part(svg, "x-axis")).last!.hasSuffix("…"))
        #expect(SVGCanvas.truncated("short", width: 100, size: 12) == "short")
    }

    @Test("Figures place panels side by side, each in its own group")
    func figure() {
        let figure = Figure(title: "two", panels: [.line(PlotSamples.sweepChart), .heatMap(PlotSamples.cosineMap)])
        let svg = figure.svg()
        let panels = svg.split(separator: "\n").filter { $0.contains("<g class=\"panel\"") }
        #expect(panels.count == 2 && panels[0].contains("translate(0,0)") && panels[1].contains("translate(720,0)"))
        #expect(Self.width(svg) == 720 + Self.width(PlotSamples.cosineMap.svg()))
        let stacked = Figure(title: "two", panels: figure.panels, columns: 1).svg()
        #expect(stacked.split(separator: "\n").filter { $0.contains("<g class=\"panel\"") }[1].contains("translate(0,440)"))
    }

    static func width(_ svg: String) -> Double {
        SVGText.number("width", svg.split(separator: "\n").map(String.init).first { $0.hasPrefix("<svg ") }!)!
    }
}
