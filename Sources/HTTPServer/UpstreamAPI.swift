#if canImport(Glibc)
import Glibc
#endif
import Config
import Core

/// NGINX Plus's upstream API, for upstreams with a `state` file, on a location with `api`:
///
///     GET    …/http/upstreams/NAME/servers          the servers, each with its id
///     POST   …/http/upstreams/NAME/servers          add one: {"server":"10.0.0.7:8080","weight":2,…}
///     GET    …/http/upstreams/NAME/servers/ID       one
///     PATCH  …/http/upstreams/NAME/servers/ID       change weight, max_fails, fail_timeout, max_conns, down, drain
///                                                   (taken as down), backup, server
///     DELETE …/http/upstreams/NAME/servers/ID       remove one (the rest are answered)
///
/// A change is written to the state file (whole, under a lock shared by the workers) and the checker's
/// thread, woken at once, makes the file's servers the upstream's peers for every worker: probed first when
/// the upstream is checked, removed ones finishing their requests. The file is what survives a reload and a
/// restart. Writes answer 405 unless the location says `api write=on`; a bad request is a 400 naming the
/// reason, in NGINX Plus's error document.
enum UpstreamAPI {
    struct Failure: Error {
        let status: Int
        let code: String
        let text: String
    }

    static func serve(_ r: RequestContext, write: Bool) {
        let reading = r.method == "GET" || r.method == "HEAD"
        guard reading || ["POST", "PATCH", "DELETE"].contains(r.method) else {
            return answer(r, .failure(Failure(status: 405, code: "MethodNotSupported", text: "method not supported")))
        }
        guard reading || write else {
            return answer(r, .failure(Failure(status: 405, code: "MethodDisabled", text: "write is disabled")))
        }
        guard r.method == "POST" || r.method == "PATCH" else { return answer(r, handle(r, body: nil)) }
        r.readBody { [unowned r] in
            // A body past client_body_buffer_size went to a file: far more than any server's parameters.
            guard r.body.file == nil else {
                return answer(r, .failure(Failure(status: 413, code: "BodyTooLarge", text: "request body too large")))
            }
            answer(r, handle(r, body: r.body.bytes))
        }
    }

    private static func answer(_ r: RequestContext, _ result: Result<(Int, JSONValue), Failure>) {
        let (status, doc): (Int, JSONValue)
        switch result {
        case .success(let ok): (status, doc) = ok
        case .failure(let f):
            status = f.status
            doc = .object([("error", .object([("status", .number(Double(f.status))), ("text", .string(f.text)), ("code", .string(f.code))])),
                           ("href", .string("https://nginx.org/en/docs/http/ngx_http_api_module.html"))])
        }
        r.sink.respond(status: status, contentType: "application/json", body: Array((doc.text + "\n").utf8))
    }

    /// The request's path after `/http/upstreams/`: the upstream's name, and the id when one is named.
    private static func target(_ path: String) -> (upstream: String, id: String?)? {
        let all = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let at = all.indices.dropLast().first(where: { all[$0] == "http" && all[$0 + 1] == "upstreams" }) else { return nil }
        let parts = Array(all[(at + 2)...])
        guard parts.count >= 2, parts[1] == "servers", !parts[0].isEmpty, parts.count <= 3 else { return nil }
        return (parts[0], parts.count == 3 ? parts[2] : nil)
    }

    private static func handle(_ r: RequestContext, body: [UInt8]?) -> Result<(Int, JSONValue), Failure> {
        guard let (name, idText) = target(r.uri) else {
            return .failure(Failure(status: 404, code: "PathNotFound", text: "path not found"))
        }
        guard let upstream = r.service.config.http?.upstream(named: name) else {
            return .failure(Failure(status: 404, code: "UpstreamNotFound", text: "upstream not found"))
        }
        guard let path = upstream.stateFile else {
            return .failure(Failure(status: 400, code: "UpstreamStatic", text: "upstream is static (it has no \"state\" file)"))
        }
        let id: Int?
        if let idText {
            guard let n = Int(idText), n >= 0 else { return .failure(Failure(status: 400, code: "UpstreamBadServerId", text: "invalid server id")) }
            id = n
        } else {
            id = nil
        }
        if (r.method == "PATCH" || r.method == "DELETE") && id == nil {
            return .failure(Failure(status: 405, code: "MethodNotSupported", text: "method not supported"))
        }
        if r.method == "POST" && id != nil {
            return .failure(Failure(status: 405, code: "MethodNotSupported", text: "method not supported"))
        }
        return StateLock.with(path) { () -> Result<(Int, JSONValue), Failure> in
            var servers: [StateServer]
            switch StateFile.read(path).map(StateFile.parse) {
            case .failure(let e):
                return .failure(Failure(status: 500, code: "StateFileError", text: "cannot read the state file (\(e.text))"))
            case .success(.failure(let e)):
                return .failure(Failure(status: 500, code: "StateFileError", text: "the state file has \(e)"))
            case .success(.success(let s)):
                servers = s
            }
            let index = id.flatMap { id in servers.firstIndex { $0.id == id } }
            if id != nil && index == nil { return .failure(Failure(status: 404, code: "UpstreamServerNotFound", text: "server not found")) }
            switch r.method {
            case "GET", "HEAD":
                return .success((200, index.map { json(servers[$0]) } ?? .array(servers.map(json))))
            case "DELETE":
                servers.remove(at: index!)
            default:
                guard let body, let doc = JSONValue.parse(body), case .object(let fields) = doc else {
                    return .failure(Failure(status: 400, code: "UpstreamConfFormatError", text: "request body is not a JSON object"))
                }
                var s = index.map { servers[$0] } ?? StateServer(id: (servers.map(\.id).max() ?? -1) + 1, address: PeerAddress(host: "", port: 0, isIPv6: false))
                if let e = apply(fields, to: &s, adding: index == nil) { return .failure(e) }
                if servers.contains(where: { $0.address == s.address && $0.id != s.id }) {
                    return .failure(Failure(status: 409, code: "UpstreamServerExists", text: "server \(s.address) already exists"))
                }
                if let i = index { servers[i] = s } else { servers.append(s) }
                if let e = save(servers, path, r) { return .failure(e) }
                return .success((index == nil ? 201 : 200, json(s)))
            }
            if let e = save(servers, path, r) { return .failure(e) }
            return .success((200, .array(servers.map(json))))
        }
    }

    /// The fields of a POST or PATCH onto `s`, checked as NGINX Plus checks them.
    private static func apply(_ fields: [(String, JSONValue)], to s: inout StateServer, adding: Bool) -> Failure? {
        func bad(_ text: String) -> Failure { Failure(status: 400, code: "UpstreamConfFormatError", text: text) }
        if adding && !fields.contains(where: { $0.0 == "server" }) { return bad("missing \"server\" argument") }
        for (name, value) in fields {
            switch name {
            case "server":
                guard let text = value.string, let a = StateServer.address(text) else { return bad("invalid \"server\" argument") }
                s.address = a
            case "weight":
                guard let n = value.integer, n >= 1, n <= 1_000_000 else { return bad("invalid \"weight\" argument") }
                s.weight = n
            case "max_fails":
                guard let n = value.integer, n >= 0, n <= 65535 else { return bad("invalid \"max_fails\" argument") }
                s.maxFails = n
            case "fail_timeout":
                // NGINX Plus takes a time string ("10s"); a bare number is seconds.
                guard let ms = value.string.flatMap(Values.milliseconds) ?? value.integer.map({ $0 * 1000 }), ms >= 0, ms <= 65_535_000 else {
                    return bad("invalid \"fail_timeout\" argument")
                }
                s.failTimeout = ms
            case "max_conns":
                guard let n = value.integer, n >= 0, n <= 0xFF_FFFF else { return bad("invalid \"max_conns\" argument") }
                s.maxConns = n
            case "down", "drain":
                guard let b = value.bool else { return bad("invalid \"\(name)\" argument") }
                s.down = b
            case "backup":
                guard let b = value.bool else { return bad("invalid \"backup\" argument") }
                s.backup = b
            case "id":
                guard value.integer == s.id else { return bad("\"id\" cannot be changed") }
            default:
                return bad("unknown parameter \"\(name)\"")
            }
        }
        return nil
    }

    private static func save(_ servers: [StateServer], _ path: String, _ r: RequestContext) -> Failure? {
        if let e = StateFile.write(servers, to: path) {
            r.log.error("upstream API: writing \"\(path)\" failed (\(Errno.text(e)))\(r.logContext)")
            return Failure(status: 500, code: "StateFileError", text: "cannot write the state file (\(Errno.text(e)))")
        }
        // The checker reads the file again now, not at its next look.
        r.service.segment.ringDoorbell()
        return nil
    }

    private static func json(_ s: StateServer) -> JSONValue {
        .object([("id", .number(Double(s.id))), ("server", .string(s.address.description)), ("weight", .number(Double(s.weight))),
                 ("max_conns", .number(Double(s.maxConns))), ("max_fails", .number(Double(s.maxFails))),
                 ("fail_timeout", .string(s.failTimeout % 1000 == 0 ? "\(s.failTimeout / 1000)s" : "\(s.failTimeout)ms")),
                 ("slow_start", .string("0s")), ("route", .string("")), ("backup", .bool(s.backup)), ("down", .bool(s.down))])
    }
}

/// The workers' lock around a state file's read-change-write: flock() on `FILE.lock` beside it.
enum StateLock {
    static func with<T>(_ path: String, _ body: () -> T) -> T {
        let fd = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd >= 0 { _ = flock(fd, LOCK_EX) }
        defer { if fd >= 0 { close(fd) } }
        return body()
    }
}
