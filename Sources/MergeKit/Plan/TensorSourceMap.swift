/// Where each output tensor comes from when the output's tensors are not the base's under the
/// same names: in a layer-wise recipe, layer i of the output is layer j of a source, and different
/// ranges of layers come from different checkpoints.
///
/// Each output tensor names its base tensor (θ₀, or the anchor of a base-less average) and one
/// tensor per input slot, possibly from different checkpoints and under other names. The map is
/// made before tensor matching and turned into views (`Checkpoint(viewOf:)`): a base checkpoint
/// and one checkpoint per input presenting exactly these tensors under their output names, in
/// output order. Tensor matching, the executor and the methods then see an ordinary merge — a view
/// reads each tensor's bytes where they lie (`TensorReader`), so memory stays flat and the output
/// is laid out in this order, byte for byte the same on every run.
///
/// Whoever builds the map checks what matching cannot say well about renamed tensors: that every
/// slot has the tensor, with the base tensor's shape, naming the source file and its own tensor.
struct TensorSourceMap {
    struct Tensor {
        /// The output name.
        let name: String
        let base: Checkpoint.Entry
        /// One per input slot.
        let inputs: [Checkpoint.Entry]
    }

    /// In output order.
    var tensors: [Tensor] = []

    /// The base and the inputs as views under the output names. `base` is the checkpoint whose
    /// path, directory (companions, config.json) and layout the base view reports; `inputs` the
    /// checkpoints each input view reports as its path. Views carry no `__metadata__`.
    func views(base: Checkpoint, inputs: [Checkpoint]) -> (base: Checkpoint, inputs: [Checkpoint]) {
        let baseView = Checkpoint(viewOf: base, entries: tensors.map { $0.base.renamed($0.name) }, metadata: nil)
        let inputViews = inputs.enumerated().map { slot, checkpoint in
            Checkpoint(viewOf: checkpoint, entries: tensors.map { $0.inputs[slot].renamed($0.name) }, metadata: nil)
        }
        return (baseView, inputViews)
    }
}
