import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Open file descriptors of the files a merge reads (`inputs`) or writes (`outputs`), at most
/// `capacity` of each kept open, least recently used closed first, reopened when next needed.
///
/// Why: a merge of inputs with hundreds of shards each, or a sweep writing a thousand outputs,
/// would otherwise hold a descriptor per file for the whole run and fail at the process's
/// open-file limit (`ulimit -n`, often 1024). Files are used one `pread`/`pwrite` at a time
/// (`withDescriptor`), so only the descriptors in use at that moment — one per worker — must stay
/// open; the rest are a cache. Reopening is the owner's job: it checks that the path still names
/// the same file (device, inode, size), so a file replaced mid-merge is an error, not silent
/// mixing. A descriptor in use is never closed; the cache may exceed its capacity by the
/// descriptors in use at once.
final class DescriptorCache: Sendable {
    /// Descriptors of input files (`SafeTensorsFile`).
    static let inputs = DescriptorCache(capacity: defaultCapacity)
    /// Descriptors of output files being written (`CheckpointWriter`).
    static let outputs = DescriptorCache(capacity: defaultCapacity)

    /// min(256, RLIMIT_NOFILE / 4), at least 8: inputs and outputs together use at most half the
    /// limit, leaving the rest to everything else the process opens.
    static var defaultCapacity: Int {
        max(8, min(256, (FileSystem.openFileLimit ?? 1024) / 4))
    }

    private struct Entry {
        var fd: Int32
        var users: Int
        var lastUse: UInt64
        /// Close as soon as the last user is done (`remove` while in use).
        var closeWhenUnused = false
        /// Runs before the descriptor is closed (an output's write-behind finishing with it).
        let beforeClose: (@Sendable (Int32) -> Void)?
    }

    private struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var clock: UInt64 = 0
        /// Descriptors opened since the cache was made (for tests).
        var opens = 0
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
    }

    /// Runs `body` with an open descriptor of the file `owner` stands for, calling `open` (under
    /// the cache's lock, so a file is never opened twice) when it is not cached. `beforeClose`
    /// runs before the cache closes that descriptor.
    func withDescriptor<R>(for owner: AnyObject, open: () throws(MergeKitError) -> Int32,
                           beforeClose: (@Sendable (Int32) -> Void)? = nil,
                           _ body: (Int32) throws(MergeKitError) -> R) throws(MergeKitError) -> R {
        let key = ObjectIdentifier(owner)
        let fd = try acquire(key, open: open, beforeClose: beforeClose)
        defer { release(key) }
        return try body(fd)
    }

    /// Adds a descriptor its owner has just opened (the first use then needs no reopen).
    func adopt(_ fd: Int32, for owner: AnyObject, beforeClose: (@Sendable (Int32) -> Void)? = nil) {
        let victims = state.withLock { state in
            state.clock += 1
            state.opens += 1
            let key = ObjectIdentifier(owner)
            precondition(state.entries[key] == nil, "a file adopted twice")
            state.entries[key] = Entry(fd: fd, users: 0, lastUse: state.clock, beforeClose: beforeClose)
            return evict(&state)
        }
        closeAll(victims)
    }

    /// Closes and forgets `owner`'s descriptor, if one is open (when the file is done with). A
    /// descriptor in use is closed when its last user is done.
    func remove(_ owner: AnyObject) {
        let key = ObjectIdentifier(owner)
        let victim: Entry? = state.withLock { state in
            guard let entry = state.entries[key] else { return nil }
            if entry.users > 0 {
                state.entries[key]!.closeWhenUnused = true
                return nil
            }
            state.entries[key] = nil
            return entry
        }
        if let victim { closeAll([victim]) }
    }

    /// Descriptors this cache holds open now.
    var openCount: Int { state.withLock { $0.entries.count } }
    /// Descriptors opened (or adopted) so far.
    var openedCount: Int { state.withLock { $0.opens } }

    private func acquire(_ key: ObjectIdentifier, open: () throws(MergeKitError) -> Int32,
                         beforeClose: (@Sendable (Int32) -> Void)?) throws(MergeKitError) -> Int32 {
        let result: Result<(Int32, [Entry]), MergeKitError> = state.withLock { state in
            state.clock += 1
            if state.entries[key] != nil {
                state.entries[key]!.users += 1
                state.entries[key]!.lastUse = state.clock
                return .success((state.entries[key]!.fd, []))
            }
            do throws(MergeKitError) {
                let fd = try open()
                state.opens += 1
                state.entries[key] = Entry(fd: fd, users: 1, lastUse: state.clock, beforeClose: beforeClose)
                return .success((fd, evict(&state)))
            } catch {
                return .failure(error)
            }
        }
        let (fd, victims) = try result.get()
        closeAll(victims)
        return fd
    }

    private func release(_ key: ObjectIdentifier) {
        let victims: [Entry] = state.withLock { state in
            guard var entry = state.entries[key] else { return [] }
            entry.users -= 1
            if entry.users == 0 && entry.closeWhenUnused {
                state.entries[key] = nil
                return [entry]
            }
            state.entries[key] = entry
            return evict(&state)
        }
        closeAll(victims)
    }

    /// Removes least recently used entries not in use until at most `capacity` remain; the
    /// caller closes them outside the lock.
    private func evict(_ state: inout State) -> [Entry] {
        var victims: [Entry] = []
        while state.entries.count > capacity {
            var oldest: (key: ObjectIdentifier, lastUse: UInt64)?
            for (key, entry) in state.entries where entry.users == 0 {
                if oldest == nil || entry.lastUse < oldest!.lastUse { oldest = (key, entry.lastUse) }
            }
            guard let oldest else { break }
            victims.append(state.entries.removeValue(forKey: oldest.key)!)
        }
        return victims
    }

    private func closeAll(_ victims: [Entry]) {
        for victim in victims {
            victim.beforeClose?(victim.fd)
            close(victim.fd)
        }
    }
}
