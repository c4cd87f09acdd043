import Synchronization

/// The download phase: the Hub models a merge reads that the cache lacks, fetched into the cache
/// (`HubCache`'s layout) before planning, so that planning finds them there as it finds models
/// transformers downloaded.
///
/// For each model: the revision's commit and file list (one metadata request), the files it
/// needs (`HubFiles`: the weights in one format — safetensors, else PyTorch `.bin` — and the
/// companions; the index first, to learn the shards); then
/// each file's ETag and size (a HEAD each) and every missing blob, several at once
/// (`HubSettings.parallelDownloads`), each resumable and checked (`HubTransfer`); files already
/// in the snapshot are not asked for again, and a blob already in `blobs/` (the same file in
/// another revision) is only linked. Then each snapshot's links are made — companions, the
/// index, the weights last — and `refs/<revision>` records the commit.
///
/// Problems found before any file's bytes are fetched (a repository or revision that does not
/// exist, no weights MergeKit reads, the Hub unreachable) are reported together; a failed file does
/// not stop the others, whose blobs stay for the next run.
public struct HubDownloader: Sendable {
    public let settings: HubSettings

    public init(settings: HubSettings) { self.settings = settings }

    /// How far the download is.
    public struct Progress: Sendable, Equatable {
        public var completedBytes = 0
        public var totalBytes = 0
        public var completedFiles = 0
        public var totalFiles = 0
    }

    /// One file to fetch.
    private struct Item: Sendable {
        let model: Int
        let file: String
        var info: HubClient.FileInfo?
    }

    /// One model's plan: its commit and its files in the order they are linked.
    private struct Planned: Sendable {
        let reference: HubReference
        let commit: String
        let files: [String]
    }

    /// Downloads what `models` need that the cache lacks; returns each model's snapshot.
    public func download(_ models: [(HubReference, HubFiles.Kind)],
                         progress: @escaping @Sendable (Progress) -> Void = { _ in }) async throws(MergeKitError) -> [HubReference: String] {
        let client = HubClient(settings: settings)
        let result: Result<[HubReference: String], MergeKitError>
        do throws(MergeKitError) {
            result = .success(try await download(models, client: client, progress: progress))
        } catch {
            result = .failure(error)
        }
        await client.shutdown()
        return try result.get()
    }

    private func download(_ models: [(HubReference, HubFiles.Kind)], client: HubClient,
                          progress report: @escaping @Sendable (Progress) -> Void) async throws(MergeKitError) -> [HubReference: String] {
        let cache = HubCache(root: settings.cache)

        // The files each model needs (problems of every model together).
        var problems = ProblemList()
        var plans: [Planned] = []
        for (reference, kind) in models {
            do throws(MergeKitError) {
                plans.append(try await plan(reference, kind: kind, client: client, cache: cache))
            } catch {
                problems.addEach(error)
            }
        }
        try problems.throwIfAny()

        // Each missing file's metadata, then its bytes.
        let planned = plans
        var items: [Item] = []
        for (m, model) in planned.enumerated() {
            let snapshot = cache.snapshot(model.reference, commit: model.commit)
            for file in model.files where FileSystem.kind(of: FileSystem.join(snapshot, file)) != .file {
                items.append(Item(model: m, file: file))
            }
        }
        let heads = await Self.parallel(items, width: max(1, settings.parallelDownloads)) { item throws(MergeKitError) in
            try await client.fileInfo(planned[item.model].reference, commit: planned[item.model].commit, file: item.file)
        }
        for (i, head) in heads.enumerated() {
            switch head {
            case .success(let info): items[i].info = info
            case .failure(let error): problems.addEach(error)
            }
        }
        try problems.throwIfAny()

        let state = Shared(Progress(totalBytes: items.reduce(0) { $0 + ($1.info?.size ?? 0) }, totalFiles: items.count))
        report(state.value.withLock { $0 })
        let fetched = await Self.parallel(items, width: max(1, settings.parallelDownloads)) { item throws(MergeKitError) in
            let model = planned[item.model]
            let transfer = HubTransfer(client: client, cache: cache, reference: model.reference, commit: model.commit, file: item.file,
                                       info: item.info!) { bytes in
                report(state.value.withLock { $0.completedBytes += bytes; return $0 })
            }
            try await transfer.run()
            report(state.value.withLock { $0.completedFiles += 1; return $0 })
        }
        for case .failure(let error) in fetched { problems.addEach(error) }
        try problems.throwIfAny()

        // The snapshots: links in order (the weights last), then the ref.
        var etags: [String: String] = [:]
        for item in items { etags["\(item.model)\u{0}\(item.file)"] = item.info!.etag }
        var snapshots: [HubReference: String] = [:]
        for (m, model) in planned.enumerated() {
            for file in model.files {
                guard let etag = etags["\(m)\u{0}\(file)"] else { continue }
                try cache.link(model.reference, commit: model.commit, file: file, etag: etag)
            }
            try cache.recordRef(model.reference, commit: model.commit)
            snapshots[model.reference] = cache.snapshot(model.reference, commit: model.commit)
        }
        return snapshots
    }

    /// `reference`'s commit and the files `kind` needs. A sharded model's index (safetensors or
    /// PyTorch) is fetched here (its blob; it is linked with the rest) to learn the shards.
    private func plan(_ reference: HubReference, kind: HubFiles.Kind, client: HubClient, cache: HubCache) async throws(MergeKitError) -> Planned {
        let revision = try await client.revision(reference)
        let (companions, weights) = try HubFiles.selection(revision.files, kind: kind, repository: reference.description,
                                                           revision: reference.resolvedRevision)
        var files = companions + [weights]
        if HubFiles.modelWeights.contains(where: { $0.index == weights }) {
            var index = FileSystem.join(cache.snapshot(reference, commit: revision.commit), weights)
            if FileSystem.kind(of: index) != .file {
                let info = try await client.fileInfo(reference, commit: revision.commit, file: weights)
                let transfer = HubTransfer(client: client, cache: cache, reference: reference, commit: revision.commit, file: weights,
                                           info: info) { _ in }
                try await transfer.run()
                index = transfer.blob
            }
            let shards = try Checkpoint.readIndex(index).shardNames
            let listed = Set(revision.files)
            if let absent = shards.first(where: { !listed.contains($0) }) {
                throw MergeKitError(.shardMissing, file: reference.description,
                    "(revision \(reference.resolvedRevision)) its \(weights) names shard \(absent), which the repository does not have",
                    fix: "The repository is incomplete at this revision; use another revision")
            }
            files += shards
        }
        return Planned(reference: reference, commit: revision.commit, files: files)
    }

    /// A value tasks share.
    final class Shared<Value: Sendable>: Sendable {
        let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
    }

    /// `body` over `items`, at most `width` at a time, each result at its item's position.
    static func parallel<T: Sendable, R: Sendable>(_ items: [T], width: Int,
                                                   _ body: @escaping @Sendable (T) async throws(MergeKitError) -> R) async -> [Result<R, MergeKitError>] {
        await withTaskGroup(of: (Int, Result<R, MergeKitError>).self) { group in
            var results = [Result<R, MergeKitError>?](repeating: nil, count: items.count)
            var next = 0
            while next < items.count || !group.isEmpty {
                while next < items.count && next - results.count(where: { $0 != nil }) < width {
                    let i = next, item = items[i]
                    group.addTask {
                        do throws(MergeKitError) { return (i, .success(try await body(item))) } catch { return (i, .failure(error)) }
                    }
                    next += 1
                }
                if let (i, result) = await group.next() { results[i] = result }
            }
            return results.map { $0! }
        }
    }
}
