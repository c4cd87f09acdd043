import ArgumentParser
import Foundation
import MergeKit

struct DisentanglementCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disentanglement",
        abstract: "The weight-disentanglement error ξ(α₁, α₂) of two task vectors over a grid of α.",
        discussion: """
            ξ(α₁, α₂) = Σₜ fraction of Dₜ whose predicted class (task t's head) differs between \
            θ₀ + αₜτₜ and θ₀ + α₁τ₁ + α₂τ₂ (Ortiz-Jimenez et al., eq. 4): 0 when the two task vectors \
            add without interfering, at most 2. Give the two tasks in order with --task-vector (or \
            --model for fine-tuned checkpoints; linearized checkpoints are read as θ − θ₀ either \
            way), --head and --data. With --linearized (implied by a linearized --base) every model \
            is evaluated as f(x; θ₀) + J·Δθ.
            """)

    @Option(help: ArgumentHelp("The base θ₀: a CLIP image-encoder directory or file, or a linearized checkpoint.", valueName: "path"))
    var base: String

    @Option(name: .customLong("task-vector"), help: ArgumentHelp("A task-vector file or linearized checkpoint; give two in all with --model.", valueName: "path"))
    var taskVectors: [String] = []

    @Option(name: .customLong("model"), help: ArgumentHelp("A fine-tuned checkpoint (τ = θ − θ₀); counted after the --task-vector inputs.", valueName: "path"))
    var models: [String] = []

    @Option(name: .customLong("head"), help: ArgumentHelp("Task t's head (one per task, in order).", valueName: "file"))
    var heads: [String] = []

    @Option(name: .customLong("data"), help: ArgumentHelp("Task t's dataset Dₜ (one per task, in order).", valueName: "file"))
    var data: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp("The α values of the grid, comma-separated, e.g. -1,0,1.", valueName: "list"))
    var alphas = "-2,-1,-0.5,0,0.5,1,2"

    @Flag(help: "Evaluate every model linearized around θ₀: f(x; θ₀) + J·(θ − θ₀).")
    var linearized = false

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: ArgumentHelp("Images per pass (default 64, fewer when 64 would not fit in the memory available).", valueName: "B"))
    var batchSize: Int?

    @Flag(name: .customLong("allow-unused"), help: "Ignore tensors of the inputs the encoder does not use (with a warning) instead of refusing them.")
    var allowUnused = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Threads (default: every core).", valueName: "n"))
    var threads: Int?

    @Flag(help: "Print the result as JSON on stdout.")
    var json = false

    var alphaValues: [Double]? {
        let values = alphas.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        return values.isEmpty || values.contains(where: { $0 == nil || !$0!.isFinite }) ? nil : values.map { $0! }
    }

    func validate() throws {
        if taskVectors.count + models.count != 2 {
            throw ValidationError("Give exactly two task vectors (--task-vector / --model), not \(taskVectors.count + models.count).")
        }
        if heads.count != 2 || data.count != 2 {
            throw ValidationError("Give one --head and one --data per task (two each), in the tasks' order.")
        }
        if alphaValues == nil { throw ValidationError("--alphas must be a comma-separated list of finite numbers, not \"\(alphas)\".") }
        try ArgumentCheck.atLeast(batchSize, 1, flag: "--batch-size")
        try ArgumentCheck.atLeast(threads, 1, flag: "--threads")
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let inputs = taskVectors.map { DisentanglementJob.Input(path: $0, isModel: false) }
                + models.map { DisentanglementJob.Input(path: $0, isModel: true) }
            let job = try DisentanglementJob(base: base, inputs: inputs, heads: heads, data: data, linearized: linearized,
                                             allowUnused: allowUnused, ignored: EngineInputs.warnIgnored)
            let linear = job.linearized
            let threadCount = ThreadCount.resolved(threads)
            let batch = try EngineInputs.batch(batchSize, default: 64, command: "disentanglement", quiet: json) { b in
                job.memory(batch: b, threads: threadCount)
            }
            let alphas = alphaValues!
            let result = try job.run(alphas: alphas, batchSize: batch, threads: threads, ignored: EngineInputs.warnIgnored)
            if json {
                let members: [JSONMember] = [
                    JSONMember("base", .string(base)),
                    JSONMember("task_vectors", .array(inputs.map { .string($0.path) })),
                    JSONMember("linearized", .bool(linear)),
                    JSONMember("alphas", .array(alphas.map { .double($0) })),
                    JSONMember("xi", .array(result.errors.map { .array($0.map { .double($0) }) })),
                    JSONMember("task_errors", .array(result.taskErrors.map { .array($0.map { .array($0.map { .double($0) }) }) })),
                    JSONMember("mean_xi", .double(result.mean)),
                ]
                print(JSONValue.object(members).serialized(indent: 2))
            } else {
                print("ξ(α₁, α₂)\(linear ? ", linearized" : ""): rows α₁ (\(TerminalText.escaped(inputs[0].path))), columns α₂ (\(TerminalText.escaped(inputs[1].path)))")
                // Every column as wide as the widest α label (%g: 1e+30, not 31 digits) or ξ value.
                let labels = alphas.map { String(format: "%.2f", $0).count <= 8 ? String(format: "%.2f", $0) : String(format: "%g", $0) }
                let width = max(7, labels.map(\.count).max() ?? 0) + 1
                func padded(_ text: String) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
                print(padded("") + labels.map(padded).joined())
                for (i, row) in result.errors.enumerated() {
                    print(padded(labels[i]) + row.map { padded(String(format: "%.3f", $0)) }.joined())
                }
                print(String(format: "mean ξ over the grid: %.4f (0 = disentangled, 2 = every prediction changes)", result.mean))
            }
        }
    }
}
