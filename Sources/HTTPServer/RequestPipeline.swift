import Config
import Core
import HTTP
import Script

/// nginx's request phases, once for every protocol: a connection hands over a parsed head; the request is
/// routed to its server and location, its body read (unless its handler streams it), then the server's and
/// the location's rewrite scripts run (a changed URI chooses the location again, at most 10 times), access
/// rules, and the content handler. `error_page` answers are internal redirects through the same phases.
public final class RequestPipeline {
    unowned(unsafe) let service: HTTPService

    init(service: HTTPService) { self.service = service }

    /// A parsed head routed to its server (by the address it came in on and Host) and location; nil when no
    /// server listens there. The groups of a regex server name become the request's variables.
    func makeRequest(_ head: consuming RequestHead, transport: RequestTransport, length: Int) -> RequestContext? {
        guard let (server, nameMatch) = service.router.route(transport.client.listen.address, host: head.host) else { return nil }
        let choice = service.router.location(in: server, path: head.path)
        let r = RequestContext(head: head, server: server, location: choice.location, service: service, transport: transport,
                               requestLength: length)
        r.addsSlash = choice.addsSlash
        if let (re, m) = nameMatch { Program.take(m, of: re, r) }
        if let (re, m) = choice.match { Program.take(m, of: re, r) }
        return r
    }

    /// A request for a head that could not be parsed: only its error page is answered. It has no URI ($uri is
    /// empty, as nginx's). A handshake's variables (certificates named by them) are read on one too, on the
    /// server SNI chose.
    func makeFailedRequest(transport: RequestTransport, length: Int, server: Server? = nil) -> RequestContext? {
        let head = RequestHead(method: "-", target: "-", path: "", query: nil, versionMajor: 1, versionMinor: 1,
                               host: nil, contentLength: nil, keepAlive: false)
        guard let server = server ?? service.router.defaultServer(for: transport.client.listen.address) else { return nil }
        return RequestContext(head: head, server: server, location: nil, service: service, transport: transport, requestLength: length)
    }

    /// The phases of a routed request: a body larger than client_max_body_size is refused at once; a body is
    /// read whole first unless the location's handler takes it as it streams in.
    func start(_ r: RequestContext) {
        // nginx's first debug line of a request (what `error_log … debug` shows of one, as --with-debug builds).
        r.log.log(.debug, forced: debugs(r.client), "http request line: \"\(r.head.requestLine)\"")
        // ssl_verify_client is checked per request, against the server the Host chose, as nginx does; a Host
        // other than the SNI name must not reach a server verifying clients with another server's handshake.
        if let tls = r.client.tls {
            let mode = r.server.settings.ssl.verifyClient
            if mode != .off, let sni = tls.serverName?.lowercased(), let host = r.head.host.map(HostName.serverName),
               host != sni, service.router.namesServer(r.client.listen.address, sni) {
                r.log.info("client attempted to request the server name different from the one that was negotiated\(r.logContext)")
                r.transport.abandonBody()
                return respondError(r, 421, close: true)
            }
            if let (status, message) = tls.clientCertificateRefusal(mode) {
                r.log.info(message + r.logContext)
                r.transport.abandonBody()
                return respondError(r, status, close: true)
            }
        }
        RealIP.postRead(r)
        let limit = r.settings.core.clientMaxBodySize
        if limit > 0, let len = r.head.contentLength, len > limit {
            r.log.error("client intended to send too large body: \(len) bytes\(r.logContext)")
            r.transport.abandonBody()
            return respondError(r, 413, close: true)
        }
        // nginx answers "Expect: 100-continue" whenever it reads or discards a body, even an empty one, and
        // client_body_in_file_only makes a file for an empty body too.
        guard r.transport.bodyFollows(r.head) else {
            return r.head.expectContinue || r.head.contentLength == 0 && r.bodyInFileOnly ? r.readBody(then: nil) : dispatch(r)
        }
        if case .proxy = r.content, let handler = service.proxyHandler, handler.streamsBody(r) {
            r.body.pending = true
            dispatch(r)
        } else {
            r.readBody(then: nil)
        }
    }

    /// Whether `debug_connection` names this client.
    private func debugs(_ client: ClientInfo) -> Bool {
        guard let events = service.config.events else { return false }
        if client.address == "unix:" { return events.debugUnixClients }
        guard !events.debugConnections.isEmpty else { return false }
        let bytes = client.addressBytes
        return events.debugConnections.contains { $0.contains(bytes) }
    }

    /// The server's rewrite script, then the location's phases.
    public func dispatch(_ r: RequestContext) {
        if !r.server.script.isEmpty, case .respond(let code, let text) = r.server.script.run(r) {
            return respondReturn(r, code, text)
        }
        locationPhases(r)
    }

    /// The location's phases: a URI a script changed chooses the location again (an `internal` one only takes
    /// internal requests), its rewrite script runs, then access, try_files and content.
    private func locationPhases(_ r: RequestContext) {
        scripts: while true {
            if r.rewritten {
                guard countURIChange(r, "while processing \"\(r.uri)\"") else { return }
                r.isInternal = true
                r.relocate(service.router.location(in: r.server, path: r.uri))
            }
            if let loc = r.location, loc.isInternal && !r.isInternal { return respondError(r, 404) }
            if r.addsSlash, let loc = r.location {
                return redirectAddingSlash(r, to: loc.pattern)
            }
            guard let script = r.location?.script, !script.isEmpty else { break }
            switch script.run(r) {
            case .respond(let code, let text):
                return respondReturn(r, code, text)
            case .stop:
                if r.rewritten { r.validLocation = false }
                r.rewritten = false
                break scripts
            case .last:
                continue
            case .next:
                if !r.rewritten { break scripts }
            }
        }
        serve(r)
    }

    /// nginx allows 10 URI changes (rewrites and internal redirects) per request; the 11th is a 500.
    private func countURIChange(_ r: RequestContext, _ what: @autoclosure () -> String) -> Bool {
        r.uriChangesLeft -= 1
        if r.uriChangesLeft > 0 { return true }
        r.log.error("rewrite or internal redirection cycle \(what())\(r.logContext)")
        respondError(r, 500)
        return false
    }

    /// An upstream's X-Accel-Redirect (the proxy has kept the headers nginx hands on): the request goes on at
    /// that URI, as GET unless it is HEAD, or in that named location; an unsafe URI is 404, as in nginx.
    public func accelRedirect(_ r: RequestContext, to value: String) {
        if value.hasPrefix("@") { return namedLocation(r, value) }
        guard let (path, args) = URIPath.redirectTarget(value) else { return respondError(r, 404) }
        if r.method != "HEAD" { r.method = "GET" }
        internalRedirect(r, uri: path, args: args)
    }

    /// An internal redirect (error_page, try_files): the new URI goes through every phase from the server's
    /// rewrite script on.
    private func internalRedirect(_ r: RequestContext, to target: String) {
        if let q = target.firstIndex(of: "?") {
            internalRedirect(r, uri: String(target[..<q]), args: String(target[target.index(after: q)...]))
        } else {
            internalRedirect(r, uri: target, args: nil)
        }
    }

    private func internalRedirect(_ r: RequestContext, uri: String, args: String?) {
        guard countURIChange(r, "while internally redirecting to \"\(uri)\"") else { return }
        r.uri = uri
        // As nginx: the target's arguments, or none.
        r.args = args
        r.isInternal = true
        r.uriAddsToAlias = false
        r.relocate(service.router.location(in: r.server, path: r.uri))
        dispatch(r)
    }

    /// `@name`: the request goes on in a named location, from its rewrite script.
    private func namedLocation(_ r: RequestContext, _ name: String) {
        guard let named = r.server.locations.first(where: { $0.match == .named && $0.pattern == name }) else {
            r.log.error("could not find named location \"\(name)\"\(r.logContext)")
            return respondError(r, 500)
        }
        r.isInternal = true
        r.relocate(LocationChoice(location: named))
        locationPhases(r)
    }

    /// The preaccess (limit_req, limit_conn), access, try_files and content phases for the location the
    /// request ended in.
    private func serve(_ r: RequestContext) {
        // limit_except: a method it does not name takes the block's configuration (access rules, proxy_pass).
        if let limit = r.location?.limitExcept, !limit.methods.contains(r.method) { r.enter(limit.block) }
        // As nginx's preaccess phase: realip first, then limit_req, then limit_conn (a subrequest is not
        // limited again).
        RealIP.preAccess(r)
        if r.parent == nil && r.limitReqStatus == .none && !r.settings.limits.requests.isEmpty {
            switch RequestLimits.limitRequests(r) {
            case .declined: break
            case .reject(let status): return respondError(r, status)
            case .delay(let ms):
                r.handler = LimitDelay(r, ms: ms) { [unowned(unsafe) self] in self.limitConnections($0) }
                return
            }
        }
        limitConnections(r)
    }

    /// limit_conn (after a limit_req delay, as nginx), then the access phase.
    private func limitConnections(_ r: RequestContext) {
        if r.parent == nil && r.limitConnStatus == .none && !r.settings.limits.connections.isEmpty,
           let status = RequestLimits.limitConnections(r) {
            return respondError(r, status)
        }
        accessPhase(r)
    }

    /// try_files and the content handler, once the access phase let the request through.
    func contentPhases(_ r: RequestContext) {
        // try_files is not inherited: a location's own, or the server's for a request no location took.
        if let tf = r.location == nil ? r.server.tryFiles : r.location!.tryFiles {
            switch TryFilesPhase.run(tf, r) {
            case .found: break
            case .status(let code): return respondReturn(r, code, nil)
            case .redirect(let target):
                return target.hasPrefix("@") ? namedLocation(r, target) : internalRedirect(r, to: target)
            }
        }
        // Switched on in place: a copy of the enum would retain everything a ProxyPass holds.
        switch r.content {
        case .proxy:
            guard let handler = service.proxyHandler else { return respondError(r, 500) }
            handler.handle(r)
        case .stubStatus:
            StubStatus.serve(r)
        case .checkStatus:
            CheckStatusPage.serve(r)
        case .upstreamAPI(let write):
            UpstreamAPI.serve(r, write: write)
        case .none:
            switch IndexFiles.run(r) {
            case .declined: if !AutoIndex.serve(r) { StaticFiles.serve(r) }
            case .redirect(let uri): internalRedirect(r, uri: uri, args: r.args)
            case .status(let code): respondError(r, code)
            }
        }
    }

    /// `return`: a redirect with its Location, a text body, or nginx's page for the code; 444 closes at once.
    func respondReturn(_ r: RequestContext, _ code: Int, _ text: String?) {
        if code == 444 { return r.transport.abort() }
        if HeadersFilter.isRedirect(code) {
            respondError(r, code, location: text ?? "")
        } else if text != nil || code < 400 {
            // As nginx's ngx_http_send_response: below 400 even without a text this is a response of its own,
            // which an error page being served gives its status (405 with an empty body, not a 204).
            r.sink.respond(status: code, contentType: contentType(for: r), body: Array((text ?? "").utf8))
        } else {
            respondError(r, code)
        }
    }

    /// The 301 nginx answers for a directory, or a location's name, asked for without its final "/": the path
    /// escaped again (ngx_escape_uri's NGX_ESCAPE_URI: "/dir%20sp" stays so), then the request's arguments.
    func redirectAddingSlash(_ r: RequestContext, to path: String) {
        respondError(r, 301, location: URIText.escaped(path, .uri) + (r.args.flatMap { $0.isEmpty ? nil : "?" + $0 } ?? ""))
    }

    /// nginx's built-in page for an error or redirect status, or the `error_page` that answers it. 494 is
    /// nginx's internal "header too large" and 497 its "plain HTTP to an HTTPS port": 400s with pages of
    /// their own.
    public func respondError(_ r: RequestContext, _ status: Int, close: Bool = false, location: String? = nil) {
        // As nginx, these statuses end the connection whether or not an error page answers them.
        if close || ErrorPages.closesConnection(status) { r.transport.disableKeepAlive() }
        // An error_page answers these too (413, 400, 497…), as nginx's; the connection still closes after. It
        // answers redirects too (`return 302 url`, a directory's 301): the page's answer replaces their Location.
        if !r.inErrorPage, let page = r.settings.core.errorPages.first(where: { $0.codes.contains(status) }) {
            // As nginx, a redirect's Location stays on the request: the page's answer carries it.
            if let location { r.carriedHeaders.append(("Location", absolute(r, location))) }
            return errorPage(page, status: status, r)
        }
        // An error or redirect while an error page is served answers with its own status, not the page's.
        r.statusOverride = nil
        let page = ErrorPages.page(status, serverTokens: HeaderFilter.signature(r)) ?? ""
        var extra: [(String, String)] = []
        if let location {
            r.carriedHeaders.removeAll { $0.name == "Location" }
            extra.append(("Location", absolute(r, location)))
        }
        r.sink.respond(status: (494...497).contains(status) ? 400 : status, contentType: page.isEmpty ? nil : "text/html",
                       body: Array(page.utf8), extra: extra, ownType: true)
    }

    /// `error_page`: a URL answers with a redirect; a URI is an internal redirect (the method becomes GET,
    /// except HEAD) that goes through the rewrite phases again; `@name` continues in a named location. The
    /// answer keeps the error's status unless `=code` names another or a bare `=` takes the page's own.
    /// An error while serving the page is answered plainly (nginx's recursive_error_pages off).
    private func errorPage(_ page: ErrorPage, status: Int, _ r: RequestContext) {
        r.inErrorPage = true
        let target = page.uri.render(r)
        if !target.hasPrefix("/") && !target.hasPrefix("@") {
            let code = page.overrideCode.flatMap { HeadersFilter.isRedirect($0) ? $0 : nil } ?? 302
            return respondError(r, code, location: target)
        }
        r.statusOverride = page.overrideCode == 0 ? nil : (page.overrideCode ?? status)
        if r.method != "HEAD" { r.method = "GET" }
        target.hasPrefix("@") ? namedLocation(r, target) : internalRedirect(r, to: target)
    }

    /// nginx's `absolute_redirect on`: a Location that is a path gets the scheme, the request's host (or the
    /// server's name, with `server_name_in_redirect on`) and, unless it is the scheme's default or
    /// `port_in_redirect off`, the port the request came in on.
    public func absolute(_ r: RequestContext, _ location: String) -> String {
        guard location.hasPrefix("/"), r.settings.core.absoluteRedirect else { return location }
        let https = r.client.isSecure
        // As nginx: the server's name when asked, else the Host the client sent, else the address it reached.
        let host = r.settings.core.serverNameInRedirect ? r.server.name
            : (r.head.host?.isEmpty ?? true) ? r.client.localAddressForURL : r.host
        let port = r.client.listen.address.port
        let showPort = r.settings.core.portInRedirect && port != 0 && port != (https ? 443 : 80)
        return (https ? "https://" : "http://") + host + (showPort ? ":\(port)" : "") + location
    }

    /// The type of a file by its extension (`types`), else `default_type`.
    public func contentType(for r: RequestContext, path: String? = nil) -> String {
        let name = path ?? r.uri
        if let dot = name.lastIndex(of: "."), !name[dot...].contains("/"),
           let t = r.settings.core.types[String(name[name.index(after: dot)...]).lowercased()] {
            return t
        }
        return r.settings.core.defaultType
    }

    /// The log phase: the request's access log lines. Then the connection's address is its own again.
    func finished(_ r: RequestContext) {
        service.accessLogs.write(r)
        r.client.realAddress = nil
    }
}
