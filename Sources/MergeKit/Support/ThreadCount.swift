import Foundation

/// The one rule for how many threads a command uses: the number asked for (`--threads`), or one
/// per active processor when none is given, and never fewer than one. Results never depend on it
/// (docs/ARCHITECTURE.md, "Invariants"); only time and memory do.
public enum ThreadCount {
    public static func resolved(_ requested: Int?) -> Int {
        max(1, requested ?? ProcessInfo.processInfo.activeProcessorCount)
    }
}
