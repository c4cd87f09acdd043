import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
@testable import MergeKit

/// A small Hugging Face Hub served on 127.0.0.1 by the tests themselves (SwiftNIO's HTTP/1
/// server, on its own event-loop thread, so a test may block while it answers): the endpoints
/// and headers `huggingface_hub` reads, and the faults a download must survive.
///
/// - `GET /api/models/{org}/{name}/revision/{rev}`: `{"sha": commit, "siblings": [{"rfilename"}]}`;
/// - `HEAD`/`GET /{org}/{name}/resolve/{rev}/{file}`: an ordinary file answers 200 with
///   `ETag: "<git blob sha1>"`; an LFS file (`.safetensors`, `.bin`) answers 302 to `/cdn/<sha256>` (on
///   `cdn`, another origin, when set) with `X-Linked-Etag`, `X-Linked-Size` and `X-Repo-Commit`;
/// - `GET /cdn/<sha256>`: the bytes, honouring `Range: bytes=N-` (206 with `Content-Range`);
/// - errors as the Hub sends them: 401 with `X-Error-Code: RepoNotFound` for a missing repository
///   or a private one without its token, 404 with `RevisionNotFound` / `EntryNotFound`.
///
/// Faults (`Fault`) are set per file and count down per request, so every test is exact: no
/// timing decides what the client sees except the stalled answer, which only a timeout ends.
final class FakeHub: Sendable {
    struct Repository: Sendable {
        var commit: String
        /// Branches and tags besides the commit itself (`main` → commit by default).
        var refs: [String: String]
        var files: [String: [UInt8]]
        /// The token a request must carry (nil: public).
        var token: String?
    }

    /// What goes wrong for one file's bytes.
    struct Fault: Sendable {
        /// Answer 500 to this many requests first.
        var serverErrors = 0
        /// Close the connection after this many bytes of the body, for this many requests.
        var dropAfter: Int? = nil
        var drops = 0
        /// Send these bytes instead of the file's (the headers still name the real sha256).
        var corrupt = false
        /// Answer 200 with the whole file when a range is asked for.
        var ignoreRange = false
        /// Send the head (and `stallAfter` bytes) and then nothing, for this many requests.
        var stalls = 0
        var stallAfter = 0
    }

    /// One request as the server saw it.
    struct Request: Sendable {
        let method: String
        let uri: String
        let range: String?
        let authorization: String?
    }

    private struct State {
        var repositories: [String: Repository] = [:]
        var faults: [String: Fault] = [:]
        var requests: [Request] = []
    }

    private let state = Mutex(State())
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel
    /// Where LFS redirects point (another FakeHub, another origin), when set.
    private let cdnBase = Mutex<String?>(nil)

    let port: Int
    var endpoint: String { "http://127.0.0.1:\(port)" }

    init() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let box = HubBox()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture(withResultOf: {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(hub: box))
                })
            }
        channel = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress!.port!
        box.hub.withLock { $0 = self }
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    // MARK: Configuration

    func add(_ id: String, commit: String, files: [String: [UInt8]], refs: [String: String]? = nil, token: String? = nil) {
        state.withLock { $0.repositories[id] = Repository(commit: commit, refs: refs ?? ["main": commit], files: files, token: token) }
    }

    func setFault(_ file: String, _ fault: Fault) { state.withLock { $0.faults[file] = fault } }

    func redirectLFS(to other: FakeHub) { cdnBase.withLock { $0 = other.endpoint } }

    /// The bytes of every LFS file of every repository, served by `/cdn/` (for a CDN FakeHub).
    func serveBlobs(of other: FakeHub) {
        let blobs = other.state.withLock { $0.repositories }
        state.withLock { state in
            for (id, repository) in blobs { state.repositories["cdn:" + id] = repository }
        }
    }

    var requests: [Request] { state.withLock { $0.requests } }

    // MARK: Hashes

    static func sha256(_ bytes: [UInt8]) -> String { hexString(SHA256.hash(data: bytes)) }
    static func gitSHA1(_ bytes: [UInt8]) -> String { hexString(Insecure.SHA1.hash(data: Array("blob \(bytes.count)\u{0}".utf8) + bytes)) }
    static func isLFS(_ name: String) -> Bool { name.hasSuffix(".safetensors") || name.hasSuffix(".bin") }

    // MARK: Answers

    struct Response {
        var status: HTTPResponseStatus
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        /// Close after this many body bytes (a dropped connection).
        var dropAfter: Int? = nil
        var stall = false
    }

    fileprivate func respond(method: HTTPMethod, uri: String, headers: HTTPHeaders) -> Response {
        let request = Request(method: method.rawValue, uri: uri, range: headers.first(name: "Range"), authorization: headers.first(name: "Authorization"))
        return state.withLock { state in
            state.requests.append(request)
            return answer(request, state: &state)
        }
    }

    private func answer(_ request: Request, state: inout State) -> Response {
        let path = String(request.uri.split(separator: "?", maxSplits: 1).first ?? "").removingPercentEncoding ?? request.uri
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        func hubError(_ status: HTTPResponseStatus, _ code: String) -> Response {
            Response(status: status, headers: [("X-Error-Code", code), ("X-Error-Message", code)])
        }
        func repository(_ id: String) -> Repository? {
            guard let repository = state.repositories[id] else { return nil }
            if let token = repository.token, request.authorization != "Bearer \(token)" { return nil }
            return repository
        }
        // /cdn/<sha256>
        if parts.count == 2, parts[0] == "cdn" {
            for repository in state.repositories.values {
                for (name, bytes) in repository.files where Self.isLFS(name) && Self.sha256(bytes) == parts[1] {
                    return serve(name, bytes, request: request, state: &state, headers: [])
                }
            }
            return Response(status: .notFound)
        }
        // /api/models/{org}/{name}/revision/{rev}
        if parts.count >= 6, parts[0] == "api", parts[1] == "models", parts[4] == "revision" {
            let id = parts[2] + "/" + parts[3], revision = parts[5...].joined(separator: "/")
            guard let repository = repository(id) else { return hubError(.unauthorized, "RepoNotFound") }
            guard let commit = repository.refs[revision] ?? (revision == repository.commit ? revision : nil) else {
                return hubError(.notFound, "RevisionNotFound")
            }
            let siblings = repository.files.keys.sorted().map { "{\"rfilename\": \"\($0)\"}" }.joined(separator: ", ")
            return Response(status: .ok, headers: [("Content-Type", "application/json")],
                            body: Array("{\"id\": \"\(id)\", \"sha\": \"\(commit)\", \"siblings\": [\(siblings)]}".utf8))
        }
        // /{org}/{name}/resolve/{rev}/{file}
        if parts.count >= 5, parts[2] == "resolve" {
            let id = parts[0] + "/" + parts[1], revision = parts[3], file = parts[4...].joined(separator: "/")
            guard let repository = repository(id) else { return hubError(.unauthorized, "RepoNotFound") }
            guard let commit = repository.refs[revision] ?? (revision == repository.commit ? revision : nil) else {
                return hubError(.notFound, "RevisionNotFound")
            }
            guard let bytes = repository.files[file] else { return hubError(.notFound, "EntryNotFound") }
            if Self.isLFS(file) {
                let sha = Self.sha256(bytes)
                let base = cdnBase.withLock { $0 } ?? endpoint  // absolute, as the Hub's CDN redirects are
                return Response(status: .found, headers: [("Location", "\(base)/cdn/\(sha)"), ("X-Repo-Commit", commit),
                                                          ("X-Linked-Etag", "\"\(sha)\""), ("X-Linked-Size", "\(bytes.count)"),
                                                          ("ETag", "W/\"not-the-sha\""), ("Content-Length", "0")])
            }
            return serve(file, bytes, request: request, state: &state,
                         headers: [("X-Repo-Commit", commit), ("ETag", "\"\(Self.gitSHA1(bytes))\"")])
        }
        return Response(status: .notFound)
    }

    /// A file's bytes (HEAD: the headers), with its fault applied.
    private func serve(_ name: String, _ bytes: [UInt8], request: Request, state: inout State, headers: [(String, String)]) -> Response {
        var fault = state.faults[name] ?? Fault()
        defer { state.faults[name] = fault }
        if request.method == "HEAD" {
            return Response(status: .ok, headers: headers + [("Content-Length", "\(bytes.count)")])
        }
        if fault.serverErrors > 0 {
            fault.serverErrors -= 1
            return Response(status: .internalServerError)
        }
        var body = bytes
        if fault.corrupt { body = body.map { $0 ^ 0x5A } }
        var response = Response(status: .ok, headers: headers)
        if let range = request.range, !fault.ignoreRange, range.hasPrefix("bytes="), range.hasSuffix("-"),
           let start = Int(range.dropFirst(6).dropLast()) {
            guard start < body.count else {
                return Response(status: .rangeNotSatisfiable, headers: [("Content-Range", "bytes */\(body.count)")])
            }
            response.status = .partialContent
            response.headers.append(("Content-Range", "bytes \(start)-\(body.count - 1)/\(body.count)"))
            body = Array(body[start...])
        }
        response.headers.append(("Content-Length", "\(body.count)"))
        response.body = body
        if fault.stalls > 0 {
            fault.stalls -= 1
            response.stall = true
            response.dropAfter = min(fault.stallAfter, body.count)
        } else if fault.drops > 0, let after = fault.dropAfter {
            fault.drops -= 1
            response.dropAfter = min(after, body.count)
        }
        return response
    }
}

/// The hub a handler answers for (set once the server is bound).
private final class HubBox: Sendable {
    let hub = Mutex<FakeHub?>(nil)
}

private final class Handler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let hub: HubBox
    var head: HTTPRequestHead?

    init(hub: HubBox) { self.hub = hub }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head, let hub = hub.hub.withLock({ $0 }) else { return }
            let response = hub.respond(method: head.method, uri: head.uri, headers: head.headers)
            var headers = HTTPHeaders(response.headers)
            if !headers.contains(name: "Content-Length") { headers.add(name: "Content-Length", value: "\(response.body.count)") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))), promise: nil)
            if head.method != .HEAD {
                let count = response.dropAfter ?? response.body.count
                if count > 0 {
                    let buffer = context.channel.allocator.buffer(bytes: response.body[0..<count])
                    context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
                }
                if response.stall {
                    context.flush()
                    return
                }
                if response.dropAfter != nil {
                    context.flush()
                    context.close(promise: nil)
                    return
                }
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
