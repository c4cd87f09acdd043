import Foundation

/// The memory a command may plan to use, and the check that refuses work that cannot fit.
///
/// Commands that hold whole matrices (TSV-M, Iso-C, extract-lora) estimate their working set per
/// matrix before anything is allocated or written, and compare it with `available()`:
///
/// - `MERGEKIT_MEMORY_BUDGET` in the environment, when set: a byte count, optionally with a suffix
///   K, M, G or T (powers of 1024), e.g. `8G`. It caps what the command plans for (and makes
///   tests deterministic);
/// - otherwise the smaller of the kernel's `MemAvailable` (/proc/meminfo) and the headroom of the
///   process's memory cgroup and its ancestors (cgroup v2 `memory.max − memory.current`, v1
///   `memory.limit_in_bytes − memory.usage_in_bytes`, each plus the cgroup's reclaimable
///   `inactive_file` page cache);
/// - nil where neither is known (not Linux): nothing is refused.
public enum MemoryBudget {
    /// The environment variable that sets the budget.
    public static let environmentKey = "MERGEKIT_MEMORY_BUDGET"

    /// Bytes each worker is assumed to hold beyond the buffers the estimates count: BLAS's own
    /// packing buffers, and memory the allocator keeps after a free (Benchmarks/svd_memory.sh
    /// measured peaks up to 21 MB above the counted buffers, on a 1024×4096 TSV-M merge).
    static let workerSlack = 32 << 20

    /// The bytes available to this process (see the type's documentation).
    public static func available() -> Int? {
        if let text = ProcessInfo.processInfo.environment[environmentKey], let bytes = parse(text) { return bytes }
        let limits = [memAvailable(), cgroupHeadroom()].compactMap { $0 }
        return limits.min()
    }

    /// "123", "64K", "8G", "1.5T" (powers of 1024); nil if malformed or not positive.
    static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Double)] = [("T", 0x1p40), ("G", 0x1p30), ("M", 0x1p20), ("K", 0x1p10)]
        var number = Substring(trimmed.hasSuffix("B") ? String(trimmed.dropLast()) : trimmed)
        var multiplier = 1.0
        if let unit = units.first(where: { number.hasSuffix($0.0) }) {
            number = number.dropLast()
            multiplier = unit.1
        }
        guard let value = Double(number), value.isFinite, value > 0, value * multiplier < 9e18 else { return nil }
        return Int(value * multiplier)
    }

    /// Bytes as people read them: "1.5 GB", "640.0 MB" (powers of 1000, as file sizes are shown).
    static func describe(_ bytes: Int) -> String {
        let value = Double(bytes)
        if value >= 1e12 { return String(format: "%.1f TB", value / 1e12) }
        if value >= 1e9 { return String(format: "%.1f GB", value / 1e9) }
        if value >= 1e6 { return String(format: "%.1f MB", value / 1e6) }
        return String(format: "%.1f kB", value / 1e3)
    }

    /// How many of the work items with these peak working sets may run at once: the most k such
    /// that the k largest together (plus `perWorker` bytes for each of the `workers`) fit
    /// `budget`, at least 1 and at most `workers`. Any k items then fit, whichever run together.
    static func concurrency(_ itemBytes: [Int], workers: Int, perWorker: Int = 0, budget: Int) -> Int {
        let sorted = itemBytes.sorted(by: >)
        var total = workers * perWorker
        var k = 0
        for bytes in sorted.prefix(workers) {
            guard total + bytes <= budget else { break }
            total += bytes
            k += 1
        }
        return max(1, min(workers, k == sorted.count ? workers : k))
    }

    // MARK: Sources

    private static func memAvailable() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kilobytes = Int(fields[1]) { return kilobytes * 1024 }
        }
        return nil
    }

    /// The smallest headroom over the memory cgroups (v2 or v1) from the process's own up to the root.
    private static func cgroupHeadroom() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        var candidates: [(directory: String, v2: Bool)] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[0] == "0" && fields[1].isEmpty {
                candidates += ancestors("/sys/fs/cgroup", String(fields[2])).map { ($0, true) }
            } else if fields[1].split(separator: ",").contains("memory") {
                candidates += ancestors("/sys/fs/cgroup/memory", String(fields[2])).map { ($0, false) }
            }
        }
        var best: Int?
        for (directory, v2) in candidates {
            let limitFile = v2 ? "memory.max" : "memory.limit_in_bytes"
            let usageFile = v2 ? "memory.current" : "memory.usage_in_bytes"
            guard let limit = number(directory + "/" + limitFile), limit < (1 << 60),
                  let usage = number(directory + "/" + usageFile) else { continue }
            let reclaimable = inactiveFile(directory + "/memory.stat") ?? 0
            let headroom = max(0, limit - usage + reclaimable)
            best = min(best ?? headroom, headroom)
        }
        return best
    }

    /// `root + path` and its parents up to `root`, those that exist.
    private static func ancestors(_ root: String, _ path: String) -> [String] {
        var components = path.split(separator: "/").map(String.init)
        var result: [String] = []
        while true {
            let directory = components.isEmpty ? root : root + "/" + components.joined(separator: "/")
            if FileManager.default.fileExists(atPath: directory) { result.append(directory) }
            if components.isEmpty { break }
            components.removeLast()
        }
        return result
    }

    private static func number(_ path: String) -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    private static func inactiveFile(_ path: String) -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        // v1 reports the hierarchy's total as total_inactive_file, v2 (and v1's own) as inactive_file.
        var values: [Substring: Int] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == "inactive_file" || fields[0] == "total_inactive_file" { values[fields[0]] = Int(fields[1]) }
        }
        return values["total_inactive_file"] ?? values["inactive_file"]
    }
}
