import Foundation
import Testing
@testable import MergeKit

/// The JVP and the backward pass against central finite differences of the forward pass, and
/// against each other, on random directions that cover one group of tensors at a time (so a
/// wrong or missing term of one layer cannot hide behind the others).
@Suite("CLIP engine finite differences")
struct CLIPFiniteDifferenceTests {
    /// A set of tensors a direction covers.
    struct Group: Sendable, CustomStringConvertible {
        let description: String
        let includes: @Sendable (String) -> Bool
    }

    static let groups: [Group] = [
        Group(description: "embeddings") { $0.contains("embeddings.") },
        Group(description: "layer norms") { $0.contains("layer_norm") || $0.contains("layrnorm") || $0.contains("layernorm") },
        Group(description: "q and k projections") { $0.contains("q_proj") || $0.contains("k_proj") },
        Group(description: "v and out projections") { $0.contains("v_proj") || $0.contains("out_proj") },
        Group(description: "MLP") { $0.contains("mlp.") },
        Group(description: "visual projection") { $0.hasPrefix("visual_projection") },
        // The JVP runs layer 0 forward only (its tangent is zero) and skips the zero GEMMs of layer 1.
        Group(description: "last layer's MLP weights") { $0.contains("layers.1.mlp.") && $0.hasSuffix("weight") },
        Group(description: "every tensor") { _ in true },
    ]

    static let models = ["quick/base", "gelu/model"]

    /// A random direction over `group`: N(0, 1) times each tensor's RMS (1 for all-zero tensors),
    /// zero elsewhere.
    static func direction(_ parameters: CLIPVisionParameters, _ group: Group, seed: UInt64) -> CLIPVisionParameters {
        var random = TestRandom(seed: seed)
        let result = CLIPVisionParameters(zerosLike: parameters)
        for tensor in parameters.tensors where group.includes(tensor.name) {
            let values = parameters.values(of: tensor.name)!
            let rms = (values.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(values.count)).squareRoot()
            result.setValues(random.normals(tensor.count, scale: rms > 0 ? rms : 1), of: tensor.name)
        }
        return result
    }

    /// θ + s·v as a model.
    static func shifted(_ model: CLIPVisionModel, _ v: CLIPVisionParameters, by s: Float) -> CLIPVisionModel {
        let p = model.parameters.copy()
        p.add(v, scale: s)
        return CLIPVisionModel(parameters: p, threads: 1)
    }

    @Test("The JVP equals central differences of the forward pass", arguments: models, groups)
    func jvpMatchesFiniteDifferences(_ name: String, _ group: Group) throws {
        let model = try EngineFixtures.model(name, threads: 1)
        let data = try EngineFixtures.dataset(String(name.split(separator: "/")[0]))
        let pixels = data.pixels(0..<data.count)
        let v = Self.direction(model.parameters, group, seed: 11)
        let tangent = model.jvp(pixels: pixels, batch: data.count, direction: v).tangent
        let h: Float = 1e-3
        let plus = Self.shifted(model, v, by: h).forward(pixels: pixels, batch: data.count)
        let minus = Self.shifted(model, v, by: -h).forward(pixels: pixels, batch: data.count)
        let fd = zip(plus, minus).map { (Double($0) - Double($1)) / (2 * Double(h)) }
        // Float32 forward passes: rounding ≈ 1e-7·|f|/h ≈ 1e-4, truncation ≈ h² — far below the
        // O(1) error of a wrong term.
        let error = expectClose(tangent, fd, tolerance: 2e-3, normwise: true, "\(name), \(group)")
        print("[engine] fd jvp \(name) \(group): \(error)")
    }

    @Test("Reverse mode agrees with forward mode: ⟨∇θ L, v⟩ = ⟨∂L/∂e, J·v⟩", arguments: models, groups)
    func backwardMatchesJVP(_ name: String, _ group: Group) throws {
        let folder = String(name.split(separator: "/")[0])
        let model = try EngineFixtures.model(name, threads: 1)
        let data = try EngineFixtures.dataset(folder)
        let head = try TaskHead(path: EngineFixtures.path(folder + "/head.safetensors"))
        let pixels = data.pixels(0..<data.count)
        let v = Self.direction(model.parameters, group, seed: 12)
        for loss in [ClassificationLoss.crossEntropy(labels: data.labels), .entropy] {
            let result = model.lossGradients(pixels: pixels, batch: data.count, head: head, loss: loss, inputGradient: false)
            let reverse = zip(result.parameters.flat, v.flat).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            // Forward mode: J·v of the embeddings, then the chain rule through head and loss.
            let (embeddings, tangent) = model.jvp(pixels: pixels, batch: data.count, direction: v)
            let logits = head.logits(embeddings: embeddings, batch: data.count)
            let dLogits = loss.evaluate(logits: logits, batch: data.count, classes: head.classes).gradient
            let dEmbeddings = head.backward(embeddings: embeddings, logitGradient: dLogits, batch: data.count)
            let forward = zip(dEmbeddings, tangent).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            // Scale: the sum of |terms|, so that cancellation does not make the check vacuous or unfair.
            let scale = zip(result.parameters.flat, v.flat).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
            #expect(scale > 0)
            #expect(abs(reverse - forward) <= 1e-5 * scale, "\(name) \(group) \(loss): reverse \(reverse), forward \(forward), scale \(scale)")
        }
    }

    @Test("The loss gradient equals central differences of the loss", arguments: models, groups)
    func gradientMatchesFiniteDifferences(_ name: String, _ group: Group) throws {
        let folder = String(name.split(separator: "/")[0])
        let model = try EngineFixtures.model(name, threads: 1)
        let data = try EngineFixtures.dataset(folder)
        let head = try TaskHead(path: EngineFixtures.path(folder + "/head.safetensors"))
        let pixels = data.pixels(0..<data.count)
        let v = Self.direction(model.parameters, group, seed: 13)
        let loss = ClassificationLoss.entropy
        func value(_ m: CLIPVisionModel) -> Double {
            let logits = head.logits(embeddings: m.forward(pixels: pixels, batch: data.count), batch: data.count)
            return loss.evaluate(logits: logits, batch: data.count, classes: head.classes).value
        }
        let result = model.lossGradients(pixels: pixels, batch: data.count, head: head, loss: loss, inputGradient: false)
        let analytic = zip(result.parameters.flat, v.flat).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let h: Float = 1e-3
        let fd = (value(Self.shifted(model, v, by: h)) - value(Self.shifted(model, v, by: -h))) / (2 * Double(h))
        let scale = zip(result.parameters.flat, v.flat).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
        #expect(abs(analytic - fd) <= 2e-4 * scale, "\(name) \(group): analytic \(analytic), fd \(fd), scale \(scale)")
        print("[engine] fd grad \(name) \(group): \(abs(analytic - fd) / scale)")
    }

    @Test("The input gradient equals central differences along a random image direction", arguments: models)
    func inputGradientMatchesFiniteDifferences(_ name: String) throws {
        let folder = String(name.split(separator: "/")[0])
        let model = try EngineFixtures.model(name, threads: 1)
        let data = try EngineFixtures.dataset(folder)
        let head = try TaskHead(path: EngineFixtures.path(folder + "/head.safetensors"))
        let pixels = data.pixels(0..<data.count)
        var random = TestRandom(seed: 14)
        let u = random.normals(pixels.count)
        let loss = ClassificationLoss.crossEntropy(labels: data.labels)
        func value(_ x: [Float]) -> Double {
            let logits = head.logits(embeddings: model.forward(pixels: x, batch: data.count), batch: data.count)
            return loss.evaluate(logits: logits, batch: data.count, classes: head.classes).value
        }
        let gradient = try #require(model.lossGradients(pixels: pixels, batch: data.count, head: head, loss: loss).input)
        let analytic = zip(gradient, u).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let scale = zip(gradient, u).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
        let h: Float = 1e-2
        let fd = (value(zip(pixels, u).map { $0 + h * $1 }) - value(zip(pixels, u).map { $0 - h * $1 })) / (2 * Double(h))
        #expect(abs(analytic - fd) <= 2e-4 * scale, "\(name): analytic \(analytic), fd \(fd), scale \(scale)")
        print("[engine] fd input \(name): \(abs(analytic - fd) / scale)")
    }
}
