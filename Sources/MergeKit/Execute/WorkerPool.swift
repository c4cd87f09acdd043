import Dispatch
import Synchronization

/// The one pool every pass over a plan's tensors runs on: the merge pass, the whole-model
/// statistics passes, `--check-finite` and `analyze`.
///
/// Up to `threads` workers take item indices in increasing order from one shared counter until
/// none is left. Each worker owns its state (`makeWorker`: buffers, a visitor, vote counters), so
/// the counter is all the workers share; the states are returned, in no particular order, for the
/// caller to reduce in a fixed order, so results do not depend on the thread count or on which
/// worker took which item. The first error stops every worker before its next item and is rethrown.
enum WorkerPool {
    /// Runs `work(&state, i)` for every i in `0..<items`, on `min(threads, items)` workers (at
    /// least one), each with its own state from `makeWorker`; returns the workers' states.
    static func run<Worker: Sendable>(items: Int, threads: Int, makeWorker: @Sendable () -> Worker,
                                      _ work: @Sendable (inout Worker, Int) throws(MergeKitError) -> Void) throws(MergeKitError) -> [Worker] {
        let next = Atomic<Int>(0)
        let failed = Atomic<Bool>(false)
        let failure = Mutex<MergeKitError?>(nil)
        let finished = Mutex<[Worker]>([])
        DispatchQueue.concurrentPerform(iterations: min(threads, max(1, items))) { _ in
            var worker = makeWorker()
            while !failed.load(ordering: .relaxed) {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard i < items else { break }
                do throws(MergeKitError) {
                    try work(&worker, i)
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                    failed.store(true, ordering: .relaxed)
                    break
                }
            }
            let done = worker
            finished.withLock { $0.append(done) }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        return finished.withLock { $0 }
    }
}
