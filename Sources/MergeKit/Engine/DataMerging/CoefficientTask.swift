/// One task of a data-driven merge: its images (all of a file's, or a few-shot draw), their labels
/// when the objective needs them, and the task's head.
public struct CoefficientTask: @unchecked Sendable {
    /// The data file, for messages.
    public let path: String
    public let head: TaskHead
    /// The images of the file the merge uses, by index.
    public let indices: [Int]
    /// Labels of the images (indexed like the file), when the objective is supervised.
    public let labels: [Int]?
    private let load: ([Int]) -> [Float]

    /// Every image of an unlabeled (or labeled, labels ignored) data file.
    public init(unlabeled data: UnlabeledImages, head: TaskHead) {
        (path, self.head, indices, labels) = (data.path, head, Array(0..<data.count), nil)
        load = { data.pixels($0) }
    }

    /// The images `indices` of a labeled dataset (all by default) with their labels.
    public init(labeled data: ImageDataset, head: TaskHead, indices: [Int]? = nil) {
        (path, self.head, labels) = (data.path, head, data.labels)
        self.indices = indices ?? Array(0..<data.count)
        load = { indices in indices.flatMap { data.pixels($0..<$0 + 1) } }
    }

    /// The pixels of images `indices` (indices into the file), [indices.count, C, H, W].
    public func pixels(_ indices: [Int]) -> [Float] { load(indices) }
}
