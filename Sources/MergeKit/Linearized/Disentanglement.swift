/// The weight-disentanglement error of two task vectors (Ortiz-Jimenez et al., eq. 4): how much
/// adding the other task's vector changes each task's predictions,
///
///     ξ(α₁, α₂) = Σₜ E_{x ∈ Dₜ} [ 1{ argmax hₜ(f(x; θ₀ + αₜτₜ)) ≠ argmax hₜ(f(x; θ₀ + α₁τ₁ + α₂τ₂)) } ]
///
/// with hₜ task t's head, the paper's prediction error as the distance. 0 means the task vectors
/// act on disjoint parts of input space (perfect disentanglement); the maximum is 2.
///
/// Linearized (f = f_lin around θ₀): f_lin(x; θ₀ + α₁τ₁ + α₂τ₂) = f(x; θ₀) + α₁Jτ₁ + α₂Jτ₂ exactly,
/// so two JVPs per dataset give every grid point; ordinary models need one forward pass per grid
/// point and dataset (plus one per α and task for the single-task models).
public enum Disentanglement {
    /// One task: its vector, head and data.
    public struct Task {
        public let vector: CLIPVisionParameters
        public let head: TaskHead
        public let data: ImageDataset

        public init(vector: CLIPVisionParameters, head: TaskHead, data: ImageDataset) {
            self.vector = vector
            self.head = head
            self.data = data
        }
    }

    public struct Result: Sendable, Equatable {
        public let alphas: [Double]
        public let linearized: Bool
        /// ξ[i][j] = ξ(alphas[i], alphas[j]).
        public let errors: [[Double]]
        /// Per task t: the fraction of Dₜ whose prediction changes, [t][i][j].
        public let taskErrors: [[[Double]]]

        /// The mean of ξ over the grid.
        public var mean: Double { errors.joined().reduce(0, +) / Double(max(1, alphas.count * alphas.count)) }
    }

    /// ξ over `alphas` × `alphas` for exactly two tasks.
    public static func run(base: CLIPVisionModel, tasks: [Task], alphas: [Double], linearized: Bool,
                           batchSize: Int = 64) throws(MergeKitError) -> Result {
        precondition(tasks.count == 2, "the disentanglement error compares two tasks")
        precondition(!alphas.isEmpty && batchSize >= 1)
        for task in tasks {
            try Evaluation.check(head: task.head, data: task.data, config: base.config, embeddingSize: base.embeddingSize,
                                 purpose: "to measure disentanglement on")
            precondition(task.vector.hasSameLayout(as: base.parameters), "the task vector's layout differs from the base's")
        }
        let n = alphas.count
        var taskErrors = [[[Double]]](repeating: [[Double]](repeating: [Double](repeating: 0, count: n), count: n), count: 2)
        if linearized {
            for (t, task) in tasks.enumerated() {
                // e(α₁, α₂) = e₀ + α₁·Jτ₁ + α₂·Jτ₂ on Dₜ.
                let count = task.data.count
                let (e0, j1) = try jvp(base, task.data, tasks[0].vector, batchSize)
                let j2 = try jvp(base, task.data, tasks[1].vector, batchSize).tangent
                func predictions(_ a1: Double, _ a2: Double) -> [Int] {
                    var e = e0
                    for k in e.indices { e[k] += Float(a1) * j1[k] + Float(a2) * j2[k] }
                    return predict(task.head, e, count)
                }
                let single = alphas.map { a in t == 0 ? predictions(a, 0) : predictions(0, a) }
                for i in 0..<n {
                    for j in 0..<n {
                        taskErrors[t][i][j] = disagreement(single[t == 0 ? i : j], predictions(alphas[i], alphas[j]))
                    }
                }
            }
        } else {
            func predictions(_ a1: Double, _ a2: Double, _ task: Task) throws(MergeKitError) -> [Int] {
                let parameters = base.parameters.copy()
                parameters.add(tasks[0].vector, scale: Float(a1))
                parameters.add(tasks[1].vector, scale: Float(a2))
                let model = CLIPVisionModel(parameters: parameters, threads: base.threads)
                return predict(task.head, try forward(model, task.data, batchSize), task.data.count)
            }
            var single: [[[Int]]] = []
            for a in alphas { single.append([try predictions(a, 0, tasks[0]), try predictions(0, a, tasks[1])]) }
            for i in 0..<n {
                for j in 0..<n {
                    for t in 0..<2 {
                        taskErrors[t][i][j] = disagreement(single[t == 0 ? i : j][t], try predictions(alphas[i], alphas[j], tasks[t]))
                    }
                }
            }
        }
        let errors = (0..<n).map { i in (0..<n).map { j in taskErrors[0][i][j] + taskErrors[1][i][j] } }
        return Result(alphas: alphas, linearized: linearized, errors: errors, taskErrors: taskErrors)
    }

    /// Embeddings and tangents along `direction` of every image of `data`, a batch at a time.
    static func jvp(_ model: CLIPVisionModel, _ data: ImageDataset, _ direction: CLIPVisionParameters,
                    _ batchSize: Int) throws(MergeKitError) -> (embeddings: [Float], tangent: [Float]) {
        var embeddings: [Float] = [], tangent: [Float] = []
        var start = 0
        while start < data.count {
            let end = min(data.count, start + batchSize)
            let pixels = data.pixels(start..<end)
            try data.checkFinite(pixels, first: start)
            let (e, t) = model.jvp(pixels: pixels, batch: end - start, direction: direction)
            embeddings += e
            tangent += t
            start = end
        }
        return (embeddings, tangent)
    }

    /// Embeddings of every image of `data`, a batch at a time.
    static func forward(_ model: CLIPVisionModel, _ data: ImageDataset, _ batchSize: Int) throws(MergeKitError) -> [Float] {
        var embeddings: [Float] = []
        var start = 0
        while start < data.count {
            let end = min(data.count, start + batchSize)
            let pixels = data.pixels(start..<end)
            try data.checkFinite(pixels, first: start)
            embeddings += model.forward(pixels: pixels, batch: end - start)
            start = end
        }
        return embeddings
    }

    /// argmax of each image's logits (the first maximum on ties, as torch.argmax).
    static func predict(_ head: TaskHead, _ embeddings: [Float], _ count: Int) -> [Int] {
        let logits = head.logits(embeddings: embeddings, batch: count)
        return (0..<count).map { b in
            var best = 0
            for k in 1..<head.classes where logits[b * head.classes + k] > logits[b * head.classes + best] { best = k }
            return best
        }
    }

    static func disagreement(_ a: [Int], _ b: [Int]) -> Double {
        precondition(a.count == b.count)
        guard !a.isEmpty else { return 0 }
        return Double(zip(a, b).filter { $0 != $1 }.count) / Double(a.count)
    }

    /// The task vector τ of `checkpoint` against `base` (θ₀): a linearized checkpoint (its θ − θ₀,
    /// whose θ₀ must equal the base's), a fine-tuned model when `isModel` (θ − θ₀), else a
    /// task-vector file (its tensors, missing ones zero). Tensors the encoder does not use are an
    /// error unless `allowUnused` (then listed in the result's `ignoredTensors`).
    public static func taskVector(_ checkpoint: Checkpoint, base: CLIPVisionParameters, isModel: Bool,
                                  allowUnused: Bool = false) throws(MergeKitError) -> CLIPVisionParameters {
        let vector: CLIPVisionParameters, unused: [String]
        if LinearizedCheckpoint.isLinearized(checkpoint) {
            let (theta0, theta, ignored) = try LinearizedCheckpoint.parameters(checkpoint, config: base.config, allowUnused: allowUnused)
            guard theta0.hasSameLayout(as: base), theta0.flat == base.flat else {
                throw MergeKitError(.baseMismatch, file: checkpoint.path,
                    "is linearized around another θ₀ than the base", fix: "Pass the base it was linearized around")
            }
            (vector, unused) = (try CLIPVisionParameters.difference(theta, theta0, file: checkpoint.path), ignored)
        } else if isModel {
            let theta = try CLIPVisionParameters.load(from: checkpoint, config: base.config, allowUnused: allowUnused)
            (vector, unused) = (try CLIPVisionParameters.difference(theta, base, file: checkpoint.path), theta.ignoredTensors)
        } else {
            return try base.direction(from: checkpoint, allowUnused: allowUnused)
        }
        vector.ignoredTensors = unused
        return vector
    }
}
