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

    @Option(help: ArgumentHelp("The α values of the grid, comma-separated (write --alphas=-1,0,1 when the list starts with a minus sign).", valueName: "list"))
    var alphas = "-2,-1,-0.5,0,0.5,1,2"

    @Flag(help: "Evaluate every model linearized around θ₀: f(x; θ₀) + J·(θ − θ₀).")
    var linearized = false

    @Option(name: .customLong("batch-size"), help: ArgumentHelp("Images per pass.", valueName: "B"))
    var batchSize = 64

    @Option(help: ArgumentHelp("Threads (default: every core).", valueName: "n"))
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
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1, not \(batchSize).") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, not \(threads).") }
    }

    func run() throws {
        try reportingErrors { () throws(MergeKitError) in
            let baseCheckpoint = try Checkpoint(path: base)
            let model: CLIPVisionModel
            var linear = linearized
            if LinearizedCheckpoint.isLinearized(baseCheckpoint) {
                model = try LinearizedCheckpoint.model(baseCheckpoint, threads: threads).base
                linear = true
            } else {
                model = try CLIPVisionModel(path: base, threads: threads)
            }
            var tasks: [Disentanglement.Task] = []
            let inputs = taskVectors.map { ($0, false) } + models.map { ($0, true) }
            for (t, (path, isModel)) in inputs.enumerated() {
                let vector = try Disentanglement.taskVector(try Checkpoint(path: path), base: model.parameters, isModel: isModel)
                tasks.append(Disentanglement.Task(vector: vector, head: try TaskHead(path: heads[t]), data: try ImageDataset(path: data[t])))
            }
            let alphas = alphaValues!
            let result = try Disentanglement.run(base: model, tasks: tasks, alphas: alphas, linearized: linear, batchSize: batchSize)
            if json {
                let members: [JSONMember] = [
                    JSONMember("base", .string(base)),
                    JSONMember("task_vectors", .array(inputs.map { .string($0.0) })),
                    JSONMember("linearized", .bool(linear)),
                    JSONMember("alphas", .array(alphas.map { .double($0) })),
                    JSONMember("xi", .array(result.errors.map { .array($0.map { .double($0) }) })),
                    JSONMember("task_errors", .array(result.taskErrors.map { .array($0.map { .array($0.map { .double($0) }) }) })),
                    JSONMember("mean_xi", .double(result.mean)),
                ]
                print(JSONValue.object(members).serialized(indent: 2))
            } else {
                print("ξ(α₁, α₂)\(linear ? ", linearized" : ""): rows α₁ (\(TerminalText.escaped(inputs[0].0))), columns α₂ (\(TerminalText.escaped(inputs[1].0)))")
                print(String(repeating: " ", count: 8) + alphas.map { String(format: "%7.2f", $0) }.joined())
                for (i, row) in result.errors.enumerated() {
                    print(String(format: "%7.2f ", alphas[i]) + row.map { String(format: "%7.3f", $0) }.joined())
                }
                print(String(format: "mean ξ over the grid: %.4f (0 = disentangled, 2 = every prediction changes)", result.mean))
            }
        }
    }
}
