/// Pointers to one layer's router inside a flat buffer (parameters or gradients).
struct RouterParameters {
    /// 0, 1 or 2.
    let depth: Int
    /// fc1 (D → D) of a depth-2 router.
    var hidden: LinearParameters?
    /// The layer producing the T routing logits: fc2 (depth 2) or fc (depth 1).
    var output: LinearParameters?
    /// The learned routing vector [T] of a depth-0 router.
    var vector: UnsafeMutablePointer<Float>?
    let width: Int
    let experts: Int
}
