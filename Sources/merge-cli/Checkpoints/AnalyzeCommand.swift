import ArgumentParser
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

    @Flag(help: "Print the analysis as JSON.")
    var json = false

    func validate() throws {
        try ArgumentCheck.value(density, .density, flag: "--density")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let (base, opened) = try inputs.open(quiet: json)
            let analysis = try TaskVectorAnalysis.run(base: base, inputs: opened, density: density, threads: threads)
            print(json ? analysis.json.serialized(indent: 2) : analysis.text)
        }
    }
}
