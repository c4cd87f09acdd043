import Dispatch
import Synchronization

/// Runs `count` numbered work items on up to `workers` threads, each thread taking the next
/// unclaimed index (`DispatchQueue.concurrentPerform` workers pulling from an atomic counter).
///
/// Which thread runs an item never changes what the item computes, so a caller that gives every
/// item a fixed piece of work (fixed in size by the problem alone, never by `workers`) and
/// combines the pieces in index order gets the same bits for any thread count. The engine's image
/// shards and GEMM tiles are scheduled this way.
enum WorkQueue {
    static func run(_ count: Int, workers: Int, _ body: (Int) -> Void) {
        let workers = max(1, min(workers, count))
        guard workers > 1 else {
            for i in 0..<count { body(i) }
            return
        }
        let next = Atomic<Int>(0)
        withoutActuallyEscaping(body) { body in
            let shared = Shared(body)
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while true {
                    let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    guard i < count else { break }
                    shared.value(i)
                }
            }
        }
    }
}

/// A value handed to worker threads that the caller keeps valid and does not share mutably
/// (pointers into buffers whose disjoint slices the workers write).
struct Shared<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
