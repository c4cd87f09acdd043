import Foundation
import Testing
@testable import MergeKit

/// The pictures as people see them: the sample charts are written with their PNGs
/// (`PlotFile.write`, rsvg-convert), decoded, and compared with the reference images in
/// `Fixtures/plots/` (made by `Fixtures/plots/make_references.sh`, which records the
/// rsvg-convert version in `Fixtures/plots/rsvg-convert-version.txt`).
///
/// **The comparison** (`PNGImage.difference`): every feature may move by up to 2 pixels (each
/// pixel is compared with the closest match in the other image's 5 × 5 neighbourhood, both ways),
/// then a pixel "differs" when a channel is off by more than 64 of 255. A rendering passes when
/// at most 0.2 % of its pixels differ and the mean difference is at most 1.0.
///
/// **Why these numbers.** Measured on the sample charts (720 × 440 and 580 × 440 pixels):
/// fonts 3 % wider or 1.5 % narrower than the reference's, DejaVu Serif instead of DejaVu Sans,
/// or the whole picture moved by a pixel give 0.00–0.09 % differing pixels and a mean of at most
/// 0.52 — text set by another build of the font stack stays within the bound. Losing what a reader
/// needs gives 0.26 % (the mark: its ring, drop line and legend entry) to 1.5 % (the colour bar),
/// each with a mean of 0.49–2.3: the legend 0.52 %, one series 0.42 %, the y axis 0.41 %, the x
/// axis 0.63 %, the title 0.55 %, the heat map's values 0.50 % and labels 0.68 %. The tests below
/// check both sides on every run: the benign changes against this machine's own rendering, the
/// regressions against the reference. The mean bound catches what spreads thinly over the
/// picture instead (a background or palette shifted by less than 64).
///
/// Set `MERGEKIT_PLOT_REFERENCES` to a directory to write the rendered images there instead of
/// comparing (the script does).
@Suite("Plot rendering", .enabled(if: PlotFile.renderer() != nil, "rsvg-convert is not installed (apt-get install librsvg2-bin)"))
struct PlotRenderingTests {
    static let changedTolerance = 0.002
    static let meanTolerance = 1.0

    static let references = TestSupport.packageRoot.appendingPathComponent("Fixtures/plots").path

    static func passes(_ d: PNGImage.Difference) -> Bool {
        d.changedShare <= changedTolerance && d.mean <= meanTolerance
    }

    /// Renders `svg` as `PlotFile` does and decodes the PNG.
    static func render(_ svg: String, in directory: String, name: String) throws -> PNGImage {
        // The variants are written over one another: each replaces a plot MergeKit wrote.
        let written = try PlotFile.write(svg: svg, to: directory + "/\(name).svg", png: true, overwrite: true)
        return try PNGImage(file: written[1])
    }

    /// What to say when the rendering differs: which rsvg-convert made the references.
    static var versions: String {
        let recorded = (try? String(contentsOfFile: references + "/rsvg-convert-version.txt", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
        return "the references were made with \(recorded); if this machine's librsvg or fonts differ and the pictures look right, run Fixtures/plots/make_references.sh"
    }

    /// `svg` with its text `factor` times its size (a font with other metrics).
    static func scalingText(_ svg: String, by factor: Double) -> String {
        var out = svg
        for size in [12.0, 13, 16] {
            out = out.replacingOccurrences(of: "font-size=\"\(SVGCanvas.number(size))\"", with: "font-size=\"\(SVGCanvas.number(size * factor))\"")
        }
        return out
    }

    /// `svg` moved right and down by a pixel.
    static func shifted(_ svg: String) -> String {
        svg.replacingOccurrences(of: "font-family=\"sans-serif\">", with: "font-family=\"sans-serif\"><g transform=\"translate(1,1)\">")
            .replacingOccurrences(of: "</svg>", with: "</g></svg>")
    }

    static func check(_ svg: String, name: String, regressions: [(String, String)]) throws {
        let dir = TestSupport.temporaryDirectory("plot-rendering")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = try render(svg, in: dir, name: name)
        if let out = ProcessInfo.processInfo.environment["MERGEKIT_PLOT_REFERENCES"] {
            try? FileManager.default.removeItem(atPath: out + "/\(name).png")
            try FileManager.default.copyItem(atPath: dir + "/\(name).png", toPath: out + "/\(name).png")
            return
        }
        let reference = try PNGImage(file: references + "/\(name).png")
        let difference = try #require(image.difference(from: reference),
            "\(name): \(image.width) × \(image.height) pixels, the reference \(reference.width) × \(reference.height); \(versions)")
        #expect(passes(difference), "\(name) differs from Fixtures/plots/\(name).png: \(difference); \(versions)")

        let benign = [("with text 3 % larger", scalingText(svg, by: 1.03)), ("with text 1.5 % smaller", scalingText(svg, by: 0.985)),
                      ("in DejaVu Serif", svg.replacingOccurrences(of: "font-family=\"sans-serif\"", with: "font-family=\"DejaVu Serif\"")),
                      ("moved by a pixel", shifted(svg))]
        for (what, changed) in benign {
            let other = try render(changed, in: dir, name: "\(name)-benign")
            let d = try #require(other.difference(from: image))
            #expect(passes(d), "\(name) \(what) fails the comparison with the same chart: \(d)")
        }
        for (what, broken) in regressions {
            let damaged = try render(broken, in: dir, name: "\(name)-damaged")
            let d = try #require(damaged.difference(from: reference))
            #expect(!passes(d), "\(name) \(what) passes the comparison with the reference: \(d)")
        }
    }

    @Test("A sweep's chart renders as its reference; losing its legend, a series, an axis, the mark or the title fails the comparison")
    func sweepChart() throws {
        let svg = PlotSamples.sweepChart.svg()
        try Self.check(svg, name: "sweep", regressions: [
            ("without its legend", SVGText.removing("legend", from: svg)),
            ("without one series", SVGText.removing("series", matching: "data-name=\"SVHN\"", from: svg)),
            ("without the average", SVGText.removing("series", matching: "data-name=\"average\"", from: svg)),
            ("without its x axis", SVGText.removing("x-axis", from: svg)),
            ("without its y axis", SVGText.removing("y-axis", from: svg)),
            ("without its mark", SVGText.removing("mark-entry", from: SVGText.removing("mark", from: svg))),
            ("without its title", SVGText.removing("title", from: svg)),
        ])
    }

    @Test("A 4 × 4 heat map renders as its reference; losing its values, colour bar, labels or title fails the comparison")
    func heatMap() throws {
        let svg = PlotSamples.cosineMap.svg()
        try Self.check(svg, name: "heatmap", regressions: [
            ("without its values", SVGText.removing("text", in: "cells", from: svg)),
            ("without its colour bar", SVGText.removing("color-bar", from: svg)),
            ("without its labels", SVGText.removing("labels", from: svg)),
            ("without its title", SVGText.removing("title", from: svg)),
        ])
    }
}
