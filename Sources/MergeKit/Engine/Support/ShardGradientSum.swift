import Foundation
import Synchronization

/// The sum over shards of per-shard parameter gradients, formed in shard order whatever thread
/// computes which shard and whenever it finishes:
///
///     total = (…((g₀ + g₁) + g₂) + …) + g_{S−1}
///
/// Shard 0 accumulates straight into `total`; every other shard into a scratch buffer that is then
/// added to `total` when its turn comes (the thread waits for the shards before it). Float addition
/// is not associative, so a fixed order is what makes the gradient — and everything trained with
/// it — identical for any thread count. Shards are claimed in index order (`WorkQueue`), so a wait
/// is short and never circular, and at most one scratch buffer per thread is alive.
final class ShardGradientSum: @unchecked Sendable {
    let total: CLIPVisionParameters
    private let turn = NSCondition()
    /// Shards already in `total` (guarded by `turn`).
    private var added = 0
    private let spares = Mutex<[CLIPVisionParameters]>([])

    init(zerosLike layout: CLIPVisionParameters) {
        total = CLIPVisionParameters(zerosLike: layout)
    }

    /// A sum onto `total` as it is (e.g. the gradients of earlier batches).
    init(onto total: CLIPVisionParameters) {
        self.total = total
    }

    /// Starts the shard order again for another batch, adding onto `total` as it is now and
    /// reusing the scratch buffers (call between passes, never during one).
    func restart() {
        turn.lock()
        added = 0
        turn.unlock()
    }

    /// Runs `accumulate` on a zeroed gradient for `shard` and adds the result to `total` in turn.
    func add(shard: Int, _ accumulate: (CLIPVisionParameters) -> Void) {
        if shard == 0 {
            accumulate(total)
        } else {
            let scratch = spares.withLock { $0.popLast() } ?? CLIPVisionParameters(zerosLike: total)
            scratch.storage.zero()
            accumulate(scratch)
            turn.lock()
            while added != shard { turn.wait() }
            turn.unlock()
            total.add(scratch)
            spares.withLock { $0.append(scratch) }
        }
        turn.lock()
        added = shard + 1
        turn.broadcast()
        turn.unlock()
    }
}
