import Foundation
import Testing
@testable import MergeKit

@Suite("analyze --plot")
struct AnalyzePlotCLITests {
    let fixtures = TestSupport.fixture("")
    static let arguments = ["analyze", "--base", "f32/base", "--model", "f32/ft_a", "--model", "f32/ft_b", "--task-vector", "expected/f32/tv_a.safetensors"]
    static let hasRenderer = PlotFile.renderer() != nil

    @Test("Writes one SVG with the cosine and sign-conflict heat maps, labelled by the inputs' names; --json lists the files")
    func writesPlot() throws {
        let dir = TestSupport.temporaryDirectory("analyze-plot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try CLI.run(Self.arguments + ["--plot", dir + "/analysis.svg", "--json"], in: fixtures)
        #expect(run.status == 0, "\(run.stderr)")
        let json = try JSONParser.parse(Array(run.stdout.utf8))
        #expect(json["plots"]?.arrayValue?.compactMap(\.stringValue) == [dir + "/analysis.svg"])
        #expect(json["cosine_similarity"] != nil, "the analysis is still there")
        let svg = try String(contentsOfFile: dir + "/analysis.svg", encoding: .utf8)
        #expect(svg.hasPrefix(SVGCanvas.signature))
        #expect(SVGText.parts(svg, "panel").count == 2)
        let titles = SVGText.parts(svg, "title").flatMap { SVGText.texts($0) }
        #expect(titles == ["Cosine similarity of task vectors", "Sign conflicts (share of shared non-zero entries)"])
        #expect(SVGText.texts(SVGText.part(svg, "labels")).first == "[0] ft_a")
        #expect(Set(SVGText.texts(SVGText.part(svg, "labels"))) == ["[0] ft_a", "[1] ft_b", "[2] tv_a"])
        // The cells are the analysis's numbers.
        let (base, inputs) = try LibraryMerge.open(LibraryMerge.Inputs(base: fixtures + "/f32/base", models: [fixtures + "/f32/ft_a", fixtures + "/f32/ft_b"],
                                                                      taskVectors: [fixtures + "/expected/f32/tv_a.safetensors"]))
        let analysis = try TaskVectorAnalysis.run(base: base, inputs: inputs)
        let cells = SVGText.parts(svg, "cells")
        #expect(SVGText.texts(cells[0]) == analysis.cosines.flatMap { $0.map(HeatMap.cellText) })
        #expect(SVGText.texts(cells[1]) == analysis.signConflicts.flatMap { $0.map(HeatMap.cellText) })

        // Text mode: the report on stdout, the file written on stderr; a second run needs --overwrite.
        let again = try CLI.run(Self.arguments + ["--plot", dir + "/analysis.svg"], in: fixtures)
        #expect(again.status == 1 && again.stderr.contains("analysis.svg: already exists") && again.stderr.contains("pass --overwrite"), "\(again.stderr)")
        let replaced = try CLI.run(Self.arguments + ["--plot", dir + "/analysis.svg", "--overwrite"], in: fixtures)
        #expect(replaced.status == 0 && replaced.stderr.contains("wrote \(dir)/analysis.svg") && replaced.stdout.contains("cosine similarity:"),
                "\(replaced.stderr)")
        #expect(TestSupport.listing(dir) == ["analysis.svg"])
    }

    @Test("--png writes the PNG beside the SVG", .enabled(if: hasRenderer, "needs rsvg-convert"))
    func writesPNG() throws {
        let dir = TestSupport.temporaryDirectory("analyze-plot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try CLI.run(Self.arguments + ["--plot", dir + "/analysis.svg", "--png", "--json"], in: fixtures)
        #expect(run.status == 0, "\(run.stderr)")
        let json = try JSONParser.parse(Array(run.stdout.utf8))
        #expect(json["plots"]?.arrayValue?.compactMap(\.stringValue) == [dir + "/analysis.svg", dir + "/analysis.png"])
        let image = try PNGImage(file: dir + "/analysis.png")
        let svg = try String(contentsOfFile: dir + "/analysis.svg", encoding: .utf8)
        #expect(Double(image.width) == LineChartTests.width(svg))
        #expect(TestSupport.listing(dir) == ["analysis.png", "analysis.svg"])
    }

    @Test("A file MergeKit did not write at the path is never replaced: exit 1 naming the file and the fix, before any analysis")
    func refusesUserFile() throws {
        let dir = TestSupport.temporaryDirectory("analyze-plot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "my notes".write(toFile: dir + "/notes.svg", atomically: false, encoding: .utf8)
        let run = try CLI.run(Self.arguments + ["--plot", dir + "/notes.svg", "--overwrite", "--json"], in: fixtures)
        #expect(run.status == 1)
        #expect(run.stderr.contains("\(dir)/notes.svg: already exists and is not a plot MergeKit wrote; it is never replaced. Move it away, or choose another path for the plot"),
                "\(run.stderr)")
        let json = try JSONParser.parse(Array(run.stdout.utf8))
        #expect(json["error"]?["code"]?.stringValue == "outputNotReplaceable" && json["error"]?["file"]?.stringValue == dir + "/notes.svg")
        #expect(json["cosine_similarity"] == nil)
        #expect(try String(contentsOfFile: dir + "/notes.svg", encoding: .utf8) == "my notes")
        #expect(TestSupport.listing(dir) == ["notes.svg"])
    }

    @Test("An unwritable directory: exit 1 naming the file")
    func unwritableDirectory() throws {
        let dir = TestSupport.temporaryDirectory("analyze-plot")
        defer { chmod(dir + "/locked", 0o755); try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/locked", withIntermediateDirectories: false)
        chmod(dir + "/locked", 0o555)
        // root ignores permissions: /proc takes no new files for anyone.
        let path = getuid() == 0 ? "/proc/mergekit-analysis.svg" : dir + "/locked/analysis.svg"
        let run = try CLI.run(Self.arguments + ["--plot", path], in: fixtures)
        #expect(run.status == 1)
        #expect(run.stderr.contains("error: \(path): cannot be") && (run.stderr.contains("not writable") || run.stderr.contains("cannot be written")),
                "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("--png without rsvg-convert: exit 1 naming the package to install, and nothing written")
    func rendererMissing() throws {
        let dir = TestSupport.temporaryDirectory("analyze-plot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try CLI.run(Self.arguments + ["--plot", dir + "/analysis.svg", "--png", "--json"], in: fixtures, environment: ["PATH": dir + "/empty"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("\(dir)/analysis.png: cannot be rendered: rsvg-convert (librsvg) is not installed or not in PATH")
                && run.stderr.contains("apt-get install librsvg2-bin"), "\(run.stderr)")
        let json = try JSONParser.parse(Array(run.stdout.utf8))
        #expect(json["error"]?["code"]?.stringValue == "toolMissing")
        #expect(TestSupport.listing(dir).isEmpty)
    }

    @Test("A renderer that fails: exit 1 with its message, and neither file left behind")
    func rendererFails() throws {
        let dir = TestSupport.temporaryDirectory("analyze-plot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: false)
        #expect(FileManager.default.createFile(atPath: dir + "/bin/rsvg-convert", contents: Data("#!/bin/sh\necho 'cannot load the picture' >&2\nexit 3\n".utf8),
                                               attributes: [.posixPermissions: 0o755]))
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: false)
        let run = try CLI.run(Self.arguments + ["--plot", dir + "/out/analysis.svg", "--png"], in: fixtures,
                              environment: ["PATH": dir + "/bin:/usr/bin:/bin"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("analysis.png: cannot be rendered: rsvg-convert failed (status 3: cannot load the picture)"), "\(run.stderr)")
        #expect(TestSupport.listing(dir + "/out").isEmpty)
    }

    @Test("Bad flags exit 64")
    func badFlags() throws {
        for extra in [["--png"], ["--overwrite"], ["--plot", "analysis.png"], ["--plot", ""], ["--plot"]] {
            let run = try CLI.run(Self.arguments + extra + ["--json"], in: fixtures)
            #expect(run.status == 64, "\(extra): \(run.stderr)")
            #expect((try? JSONParser.parse(Array(run.stdout.utf8)))?["error"]?["exit_status"]?.nonNegativeInt == 64, "\(extra)")
        }
        let png = try CLI.run(Self.arguments + ["--png"], in: fixtures)
        #expect(png.stderr.contains("--png applies to the picture; give --plot too (a path ending in .svg)"), "\(png.stderr)")
        let help = try CLI.run(["analyze", "--help"])
        #expect(help.stdout.contains("--plot <path>") && help.stdout.contains("--png") && help.stdout.contains("librsvg2-bin"))
    }
}
