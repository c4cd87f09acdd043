import Foundation
import Testing
@testable import MergeKit

/// Sweeps that score their points (`MergeRun.run(_:evaluation:…)`), on the CLIP fixtures: three
/// experts of `Fixtures/clip/quick/base` with their heads and data (`Fixtures/wemoe`), whose
/// accuracies PyTorch measured (`Fixtures/wemoe/expected.json`, `make_wemoe_fixtures.py`).
@Suite("Sweep evaluation")
struct SweepEvaluationTests {
    static let fixtures = TestSupport.packageRoot.appendingPathComponent("Fixtures").path
    static let base = fixtures + "/clip/quick/base"
    static let experts = (0..<3).map { fixtures + "/wemoe/experts/task\($0)" }
    static let tasks = (0..<3).map {
        SweepEvaluation.Task(head: fixtures + "/wemoe/task\($0)/head.safetensors", data: fixtures + "/wemoe/task\($0)/data.safetensors")
    }

    /// The accuracies PyTorch measured: the base, and task arithmetic at λ = 0.3.
    static func expected() throws -> (base: [Double], taskArithmetic: [Double]) {
        let data = try #require(FileManager.default.contents(atPath: fixtures + "/wemoe/expected.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (try #require(json["base"] as? [Double]), try #require(json["task_arithmetic"] as? [Double]))
    }

    /// A task-arithmetic sweep of the experts over `lambdas`, planned into `output`.
    static func plan(_ lambdas: [Double], output: String, emit: EmitKind = .model, overwrite: Bool = false) throws -> (plans: [MergePlan], points: [MergeRun.Point]) {
        let recipe = Recipe(method: "task_arithmetic", baseModel: base, inputs: experts.map { Recipe.Input(kind: .model, path: $0) },
                            sweep: [("lambda", lambdas.map { ParameterSetting.number($0) })], path: "test")
        let run = try recipe.plan(output: output, overwrite: overwrite, emit: emit)
        return (run.plans, run.points.map { $0.map { (name: $0.name, value: $0.value.description) } })
    }

    static func run(_ lambdas: [Double], _ evaluation: SweepEvaluation, output: String, budget: MemoryBudget? = nil,
                    threads: Int? = 2) throws -> (MergeRun.Outcome, MergeRun.EvaluationOutcome) {
        let (plans, points) = try plan(lambdas, output: output)
        return try MergeRun.run(plans, evaluation: evaluation, threads: threads, points: points, sweepDirectory: output, budget: budget)
    }

    static func contents(_ path: String) -> Set<String> {
        Set((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
    }

    @Test("Each point's scores are PyTorch's accuracies for that model: λ = 0 is the base, λ = 0.3 task arithmetic")
    func scoresMatchReference() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval")
        let (_, scored) = try Self.run([0, 0.3, 1], SweepEvaluation(tasks: Self.tasks), output: dir + "/sweep")
        let expected = try Self.expected()
        #expect(scored.scores[0].results.map(\.accuracy) == expected.base)
        #expect(scored.scores[1].results.map(\.accuracy) == expected.taskArithmetic)
        #expect(scored.scores.allSatisfy { $0.results.map(\.images) == [16, 16, 16] })
        // λ = 0.3 is the best of the three on the average; only it is written (--keep best).
        #expect(scored.selected == 1)
        #expect(scored.kept == [false, true, false])
        #expect(Self.contents(dir + "/sweep") == ["manifest.json", "point-001", "scores-lambda.svg"])
    }

    @Test("Points built in memory, written and read back, or some of each: the same scores, and the kept points' bytes are a plain sweep's")
    func memoryAndStreamedAgree() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval")
        let lambdas = [0.2, 0.4, 0.6, 0.8]
        // The plain sweep, for the bytes.
        let (plans, points) = try Self.plan(lambdas, output: dir + "/plain")
        _ = try MergeRun.run(plans, threads: 2, points: points, sweepDirectory: dir + "/plain")
        let evaluation = SweepEvaluation(tasks: Self.tasks, keep: .all)
        let scorer = try SweepScorer(evaluation, plans: plans, threads: 2, budget: nil)
        let point = MemoryOutput.bytes(plans[0])
        // Budgets giving 4, 2 and 0 points in memory.
        var runs: [[[Double]]] = []
        for (name, inMemory) in [("all", 4), ("some", 2), ("none", 0)] {
            let budget = MemoryBudget(bytes: 2 * (scorer.evaluationBytes + inMemory * point) + 1, source: "test")
            let (_, scored) = try Self.run(lambdas, evaluation, output: dir + "/" + name, budget: budget)
            #expect(scored.inMemory == inMemory)
            #expect(scored.kept == [true, true, true, true])
            for i in lambdas.indices {
                let pointName = OutputEntries.pointName(i, of: lambdas.count)
                let written = FileManager.default.contents(atPath: "\(dir)/\(name)/\(pointName)/model.safetensors")
                #expect(written != nil && written == FileManager.default.contents(atPath: "\(dir)/plain/\(pointName)/model.safetensors"),
                        "\(name): \(pointName)")
                let card = try String(contentsOfFile: "\(dir)/\(name)/\(pointName)/README.md", encoding: .utf8)
                #expect(card.contains("## Evaluation"))
                #expect(card.contains(i == scored.selected ? "This point was selected" : "This point was not the one selected"))
            }
            runs.append(scored.scores.map { $0.results.flatMap { [Double($0.correct), $0.meanLoss] } })
        }
        #expect(runs[0] == runs[1] && runs[1] == runs[2], "scores differ between memory and disk")
    }

    @Test("keep none writes the manifest and plots only; keep best removes the streamed points it does not keep")
    func keepPolicies() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval")
        let lambdas = [0.1, 0.3, 0.5]
        let (_, none) = try Self.run(lambdas, SweepEvaluation(tasks: Self.tasks, keep: .none), output: dir + "/none")
        #expect(Self.contents(dir + "/none") == ["manifest.json", "scores-lambda.svg"])
        #expect(none.kept == [false, false, false])
        // Streamed (no memory): the points were written, and all but the chosen one removed.
        let streamed = SweepEvaluation(tasks: Self.tasks, keep: .best)
        let (plans, points) = try Self.plan(lambdas, output: dir + "/streamed")
        let scorer = try SweepScorer(streamed, plans: plans, threads: 1, budget: nil)
        let tight = MemoryBudget(bytes: 2 * scorer.evaluationBytes + 1, source: "test")
        let (outcome, best) = try MergeRun.run(plans, evaluation: streamed, threads: 1, points: points, sweepDirectory: dir + "/streamed",
                                               budget: tight)
        #expect(best.inMemory == 0)
        #expect(Self.contents(dir + "/streamed") == ["manifest.json", OutputEntries.pointName(best.selected, of: 3), "scores-lambda.svg"])
        #expect(outcome.results.count == 1)
        // Nothing of the run is left beside the sweep (no temporaries).
        #expect(Self.contents(dir) == ["none", "streamed"])
        // The manifest: every point's scores, which were written, the choice.
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/streamed/manifest.json"))) as? [String: Any])
        let entries = try #require(manifest["points"] as? [[String: Any]])
        #expect(entries.map { $0["written"] as? Bool } == [0, 1, 2].map { $0 == best.selected })
        #expect(entries.allSatisfy { ($0["scores"] as? [String: Any])?["average_accuracy"] is Double })
        let evaluation = try #require(manifest["evaluation"] as? [String: Any])
        #expect((evaluation["selected"] as? [String: Any])?["index"] as? Int == best.selected)
        #expect(evaluation["select"] as? String == "average")
    }

    @Test("The rules: average, worst task, loss, one task; ties go to the first point")
    func selectionRules() {
        func result(_ correct: Int, loss: Double) -> EvaluationResult {
            EvaluationResult(images: 10, correct: correct, meanLoss: loss, seconds: 0)
        }
        let scores = [
            PointScores(results: [result(9, loss: 1.0), result(1, loss: 1.0)]),  // average 0.5, worst 0.1, loss 1.0
            PointScores(results: [result(5, loss: 0.5), result(5, loss: 0.7)]),  // average 0.5, worst 0.5, loss 0.6
            PointScores(results: [result(6, loss: 0.9), result(6, loss: 0.9)]),  // average 0.6, worst 0.6, loss 0.9
            PointScores(results: [result(2, loss: 0.2), result(9, loss: 0.6)]),  // average 0.55, loss 0.4
        ]
        let tasks = [SweepEvaluation.Task(name: "a", head: "a.safetensors", data: "x"), SweepEvaluation.Task(name: "b", head: "b.safetensors", data: "y")]
        func choose(_ rule: String) -> Int { SweepEvaluation(tasks: tasks, select: .init(rule)).selected(scores) }
        #expect(choose("average") == 2)
        #expect(choose("worst") == 2)
        #expect(choose("loss") == 3)
        #expect(choose("a") == 0)
        #expect(choose("b") == 3)
        // Equal averages: the first.
        #expect(SweepEvaluation(tasks: tasks).selected(Array(scores.prefix(2))) == 0)
        #expect(SweepEvaluation.Selection("worst") == .worst && SweepEvaluation.Selection("mnist") == .task("mnist"))
    }

    @Test("Task names: the head's file name, with directories only where two would be the same")
    func taskNames() {
        let evaluation = SweepEvaluation(tasks: [
            .init(head: "runs/a/task0/head.safetensors", data: "d0"), .init(head: "runs/b/task0/head.safetensors", data: "d1"),
            .init(head: "heads/mnist.safetensors", data: "d2"), .init(name: "head", head: "x/head.safetensors", data: "d3"),
        ]).namedApart()
        #expect(evaluation.tasks.map(\.name) == ["a/task0/head", "b/task0/head", "mnist", "head"])
        #expect(evaluation.argumentProblems.isEmpty)
        let twice = SweepEvaluation(tasks: [.init(name: "t", head: "h1", data: "d"), .init(name: "t", head: "h2", data: "d")])
        #expect(twice.argumentProblems.contains { $0.contains("two tasks are named t") })
        let unknown = SweepEvaluation(tasks: [.init(head: "h.safetensors", data: "d")], select: .task("svhn"))
        #expect(unknown.argumentProblems.contains { $0.contains("select svhn is neither") && $0.contains("the tasks: h") })
        #expect(SweepEvaluation(tasks: []).argumentProblems.contains { $0.contains("at least one task") })
    }

    @Test("Refused before any work, naming the file: task-vector points, a head or data that does not fit, a base that is no CLIP encoder")
    func refusals() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval")
        func refusal(_ body: () throws -> Void) -> MergeKitError? {
            do { try body() } catch let error as MergeKitError { return error } catch { return nil }
            return nil
        }
        // Task vectors.
        let (vectors, _) = try Self.plan([0.5, 1], output: dir + "/tv", emit: .taskVector)
        let tv = refusal { _ = try SweepScorer(SweepEvaluation(tasks: Self.tasks), plans: vectors, threads: 1, budget: nil) }
        #expect(tv?.detail.contains("would be a task vector") == true, "\(String(describing: tv))")
        // A head of another embedding width: the quick base's E is 16; a dataset as head.
        let wrongHead = SweepEvaluation(tasks: [.init(head: Self.fixtures + "/wemoe/task0/data.safetensors", data: Self.tasks[0].data)])
        let (plans, _) = try Self.plan([0.5, 1], output: dir + "/s")
        let head = refusal { _ = try SweepScorer(wrongHead, plans: plans, threads: 1, budget: nil) }
        #expect(head?.file == Self.fixtures + "/wemoe/task0/data.safetensors")
        // Missing data, reported with the other task's problem together.
        let missing = SweepEvaluation(tasks: [.init(head: Self.tasks[0].head, data: dir + "/nope.safetensors"),
                                              .init(head: Self.tasks[1].head, data: dir + "/gone.safetensors")])
        let both = refusal { _ = try SweepScorer(missing, plans: plans, threads: 1, budget: nil) }
        #expect(both?.description.contains("nope.safetensors") == true && both?.description.contains("gone.safetensors") == true,
                "\(String(describing: both))")
        // A base that is not a CLIP image encoder (a Llama-shaped fixture).
        let recipe = Recipe(method: "task_arithmetic", baseModel: Self.fixtures + "/f32/base",
                            inputs: [Recipe.Input(kind: .model, path: Self.fixtures + "/f32/ft_a")],
                            sweep: [("lambda", [.number(0.5), .number(1)])], path: "test")
        let llama = try recipe.plan(output: dir + "/llama").plans
        let notCLIP = refusal { _ = try SweepScorer(SweepEvaluation(tasks: Self.tasks), plans: llama, threads: 1, budget: nil) }
        #expect(notCLIP != nil)
        #expect(notCLIP?.detail.contains("the sweep's points") == true, "\(String(describing: notCLIP))")
        // Nothing was written for any of them.
        #expect(Self.contents(dir).isEmpty)
    }

    @Test("A sweep of linearized checkpoints is scored in the tangent space, as eval scores the written point")
    func linearized() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval")
        let linearized = Self.fixtures + "/datamerging/linearized"
        let recipe = Recipe(method: "task_arithmetic", baseModel: linearized + "/base.safetensors",
                            inputs: [0, 1].map { Recipe.Input(kind: .model, path: linearized + "/task\($0).safetensors") },
                            sweep: [("lambda", [.number(0.5), .number(1)])], path: "test")
        let run = try recipe.plan(output: dir + "/lin")
        let points = run.points.map { $0.map { (name: $0.name, value: $0.value.description) } }
        let evaluation = SweepEvaluation(tasks: Array(Self.tasks.prefix(2)), keep: .all)
        let (_, scored) = try MergeRun.run(run.plans, evaluation: evaluation, threads: 2, points: points, sweepDirectory: dir + "/lin")
        #expect(scored.inMemory == 2)
        for i in 0..<2 {
            let path = dir + "/lin/" + OutputEntries.pointName(i, of: 2) + "/model.safetensors"
            let encoder = try EvaluatedEncoder(model: path)
            #expect(encoder.form == .linearized)
            let model = try encoder.load(threads: 2)
            for (t, task) in evaluation.tasks.enumerated() {
                let result = try Evaluation.run(model, head: try TaskHead(path: task.head), data: try ImageDataset(path: task.data), batchSize: 32)
                #expect(result.correct == scored.scores[i].results[t].correct)
                #expect(abs(result.meanLoss - scored.scores[i].results[t].meanLoss) < 1e-9)
            }
        }
    }

    @Test("Plots: one per swept parameter, through the selected point, each task and the average, the point marked")
    func plotSlices() throws {
        func result(_ correct: Int) -> EvaluationResult { EvaluationResult(images: 10, correct: correct, meanLoss: 1, seconds: 0) }
        // λ ∈ {0.5, 1} × density ∈ {0.2, 0.4, 0.6}, in grid order (λ outer).
        var points: [MergeRun.Point] = []
        var scores: [PointScores] = []
        for (i, lambda) in ["0.5", "1"].enumerated() {
            for (j, density) in ["0.2", "0.4", "0.6"].enumerated() {
                points.append([(name: "lambda", value: lambda), (name: "density", value: density)])
                scores.append(PointScores(results: [result(i * 3 + j), result(9 - j)]))
            }
        }
        let tasks = [SweepEvaluation.Task(name: "a", head: "a", data: "a"), SweepEvaluation.Task(name: "b", head: "b", data: "b")]
        let slices = SweepPlots.slices(SweepEvaluation(tasks: tasks, select: .task("a")), scores: scores, points: points, selected: 4)
        #expect(slices.map(\.parameter) == ["lambda", "density"])
        // λ through density = 0.4: points 1 and 4.
        #expect(slices[0].x == [0.5, 1] && slices[0].series.map(\.name) == ["a", "b", "average"])
        #expect(slices[0].series[0].y == [0.1, 0.4] && slices[0].series[1].y == [0.8, 0.8])
        #expect(slices[0].held.map(\.value) == ["0.4"])
        // density through λ = 1: points 3, 4, 5; marked on task a's line (the rule's).
        #expect(slices[1].x == [0.2, 0.4, 0.6] && slices[1].series[0].y == [0.3, 0.4, 0.5])
        #expect(slices[1].series[2].y.allSatisfy { abs($0 - 0.6) < 1e-12 })
        #expect(slices[1].selectedX == 0.4 && slices[1].selectedY == 0.4)
        let svg = SweepPlots.chart(slices[1], method: "ties").svg()
        for text in ["ties: accuracy against density, at λ = 1", "average", "selected: 40.0 %", "accuracy"] {
            #expect(svg.contains(text), "\(text)")
        }
        #expect(SweepPlots.fileName("lambda", extension: "svg") == "scores-lambda.svg")
        #expect(SweepPlots.fileName("a/b", extension: "png") == "scores-a_b.png" && OutputEntries.isPlotName("scores-a_b.png"))
        #expect(!OutputEntries.isPlotName("scores-.svg") && !OutputEntries.isPlotName("notes.svg"))
    }

    @Test("A scored sweep with plots (and PNGs) is an output like any other: --overwrite replaces it whole")
    func plotsInSweep() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval")
        let png = PlotFile.renderer() != nil
        let evaluation = SweepEvaluation(tasks: Self.tasks, png: png)
        let (_, scored) = try Self.run([0.2, 0.4], evaluation, output: dir + "/s")
        #expect(scored.plots == [dir + "/s/scores-lambda.svg"] + (png ? [dir + "/s/scores-lambda.png"] : []))
        let svg = try String(contentsOfFile: dir + "/s/scores-lambda.svg", encoding: .utf8)
        #expect(svg.contains("task0/head") && svg.contains("task2/head") && svg.contains("average"))
        #expect(try OutputEntries.unexpectedEntries(in: dir + "/s").isEmpty)
        let (plans, points) = try Self.plan([0.2, 0.4], output: dir + "/s", overwrite: true)
        _ = try MergeRun.run(plans, evaluation: SweepEvaluation(tasks: Self.tasks, keep: .none), threads: 2, points: points,
                             sweepDirectory: dir + "/s", overwrite: true)
        #expect(Self.contents(dir + "/s") == ["manifest.json", "scores-lambda.svg"])
    }

    @Test("Scores are the same for any thread count")
    func threadsAgree() throws {
        let dir = TestSupport.temporaryDirectory("sweep-eval")
        let (_, one) = try Self.run([0.25, 0.5], SweepEvaluation(tasks: Self.tasks), output: dir + "/one", threads: 1)
        let (_, three) = try Self.run([0.25, 0.5], SweepEvaluation(tasks: Self.tasks), output: dir + "/three", threads: 3)
        #expect(one.scores.map { $0.results.map(\.correct) } == three.scores.map { $0.results.map(\.correct) })
        #expect(zip(one.scores, three.scores).allSatisfy { abs($0.averageLoss - $1.averageLoss) < 1e-6 })
    }
}
