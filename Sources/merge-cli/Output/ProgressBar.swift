import Foundation
import MergeKit

/// A merge's progress line: tensors, bytes, rate and ETA.
final class ProgressBar: Sendable {
    private let line: ProgressLine

    init(enabled: Bool) { line = ProgressLine(enabled: enabled) }

    func update(_ progress: MergeProgress) {
        line.update(done: progress.completedBytes, total: progress.totalBytes) { now in
            let (rate, eta) = line.rate(done: progress.completedBytes, total: progress.totalBytes, now: now)
            return String(format: "%d/%d tensors %.2f/%.2f GB %.2f GB/s ETA %.0fs ",
                          progress.completedTensors, progress.totalTensors, Double(progress.completedBytes) / 1e9,
                          Double(progress.totalBytes) / 1e9, rate / 1e9, eta)
        }
    }

    func finish() { line.finish() }
}
