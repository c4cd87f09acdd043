import Foundation
import Testing
@testable import MergeKit

@Suite("Plot files")
struct PlotFileTests {
    static let svg = PlotSamples.cosineMap.svg()
    static let hasRenderer = PlotFile.renderer() != nil

    @Test("The PNG goes beside the SVG; the renderer is looked up in PATH")
    func paths() throws {
        #expect(PlotFile.pngPath(for: "out/plot.svg") == "out/plot.png")
        #expect(PlotFile.pngPath(for: "out/PLOT.SVG") == "out/PLOT.png")
        #expect(PlotFile.pngPath(for: "plot") == "plot.png")
        #expect(PlotFile.paths(for: "a.svg", png: false) == ["a.svg"])
        #expect(PlotFile.renderer(environment: ["PATH": "/nonexistent:/also-missing"]) == nil)
        let dir = TestSupport.temporaryDirectory("plot-renderer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = dir + "/rsvg-convert"
        #expect(FileManager.default.createFile(atPath: fake, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755]))
        #expect(PlotFile.renderer(environment: ["PATH": "/nonexistent::" + dir]) == fake)
    }

    @Test("A new SVG is written whole and marked as MergeKit's; nothing else is left in the directory")
    func writesSVG() throws {
        let dir = TestSupport.temporaryDirectory("plot-file")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let written = try PlotFile.write(svg: Self.svg, to: dir + "/map.svg", png: false)
        #expect(written == [dir + "/map.svg"])
        #expect(try String(contentsOfFile: dir + "/map.svg", encoding: .utf8) == Self.svg)
        #expect(PlotFile.isOwnPlot(dir + "/map.svg"))
        #expect(TestSupport.listing(dir) == ["map.svg"])
    }

    @Test("With png, the PNG is rendered by rsvg-convert and carries MergeKit's text chunk", .enabled(if: hasRenderer, "needs rsvg-convert"))
    func writesPNG() throws {
        let dir = TestSupport.temporaryDirectory("plot-file")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let written = try PlotFile.write(svg: Self.svg, to: dir + "/map.svg", png: true)
        #expect(written == [dir + "/map.svg", dir + "/map.png"])
        #expect(TestSupport.listing(dir) == ["map.png", "map.svg"])
        #expect(PlotFile.isOwnPlot(dir + "/map.png"))
        let image = try PNGImage(file: dir + "/map.png")
        #expect(Double(image.width) == LineChartTests.width(Self.svg))
    }

    @Test("A file MergeKit did not write is never replaced, even with overwrite; a plot of its own only with overwrite")
    func replacing() throws {
        let dir = TestSupport.temporaryDirectory("plot-file")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let user = dir + "/mine.svg"
        try "<svg>my drawing</svg>".write(toFile: user, atomically: false, encoding: .utf8)
        for overwrite in [false, true] {
            let error = try #require(throws: MergeKitError.self) { try PlotFile.write(svg: Self.svg, to: user, png: false, overwrite: overwrite) }
            #expect(error.code == .outputNotReplaceable && error.file == user && error.description.contains("never replaced"), "\(error)")
        }
        #expect(try String(contentsOfFile: user, encoding: .utf8) == "<svg>my drawing</svg>")
        // A user's PNG beside a new SVG: refused before the SVG is written.
        try Data(PlotFile.pngSignature + [0, 0, 0, 13]).write(to: URL(fileURLWithPath: dir + "/new.png"))
        if Self.hasRenderer {
            let error = try #require(throws: MergeKitError.self) { try PlotFile.write(svg: Self.svg, to: dir + "/new.svg", png: true, overwrite: true) }
            #expect(error.code == .outputNotReplaceable && error.file == dir + "/new.png")
            #expect(!FileManager.default.fileExists(atPath: dir + "/new.svg"))
        }

        let own = dir + "/own.svg"
        try PlotFile.write(svg: Self.svg, to: own, png: false)
        let again = try #require(throws: MergeKitError.self) { try PlotFile.write(svg: Self.svg, to: own, png: false) }
        #expect(again.code == .outputExists && again.file == own)
        let changed = PlotSamples.sweepChart.svg()
        try PlotFile.write(svg: changed, to: own, png: false, overwrite: true)
        #expect(try String(contentsOfFile: own, encoding: .utf8) == changed)
        #expect(TestSupport.listing(dir) == ["mine.svg", "new.png", "own.svg"])
    }

    @Test("Directories, symbolic links, missing directories and inputs are refused, all problems together")
    func refused() throws {
        let dir = TestSupport.temporaryDirectory("plot-file")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/folder.svg", withIntermediateDirectories: false)
        let directory = try #require(throws: MergeKitError.self) { try PlotFile.write(svg: Self.svg, to: dir + "/folder.svg", png: false, overwrite: true) }
        #expect(directory.code == .outputNotReplaceable && directory.description.contains("is a directory"))

        try PlotFile.write(svg: Self.svg, to: dir + "/target.svg", png: false)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.svg", withDestinationPath: dir + "/target.svg")
        let link = try #require(throws: MergeKitError.self) { try PlotFile.write(svg: "changed", to: dir + "/link.svg", png: false, overwrite: true) }
        #expect(link.code == .outputNotReplaceable && link.description.contains("symbolic link"))
        #expect(try String(contentsOfFile: dir + "/target.svg", encoding: .utf8) == Self.svg)

        let missing = try #require(throws: MergeKitError.self) { try PlotFile.write(svg: Self.svg, to: dir + "/no/such/dir/plot.svg", png: false) }
        #expect(missing.code == .fileNotFound && missing.description.contains("does not exist"))

        let input = dir + "/model"
        try FileManager.default.createDirectory(atPath: input, withIntermediateDirectories: false)
        let inside = try #require(throws: MergeKitError.self) { try PlotFile.check(path: input + "/plot.svg", png: false, inputs: [input]) }
        #expect(inside.code == .outputIsInput)

        let both = try #require(throws: MergeKitError.self) {
            try PlotFile.check(path: dir + "/folder.svg", png: true, overwrite: true, inputs: [])
        }
        if Self.hasRenderer {
            #expect(both.code == .outputNotReplaceable && both.problems.isEmpty)
        } else {
            #expect(both.description.contains("2 problems found before writing the plot") && both.problems.contains { $0.code == .toolMissing })
        }
        let empty = try #require(throws: MergeKitError.self) { try PlotFile.check(path: "", png: false) }
        #expect(empty.code == .invalidArgument)
    }

    @Test("MergeKit's PNG text chunk goes right after the header, with a valid CRC")
    func pngTag() throws {
        #expect(PlotFile.tagged(png: Array("not a png at all, but long enough to look at".utf8)) == nil)
        // A 1 × 1 white PNG (IHDR, IDAT, IEND), made with Python's zlib:
        //   zlib.compress(b"\x00\xff\xff\xff", 9) in an 8-bit RGB image, CRCs by zlib.crc32.
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A,
                            0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
                            0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xDE,
                            0x00, 0x00, 0x00, 0x0C, 0x49, 0x44, 0x41, 0x54, 0x78, 0xDA, 0x63, 0xF8, 0xFF, 0xFF, 0x3F, 0x00,
                            0x05, 0xFE, 0x02, 0xFE, 0x33, 0x12, 0x95, 0x14,
                            0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]
        let plain = try PNGImage(bytes: png)
        #expect(plain.width == 1 && plain.rgb == [255, 255, 255])
        let tagged = try #require(PlotFile.tagged(png: png))
        #expect(tagged.count == png.count + 12 + PlotFile.pngText.count)
        let image = try PNGImage(bytes: tagged)  // checks every chunk's CRC
        #expect(image.rgb == [255, 255, 255])
        let dir = TestSupport.temporaryDirectory("plot-file")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(tagged).write(to: URL(fileURLWithPath: dir + "/a.png"))
        try Data(png).write(to: URL(fileURLWithPath: dir + "/b.png"))
        #expect(PlotFile.isOwnPlot(dir + "/a.png") && !PlotFile.isOwnPlot(dir + "/b.png"))
    }
}
