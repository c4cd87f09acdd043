import Foundation

/// What a command will hold at its peak, by part, in bytes (Float32 buffers). Sums saturate, so
/// an absurd request shows as an absurd figure instead of overflowing.
public struct MemoryEstimate: Sendable, CustomStringConvertible {
    public struct Part: Sendable {
        public let what: String
        public let bytes: Int
    }

    public private(set) var parts: [Part] = []

    public init() {}

    /// The total.
    public var bytes: Int { parts.reduce(0) { EngineMemory.sum($0, $1.bytes) } }

    /// Adds `floats` Float32 values for `what` (nothing when zero).
    mutating func add(_ what: String, floats: Int) {
        guard floats > 0 else { return }
        parts.append(Part(what: what, bytes: EngineMemory.product(floats, MemoryLayout<Float>.stride)))
    }

    /// "1.2 GB (parameters 350 MB, activations 800 MB, …)".
    public var description: String {
        MemoryEstimate.format(bytes) + " (" + parts.map { "\($0.what) \(MemoryEstimate.format($0.bytes))" }.joined(separator: ", ") + ")"
    }

    /// Bytes in decimal units (`ByteCount.describe`).
    public static func format(_ bytes: Int) -> String { ByteCount.describe(bytes) }
}
