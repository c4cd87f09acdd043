/// How large a merge's buffers are, so that memory does not grow with inputs × workers or with
/// sweep points × workers: every buffer that exists once per input (or per target of a sweep) is
/// sized from a fixed per-worker budget shared by all of them, down to one chunk
/// (`MergeExecutor.chunkElements`) each — the least a chunked merge can work with, since every
/// output element needs every input's value.
///
/// Per worker, a merge of I inputs and P targets (sweep points) then holds:
/// - `chunkElements` values per input for the task vectors (and their copies in a sweep);
/// - raw input bytes being converted: at most `stagingBytes` in all (`readElements(inputs:)` per
///   input), plus two work items' worth for copies and whole-tensor reads;
/// - results waiting to be written: at most `outputStagingBytes` in all (`outputSpan(targets:)`
///   per target), or one chunk shared by all targets when there are very many;
/// - at most `MergeExecutor.tensorCacheBytes` of a tensor cached for methods with per-tensor
///   statistics, and one tensor's sorted magnitude keys, one input at a time;
/// - counters for exact rank selections: at most `counterBytes` in all (`counterBatch`).
/// Whole-model statistics take `bracketBins(inputs:)` counters per input per worker and a sample
/// of at most `sampleBytes` in all.
///
/// With few inputs every size is its fixed maximum (the sizes that were measured fastest); the
/// budgets only bite for many inputs or many sweep points.
enum BufferBudget {
    /// Per worker: raw input bytes staged for conversion, all inputs together (at 8 bytes per
    /// element, the widest dtype): up to 15 inputs get the full `MergeExecutor.readElements`.
    static let stagingBytes = 32 << 20
    /// Per worker: results staged before they are written, all sweep points together (at 8
    /// bytes per element): a single merge gets a whole work item, a 21-point sweep 48 chunks.
    static let outputStagingBytes = 128 << 20
    /// Per worker: counters of exact rank selections (512 KB each) kept at once.
    static let counterBytes = 32 << 20
    /// Per worker: whole-model statistics' bracket histograms, all inputs together.
    static let bracketBytes = 16 << 20
    /// In all: the whole-model statistics' sample (4 bytes per element), all inputs together.
    static let sampleBytes = 64 << 20

    /// Elements of each input read (and converted) per `pread`: `MergeExecutor.readElements`,
    /// less when `inputs` (plus the base) would take more than `stagingBytes`; a multiple of
    /// `chunkElements`, at least one chunk.
    static func readElements(inputs: Int) -> Int {
        let chunk = MergeExecutor.chunkElements
        let fit = stagingBytes / ((inputs + 1) * 8) / chunk * chunk
        return min(MergeExecutor.readElements, max(chunk, fit))
    }

    /// Elements of each target's result staged before it is written: a work item for a single
    /// merge, less for a sweep of `targets` points so that all fit `outputStagingBytes`; a
    /// multiple of `chunkElements`, at least one chunk (then targets share one buffer and each
    /// chunk is written as soon as it is computed: `sharesOutputStaging`).
    static func outputSpan(targets: Int) -> Int {
        let chunk = MergeExecutor.chunkElements
        let fit = outputStagingBytes / (max(1, targets) * 8) / chunk * chunk
        return min(MergeExecutor.itemElements, max(chunk, fit))
    }

    /// Whether a sweep of `targets` points writes each chunk as soon as it is computed, from one
    /// buffer shared by all points: when each point gets a single chunk, it is written after every
    /// chunk anyway, so staging one per point would only cost memory.
    static func sharesOutputStaging(targets: Int) -> Bool {
        targets > 1 && outputSpan(targets: targets) == MergeExecutor.chunkElements
    }

    /// Distinct keys a whole-model statistics bracket may span: 2¹⁸, less (a power of two, at
    /// least 2¹²) when `inputs` histograms of 8-byte counters would exceed `bracketBytes`. A
    /// narrower bracket only makes the exact fallback (radix selection) more likely.
    static func bracketBins(inputs: Int) -> Int {
        var bins = 1 << 18
        while bins > 1 << 12 && max(1, inputs) * bins * 8 > bracketBytes { bins >>= 1 }
        return bins
    }

    /// Sample size per input of the whole-model statistics: 2²⁰, less (at least 2¹⁴) when
    /// `inputs` samples of 4-byte values would exceed `sampleBytes`.
    static func sampleTarget(inputs: Int) -> Int {
        min(1 << 20, max(1 << 14, sampleBytes / (max(1, inputs) * 4)))
    }

    /// How many radix selections (65,536 8-byte counters each) a worker runs at once: all when
    /// `selections` fit `counterBytes`, else batches (each batch costs its own passes).
    static func counterBatch(selections: Int) -> Int {
        max(1, min(selections, counterBytes / (RadixSelection.bins * 8)))
    }
}
