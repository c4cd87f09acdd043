import Testing
@testable import MergeKit

/// One command line per merge method and variant (every method in `MethodRegistry`, both TIES
/// trim scopes, DARE with task arithmetic and TIES, a λ sweep), for tests that must hold for every
/// method. `arguments(base:inputs:output:)` gives the full command line.
struct MethodCommandLine: CustomStringConvertible, Sendable {
    /// The registry name of the method this line runs.
    let method: String
    let label: String
    /// The subcommand and its method options.
    let command: [String]
    /// A sweep writes a directory of points.
    var isSweep = false
    /// The command takes one input (negate): the last of `models` is passed.
    var singleInput = false

    var description: String { label }

    func arguments(base: String, models: [String] = [], taskVectors: [String] = [], loras: [String] = [],
                   output: String, extra: [String] = []) -> [String] {
        let models = singleInput ? Array(models.suffix(1)) : models
        return command + ["--base", base] + models.flatMap { ["--model", $0] } + taskVectors.flatMap { ["--task-vector", $0] }
            + loras.flatMap { ["--lora", $0] } + ["-o", output] + extra
    }

    static let all: [MethodCommandLine] = [
        MethodCommandLine(method: "task-arithmetic", label: "task-arithmetic", command: ["task-arithmetic", "--scale", "0.5"]),
        MethodCommandLine(method: "task-arithmetic", label: "negate", command: ["negate", "--scale", "0.5"], singleInput: true),
        MethodCommandLine(method: "ties", label: "ties (global trim)", command: ["ties", "--density", "0.5"]),
        MethodCommandLine(method: "ties", label: "ties (per-tensor trim)",
                          command: ["ties", "--trim-scope", "tensor", "--vote", "weighted", "--merge", "normalized", "--density", "0.5"]),
        MethodCommandLine(method: "dare", label: "dare", command: ["dare", "--drop-rate", "0.3"]),
        MethodCommandLine(method: "dare", label: "dare-ties (l1)",
                          command: ["dare", "--combine", "ties", "--vote", "weighted", "--merge", "sum", "--rescale", "l1", "--drop-rate", "0.3"]),
        MethodCommandLine(method: "linear", label: "linear", command: ["linear"]),
        MethodCommandLine(method: "linear", label: "linear (no-normalize)", command: ["linear", "--no-normalize"]),
        MethodCommandLine(method: "breadcrumbs", label: "breadcrumbs", command: ["breadcrumbs", "--density", "0.5", "--gamma", "0.1"]),
        MethodCommandLine(method: "model-stock", label: "model-stock", command: ["model-stock"]),
        MethodCommandLine(method: "metagpt", label: "metagpt", command: ["metagpt"]),
        MethodCommandLine(method: "magmax", label: "magmax", command: ["magmax"]),
        MethodCommandLine(method: "tsv-m", label: "tsv-m", command: ["tsv-m"]),
        MethodCommandLine(method: "iso-c", label: "iso-c", command: ["iso-c"]),
        MethodCommandLine(method: "della", label: "della", command: ["della", "--density", "0.5", "--epsilon", "0.2"]),
        MethodCommandLine(method: "della", label: "della (linear, inverse)",
                          command: ["della", "--combine", "task-arithmetic", "--rescale", "inverse", "--density", "0.7", "--epsilon", "0.1"]),
        MethodCommandLine(method: "sce", label: "sce", command: ["sce"]),
        MethodCommandLine(method: "nearswap", label: "nearswap", command: ["nearswap", "--t", "100000"], singleInput: true),
        MethodCommandLine(method: "passthrough", label: "passthrough", command: ["passthrough", "--factor", "1.5"], singleInput: true),
        MethodCommandLine(method: "arcee-fusion", label: "arcee-fusion", command: ["arcee-fusion"], singleInput: true),
        MethodCommandLine(method: "task-arithmetic", label: "sweep (task arithmetic, λ grid)",
                          command: ["sweep", "--method", "task_arithmetic", "--scale", "0.5,1"], isSweep: true),
        MethodCommandLine(method: "ties", label: "sweep (ties, λ grid)",
                          command: ["sweep", "--method", "ties", "--scale", "0.5,1", "--density", "0.5"], isSweep: true),
    ]
}

@Suite("Method command lines")
struct MethodCommandLineTests {
    @Test("The per-method test command lines cover every method in the registry")
    func coverRegistry() {
        let covered = Set(MethodCommandLine.all.map(\.method))
        for info in MethodRegistry.all {
            #expect(covered.contains(info.name), "\(info.name) has no command line in MethodCommandLine.all")
        }
    }
}
