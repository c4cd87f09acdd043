/// The terms of the messages of the merges that learn from data (`MergeKitError.Term`), in the
/// library's words; merge-cli words them by its flags (`CLIWording`).
extension MergeKitError.Term {
    /// The images per task a merge uses.
    public static let samples = Self("samples", "the number of images per task")
    /// More images per task.
    public static let moreSamples = Self("more-samples", "more images per task")
    /// RegMean's off-diagonal factor α.
    public static let alpha = Self("alpha", "α")
    /// A smaller α.
    public static let smallerAlpha = Self("smaller-alpha", "a smaller α")
    /// λ of task arithmetic of the tensors RegMean does not solve for.
    public static let othersScale = Self("others-scale", "λ")
    /// Fisher merging's ε.
    public static let fisherEpsilon = Self("fisher-epsilon", "ε")
    /// Using the pseudo-inverse for a singular Gram sum.
    public static let usePseudoInverse = Self("singular-pseudo-inverse", "use the pseudo-inverse (the default)")
}
