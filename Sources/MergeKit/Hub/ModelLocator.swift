/// Where a model path — a command-line argument or a recipe's `model:` / `base_model:` — is read
/// from: the local path when it exists (it wins, as in mergekit and transformers), else the
/// Hugging Face cache's snapshot when the text is a Hub id (`HubReference`). Looking up never
/// touches the network; downloads are a separate phase before planning (`HubDownloader`), after
/// which the lookup finds them.
public struct ModelLocator: Sendable {
    public let settings: HubSettings

    public init(settings: HubSettings) { self.settings = settings }

    /// What a text stands for.
    public enum Location: Sendable {
        /// A path on disk (existing, or missing and not a Hub id: opening it reports that).
        case path(String)
        /// A Hub model found in the cache: its snapshot directory.
        case cached(HubReference, snapshot: String)
        /// A Hub model not in the cache (why, in the error).
        case notCached(HubReference, MergeKitError)
        /// Neither an existing path nor a valid Hub id.
        case malformed(MergeKitError)
    }

    /// Locates `text`, whose local form is `local` (a recipe resolves relative paths its own
    /// way); `kind` says which files a Hub snapshot must hold.
    public func locate(_ text: String, local: String? = nil, kind: HubFiles.Kind = .model) -> Location {
        let local = local ?? text
        if FileSystem.exists(local) { return .path(local) }
        switch HubReference.read(text) {
        case .notAnId:
            return .path(local)
        case .malformed(let reason):
            return .malformed(MergeKitError(.invalidArgument, file: text,
                "is neither an existing path nor a valid Hugging Face id (org/name or org/name@revision): \(reason)",
                fix: "Check the path, or write the id as org/name[@revision]"))
        case .reference(let reference):
            switch HubCache(root: settings.cache).lookup(reference, kind: kind, offline: settings.offline) {
            case .found(let snapshot, _): return .cached(reference, snapshot: snapshot)
            case .missing(let error): return .notCached(reference, error)
            }
        }
    }

    /// The path to open for `text` (a local path or a cached snapshot), or the error saying why
    /// there is none.
    public func path(_ text: String, local: String? = nil, kind: HubFiles.Kind = .model) throws(MergeKitError) -> String {
        switch locate(text, local: local, kind: kind) {
        case .path(let path), .cached(_, let path): return path
        case .notCached(_, let error), .malformed(let error): throw error
        }
    }

    /// The paths to open for `texts` (with their kinds), in order, or every problem together.
    public func paths(_ texts: [(text: String, kind: HubFiles.Kind)]) throws(MergeKitError) -> [String] {
        var problems = ProblemList(), paths: [String] = []
        for (text, kind) in texts {
            do throws(MergeKitError) { paths.append(try path(text, kind: kind)) } catch { problems.add(error) }
        }
        try problems.throwIfAny()
        return paths
    }

    /// Why `text` is neither an existing path nor a valid Hub id, when it is meant as an id
    /// (`HubReference.read`): a malformed argument, checked before anything is opened.
    public static func malformed(_ text: String) -> MergeKitError? {
        guard !FileSystem.exists(text), case .malformed = HubReference.read(text),
              case .malformed(let error) = ModelLocator(settings: HubSettings(cache: "/", offline: true)).locate(text) else { return nil }
        return error
    }

    /// The path `text` stands for when it can be known (a local path, a cached snapshot), else
    /// the local form: a key that names the same checkpoint as `path` whenever that succeeds.
    public func bestPath(_ text: String, local: String? = nil, kind: HubFiles.Kind = .model) -> String {
        switch locate(text, local: local, kind: kind) {
        case .path(let path), .cached(_, let path): return path
        case .notCached, .malformed: return local ?? text
        }
    }

    /// The Hub models among `texts` (with their local forms and kinds) that are not in the cache,
    /// each once, in order: what a download phase fetches.
    public func uncached(_ texts: [(text: String, local: String?, kind: HubFiles.Kind)]) -> [(HubReference, HubFiles.Kind)] {
        var seen = Set<HubReference>(), result: [(HubReference, HubFiles.Kind)] = []
        for (text, local, kind) in texts {
            if case .notCached(let reference, _) = locate(text, local: local, kind: kind), seen.insert(reference).inserted {
                result.append((reference, kind))
            }
        }
        return result
    }
}
