import Synchronization
import Testing
@testable import MergeKit

@Suite("WorkerPool: the one pool of the merge and statistics passes")
struct WorkerPoolTests {
    @Test("Every item is taken exactly once, whatever the number of threads", arguments: [1, 2, 3, 8])
    func everyItemOnce(threads: Int) throws {
        let items = 1000
        let workers = try WorkerPool.run(items: items, threads: threads, makeWorker: { [Int]() }) { taken, i throws(MergeKitError) in
            taken.append(i)
        }
        #expect(workers.count >= 1 && workers.count <= threads)
        #expect(workers.flatMap { $0 }.sorted() == Array(0..<items))
        // Each worker takes its items in increasing order (one shared counter).
        for taken in workers { #expect(taken == taken.sorted()) }
    }

    @Test("No items: one worker is made and returned, and nothing is run")
    func noItems() throws {
        let workers = try WorkerPool.run(items: 0, threads: 4, makeWorker: { 0 }) { count, _ throws(MergeKitError) in count += 1 }
        #expect(workers == [0])
    }

    @Test("The first error is rethrown, and a worker stops before its next item")
    func errorStops() throws {
        // Two workers: the error is rethrown (how many items the other worker finishes meanwhile
        // depends on scheduling, so it is not counted).
        #expect(throws: MergeKitError.self) {
            _ = try WorkerPool.run(items: 10_000, threads: 2, makeWorker: { 0 }) { _, i throws(MergeKitError) in
                if i == 10 { throw MergeKitError(.invalidArgument, "item \(i) failed") }
            }
        }
        // One worker: nothing after the failing item is started.
        let started = Atomic<Int>(0)
        do {
            _ = try WorkerPool.run(items: 100, threads: 1, makeWorker: { 0 }) { _, i throws(MergeKitError) in
                started.wrappingAdd(1, ordering: .relaxed)
                if i == 3 { throw MergeKitError(.invalidArgument, "item \(i) failed") }
            }
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("item 3 failed"))
        }
        #expect(started.load(ordering: .relaxed) == 4)
    }
}
