import Foundation
import Testing
@testable import MergeKit

/// Fixtures of the data-driven merges (`Fixtures/datamerging/make_datamerging_fixtures.py`).
enum DataMergingFixtures {
    static func path(_ relative: String) -> String { TestSupport.fixture("datamerging/" + relative) }
    static let tasks = 3
    static let base = EngineFixtures.path("quick/base")
    static var models: [String] { (0..<tasks).map { path("models/task\($0)") } }
    static var linearizedBase: String { path("linearized/base.safetensors") }
    static var linearizedModels: [String] { (0..<tasks).map { path("linearized/task\($0).safetensors") } }
    static var taskFiles: [CoefficientMerge.TaskFiles] {
        (0..<tasks).map { CoefficientMerge.TaskFiles(data: WEMoEFixtures.path("task\($0)/data.safetensors"),
                                                     head: WEMoEFixtures.path("task\($0)/head.safetensors")) }
    }

    /// The reference run `name` (grad0, lambda [steps, …], loss [steps]).
    static func expected(_ name: String) throws -> [String: [Double]] {
        TestSupport.values(try Checkpoint(path: path("expected/\(name).safetensors"))).mapValues(\.values)
    }

    static func merge(method: String = "adamerging", labeled: Bool = false, shots: Int? = nil, linearized: Bool = false,
                      output: String, coefficients: String? = nil, recipe: String? = nil) throws -> CoefficientMerge {
        try CoefficientMerge(method: method, base: linearized ? linearizedBase : base, models: linearized ? linearizedModels : models,
                             tasks: taskFiles, labeled: labeled, shots: shots, linearized: linearized, output: OutputSpec(path: output),
                             coefficientsPath: coefficients, recipePath: recipe)
    }
}

@Suite("Data-driven merges: AdaMerging and aTLAS against their references")
struct DataMergingReferenceTests {
    /// Runs `steps` steps (every image of every task per step, as the references do) and compares
    /// the first gradient, λ after every step and the losses.
    ///
    /// The key projections' biases get a gradient that is zero in exact arithmetic (softmax ignores
    /// a constant added to a row of logits): the float64 reference has ~1e-10 there and float32
    /// ~1e-7, and Adam's first steps move λ by about lr·g/(|g| + 1e-8), so those coefficients are
    /// only checked to move at most lr per step; every other λ is compared to `lambdaTolerance`.
    func compare(_ name: String, merge: CoefficientMerge, options: CoefficientTrainingOptions,
                 gradientTolerance: Double = 2e-4, lambdaTolerance: Double = 2e-5) throws {
        let expected = try DataMergingFixtures.expected(name)
        let trainer = try merge.trainer(options: options, threads: 2)
        let steps = expected["loss"]!.count
        let reference = expected["grad0"]!
        let scale = reference.map(abs).max()!
        let zeroGradient = reference.map { abs($0) < 1e-6 * scale }
        if trainer.blocks > 1 {
            let keyBiases = trainer.stream.tensors.map { $0.name.hasSuffix("k_proj.bias") }
            #expect(zeroGradient == (0..<reference.count).map { keyBiases[$0 % trainer.blocks] }, "\(name): zero gradients elsewhere")
        }
        var losses: [Double] = []
        for step in 0..<steps {
            losses.append(try trainer.train())
            if step == 0 {
                #expect(trainer.lastGradient.count == reference.count)
                let worst = zip(trainer.lastGradient, reference).map { abs($0 - $1) }.max()! / scale
                #expect(worst < gradientTolerance, "\(name): first gradient off by \(worst) of its largest value")
            }
            let lambda = Array(expected["lambda"]![(step * trainer.coefficients.count)..<((step + 1) * trainer.coefficients.count)])
            var worst = 0.0
            for (j, (ours, theirs)) in zip(trainer.coefficients, lambda).enumerated() {
                let error = abs(Double(ours) - theirs)
                if zeroGradient[j] {
                    #expect(abs(Double(ours) - Double(options.initialValue)) <= options.learningRate * Double(step + 1) * 1.001)
                } else {
                    worst = max(worst, error)
                }
            }
            #expect(worst < lambdaTolerance, "\(name): λ after step \(step + 1) off by \(worst)")
        }
        for (ours, theirs) in zip(losses, expected["loss"]!) {
            #expect(abs(ours - theirs) <= 1e-5 * max(1, abs(theirs)), "\(name): loss \(ours) vs \(theirs)")
        }
    }

    func adaMergingOptions(_ granularity: CoefficientGranularity) -> CoefficientTrainingOptions {
        var options = CoefficientTrainingOptions.adaMerging(granularity)
        options.steps = 10
        return options
    }

    func atlasOptions(supervised: Bool, linearized: Bool = false) -> CoefficientTrainingOptions {
        var options = CoefficientTrainingOptions.atlas(supervised: supervised, tasks: 3)
        options.steps = 10
        options.batchSize = 16
        options.linearized = linearized
        return options
    }

    @Test("task-wise AdaMerging: first gradient, λ over 10 Adam steps and losses match FusionBench's TaskWiseMergedModel")
    func taskWise() throws {
        let dir = TestSupport.temporaryDirectory("adamerging")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try compare("adamerging_task_wise", merge: try DataMergingFixtures.merge(output: dir + "/o"), options: adaMergingOptions(.taskWise))
    }

    @Test("layer-wise AdaMerging: first gradient, λ over 10 Adam steps and losses match FusionBench's LayerWiseMergedModel")
    func layerWise() throws {
        let dir = TestSupport.temporaryDirectory("adamerging")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try compare("adamerging_layer_wise", merge: try DataMergingFixtures.merge(output: dir + "/o"), options: adaMergingOptions(.layerWise))
    }

    @Test("aTLAS few-shot (cross-entropy, AdamW, clipping, cosine): matches the reference formulation")
    func atlasSupervised() throws {
        let dir = TestSupport.temporaryDirectory("atlas")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let merge = try DataMergingFixtures.merge(method: "atlas", labeled: true, output: dir + "/o")
        try compare("atlas_supervised", merge: merge, options: atlasOptions(supervised: true), lambdaTolerance: 2e-4)
    }

    @Test("aTLAS unsupervised (softmax entropy): matches the reference formulation")
    func atlasUnsupervised() throws {
        let dir = TestSupport.temporaryDirectory("atlas")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try compare("atlas_unsupervised", merge: try DataMergingFixtures.merge(method: "atlas", output: dir + "/o"),
                    options: atlasOptions(supervised: false))
    }

    @Test("aTLAS on linearized models (JVP at θ₀ along Σλτ): matches torch.func.jvp")
    func atlasLinearized() throws {
        let dir = TestSupport.temporaryDirectory("atlas")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let merge = try DataMergingFixtures.merge(method: "atlas", labeled: true, linearized: true, output: dir + "/o")
        try compare("atlas_linearized", merge: merge, options: atlasOptions(supervised: true, linearized: true), lambdaTolerance: 2e-4)
    }
}

@Suite("Data-driven merges: outputs, determinism and errors")
struct DataMergingBehaviourTests {
    static func options(_ granularity: CoefficientGranularity = .layerWise, steps: Int = 2, batch: Int = 5) -> CoefficientTrainingOptions {
        var options = CoefficientTrainingOptions.adaMerging(granularity)
        options.steps = steps
        options.batchSize = batch
        options.seed = 7
        return options
    }

    @Test("the written model is θ₀ + Σλτ, and the coefficients file and recipe apply the same λ again")
    func outputsAgree() throws {
        let dir = TestSupport.temporaryDirectory("adamerging-out")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let merge = try DataMergingFixtures.merge(output: dir + "/merged", coefficients: dir + "/c.json", recipe: dir + "/r.yaml")
        let trainer = try merge.trainer(options: Self.options(), threads: 2)
        let losses = try trainer.run()
        let coefficients = merge.coefficients(of: trainer, losses: losses)
        _ = try merge.write(trainer.merged, coefficients: coefficients)
        // θ₀ + Σλτ from the files, in Double.
        let base = TestSupport.values(try Checkpoint(path: DataMergingFixtures.base + "/model.safetensors"))
        let models = try DataMergingFixtures.models.map { TestSupport.values(try Checkpoint(path: $0 + "/model.safetensors")) }
        let written = TestSupport.values(try Checkpoint(path: dir + "/merged"))
        #expect(Set(written.keys) == Set(base.keys))
        for (l, name) in coefficients.tensors.enumerated() {
            let theta0 = base[name]!.values
            var expected = theta0
            for t in 0..<models.count {
                let lambda = Double(coefficients.value(task: t, tensor: l))
                for i in expected.indices { expected[i] += lambda * (models[t][name]!.values[i] - theta0[i]) }
            }
            let worst = zip(written[name]!.values, expected).map { abs($0 - $1) }.max() ?? 0
            #expect(worst < 1e-5, "\(name): \(worst)")
        }
        // The JSON round-trips, and the recipe merges the same model without data.
        let file = try MergingCoefficients(path: dir + "/c.json")
        #expect(file == coefficients)
        #expect(try Checkpoint(path: dir + "/merged").metadata?["adamerging.granularity"] == "layer-wise")
        let run = try CLI.run(["run", dir + "/r.yaml", "-o", dir + "/again"])
        #expect(run.status == 0, "\(run.stderr)")
        let again = TestSupport.values(try Checkpoint(path: dir + "/again"))
        for (name, tensor) in written {
            let worst = zip(tensor.values, again[name]!.values).map { abs($0 - $1) }.max() ?? 0
            #expect(worst < 1e-6, "\(name) re-applied differs by \(worst)")
        }
    }

    @Test("task-wise coefficients: one per model; the recipe uses a plain weight", arguments: [CoefficientGranularity.taskWise])
    func taskWiseShape(_ granularity: CoefficientGranularity) throws {
        let dir = TestSupport.temporaryDirectory("adamerging-tw")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let merge = try DataMergingFixtures.merge(output: dir + "/m")
        let trainer = try merge.trainer(options: Self.options(granularity, steps: 1), threads: 1)
        _ = try trainer.run()
        let coefficients = merge.coefficients(of: trainer, losses: [])
        #expect(coefficients.values.count == 3 && coefficients.blocks == 1)
        #expect(coefficients.recipe.contains("weight: ") && !coefficients.recipe.contains("filter"))
        #expect(try MergingCoefficients(json: coefficients.json, file: "x") == coefficients)
    }

    @Test("the same seed gives the same coefficients and bytes for 1, 2 and 3 threads")
    func threadIndependence() throws {
        let dir = TestSupport.temporaryDirectory("adamerging-threads")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var runs: [([Float], Data)] = []
        for threads in [1, 2, 3] {
            let out = dir + "/t\(threads).safetensors"
            let merge = try DataMergingFixtures.merge(output: out)
            let trainer = try merge.trainer(options: Self.options(steps: 3), threads: threads)
            let losses = try trainer.run()
            _ = try merge.write(trainer.merged, coefficients: merge.coefficients(of: trainer, losses: losses))
            runs.append((trainer.coefficients, try Data(contentsOf: URL(fileURLWithPath: out))))
        }
        #expect(runs[1].0 == runs[0].0 && runs[2].0 == runs[0].0)
        #expect(runs[1].1 == runs[0].1 && runs[2].1 == runs[0].1)
        // Another seed draws other batches (5 of 16 images per step) and learns other λ.
        var other = Self.options(steps: 3)
        other.seed = 8
        let trainer = try DataMergingFixtures.merge(output: dir + "/o").trainer(options: other, threads: 2)
        _ = try trainer.run()
        #expect(trainer.coefficients != runs[0].0)
    }

    @Test("AdaMerging lowers the entropy of every task on the fixture; aTLAS few-shot lowers the cross-entropy")
    func learns() throws {
        let dir = TestSupport.temporaryDirectory("adamerging-learn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var options = Self.options(steps: 30, batch: 16)
        options.learningRate = 1e-2
        let losses = try DataMergingFixtures.merge(output: dir + "/a").trainer(options: options, threads: 2).run()
        #expect(losses.last! < losses.first! - 0.05, "\(losses)")
        var atlas = CoefficientTrainingOptions.atlas(supervised: true, tasks: 3)
        atlas.steps = 20
        let few = try DataMergingFixtures.merge(method: "atlas", labeled: true, shots: 2, output: dir + "/b")
        #expect(few.tasks.allSatisfy { $0.indices.count <= 8 })
        let supervised = try few.trainer(options: atlas, threads: 2).run()
        #expect(supervised.last! < supervised.first!, "\(supervised)")
    }

    @Test("the few-shot draw takes up to k images of every class, seeded")
    func shots() {
        let labels = [0, 1, 0, 2, 1, 0, 0, 1, 2]
        let draw = ATLAS.shots(labels: labels, classes: 4, shots: 2, seed: 3)
        #expect(draw.count == 6)
        #expect(draw.map { labels[$0] } == [0, 0, 1, 1, 2, 2])
        #expect(ATLAS.shots(labels: labels, classes: 4, shots: 2, seed: 3) == draw)
        #expect(Set(ATLAS.shots(labels: labels, classes: 4, shots: 9, seed: 3)) == Set(labels.indices))
        #expect(ATLAS.batchSize(tasks: 8) == 16 && ATLAS.batchSize(tasks: 200) == 1)
        #expect(ATLAS.defaultSteps(images: 64, batch: 16) == 100 && ATLAS.defaultSteps(images: 4000, batch: 16) == 2500)
    }

    @Test("entropy with FusionBench's ε: value and gradient against central differences")
    func entropyGradient() {
        let logits: [Float] = [2.0, -1.0, 0.5, 8.0, 0.0, -3.0]
        let loss = CoefficientLoss.entropy(epsilon: 1e-2)
        let (_, gradient) = loss.evaluate(logits: logits, batch: 2, classes: 3, labels: nil)
        for i in logits.indices {
            var plus = logits, minus = logits
            plus[i] += 1e-2
            minus[i] -= 1e-2
            let numeric = (loss.evaluate(logits: plus, batch: 2, classes: 3, labels: nil).value
                - loss.evaluate(logits: minus, batch: 2, classes: 3, labels: nil).value) / 2e-2
            #expect(abs(numeric - Double(gradient[i])) < 1e-3, "logit \(i): \(numeric) vs \(gradient[i])")
        }
    }

    // MARK: Errors

    func error(_ body: () throws -> Void) -> MergeKitError? {
        do { try body() } catch let error as MergeKitError { return error } catch { Issue.record("\(error)") }
        return nil
    }

    @Test("inputs that cannot be merged are refused before training, naming the file, the tensor and the fix")
    func refusals() throws {
        let dir = TestSupport.temporaryDirectory("adamerging-errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tasks = DataMergingFixtures.taskFiles
        func merge(base: String = DataMergingFixtures.base, models: [String] = DataMergingFixtures.models,
                   tasks: [CoefficientMerge.TaskFiles] = tasks, labeled: Bool = false, linearized: Bool = false, output: String? = nil) throws {
            _ = try CoefficientMerge(method: "adamerging", base: base, models: models, tasks: tasks, labeled: labeled, linearized: linearized,
                                     output: OutputSpec(path: output ?? dir + "/o"), coefficientsPath: dir + "/o.json", recipePath: nil)
        }
        // A head of another embedding width.
        let wideHead = dir + "/wide.safetensors"
        TestSupport.writeCheckpoint(wideHead, [(TensorSpec(name: "weight", dtype: .F32, shape: [4, 8]), [Double](repeating: 0.1, count: 32))])
        let head = error { try merge(tasks: [CoefficientMerge.TaskFiles(data: tasks[0].data, head: wideHead)]) }
        #expect(head?.file == wideHead && head?.detail.contains("8-dimensional") == true)
        // Images of another size.
        let small = dir + "/small.safetensors"
        TestSupport.writeCheckpoint(small, [(TensorSpec(name: "pixel_values", dtype: .F32, shape: [2, 3, 16, 16]), [Double](repeating: 0, count: 2 * 3 * 16 * 16))])
        let size = error { try merge(tasks: [CoefficientMerge.TaskFiles(data: small, head: tasks[0].head)]) }
        #expect(size?.file == small && size?.tensor == "pixel_values")
        // Supervised data without labels.
        let unlabeled = error { try merge(tasks: [CoefficientMerge.TaskFiles(data: small, head: tasks[0].head)], labeled: true) }
        #expect(unlabeled?.tensor == "labels")
        // A model of another architecture (a missing tensor).
        let partial = dir + "/partial"
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: DataMergingFixtures.base + "/config.json", toPath: partial + "/config.json")
        let full = TestSupport.values(try Checkpoint(path: DataMergingFixtures.models[0]))
        TestSupport.writeCheckpoint(partial + "/model.safetensors", full.filter { $0.key != "visual_projection.weight" }.sorted { $0.key < $1.key }
                                        .map { (TensorSpec(name: $0.key, dtype: .F32, shape: $0.value.info.shape), $0.value.values) })
        let missing = error { try merge(models: [partial]) }
        #expect(missing?.file == partial + "/model.safetensors" || missing?.file == partial)
        #expect(missing?.tensor == "visual_projection.weight", "\(String(describing: missing))")
        // Linearized models without --linearized, and ordinary ones with it.
        let kind = error { try merge(models: DataMergingFixtures.linearizedModels) }
        #expect(kind?.detail.contains("linearized") == true && kind?.fix?.contains("linearized") == true)
        let ordinary = error { try merge(base: DataMergingFixtures.linearizedBase, models: DataMergingFixtures.models, linearized: true) }
        #expect(ordinary?.file == DataMergingFixtures.models[0])
        // The output may not replace an input.
        let replace = error { try merge(output: DataMergingFixtures.models[1]) }
        #expect(replace != nil)
    }

    @Test("a NaN pixel stops training at step 1, naming the file and the image; nothing is written")
    func nonFinite() throws {
        let dir = TestSupport.temporaryDirectory("adamerging-nan")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = EngineEdgeInputTests.dataset(dir, count: 4, poisoned: 3, poison: 5)
        let merge = try CoefficientMerge(method: "adamerging", base: DataMergingFixtures.base, models: DataMergingFixtures.models,
                                         tasks: [CoefficientMerge.TaskFiles(data: data, head: DataMergingFixtures.taskFiles[0].head)],
                                         labeled: false, linearized: false, output: OutputSpec(path: dir + "/o"),
                                         coefficientsPath: nil, recipePath: nil)
        let failure = error { _ = try merge.trainer(options: Self.options(batch: 4), threads: 1).run() }
        #expect(failure?.file == data && failure?.detail.contains("step 1") == true && failure?.detail.contains("image 3") == true,
                "\(String(describing: failure))")
        #expect(!FileManager.default.fileExists(atPath: dir + "/o"))
    }

    @Test("a coefficients file that is not one is refused naming the file")
    func badCoefficientsFile() throws {
        let bad = error { _ = try MergingCoefficients(json: .object([JSONMember("granularity", .string("x"))]), file: "c.json") }
        #expect(bad?.file == "c.json" && bad?.detail.contains("granularity") == true)
        let rows = error {
            _ = try MergingCoefficients(json: .object([JSONMember("granularity", .string("task-wise")),
                                                       JSONMember("models", .array([.string("a")])),
                                                       JSONMember("coefficients", .array([.array([.double(1), .double(2)])]))]), file: "c.json")
        }
        #expect(rows?.detail.contains("row 0") == true)
    }
}

@Suite("merge-cli adamerging and atlas")
struct DataMergingCLITests {
    static let fixtures = TestSupport.fixture("")
    static let models = (0..<3).flatMap { ["--model", "datamerging/models/task\($0)"] }
    static let tasks = (0..<3).flatMap { ["--data", "wemoe/task\($0)/data.safetensors", "--head", "wemoe/task\($0)/head.safetensors"] }

    @Test("adamerging and atlas write the model and the coefficients, print JSON and a summary")
    func runs() throws {
        let dir = TestSupport.temporaryDirectory("adamerging-cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ada = try CLI.run(["adamerging", "--base", "clip/quick/base"] + Self.models + Self.tasks
                              + ["--steps", "2", "--granularity", "task-wise", "--json", "-o", dir + "/ada"], in: Self.fixtures)
        #expect(ada.status == 0, "\(ada.stderr)")
        let json = try JSONParser.parse(Array(ada.stdout.utf8))
        #expect(json["losses"]?.arrayValue?.count == 2 && json["steps"]?.nonNegativeInt == 2)
        #expect(json["coefficients"]?["coefficients"]?.arrayValue?.count == 3)
        #expect(ada.stderr.contains("wrote") && ada.stderr.contains("task-wise"))
        #expect(FileManager.default.fileExists(atPath: dir + "/ada.coefficients.json"))
        let atlas = try CLI.run(["atlas", "--base", "clip/quick/base"] + Self.models + Self.tasks
                                + ["--shots", "2", "--steps", "2", "--recipe-out", dir + "/r.yaml", "--coefficients-out", dir + "/c.json",
                                   "-o", dir + "/atlas.safetensors"], in: Self.fixtures)
        #expect(atlas.status == 0, "\(atlas.stderr)")
        #expect(try MergingCoefficients(path: dir + "/c.json").blocks == 40)
        #expect(try String(contentsOfFile: dir + "/r.yaml", encoding: .utf8).contains("merge_method: task_arithmetic"))
        let linear = try CLI.run(["atlas", "--linearized", "--base", "datamerging/linearized/base.safetensors"]
                                 + (0..<3).flatMap { ["--model", "datamerging/linearized/task\($0).safetensors"] } + Self.tasks
                                 + ["--steps", "1", "-o", dir + "/lin.safetensors"], in: Self.fixtures)
        #expect(linear.status == 0, "\(linear.stderr)")
        #expect(LinearizedCheckpoint.isLinearized(try Checkpoint(path: dir + "/lin.safetensors")))
        // The existing output is kept without --overwrite.
        let again = try CLI.run(["adamerging", "--base", "clip/quick/base"] + Self.models + Self.tasks
                                + ["--steps", "1", "-o", dir + "/ada"], in: Self.fixtures)
        #expect(again.status == 1 && again.stderr.contains("overwrite"))
        // With --overwrite, the model and its coefficients file (a file, whatever its name) are replaced.
        let replaced = try CLI.run(["adamerging", "--base", "clip/quick/base"] + Self.models + Self.tasks
                                   + ["--steps", "1", "--granularity", "task-wise", "--overwrite", "-o", dir + "/ada"], in: Self.fixtures)
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(try MergingCoefficients(path: dir + "/ada.coefficients.json").values.count == 3)
        // A directory where the coefficients file goes is never replaced.
        try FileManager.default.createDirectory(atPath: dir + "/d.json", withIntermediateDirectories: false)
        let directory = try CLI.run(["adamerging", "--base", "clip/quick/base"] + Self.models + Self.tasks
                                    + ["--steps", "1", "--overwrite", "--coefficients-out", dir + "/d.json", "-o", dir + "/ada"], in: Self.fixtures)
        #expect(directory.status == 1 && directory.stderr.contains("d.json"), "\(directory.stderr)")
    }

    @Test("malformed arguments exit 64 naming the flag; unmergeable inputs exit 1")
    func errors() throws {
        let dir = TestSupport.temporaryDirectory("adamerging-cli-errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = ["adamerging", "--base", "clip/quick/base"] + Self.models
        for (arguments, words) in [(Self.tasks + ["--granularity", "row-wise"], "--granularity"),
                                   (Self.tasks + ["--steps", "0"], "--steps"),
                                   (Self.tasks + ["--lr", "-1"], "--lr"),
                                   (["--data", "wemoe/task0/data.safetensors"], "one --head per --data"),
                                   (Self.tasks + ["--batch-size", "0"], "--batch-size")] {
            let run = try CLI.run(base + arguments + ["-o", dir + "/x"], in: Self.fixtures)
            #expect(run.status == 64 && run.stderr.contains(words), "\(arguments): \(run.status) \(run.stderr)")
        }
        let shots = try CLI.run(["atlas", "--base", "clip/quick/base"] + Self.models + Self.tasks + ["--shots", "0", "-o", dir + "/x"],
                                in: Self.fixtures)
        #expect(shots.status == 64 && shots.stderr.contains("--shots"))
        let noModel = try CLI.run(["adamerging", "--base", "clip/quick/base"] + Self.tasks + ["-o", dir + "/x"], in: Self.fixtures)
        #expect(noModel.status == 64 && noModel.stderr.contains("--model"))
        let kind = try CLI.run(["adamerging", "--base", "clip/quick/base", "--model", "datamerging/linearized/task0.safetensors"] + Self.tasks + ["-o", dir + "/x"],
                               in: Self.fixtures)
        #expect(kind.status == 1 && kind.stderr.contains("--linearized"), "\(kind.stderr)")
        let memory = try CLI.run(base + Self.tasks + ["-o", dir + "/x"], in: Self.fixtures, environment: ["MERGEKIT_MEMORY_BUDGET": "1M"])
        #expect(memory.status == 1 && memory.stderr.contains("adamerging in batches of 16 needs about"), "\(memory.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
    }
}
