import ArgumentParser
import Foundation
import MergeKit

struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Before merging: per-pair cosine similarity, norms, sign conflicts, and what TIES would trim.",
        discussion: "Reads --model (fine-tuned checkpoints, against --base) and --task-vector inputs; --weight is ignored.")

    @OptionGroup var inputs: InputOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("The TIES keep fraction K to analyse.", valueName: "K"))
    var density = 0.2

    @Option(parsing: .unconditional, help: ArgumentHelp("Worker threads.", valueName: "n"))
    var threads: Int?

    @Option(help: ArgumentHelp("Also draw the cosine and sign-conflict matrices as two heat maps side by side in one SVG file (a path ending in .svg).", valueName: "path"))
    var plot: String?

    @Flag(help: "With --plot: also write the picture as a PNG beside the SVG (the same path ending in .png), rendered by rsvg-convert (Debian/Ubuntu: apt-get install librsvg2-bin).")
    var png = false

    @Flag(help: "With --plot: replace a plot MergeKit wrote before at that path (never any other file).")
    var overwrite = false

    @Flag(help: "Print the analysis as JSON (with --plot, `plots` lists the files written).")
    var json = false

    func validate() throws {
        try ArgumentCheck.value(density, .density, flag: "--density")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
        if let plot {
            try ArgumentCheck.path(plot, flag: "--plot")
            if !plot.lowercased().hasSuffix(".svg") {
                throw ValidationError("--plot must name an .svg file (the PNG, with --png, is written beside it), not '\(plot)'")
            }
        } else if png || overwrite {
            throw ValidationError("\(png ? "--png" : "--overwrite") applies to the picture; give --plot too (a path ending in .svg)")
        }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let (base, opened) = try inputs.open(quiet: json)
            let read = [base.path] + opened.map(\.path)
            // The plot's paths are checked before the (long) analysis, and again when written.
            if let plot { try PlotFile.check(path: plot, png: png, overwrite: overwrite, inputs: read) }
            let analysis = try TaskVectorAnalysis.run(base: base, inputs: opened, density: density, threads: threads)
            var written: [String] = []
            if let plot {
                let names = inputs.models + inputs.taskVectors + inputs.loras
                written = try PlotFile.write(svg: analysis.figure(names: names).svg(), to: plot, png: png,
                                             overwrite: overwrite, inputs: read)
            }
            guard json else {
                print(analysis.text)
                for file in written { FileHandle.standardError.write(Data("wrote \(TerminalText.escaped(file))\n".utf8)) }
                return
            }
            var document = analysis.json
            if plot != nil, case .object(var members) = document {
                members.append(JSONMember("plots", .array(written.map { .string($0) })))
                document = .object(members)
            }
            print(document.serialized(indent: 2))
        }
    }
}
