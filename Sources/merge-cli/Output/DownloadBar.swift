import Foundation
import MergeKit

/// The download phase's progress line: files, bytes, rate and ETA.
final class DownloadBar: Sendable {
    private let line: ProgressLine

    init(enabled: Bool) { line = ProgressLine(enabled: enabled) }

    func update(_ progress: HubDownloader.Progress) {
        line.update(done: progress.completedBytes, total: progress.totalBytes) { now in
            let (rate, eta) = line.rate(done: progress.completedBytes, total: progress.totalBytes, now: now)
            return String(format: "downloading %d/%d files %.2f/%.2f GB %.1f MB/s ETA %.0fs ",
                          progress.completedFiles, progress.totalFiles, Double(progress.completedBytes) / 1e9,
                          Double(progress.totalBytes) / 1e9, rate / 1e6, eta)
        }
    }

    func finish() { line.finish() }
}
