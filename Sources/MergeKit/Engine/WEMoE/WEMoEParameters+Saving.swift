import Foundation

extension WEMoEParameters {
    /// Where a tensor of the checkpoint lives in memory.
    enum Slot {
        /// A tensor of `merged`, by name.
        case merged(String)
        /// Layer `layer`'s router buffer, at `offset`.
        case router(layer: Int, offset: Int)
        /// Layer `layer`'s fc1 (`second` false) or fc2 stack, at `offset`.
        case stack(layer: Int, second: Bool, offset: Int)
    }

    /// Every tensor of the checkpoint in file order, with its shape and where it lives: the
    /// merged encoder's tensors (`merged`, in state-dict order) with each layer's
    /// `….mlp.fc1.weight` … `fc2.bias` replaced by the router and the T + 1 MLP rows. Computed
    /// without allocating, so that `load` checks a file before building anything.
    static func fileLayout(merged: [CLIPVisionParameters.Tensor], prefix: String, config c: CLIPVisionConfig,
                           experts: Int, routerDepth: Int) -> [(name: String, shape: [Int], slot: Slot)] {
        let d = c.hiddenSize, f = c.intermediateSize
        var out: [(String, [Int], Slot)] = []
        var layer = 0
        for tensor in merged {
            let name = tensor.name
            if name.hasSuffix(".mlp.fc1.weight") {
                let p = prefix + "encoder.layers.\(layer).mlp."
                var offset = 0
                for (local, shape) in routerShapes(depth: routerDepth, width: d, experts: experts) {
                    out.append((p + local, shape, .router(layer: layer, offset: offset)))
                    offset += shape.reduce(1, *)
                }
                for row in 0...experts {
                    let owner = row == 0 ? "base_model." : "task_vectors.\(row - 1)."
                    let w1 = row * (f * d + f), w2 = row * (d * f + d)
                    out.append((p + owner + "fc1.weight", [f, d], .stack(layer: layer, second: false, offset: w1)))
                    out.append((p + owner + "fc1.bias", [f], .stack(layer: layer, second: false, offset: w1 + f * d)))
                    out.append((p + owner + "fc2.weight", [d, f], .stack(layer: layer, second: true, offset: w2)))
                    out.append((p + owner + "fc2.bias", [d], .stack(layer: layer, second: true, offset: w2 + d * f)))
                }
                layer += 1
            } else if name.contains(".mlp.fc") {
                continue
            } else {
                out.append((name, tensor.shape, .merged(name)))
            }
        }
        return out
    }

    /// Every tensor of the checkpoint with a pointer to its values, in file order.
    func namedTensors() -> [(name: String, shape: [Int], values: UnsafePointer<Float>)] {
        WEMoEParameters.fileLayout(merged: merged.tensors, prefix: merged.prefix, config: config, experts: experts,
                                   routerDepth: routerDepth).map { name, shape, slot in
            switch slot {
            case .merged(let name): return (name, shape, UnsafePointer(merged.pointer(name)))
            case .router(let layer, let offset): return (name, shape, UnsafePointer(router(layer) + offset))
            case .stack(let layer, let second, let offset):
                return (name, shape, UnsafePointer((second ? fc2Stacks : fc1Stacks)[layer].pointer + offset))
            }
        }
    }

    /// The `__metadata__` of a saved checkpoint.
    var metadata: [String: String] {
        [
            "format": "pt",
            "merge_method": "wemoe",
            "wemoe.num_experts": String(experts),
            "wemoe.router_depth": String(routerDepth),
            "wemoe.init_lambda": String(initLambda),
            "wemoe.trained_steps": String(trainedSteps),
            "wemoe.experts": JSONValue.array(expertNames.map { .string($0) }).serialized(),
            "wemoe.config": config.json.serialized(),
            "wemoe.projection": merged.projectionName ?? "",
        ]
    }

    /// Writes the checkpoint (F32) to `path`: a `.safetensors` file, or a directory holding
    /// `model.safetensors` and `config.json` (copied from `configSource` when given, else generated).
    /// Atomic: written to a temporary sibling and renamed into place. The output is checked
    /// against `inputs` (every path the model was built from) and `configSource` by `OutputGuard`.
    /// - Returns: what happened around the output (stale temporaries removed, …).
    @discardableResult
    public func save(to path: String, configSource: String? = nil, overwrite: Bool = false,
                     inputs: [String] = []) throws(MergeKitError) -> [OutputNote] {
        let companions = configSource.map { [(source: $0, name: "config.json")] } ?? []
        let generated = configSource == nil ? ["config.json": Array((config.json.serialized(indent: 2) + "\n").utf8)] : [:]
        return try FloatCheckpointWriter.save(namedTensors(), metadata: metadata, to: path, overwrite: overwrite, inputs: inputs,
                                              companions: companions, generated: generated)
    }
}
