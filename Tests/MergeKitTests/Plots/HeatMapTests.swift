import Foundation
import Testing
@testable import MergeKit

@Suite("Heat maps")
struct HeatMapTests {
    @Test("Each cell shows its value to 2 decimals on its colour; undefined cells are grey 'n/a' with a legend swatch")
    func cells() {
        let svg = PlotSamples.cosineMap.svg()
        let cells = SVGText.part(svg, "cells")
        #expect(SVGText.texts(cells) == ["1.00", "0.31", "-0.12", "n/a", "0.31", "1.00", "0.08", "n/a",
                                         "-0.12", "0.08", "1.00", "n/a", "n/a", "n/a", "n/a", "n/a"])
        let fills = SVGText.elements("rect", cells).map { SVGText.attribute("fill", $0)! }
        #expect(fills.count == 16 && fills.filter { $0 == "#bdbdbd" }.count == 7)
        #expect(fills[0] == "#b2182b", "1 is the diverging scale's red end")
        // Text is white on dark cells, black on light ones.
        let texts = SVGText.elements("text", cells).map { SVGText.attribute("fill", $0)! }
        #expect(texts[0] == "#ffffff" && texts[1] == "#111111" && texts[3] == "#111111")
        let bar = SVGText.texts(SVGText.part(svg, "color-bar"))
        #expect(bar == ["-1.0", "-0.5", "0.0", "0.5", "1.0", "n/a: undefined"])
        let defined = HeatMap(title: "t", labels: ["a", "b"], values: [[0, 0.5], [0.5, 1]], scale: .sequential(0...1)).svg()
        #expect(SVGText.texts(SVGText.part(defined, "color-bar")) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        #expect(!defined.contains("n/a"))
        #expect(HeatMap.cellText(-0.001) == "0.00" && HeatMap.cellText(0.126) == "0.13" && HeatMap.cellText(.infinity) == "n/a")
    }

    @Test("The scales: blue–white–red for -1…1, light-to-dark for 0…1, clamped outside their range")
    func colours() {
        let diverging = HeatMap(title: "", labels: [], values: [], scale: .diverging(-1...1))
        #expect(diverging.color(-1).hex == "#2166ac" && diverging.color(0).hex == "#f7f7f7" && diverging.color(1).hex == "#b2182b")
        #expect(diverging.color(-7).hex == "#2166ac" && diverging.color(3).hex == "#b2182b")
        let sequential = HeatMap(title: "", labels: [], values: [], scale: .sequential(0...1))
        #expect(sequential.color(0).hex == "#ffffd9" && sequential.color(1).hex == "#081d58")
        let a = sequential.color(0.25), b = sequential.color(0.75)
        #expect(a.luminance > b.luminance, "darker for more conflicts")
    }

    @Test("Labels name rows and columns, cut with an ellipsis when long, escaped")
    func labels() {
        let svg = PlotSamples.cosineMap.svg()
        let labels = SVGText.texts(SVGText.part(svg, "labels"))
        #expect(labels.count == 8)
        #expect(labels[0] == "[0] mnist" && labels[1] == "[0] mnist" && labels[6] == "[3] zero")
        #expect(labels[4].hasPrefix("[2] eurosat") && labels[4].hasSuffix("…") && labels[4].count < PlotSamples.labels[2].count)
        // Column labels are rotated.
        #expect(SVGText.elements("text", SVGText.part(svg, "labels"))[1].contains("rotate(-45"))
        let escaped = HeatMap(title: "<t>", labels: ["a&b", "\"c\""], values: [[1, 0], [0, 1]], scale: .diverging(-1...1)).svg()
        #expect(escaped.contains("a&amp;b") && escaped.contains("&quot;c&quot;") && escaped.contains("<title>&lt;t&gt;</title>"))
    }

    @Test("Large matrices stay at most 480 pixels: values go first, then labels; beyond 200 labels the first 200 are drawn")
    func bounds() {
        func map(_ n: Int) -> String {
            HeatMap(title: "t", labels: (0..<n).map { "m\($0)" },
                    values: (0..<n).map { i in (0..<n).map { j in i == j ? 1 : 0.1 } }, scale: .diverging(-1...1)).svg()
        }
        let thirty = map(30)
        #expect(SVGText.texts(SVGText.part(thirty, "cells")).isEmpty, "16-pixel cells hold no values")
        #expect(SVGText.texts(SVGText.part(thirty, "labels")).count == 60)
        let rects = SVGText.elements("rect", SVGText.part(thirty, "cells"))
        #expect(rects.count == 900 && SVGText.attribute("width", rects[0]) == "16")
        let hundred = map(100)
        #expect(SVGText.part(hundred, "labels").isEmpty, "4.8-pixel cells hold no labels")
        let many = map(250)
        #expect(SVGText.elements("rect", SVGText.part(many, "cells")).count == 200 * 200)
        #expect(SVGText.texts(SVGText.part(many, "title")) == ["t", "showing the first 200 of 250"])
        // A short row's missing entries are undefined.
        let ragged = HeatMap(title: "t", labels: ["a", "b"], values: [[1]], scale: .diverging(-1...1)).svg()
        #expect(SVGText.texts(SVGText.part(ragged, "cells")) == ["1.00", "n/a", "n/a", "n/a"])
    }

    @Test("The same map gives the same bytes")
    func deterministic() {
        #expect(PlotSamples.analysisFigure.svg() == PlotSamples.analysisFigure.svg())
        #expect(PlotSamples.cosineMap.svg().hasPrefix(SVGCanvas.signature))
    }
}
