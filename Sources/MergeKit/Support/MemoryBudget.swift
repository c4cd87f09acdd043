import Foundation

/// The memory a command may use: a figure the user sets with `MERGEKIT_MEMORY_BUDGET` (a size as
/// `ByteCount` reads it: `8G`, `512MiB`, a byte count; tests use it for deterministic
/// budgets), else what the machine has available now (`available()`).
///
/// Commands estimate their peak before allocating anything and compare it with this budget: the
/// engine per batch (`EngineMemory`), SVD-based merges and extract-lora per matrix
/// (`Execute/MemoryPlan.swift`, `LoRAExtraction`).
///
/// On Linux, `available()` is MemAvailable from /proc/meminfo (the kernel's estimate of what can
/// be allocated without swapping), capped by every cgroup the process is in — the v2 unified
/// hierarchy or the v1 memory controller, from the process's own group up to the root — at the
/// group's limit minus its working set (usage minus inactive file pages, which the kernel
/// reclaims before it refuses memory), and by the process's own limits (`ulimit -v` and `-d`:
/// RLIMIT_AS less VmSize, RLIMIT_DATA less VmData). Where /proc/meminfo cannot be read the budget
/// is unknown and commands do not check.
public struct MemoryBudget: Sendable, Equatable {
    public let bytes: Int
    /// Where the figure comes from, for messages.
    public let source: String

    /// The environment variable that sets the budget.
    public static let variable = "MERGEKIT_MEMORY_BUDGET"

    public init(bytes: Int, source: String) {
        self.bytes = bytes
        self.source = source
    }

    /// Bytes each worker is assumed to hold beyond the buffers the estimates count: BLAS's own
    /// packing buffers, and memory the allocator keeps after a free (Benchmarks/svd_memory.sh
    /// measured peaks up to 21 MB above the counted buffers, on a 1024×4096 TSV-M merge).
    static let workerSlack = 32 << 20

    /// The budget set by `MERGEKIT_MEMORY_BUDGET`, else what is available now (nil where that
    /// cannot be read: no check). A variable that is not a size is an error (the CLI reports it
    /// before any command runs).
    public static func configured() throws(MergeKitError) -> MemoryBudget? {
        guard let text = ProcessInfo.processInfo.environment[variable] else { return available() }
        guard let bytes = ByteCount.parse(text), bytes > 0 else {
            throw MergeKitError(.invalidArgument, "\(variable) is \"\(text)\", not a size",
                                fix: "Set it to a size such as 8G, 512MiB or a byte count, or unset it")
        }
        return MemoryBudget(bytes: bytes, source: variable)
    }

    /// `configured()`'s bytes, nil when unknown or when the variable is malformed (the CLI
    /// refuses that before any work).
    public static var configuredBytes: Int? { (try? configured())?.bytes }

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

    /// The memory available now, or nil where it cannot be read.
    public static func available() -> MemoryBudget? {
        #if os(Linux)
        func limit(_ resource: __rlimit_resource) -> Int? {
            var value = rlimit()
            // RLIM_INFINITY is all ones: anything beyond 2⁶² is no limit.
            guard getrlimit(__rlimit_resource_t(resource.rawValue), &value) == 0, value.rlim_cur < 1 << 62 else { return nil }
            return Int(value.rlim_cur)
        }
        let (addressSpace, data) = (limit(RLIMIT_AS), limit(RLIMIT_DATA))
        #else
        let (addressSpace, data): (Int?, Int?) = (nil, nil)
        #endif
        return available(addressSpaceLimit: addressSpace, dataLimit: data) { try? String(contentsOfFile: $0, encoding: .utf8) }
    }

    /// `available()` with the process's RLIMIT_AS and RLIMIT_DATA (nil: unlimited), reading
    /// files through `read` (tests give it a fake /proc and /sys).
    static func available(addressSpaceLimit: Int? = nil, dataLimit: Int? = nil, read: (String) -> String?) -> MemoryBudget? {
        guard let meminfo = read("/proc/meminfo"), let kilobytes = statField("MemAvailable:", in: meminfo) else { return nil }
        var budget = MemoryBudget(bytes: kilobytes.multipliedReportingOverflow(by: 1024).overflow ? .max : kilobytes * 1024,
                                  source: "MemAvailable in /proc/meminfo")
        for group in cgroupDirectories(read("/proc/self/cgroup") ?? "") {
            let files = group.v2 ? ("memory.max", "memory.current", "inactive_file")
                                 : ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
            guard let limit = read(group.path + "/" + files.0).flatMap(limitValue),
                  let usage = read(group.path + "/" + files.1).flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
            else { continue }
            let inactive = read(group.path + "/memory.stat").flatMap { statField(files.2, in: $0) } ?? 0
            let headroom = max(0, limit - max(0, usage - inactive))
            if headroom < budget.bytes {
                budget = MemoryBudget(bytes: headroom, source: "the memory limit of cgroup \(group.path)")
            }
        }
        let status = read("/proc/self/status") ?? ""
        for (limit, field, name) in [(addressSpaceLimit, "VmSize:", "RLIMIT_AS (ulimit -v)"), (dataLimit, "VmData:", "RLIMIT_DATA (ulimit -d)")] {
            guard let limit else { continue }
            let headroom = max(0, limit - (statField(field, in: status) ?? 0) * 1024)
            if headroom < budget.bytes { budget = MemoryBudget(bytes: headroom, source: "the process's \(name)") }
        }
        return budget
    }

    /// The directories of every memory cgroup the process is in, from its own group up to the
    /// root, from /proc/self/cgroup (`id:controllers:path` lines; v2 is `0::path`).
    static func cgroupDirectories(_ table: String) -> [(path: String, v2: Bool)] {
        var result: [(String, Bool)] = []
        for line in table.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let v2 = fields[0] == "0" && fields[1].isEmpty
            guard v2 || fields[1].split(separator: ",").contains("memory") else { continue }
            let root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory"
            var components = fields[2].split(separator: "/").map(String.init)
            while true {
                result.append((root + (components.isEmpty ? "" : "/" + components.joined(separator: "/")), v2))
                if components.isEmpty { break }
                components.removeLast()
            }
        }
        return result
    }

    /// A cgroup limit in bytes; nil for none ("max" in v2, a value near 2⁶³ in v1).
    static func limitValue(_ text: String) -> Int? {
        guard let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value < 1 << 60 else { return nil }
        return value
    }

    /// The number after `key` on its line of a /proc- or cgroup-style `key value` table.
    static func statField(_ key: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2 && parts[0] == key { return Int(parts[1]) }
        }
        return nil
    }
}

