import Foundation
import Testing
@testable import MergeKit

/// The weight-disentanglement error ξ(α₁, α₂): against explicit evaluations of the merged models,
/// and end to end on a synthetic task pair (ordinary vs linear fine-tuning, then task addition).
@Suite("Disentanglement")
struct DisentanglementTests {
    /// A synthetic classification task for the quick model (3×32×32 images, E = 16): images whose
    /// signal sits in one half of the image (`top`: rows 0–15, else rows 16–31) over weak noise,
    /// class k adding a fixed random pattern; and a random head of `classes` normalised rows × 10.
    static func task(top: Bool, classes: Int, count: Int, seed: UInt64, directory: String) -> (head: String, data: String) {
        var random = TestRandom(seed: seed)
        let pixelsPerImage = 3 * 32 * 32
        let patterns = (0..<classes).map { _ in random.normals(pixelsPerImage) }
        var pixels: [Double] = [], labels: [Double] = []
        for i in 0..<count {
            let label = i % classes
            let noise = random.normals(pixelsPerImage, scale: 0.3)
            for p in 0..<pixelsPerImage {
                let row = (p % (32 * 32)) / 32
                let inside = top ? row < 16 : row >= 16
                pixels.append(Double(noise[p]) + (inside ? Double(patterns[label][p]) : 0))
            }
            labels.append(Double(label))
        }
        var head: [Double] = []
        for _ in 0..<classes {
            let row = random.normals(16).map(Double.init)
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            head += row.map { 10 * $0 / norm }
        }
        let name = top ? "top" : "bottom"
        let headPath = FileSystem.join(directory, "\(name)-head.safetensors"), dataPath = FileSystem.join(directory, "\(name)-data.safetensors")
        TestSupport.writeCheckpoint(headPath, [(TensorSpec(name: "weight", dtype: .F32, shape: [classes, 16]), head)])
        TestSupport.writeCheckpoint(dataPath, [(TensorSpec(name: "pixel_values", dtype: .F32, shape: [count, 3, 32, 32]), pixels),
                                               (TensorSpec(name: "labels", dtype: .I64, shape: [count]), labels)])
        return (headPath, dataPath)
    }

    @Test("The linearized shortcut and the ordinary path agree with explicit evaluations of the merged models")
    func explicit() throws {
        let base = try EngineFixtures.model("quick/base", threads: 1)
        let tau = try base.parameters.direction(from: Checkpoint(path: EngineFixtures.path("quick/tau.safetensors")))
        var random = TestRandom(seed: 5)
        let other = CLIPVisionParameters(zerosLike: base.parameters)
        for t in other.tensors { other.setValues(random.normals(t.count, scale: 0.05), of: t.name) }
        let head = try TaskHead(path: EngineFixtures.path("quick/head.safetensors"))
        let data = try EngineFixtures.dataset("quick")
        let tasks = [Disentanglement.Task(vector: tau, head: head, data: data), Disentanglement.Task(vector: other, head: head, data: data)]
        let alphas = [-3.0, 0, 1.5, 4]
        for linearized in [false, true] {
            let result = try Disentanglement.run(base: base, tasks: tasks, alphas: alphas, linearized: linearized, batchSize: 3)
            #expect(result.errors[1][1] == 0, "ξ(0, 0) = 0")
            func predictions(_ a1: Double, _ a2: Double) -> [Int] {
                let direction = tau.copy()
                direction.add(tau, scale: Float(a1) - 1)
                direction.add(other, scale: Float(a2))
                let e: [Float]
                if linearized {
                    e = LinearizedCLIPVisionModel(base: base, direction: direction).forward(pixels: data.pixels(0..<data.count), batch: data.count)
                } else {
                    let p = base.parameters.copy()
                    p.add(direction)
                    e = CLIPVisionModel(parameters: p, threads: 1).forward(pixels: data.pixels(0..<data.count), batch: data.count)
                }
                return Disentanglement.predict(head, e, data.count)
            }
            var nonzero = false
            for (i, a1) in alphas.enumerated() {
                for (j, a2) in alphas.enumerated() {
                    let both = predictions(a1, a2)
                    let expected = Disentanglement.disagreement(predictions(a1, 0), both) + Disentanglement.disagreement(predictions(0, a2), both)
                    #expect(abs(result.errors[i][j] - expected) < 1e-12, "linearized \(linearized) ξ(\(a1), \(a2))")
                    nonzero = nonzero || expected > 0
                }
            }
            #expect(nonzero, "the grid must exercise the error")
        }
    }
}
