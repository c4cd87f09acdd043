/// Progress of a running merge, reported after each unit of work.
public struct MergeProgress: Sendable {
    public let completedBytes: Int
    public let totalBytes: Int
    public let completedTensors: Int
    public let totalTensors: Int
}
