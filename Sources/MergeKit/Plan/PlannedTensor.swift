/// What happens to one output tensor.
public struct PlannedTensor: Sendable {
    public enum Action: Sendable, Equatable {
        /// Merged by the method (float tensors).
        case merge
        /// Copied from the base byte for byte (integer, bool and other non-mergeable dtypes).
        case copy
    }

    public let action: Action
    /// The method and per-input weights for this tensor (recipes may vary them per tensor).
    public let method: any MergeMethod
    public let weights: [Double]
    /// The base tensor.
    public let base: Checkpoint.Entry
    /// Where each input's τ comes from, parallel to `MergePlan.inputs` (empty for copies).
    public let inputs: [InputSource]
    /// Computed in Double (some input or the output is F64) rather than Float.
    public let computeInDouble: Bool
    /// Index of the output shard and the tensor's place in it.
    public let shard: Int
    public let output: TensorInfo

    public var name: String { output.name }
}

/// A method and per-input weights chosen for one tensor (a recipe's filters and layer gradients
/// give different tensors different parameters).
public struct TensorParameters: Sendable {
    public let method: any MergeMethod
    public let weights: [Double]

    public init(method: any MergeMethod, weights: [Double]) {
        self.method = method
        self.weights = weights
    }
}
