import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The process-wide registry of temporary output paths, removed when the process is interrupted.
///
/// Writers register every temporary file and directory before creating it and unregister it once
/// it has been renamed into place or removed. `installSignalHandlers()` (called once by
/// `merge-cli`) installs a handler for SIGINT, SIGTERM and SIGHUP that unlinks every registered
/// file, then removes every registered directory (its files are registered too, so it is empty by
/// then), and exits with status 128 + the signal number (130 for SIGINT, 143 for SIGTERM). Inputs
/// are never registered, so an interrupt cannot touch them.
///
/// The handler makes only async-signal-safe calls (`unlink`, `rmdir`, `_exit`, atomics) on C
/// strings copied when the path was registered. A small state machine keeps the handler and the
/// registry's writers apart without locks the handler could deadlock on:
///
/// - `idle`: the handler may run; it moves the state to `cleaning` and owns the table from then on.
/// - `mutating`: a thread is changing the table (or running a commit's renames through
///   `deferringSignals`); a signal arriving now is recorded as pending and re-raised when the
///   thread leaves, so a rename sequence is never cut in half.
/// - `cleaning`: the handler runs; a thread that wants to change the table waits for the exit.
public enum TemporaryFiles {
    private static let idle = 0, mutating = 1, cleaning = 2

    private struct Slot {
        var path: UnsafeMutablePointer<CChar>
        var isDirectory: Bool
    }

    private static let state = Atomic<Int>(0)
    private static let pendingSignal = Atomic<Int32>(0)
    private static let installed = Atomic<Bool>(false)
    // Only touched in the `mutating` state (by one thread) or the `cleaning` state (by the handler).
    nonisolated(unsafe) private static var slots: UnsafeMutablePointer<Slot>? = nil
    nonisolated(unsafe) private static var slotCount = 0
    nonisolated(unsafe) private static var slotCapacity = 0

    /// The signals that remove temporary outputs before the process exits.
    public static let handledSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// Installs the cleanup handler for `handledSignals` (once per process; later calls do nothing).
    /// A signal the process inherited as ignored (e.g. SIGHUP under `nohup`) stays ignored. Call it
    /// from the main thread before starting other threads: it also unblocks the handled signals in
    /// the calling thread, since a process started from a multithreaded parent (a test runner, a
    /// thread pool) can inherit a mask that blocks them and would then never be interrupted.
    public static func installSignalHandlers() {
        guard installed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        // Touch the lazily initialised statics now, outside any handler.
        _ = state.load(ordering: .relaxed)
        _ = pendingSignal.load(ordering: .relaxed)
        mutate { reserve(16) }
        for signo in handledSignals {
            var old = sigaction()
            guard sigaction(signo, nil, &old) == 0 else { continue }
            if handlerAddress(of: old) == 1 { continue }  // SIG_IGN: leave ignored
            var action = sigaction()
            setHandler(&action, signalHandler)
            sigemptyset(&action.sa_mask)
            for other in handledSignals { sigaddset(&action.sa_mask, other) }
            action.sa_flags = SA_RESTART
            _ = sigaction(signo, &action, nil)
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, signo)
            _ = pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        }
    }

    /// Registers a temporary file to be unlinked if the process is interrupted.
    static func register(file path: String) {
        mutate { add(path, isDirectory: false) }
    }

    /// Registers a temporary directory to be removed (after its registered files) if the process is
    /// interrupted. Register it before the files inside it.
    static func register(directory path: String) {
        mutate { add(path, isDirectory: true) }
    }

    /// Forgets `paths` (after they were renamed into place or removed).
    static func unregister(_ paths: [String]) {
        mutate { remove(paths) }
    }

    /// Runs `body` with interrupts deferred (a signal arriving meanwhile takes effect when it
    /// returns), then, if it succeeded, forgets `paths` and registers `added` (where they were
    /// renamed to, when they are still temporary: an output staged inside a sweep's temporary
    /// directory). Used for a commit's renames, which must not be cut in half. `body` must not
    /// call the registry.
    static func deferringSignals<T, E: Error>(thenUnregister paths: [String], register added: [(path: String, isDirectory: Bool)] = [],
                                              _ body: () throws(E) -> T) throws(E) -> T {
        var result: Result<T, E>!
        mutate {
            result = Result { () throws(E) -> T in try body() }
            if case .success = result {
                remove(paths)
                for entry in added { add(entry.path, isDirectory: entry.isDirectory) }
            }
        }
        return try result.get()
    }

    /// The registered paths (for tests).
    static var registeredPaths: [String] {
        var paths: [String] = []
        mutate {
            for i in 0..<slotCount { paths.append(String(cString: slots![i].path)) }
        }
        return paths
    }

    // MARK: - Registry (mutating state only)

    private static func mutate(_ body: () -> Void) {
        while true {
            let (exchanged, original) = state.compareExchange(expected: idle, desired: mutating, ordering: .sequentiallyConsistent)
            if exchanged { break }
            if original == cleaning {
                // The handler is removing temporary files and will exit the process.
                while true { pause() }
            }
            sched_yield()
        }
        body()
        state.store(idle, ordering: .sequentiallyConsistent)
        // Deliver a deferred signal again, to the process rather than this thread: a worker thread
        // (libdispatch's block asynchronous signals) would otherwise keep it pending forever.
        let signo = pendingSignal.exchange(0, ordering: .sequentiallyConsistent)
        if signo != 0 { kill(getpid(), signo) }
    }

    private static func reserve(_ capacity: Int) {
        guard capacity > slotCapacity else { return }
        let newCapacity = max(capacity, 2 * slotCapacity)
        let newSlots = UnsafeMutablePointer<Slot>.allocate(capacity: newCapacity)
        if let old = slots {
            newSlots.moveInitialize(from: old, count: slotCount)
            old.deallocate()
        }
        slots = newSlots
        slotCapacity = newCapacity
    }

    private static func add(_ path: String, isDirectory: Bool) {
        reserve(slotCount + 1)
        (slots! + slotCount).initialize(to: Slot(path: strdup(path)!, isDirectory: isDirectory))
        slotCount += 1
    }

    /// Removes the slots of `paths`, keeping the others in registration order (so directories
    /// registered before their subdirectories are removed after them).
    private static func remove(_ paths: [String]) {
        guard !paths.isEmpty, let slots else { return }
        var remaining = paths
        var kept = 0
        for i in 0..<slotCount {
            if let k = remaining.firstIndex(of: String(cString: slots[i].path)) {
                remaining.remove(at: k)
                free(slots[i].path)
            } else {
                if kept != i { slots[kept] = slots[i] }
                kept += 1
            }
        }
        slotCount = kept
    }

    // MARK: - The handler (async-signal-safe)

    private static let signalHandler: @convention(c) (Int32) -> Void = { signo in
        TemporaryFiles.handle(signo)
    }

    private static func handle(_ signo: Int32) {
        while true {
            let (exchanged, original) = state.compareExchange(expected: idle, desired: cleaning, ordering: .sequentiallyConsistent)
            if exchanged { break }
            // Another handler is cleaning up: it exits the process.
            if original == cleaning { return }
            // A thread is changing the registry or committing: leave the signal for it to deliver
            // again when it is done. It stores `idle` before taking the pending signal, so if it
            // is still mutating after the store below, it will see the signal; if not, retry.
            pendingSignal.store(signo, ordering: .sequentiallyConsistent)
            if state.load(ordering: .sequentiallyConsistent) == mutating { return }
        }
        removeRegisteredPaths()
        _exit(128 + signo)
    }

    /// Unlinks every registered file, then removes every registered directory (deepest first).
    private static func removeRegisteredPaths() {
        guard let slots else { return }
        for i in 0..<slotCount where !slots[i].isDirectory {
            _ = unlink(slots[i].path)
        }
        var i = slotCount - 1
        while i >= 0 {
            if slots[i].isDirectory { _ = rmdir(slots[i].path) }
            i -= 1
        }
    }

    // MARK: - Platform details of struct sigaction

    private static func setHandler(_ action: inout sigaction, _ handler: @escaping @convention(c) (Int32) -> Void) {
        #if canImport(Darwin)
        action.__sigaction_u.__sa_handler = handler
        #else
        action.__sigaction_handler.sa_handler = handler
        #endif
    }

    /// The handler's address (0 = SIG_DFL, 1 = SIG_IGN).
    private static func handlerAddress(of action: sigaction) -> Int {
        #if canImport(Darwin)
        let handler = action.__sigaction_u.__sa_handler
        #else
        let handler = action.__sigaction_handler.sa_handler
        #endif
        return unsafeBitCast(handler, to: Int.self)
    }
}
