import Foundation

/// A one-line progress display on stderr, "[=====     ]  40% <detail>", redrawn at most ten times
/// a second and always when done reaches total; `finish()` ends the line. Safe to update from any
/// thread.
final class ProgressLine: @unchecked Sendable {
    private let enabled: Bool
    private let lock = NSLock()
    private var last = Date.distantPast
    private var drawn = false
    /// When the line was created (for rates and ETAs).
    let start = Date()

    init(enabled: Bool) { self.enabled = enabled }

    /// `detail` (given the time now) is only built when the line is redrawn.
    func update(done: Int, total: Int, detail: (Date) -> String) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(last) >= 0.1 || done == total else { return }
        last = now
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let width = 28, filled = Int(fraction * Double(width))
        let line = String(format: "\r[%@%@] %3.0f%% ", String(repeating: "=", count: filled),
                          String(repeating: " ", count: width - filled), fraction * 100) + detail(now)
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    /// Bytes per second since the line was created and the seconds left at that rate, when
    /// `done` of `total` bytes are done at `now`.
    func rate(done: Int, total: Int, now: Date) -> (perSecond: Double, eta: Double) {
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        return (rate, rate > 0 ? Double(total - done) / rate : 0)
    }

    func finish() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
