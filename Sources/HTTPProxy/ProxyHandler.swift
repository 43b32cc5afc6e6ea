#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import DNS
import Event
import HTTP
import HTTPServer
import Script
import ShmTable
import TLS
import Upstream

/// nginx's proxy module, and its fastcgi, scgi and uwsgi modules, as the pipeline's content handler for
/// `proxy_pass`, `fastcgi_pass`, `scgi_pass` and `uwsgi_pass` locations, one per worker: the upstream blocks'
/// balancers and keepalive pools, each location's route (balancer, header templates, TLS, its module's
/// settings), the `resolver`s of passes with variables, and the scratch space its sessions share.
public final class ProxyHandler: RequestHandler {
    let loop: EventLoop
    let log: ErrorLog
    /// Upstream blocks by lowercased name, and literal addresses by "\0host:port".
    private var balancers: [String: UpstreamBalancer] = [:]
    /// One DNS client per distinct `resolver` directive, made when a request first needs it.
    private var resolvers: [String: DNSClient] = [:]
    /// Closed upstream connection objects (each with its timer), for the next connect of any upstream.
    let upstreamConnections = Pool<UpstreamConnection>(keep: 256)
    /// Where each upstream response head's header lines lie, refilled by every parse: one array for all.
    var responseFields: [HeaderField] = []
    /// An SCGI request's params, written before their netstring's length is known.
    let paramScratch = OutputQueue()
    /// This worker's share of the caches' upkeep.
    private var cacheManagers: [CacheManager] = []

    /// Builds every upstream's balancer and every `proxy_pass` location's route, and attaches itself to the
    /// service as the handler of those locations.
    public init(service: HTTPService) {
        loop = service.loop
        log = service.log
        let config = service.config
        var slots: [String: Int] = [:]
        for (i, p) in config.checkedPeers.enumerated() { slots[UpstreamBalancer.slotKey(upstream: p.upstream, address: p.address)] = i }
        for u in config.http?.upstreams ?? [] {
            let b = UpstreamBalancer(upstream: u, segment: service.segment, checkedIndex: slots)
            b.log = service.log
            if let n = u.keepalive {
                b.pool = KeepalivePool(capacity: n, timeoutMs: u.keepaliveTimeout, maxRequests: u.keepaliveRequests,
                                       maxAgeMs: u.keepaliveTime, loop: loop, spare: upstreamConnections)
            }
            balancers[u.name.lowercased()] = b
        }
        let cacheStores = zip(service.cacheZones, config.cacheZones).map { CacheStore(zone: $0, spec: $1) }
        func route(_ locations: [Location]) {
            for loc in locations {
                if case .proxy(let pass) = loc.content {
                    let balancer: UpstreamBalancer?
                    switch pass.target {
                    case .upstream(let name):
                        balancer = balancers[name.lowercased()]!
                    case .address(let addrs, let text):
                        balancer = balancers["\u{0}" + text] ?? UpstreamBalancer(literal: text, addresses: addrs)
                        balancers["\u{0}" + text] = balancer
                    case .variable, .variableURL:
                        balancer = nil
                    }
                    let tls = service.tls.context(for: loc).map {
                        UpstreamTLS(context: $0, settings: pass.upstreamProtocol == .uwsgi ? loc.settings.uwsgiSSL : loc.settings.proxySSL,
                                    pass: pass, variables: config.http?.variables)
                    }
                    let proto = pass.upstreamProtocol
                    let gateway: GatewaySettings?
                    switch proto {
                    case .http: gateway = nil
                    case .fastcgi: gateway = loc.settings.fastcgi
                    case .scgi: gateway = loc.settings.scgi
                    case .uwsgi: gateway = loc.settings.uwsgi
                    }
                    let conf = gateway?.upstream ?? loc.settings.proxy
                    let cache = ProxyCache(conf, stores: cacheStores)
                    let setHeaders = loc.settings.proxy.setHeaders
                    service.attach(ProxyRoute(balancer: balancer, headers: ProxyHeaders(setHeaders),
                                              cachingHeaders: cache.map { _ in ProxyHeaders(setHeaders, caching: true) },
                                              tls: tls, retry: RetryPolicy(conf), conf: conf,
                                              gateway: gateway.map { GatewayRoute($0, encoding: ParamEncoding(proto)!, caching: cache != nil) },
                                              cache: cache), to: loc)
                }
                route(loc.configured)
            }
        }
        for server in config.http?.servers ?? [] { route(server.locations) }
        cacheManagers = cacheStores.map { CacheManager(store: $0, loop: loop) }
        service.proxyHandler = self
    }

    /// A body not read yet streams to the upstream with `proxy_request_buffering off`.
    public func streamsBody(_ r: RequestContext) -> Bool {
        guard case .proxy(let pass) = r.content else { return false }
        switch pass.upstreamProtocol {
        case .http: return !r.settings.proxy.requestBuffering && r.settings.proxy.setBody == nil
        case .fastcgi: return !r.settings.fastcgi.upstream.requestBuffering
        case .scgi: return !r.settings.scgi.upstream.requestBuffering
        case .uwsgi: return !r.settings.uwsgi.upstream.requestBuffering
        }
    }

    public func handle(_ r: RequestContext) {
        // Switched on in place: a copy of the enum would retain everything a ProxyPass holds.
        guard case .proxy(let pass) = r.content, let route = r.handlerState.map({ unsafeDowncast($0, to: ProxyRoute.self) }) else {
            return r.service.pipeline.respondError(r, 500)
        }
        switch pass.target {
        case .variable(let t):
            return proxy(r, pass, route, scheme: pass.scheme, to: Substring(t.render(r)))
        case .variableURL(let t):
            let url = t.render(r)
            guard let (scheme, rest) = ProxyPass.splitScheme(url) else {
                r.log.error("invalid URL prefix in \"\(url)\"\(r.logContext)")
                return r.service.pipeline.respondError(r, 500)
            }
            return proxy(r, pass, route, scheme: scheme, to: rest)
        case .upstream, .address:
            guard let balancer = route.balancer else { return r.service.pipeline.respondError(r, 500) }
            start(r, pass, route, balancer, scheme: pass.scheme, uri: nil)
        }
    }

    /// A body not read yet streams to the upstream, unless it is chunked and the upstream speaks HTTP/1.0, which
    /// cannot carry it, or it has all arrived already and fits nginx's first body buffer (a quarter more than
    /// client_body_buffer_size; then `$request_body` has it, as in nginx): then it is read whole first;
    /// otherwise it is read whole before the request starts.
    private func start(_ r: RequestContext, _ pass: ProxyPass, _ route: ProxyRoute, _ balancer: UpstreamBalancer, scheme: String, uri: String?) {
        let pending = r.body.pending
        let firstBuffer = r.settings.core.clientBodyBufferSize + r.settings.core.clientBodyBufferSize / 4
        // A body that does not go upstream (proxy_set_body) or cannot stream is read whole first.
        // FastCGI frames any body in its STDIN records; SCGI and uwsgi give its length first: a chunked one is
        // read whole.
        let framed: Bool
        switch pass.upstreamProtocol {
        case .http: framed = r.settings.proxy.setBody == nil && !(r.head.chunked && r.settings.proxy.httpVersion == .http10)
        case .fastcgi: framed = true
        case .scgi, .uwsgi: framed = !r.head.chunked
        }
        let streams = pending && framed
            && !r.transport.bodyArrivedWhole(within: firstBuffer)
        let session = ProxySession(request: r, pass: pass, scheme: scheme, route: route, balancer: balancer, proxy: self, uri: uri,
                                   streamsBody: streams)
        r.handler = session
        guard pending else { return session.start() }
        if streams {
            // What came with the head goes out with the request's head, as nginx sends it. Answered at once (no
            // live upstream), the rest of the body stays unread and the connection closes after.
            r.streamBody(to: session)
            session.start()
        } else {
            r.readBody { session.start() }
        }
    }

    /// `proxy_pass` with variables (`target` is what they gave after the scheme): the host names an upstream
    /// block or is an address; any other name is resolved with the location's `resolver` while the request waits.
    private func proxy(_ r: RequestContext, _ pass: ProxyPass, _ route: ProxyRoute, scheme: String, to target: Substring) {
        if let (socket, uri) = ProxyPass.splitUnix(target) {
            guard let socket else {
                log.error("no path in the unix domain socket \"\(target)\"\(r.logContext)")
                return r.service.pipeline.respondError(r, 500)
            }
            // As nginx, the Host of a unix socket's request is "localhost".
            r.proxyHost = "localhost"
            let balancer = balancers["\u{0}" + socket] ?? UpstreamBalancer(literal: socket, addresses: [PeerAddress(host: socket, port: 0, isIPv6: false)])
            return start(r, pass, route, balancer, scheme: scheme, uri: uri)
        }
        let slash = target.firstIndex(of: "/")
        let hostPort = String(slash.map { target[..<$0] } ?? target)
        let uri = slash.map { String(target[$0...]) }
        r.proxyHost = hostPort
        let defaultPort: UInt16 = scheme == "https" ? 443 : 80
        if let balancer = balancer(forHost: hostPort, defaultPort: defaultPort) {
            return start(r, pass, route, balancer, scheme: scheme, uri: uri)
        }
        guard let (host, port) = Resolver.hostAndPort(hostPort, defaultPort: defaultPort) else {
            r.log.error("invalid URL prefix in \"\(scheme)://\(target)\"\(r.logContext)")
            return r.service.pipeline.respondError(r, 500)
        }
        guard let resolver = r.settings.core.resolver.map({ dns($0) }) else {
            r.log.error("no resolver defined to resolve \(host)\(r.logContext)")
            return r.service.pipeline.respondError(r, 502)
        }
        resolver.resolve(host, timeoutMs: r.settings.core.resolverTimeout) { [weak self, weak r] result in
            // The client may have gone while the name was resolved.
            guard let self, let r, r.transport.isServing(r) else { return }
            switch result {
            case .success(let addresses):
                let peers = addresses.map { PeerAddress(host: $0.host, port: port, isIPv6: $0.isIPv6) }
                self.start(r, pass, route, UpstreamBalancer(literal: hostPort, addresses: peers), scheme: scheme, uri: uri)
            case .failure(let error):
                r.log.error("\(host) could not be resolved (\(error))\(r.logContext)")
                r.service.pipeline.respondError(r, 502)
            }
        }
    }

    /// `proxy_pass http://$var…`: the balancer for the host a request's variables named — an upstream block,
    /// a configured literal address, or a numeric address with a port, made for this request only (a client
    /// that picks the address must not be able to grow a cache). nil when a resolver would be needed.
    private func balancer(forHost hostPort: String, defaultPort: UInt16) -> UpstreamBalancer? {
        if let b = balancers[hostPort.lowercased()] ?? balancers["\u{0}" + hostPort] { return b }
        guard let hp = Resolver.hostAndPort(hostPort, defaultPort: defaultPort), Resolver.isNumericAddress(hp.host),
              let addrs = Resolver.resolve(host: hp.host, port: hp.port) else { return nil }
        return UpstreamBalancer(literal: hostPort, addresses: addrs)
    }

    private func dns(_ setting: ResolverSetting) -> DNSClient {
        if let c = resolvers[setting.text] { return c }
        let c = DNSClient(loop: loop, setting: setting, log: log)
        resolvers[setting.text] = c
        return c
    }
}

/// What a `proxy_pass` location needs per request, prepared once per worker.
/// A class: each request reads it, and copying a struct of references retained each of them.
final class ProxyRoute: LocationState {
    /// nil for `proxy_pass` with variables: the balancer is chosen per request.
    let balancer: UpstreamBalancer?
    let headers: ProxyHeaders
    /// With the location's cache on, for a request whose response may be stored (ProxyHeaders' `caching`).
    let cachingHeaders: ProxyHeaders?
    let tls: UpstreamTLS?
    let retry: RetryPolicy
    /// The location's settings of the upstream family of its protocol's module (proxy_*, fastcgi_*, …): the
    /// request's own, as the route and the settings belong to one scope.
    let conf: ProxySettings
    /// For `fastcgi_pass`, `scgi_pass`, `uwsgi_pass`.
    let gateway: GatewayRoute?
    /// `proxy_cache` (`fastcgi_cache`, …) on.
    let cache: ProxyCache?

    init(balancer: UpstreamBalancer?, headers: ProxyHeaders, cachingHeaders: ProxyHeaders?, tls: UpstreamTLS?, retry: RetryPolicy, conf: ProxySettings,
         gateway: GatewayRoute?, cache: ProxyCache?) {
        self.conf = conf
        self.cache = cache
        self.gateway = gateway
        self.balancer = balancer
        self.headers = headers
        self.cachingHeaders = cachingHeaders
        self.tls = tls
        self.retry = retry
    }
}

/// A `proxy_pass https://` location's TLS: its context, the name it verifies and may send in SNI, and the
/// last session of each peer (nginx keeps one per peer for proxy_ssl_session_reuse).
final class UpstreamTLS {
    let context: TLSClientContext
    /// proxy_ssl_name, else the host of proxy_pass ($proxy_host).
    let name: Template
    let sendsServerName: Bool
    /// proxy_ssl_certificate and its key when they have variables (nginx 1.21): rendered for each request.
    let certificate: (certificate: CertificateSetting, key: CertificateSetting)?
    private var sessions: [PeerAddress: TLSSessionSlot] = [:]

    init(context: TLSClientContext, settings: ProxySSLSettings, pass: ProxyPass, variables: VariableTable?) {
        self.context = context
        if context.certificateCache != nil, let cert = settings.certificate, let key = settings.certificateKey {
            certificate = (cert, key)
        } else {
            certificate = nil
        }
        name = settings.name ?? {
            let t = Template(pass.urlHost)
            t.resolve(variables ?? VariableTable())
            return t
        }()
        sendsServerName = settings.serverName
    }

    /// The client certificate `r` names; nil when none is configured or the certificate's value is empty (no
    /// certificate is sent, as nginx's).
    func certificate(for r: RequestContext) -> Result<CertificatePair, CertificateFailure>? {
        guard let (cert, key) = certificate, let cache = context.certificateCache else { return nil }
        let name = cert.template?.render(r) ?? cert.path
        return name.isEmpty ? nil : cache.pair(certificate: name, key: key.template?.render(r) ?? key.path)
    }

    func sessionSlot(for peer: Peer) -> TLSSessionSlot? {
        guard context.sessionReuse else { return nil }
        if let s = sessions[peer.address] { return s }
        // Peers named by variables come and go: the table stays bounded.
        if sessions.count >= 1024 { sessions.removeAll() }
        let s = TLSSessionSlot()
        sessions[peer.address] = s
        return s
    }

    /// SNI carries a host name only (RFC 6066): no port, no address literal.
    static func sniName(_ name: String) -> String? {
        var host = Substring(name)
        if host.hasPrefix("[") { return nil }
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        var v4 = in_addr()
        return host.isEmpty || inet_pton(AF_INET, String(host), &v4) == 1 ? nil : String(host)
    }
}
