import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The Hub's HTTP API, as `huggingface_hub` uses it, over AsyncHTTPClient:
///
/// - `GET {endpoint}/api/models/{org}/{name}/revision/{revision}`: the commit (`sha`) and the
///   repository's files (`siblings[].rfilename`);
/// - `HEAD {endpoint}/{org}/{name}/resolve/{commit}/{file}`: `X-Repo-Commit`, the ETag
///   (`X-Linked-Etag`, else `ETag`, without `W/` and quotes: an LFS file's sha256, another file's
///   git blob sha1) and the size (`X-Linked-Size`, else `Content-Length`). Redirects within the
///   endpoint's origin (a renamed repository) are followed, but not one that carries the file's
///   metadata (`X-Linked-Etag`: an LFS file, whose bytes are where it points, often a CDN);
/// - `GET` of the same URL for the bytes, following redirects (at most 5), with
///   `Range: bytes=N-` to resume.
///
/// The token goes to the endpoint's origin only: a redirect to another host gets no
/// `Authorization`. Every request has a connect timeout; metadata requests a deadline
/// (`HubSettings.metadataTimeout`), downloads a read timeout (the longest wait for a byte).
/// Errors name the repository, the revision, the file and the fix, read from the status and
/// the Hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo).
final class HubClient: Sendable {
    let settings: HubSettings
    let http: HTTPClient

    init(settings: HubSettings) {
        self.settings = settings
        let configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: Self.amount(settings.connectTimeout), read: Self.amount(settings.readTimeout)),
            connectionPool: HTTPClient.Configuration.ConnectionPool(), decompression: .disabled)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func shutdown() async {
        try? await http.shutdown()
    }

    static func amount(_ seconds: Double) -> TimeAmount { .nanoseconds(Int64(seconds * 1e9)) }

    /// What went wrong with one request: whether trying again may help, and the error to report.
    struct Failure: Error {
        let retryable: Bool
        let error: MergeKitError
        /// No connection could be made at all (refused, no route, no name, no connection in time).
        var unreachable = false
    }

    /// A revision's commit and the repository's files.
    struct RevisionInfo {
        let commit: String
        let files: [String]
    }

    /// One file's metadata from its HEAD.
    struct FileInfo: Sendable {
        let etag: String
        let size: Int?
        let commit: String?
    }

    // MARK: URLs

    static func escaped(_ text: String, keepSlashes: Bool) -> String {
        var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        if keepSlashes { allowed.insert("/") }
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    func revisionURL(_ reference: HubReference) -> String {
        "\(settings.endpoint)/api/models/\(reference.repository)/revision/\(Self.escaped(reference.resolvedRevision, keepSlashes: false))"
    }

    func fileURL(_ reference: HubReference, commit: String, file: String) -> String {
        "\(settings.endpoint)/\(reference.repository)/resolve/\(commit)/\(Self.escaped(file, keepSlashes: true))"
    }

    // MARK: Requests

    /// A request to `url` with the Hub's headers: the token (for the endpoint's origin), identity
    /// encoding (sizes are the files' own), a user agent.
    func request(_ url: String, method: HTTPMethod, range: Int? = nil) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: "merge-cli (MergeKit)")
        request.headers.add(name: "Accept-Encoding", value: "identity")
        if let token = settings.token, Self.origin(url) == Self.origin(settings.endpoint) {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        if let range, range > 0 { request.headers.add(name: "Range", value: "bytes=\(range)-") }
        return request
    }

    /// `scheme://host:port` of a URL (lowercased), for the same-origin rule.
    static func origin(_ url: String) -> String {
        guard let components = URLComponents(string: url) else { return url }
        let scheme = components.scheme?.lowercased() ?? ""
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        return "\(scheme)://\(components.host?.lowercased() ?? ""):\(port)"
    }

    /// Whether `url` is on the endpoint's origin.
    func sameOrigin(_ url: String) -> Bool { Self.origin(url) == Self.origin(settings.endpoint) }

    /// `location` (absolute, or relative to `url`) as an absolute URL.
    static func resolve(_ location: String, against url: String) -> String? {
        guard let base = URL(string: url), let target = URL(string: location, relativeTo: base) else { return nil }
        return target.absoluteURL.absoluteString
    }

    /// Sends `build(url)`, following redirects as `follow` allows (given the absolute target and
    /// the redirect's headers; at most 5), and returns the final response with its URL. Transport
    /// failures are retryable.
    func send(_ url: String, deadline: NIODeadline, follow: (String, HTTPHeaders) -> Bool, subject: String, context: () -> String,
              build: (String) -> HTTPClientRequest) async throws(Failure) -> (response: HTTPClientResponse, url: String) {
        var url = url
        for _ in 0...5 {
            let response: HTTPClientResponse
            do {
                response = try await http.execute(build(url), deadline: deadline)
            } catch {
                let unreachable: Bool
                switch error as? HTTPClientError {
                case .readTimeout?, .deadlineExceeded?, .remoteConnectionClosed?: unreachable = false
                default: unreachable = true
                }
                throw Failure(retryable: true, error: transportError(error, subject: subject, context: context()), unreachable: unreachable)
            }
            guard (300..<400).contains(response.status.code), let location = response.headers.first(name: "Location") else {
                return (response, url)
            }
            guard let next = Self.resolve(location, against: url) else {
                throw Failure(retryable: false, error: MergeKitError(.hubRequestFailed, file: subject, "\(context()): the Hub redirected to an invalid URL \(location)"))
            }
            guard follow(next, response.headers) else { return (response, url) }
            url = next
        }
        throw Failure(retryable: false, error: MergeKitError(.hubRequestFailed, file: subject, "\(context()): more than 5 redirects"))
    }

    /// The error for a request that did not get an answer.
    func transportError(_ error: Error, subject: String, context: String) -> MergeKitError {
        let reason: String
        if let client = error as? HTTPClientError {
            switch client {
            case .connectTimeout: reason = "no connection within \(Self.seconds(settings.connectTimeout))"
            case .readTimeout: reason = "no data for \(Self.seconds(settings.readTimeout))"
            case .deadlineExceeded: reason = "no answer within \(Self.seconds(settings.metadataTimeout))"
            case .remoteConnectionClosed: reason = "the connection was closed"
            default: reason = "\(client)"
            }
        } else {
            reason = "\(error)"
        }
        return MergeKitError(.hubRequestFailed, file: subject, "\(context): \(settings.endpoint) could not be reached (\(reason))",
            fix: "Check the network and HF_ENDPOINT, or \(term: .workOffline) with models already in the cache")
    }

    static func seconds(_ value: Double) -> String { value == value.rounded() ? "\(Int(value)) s" : "\(value) s" }

    /// The error for an HTTP error status (retryable for 408, 429 and 5xx).
    func statusFailure(_ response: HTTPClientResponse, reference: HubReference, file: String?, context: () -> String) -> Failure {
        let code = response.status.code
        let hubCode = response.headers.first(name: "X-Error-Code")
        let message = response.headers.first(name: "X-Error-Message").map { " (\($0))" } ?? ""
        let revision = reference.resolvedRevision
        let detail: MergeKitError.Text, fix: MergeKitError.Text
        switch (hubCode, code) {
        case ("RevisionNotFound", _):
            detail = "the repository has no revision \(revision)\(message)"
            fix = "Check the revision after @ (a branch, a tag or a commit)"
        case ("EntryNotFound", _):
            detail = "the repository has no file \(file ?? "")\(message)"
            fix = "Check the repository's files at revision \(revision)"
        case ("GatedRepo", _):
            detail = "the repository is gated: access must be requested on the Hub\(message)"
            fix = "Request access on the model's page, then set HF_TOKEN to a token of the account that has it"
        case ("RepoNotFound", _), (_, 401):
            detail = "the repository does not exist, or is private or gated and the request was refused (HTTP \(code))\(message)"
            fix = settings.token == nil ? "Check the id; for a private or gated model set HF_TOKEN (or log in with `hf auth login`)"
                                        : "Check the id, and that the token in HF_TOKEN may read it"
        case (_, 403):
            detail = "access was refused (HTTP 403)\(message)"
            fix = "Check that the token in HF_TOKEN may read this repository"
        case (_, 404):
            detail = file.map { "the Hub has no file \($0) at revision \(revision) (HTTP 404)\(message)" }
                ?? "the repository or its revision \(revision) does not exist (HTTP 404)\(message)"
            fix = "Check the id and the revision"
        default:
            detail = "the Hub answered HTTP \(code)\(message)"
            fix = "Try again later"
        }
        let retryable = code == 408 || code == 429 || code >= 500
        return Failure(retryable: retryable, error: MergeKitError(.hubRequestFailed, file: reference.description, "\(context()): \(detail)", fix: fix))
    }

    /// Runs `attempt` until it succeeds or fails for good: a retryable failure is tried again
    /// after a pause (doubling from `retryDelay`, at most 8 s) up to `retries` times.
    func retrying<T>(_ attempt: () async throws(Failure) -> T) async throws(MergeKitError) -> T {
        var tries = 0
        while true {
            do {
                return try await attempt()
            } catch {
                guard error.retryable, tries < settings.retries else { throw error.error }
                try await pause(tries)
                tries += 1
            }
        }
    }

    /// Sleeps before retry `n` (0-based).
    func pause(_ n: Int) async throws(MergeKitError) {
        let seconds = min(8, settings.retryDelay * Double(1 << min(n, 10)))
        do {
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
        } catch {
            throw MergeKitError(.hubRequestFailed, "the download was cancelled")
        }
    }

    /// A body of at most `limit` bytes, read whole.
    func collect(_ response: HTTPClientResponse, limit: Int, subject: String, context: () -> String) async throws(Failure) -> [UInt8] {
        do {
            let buffer = try await response.body.collect(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch let error as NIOTooManyBytesError {
            _ = error
            throw Failure(retryable: false, error: MergeKitError(.hubRequestFailed, file: subject, "\(context()): the answer is larger than \(limit) bytes"))
        } catch {
            throw Failure(retryable: true, error: transportError(error, subject: subject, context: context()))
        }
    }

    // MARK: The API

    /// The commit `reference`'s revision points to and the repository's files. This is the first
    /// request to the Hub: an endpoint that cannot be reached at all fails it at once, without
    /// retries (there is no download to save).
    func revision(_ reference: HubReference) async throws(MergeKitError) -> RevisionInfo {
        let url = revisionURL(reference)
        let context: () -> String = { "at revision \(reference.resolvedRevision)" }
        return try await retrying { () async throws(Failure) -> RevisionInfo in
            let deadline = NIODeadline.now() + Self.amount(settings.metadataTimeout)
            let response: HTTPClientResponse
            do {
                response = try await send(url, deadline: deadline, follow: { target, _ in sameOrigin(target) }, subject: reference.description, context: context) {
                    request($0, method: .GET)
                }.response
            } catch let failure as Failure where failure.unreachable {
                throw Failure(retryable: false, error: failure.error)
            } catch {
                throw error as! Failure
            }
            guard response.status.code == 200 else {
                _ = try? await response.body.collect(upTo: 1 << 16)
                throw statusFailure(response, reference: reference, file: nil, context: context)
            }
            let bytes = try await collect(response, limit: 64 << 20, subject: reference.description, context: context)
            let json: JSONValue
            do throws(JSONError) { json = try JSONParser.parse(bytes) } catch {
                throw Failure(retryable: false, error: MergeKitError(.hubRequestFailed, file: reference.description,
                    "\(context()): the Hub's answer is not JSON (\(error.description))", fix: "Check HF_ENDPOINT"))
            }
            guard let commit = json["sha"]?.stringValue, HubReference.isCommitHash(commit),
                  case .array(let siblings)? = json["siblings"] else {
                throw Failure(retryable: false, error: MergeKitError(.hubRequestFailed, file: reference.description,
                    "\(context()): the Hub's answer has no commit (sha) or file list (siblings)", fix: "Check HF_ENDPOINT"))
            }
            return RevisionInfo(commit: commit, files: siblings.compactMap { $0["rfilename"]?.stringValue })
        }
    }

    /// `file`'s ETag, size and commit (its HEAD).
    func fileInfo(_ reference: HubReference, commit: String, file: String) async throws(MergeKitError) -> FileInfo {
        let url = fileURL(reference, commit: commit, file: file)
        let context: () -> String = { "at revision \(reference.resolvedRevision), file \(file)" }
        return try await retrying { () async throws(Failure) -> FileInfo in
            let deadline = NIODeadline.now() + Self.amount(settings.metadataTimeout)
            let (response, _) = try await send(url, deadline: deadline,
                                               follow: { target, headers in sameOrigin(target) && headers.first(name: "X-Linked-Etag") == nil }, subject: reference.description, context: context) {
                request($0, method: .HEAD)
            }
            let code = response.status.code
            guard code == 200 || (300..<400).contains(code) else {
                throw statusFailure(response, reference: reference, file: file, context: context)
            }
            let headers = response.headers
            guard let raw = headers.first(name: "X-Linked-Etag") ?? headers.first(name: "ETag") else {
                throw Failure(retryable: false, error: MergeKitError(.hubRequestFailed, file: reference.description,
                    "\(context()): the Hub's answer has no ETag, so the file cannot be named in the cache", fix: "Check HF_ENDPOINT"))
            }
            let etag = Self.normalizedETag(raw)
            guard !etag.isEmpty, !etag.contains("/"), etag != ".", etag != ".." else {
                throw Failure(retryable: false, error: MergeKitError(.hubRequestFailed, file: reference.description,
                    "\(context()): the Hub's ETag \"\(raw)\" cannot name a file", fix: "Check HF_ENDPOINT"))
            }
            let size = (headers.first(name: "X-Linked-Size") ?? ((300..<400).contains(code) ? nil : headers.first(name: "Content-Length"))).flatMap { Int($0) }
            return FileInfo(etag: etag, size: size, commit: headers.first(name: "X-Repo-Commit"))
        }
    }

    /// An ETag header without its weak marker and quotes (`W/"abc"` → `abc`).
    static func normalizedETag(_ raw: String) -> String {
        var etag = Substring(raw)
        if etag.hasPrefix("W/") { etag = etag.dropFirst(2) }
        return String(etag).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }
}
