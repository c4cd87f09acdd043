import Foundation

/// Where Hub models are cached and fetched from, read from the environment variables
/// `huggingface_hub` reads, so that MergeKit and transformers share one cache:
///
/// - the cache: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
///   `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (`~` and `$VAR` expanded);
/// - offline: `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set to 1, ON, YES or TRUE (any case):
///   nothing is downloaded, only the cache is read;
/// - the endpoint: `HF_ENDPOINT` (default `https://huggingface.co`, trailing `/` removed);
/// - the token: `HF_TOKEN`, else the file `HF_TOKEN_PATH`, else `$HF_HOME/token` (what
///   `hf auth login` writes), sent as `Authorization: Bearer` to the endpoint only, never to the
///   host a download is redirected to;
/// - timeouts in seconds: `HF_HUB_ETAG_TIMEOUT` for metadata requests, `HF_HUB_DOWNLOAD_TIMEOUT`
///   for the longest wait for a byte of a file (both 10 by default, as in `huggingface_hub`).
public struct HubSettings: Sendable, Equatable {
    /// The cache directory (`…/hub`), holding one `models--org--name` folder per repository.
    public var cache: String
    /// The Hub's base URL, without a trailing `/`.
    public var endpoint: String
    /// The access token, when one is configured.
    public var token: String?
    /// Whether downloads are forbidden.
    public var offline: Bool
    /// Seconds to wait for a connection.
    public var connectTimeout: Double = 10
    /// Seconds to wait for the answer to a metadata request.
    public var metadataTimeout: Double = 10
    /// Seconds to wait for the next bytes of a file before the connection counts as dropped.
    public var readTimeout: Double = 10
    /// How many times one request is tried again after a dropped connection, a timeout or a
    /// server error (5xx, 408, 429) before the download fails; a retry of a file resumes where
    /// the last one stopped.
    public var retries: Int = 5
    /// Seconds before the first retry; each further retry waits twice as long (at most 8 s).
    public var retryDelay: Double = 1
    /// How many files are downloaded at once.
    public var parallelDownloads: Int = 4

    public init(cache: String, endpoint: String = HubSettings.defaultEndpoint, token: String? = nil, offline: Bool = false) {
        self.cache = cache
        self.endpoint = endpoint
        self.token = token
        self.offline = offline
    }

    public static let defaultEndpoint = "https://huggingface.co"

    /// The settings the process's environment gives.
    public static var current: HubSettings { from(environment: ProcessInfo.processInfo.environment) }

    /// The settings `environment` gives (see the type's documentation).
    public static func from(environment: [String: String]) -> HubSettings {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        func expanded(_ path: String) -> String {
            var path = path
            if path == "~" || path.hasPrefix("~/") {
                let home = value("HOME") ?? NSHomeDirectory()
                path = home + path.dropFirst()
            }
            // $VAR and ${VAR}, as os.path.expandvars does (unknown variables stay as written).
            var result = "", i = path.startIndex
            while i < path.endIndex {
                guard path[i] == "$" else { result.append(path[i]); i = path.index(after: i); continue }
                var j = path.index(after: i)
                let braced = j < path.endIndex && path[j] == "{"
                if braced { j = path.index(after: j) }
                let start = j
                while j < path.endIndex, path[j].isASCII, path[j].isLetter || path[j].isNumber || path[j] == "_" { j = path.index(after: j) }
                let name = String(path[start..<j])
                if braced && (j == path.endIndex || path[j] != "}") || name.isEmpty {
                    result.append(path[i]); i = path.index(after: i); continue
                }
                if braced { j = path.index(after: j) }
                if let v = environment[name] { result += v } else { result += path[i..<j] }
                i = j
            }
            return result
        }
        let home = expanded(value("HF_HOME") ?? FileSystem.join(value("XDG_CACHE_HOME") ?? "~/.cache", "huggingface"))
        let cache = expanded(value("HF_HUB_CACHE") ?? value("HUGGINGFACE_HUB_CACHE") ?? FileSystem.join(home, "hub"))
        var endpoint = value("HF_ENDPOINT") ?? defaultEndpoint
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        let truthy: Set<String> = ["1", "ON", "YES", "TRUE"]
        let offline = [value("HF_HUB_OFFLINE"), value("TRANSFORMERS_OFFLINE")].contains { $0.map { truthy.contains($0.uppercased()) } ?? false }
        var token = value("HF_TOKEN")
        if token == nil {
            let file = expanded(value("HF_TOKEN_PATH") ?? FileSystem.join(home, "token"))
            if FileSystem.kind(of: file) == .file, let bytes = try? FileSystem.readFile(file, limit: 4096) {
                let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                token = text.isEmpty ? nil : text
            }
        }
        var settings = HubSettings(cache: cache, endpoint: endpoint, token: token, offline: offline)
        if let seconds = value("HF_HUB_ETAG_TIMEOUT").flatMap(Double.init), seconds > 0 { settings.metadataTimeout = seconds }
        if let seconds = value("HF_HUB_DOWNLOAD_TIMEOUT").flatMap(Double.init), seconds > 0 { settings.readTimeout = seconds }
        return settings
    }
}
