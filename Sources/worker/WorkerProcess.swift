#if canImport(Glibc)
import Glibc
#endif
import CShim
import Core
import Config
import DNS
import Event
import Upstream
import Gzip
import HTTP
import ShmTable
import TLS

/// Exit code that tells the master not to respawn: the worker cannot start at all (nginx uses 2 too).
public let fatalWorkerExitCode: Int32 = 2

/// One worker: an event loop serving the inherited listeners, competing for the checker lock,
/// and obeying the master's signals (TERM/INT fast exit, QUIT graceful, USR1 reopen logs).
public final class WorkerProcess {
    let config: Configuration
    let listeners: [ListeningSocket]
    let segment: Segment
    let log: ErrorLog
    let masterPid: Int32
    let counters: SharedCounters
    /// The configuration's TLS contexts, built by the master before it forked this worker.
    let tls: TLSBundle
    let loop: EventLoop
    private(set) var router: Router!
    private(set) var accessLogs: AccessLogFiles!
    /// Per `proxy_pass` location, resolved once at start: its balancer and its upstream request headers.
    private var scopes: [ObjectIdentifier: SettingsScope] = [:]
    /// For a connection whose address has no server block (nginx then uses the http block's settings).
    private(set) lazy var httpScope = SettingsScope(config.http?.settings ?? HTTPSettings())
    let hostname: String = {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        return String(cString: buf)
    }()
    var election: CheckerElection!
    var connections: ConnectionSet!
    private var acceptors: [Acceptor] = []
    private var signalSource: SignalSource?
    private var shuttingDown = false

    /// How long a gracefully stopping worker waits for idle keep-alive clients' next request.
    static let idleGraceMs: UInt64 = 1000

    static let handledSignals: [Int32] = [SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP, SIGWINCH, SIGUSR2]

    public init(config: Configuration, tls: TLSBundle, listeners: [ListeningSocket], segment: Segment, log: ErrorLog, masterPid: Int32,
                counters: SharedCounters) throws {
        self.config = config
        self.tls = tls
        self.counters = counters
        self.listeners = listeners
        self.segment = segment
        self.log = log
        self.masterPid = masterPid
        self.loop = try EventLoop()
    }

    /// Runs in the child right after fork; never returns.
    public func run() -> Never {
        WorkerProcess.handledSignals.withUnsafeBufferPointer { vigil_signals_reset($0.baseAddress, Int32($0.count)) }
        vigil_ignore_sigpipe()
        // Exit with the master: it may be SIGKILLed and never tell us.
        _ = vigil_set_pdeathsig(SIGTERM)
        if getppid() != masterPid { exit(0) }
        if let n = config.workerRlimitNofile {
            var rl = rlimit(rlim_cur: rlim_t(n), rlim_max: rlim_t(n))
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) != 0 {
                log.alert("setrlimit(RLIMIT_NOFILE, \(n)) failed (\(Errno.text(errno)))")
            }
        }
        do {
            try start()
        } catch {
            log.emerg("\(error)")
            exit(fatalWorkerExitCode)
        }
        loop.run()
        finish()
        exit(0)
    }

    private func start() throws {
        connections = ConnectionSet(worker: self)
        router = Router(config: config)
        accessLogs = AccessLogFiles(config: config, log: log)
        var slots: [String: Int] = [:]
        for (i, p) in config.checkedPeers.enumerated() { slots[UpstreamBalancer.slotKey(upstream: p.upstream, address: p.address)] = i }
        for u in config.http?.upstreams ?? [] {
            let b = UpstreamBalancer(upstream: u, segment: segment, checkedIndex: slots)
            b.log = log
            if let n = u.keepalive {
                b.pool = KeepalivePool(capacity: n, timeoutMs: u.keepaliveTimeout, maxRequests: u.keepaliveRequests,
                                       maxAgeMs: u.keepaliveTime, loop: loop, spare: upstreamConnections)
            }
            balancers[u.name.lowercased()] = b
        }
        func route(_ locations: [Location]) {
            for loc in locations {
                var proxyRoute: ProxyRoute?
                if case .proxy(let pass) = loc.content {
                    let balancer: UpstreamBalancer?
                    switch pass.target {
                    case .upstream(let name):
                        balancer = balancers[name.lowercased()]!
                    case .address(let addrs, let text):
                        balancer = balancers["\u{0}" + text] ?? UpstreamBalancer(literal: text, addresses: addrs)
                        balancers["\u{0}" + text] = balancer
                    case .variable:
                        balancer = nil
                    }
                    proxyRoute = ProxyRoute(balancer: balancer, headers: ProxyHeaders(loc.settings.proxy.setHeaders),
                                            tls: tls.context(for: loc).map { UpstreamTLS(context: $0, settings: loc.settings, pass: pass, variables: config.http?.variables) })
                }
                scopes[ObjectIdentifier(loc)] = SettingsScope(loc.settings, proxyRoute: proxyRoute)
                route(loc.configured)
            }
        }
        for server in config.http?.servers ?? [] {
            scopes[ObjectIdentifier(server)] = SettingsScope(server.settings)
            route(server.locations)
        }
        signalSource = try SignalSource(loop: loop, signals: WorkerProcess.handledSignals) { [unowned self] sig in
            self.handleSignal(sig)
        }
        for l in listeners {
            let a = Acceptor(socket: l, worker: self)
            try watch(a)
            acceptors.append(a)
        }
        election = CheckerElection(worker: self)
        election.start()
    }

    private func handleSignal(_ sig: Int32) {
        switch sig {
        case SIGTERM, SIGINT:
            log.notice("exiting")
            closeListeners()
            loop.stop()
        case SIGQUIT:
            if shuttingDown { return }
            shuttingDown = true
            log.notice("gracefully shutting down")
            election.resign()
            closeListeners()
            // Idle keep-alive clients may be sending their next request right now: answer it with
            // `Connection: close` rather than closing under their feet (nginx closes them at once and loses
            // those requests). Connections still idle after the grace period are closed.
            loop.schedule(after: WorkerProcess.idleGraceMs) { [unowned self] in
                self.idleGraceOver = true
                self.connections.closeIdle()
                self.stopIfDrained()
            }
            if let t = config.workerShutdownTimeout {
                loop.schedule(after: UInt64(t)) { [unowned self] in
                    self.connections.closeAll()
                    self.loop.stop()
                }
            }
            stopIfDrained()
        case SIGUSR1:
            log.reopen()
            accessLogs.reopen()
        default:
            break
        }
    }

    /// After QUIT: the loop ends once the last in-flight connection is done.
    func stopIfDrained() {
        if shuttingDown && connections.count == 0 { loop.stop() }
    }

    var isShuttingDown: Bool { shuttingDown }
    /// After QUIT's grace period, a connection that falls idle is closed at once.
    private(set) var idleGraceOver = false

    /// Upstream blocks by lowercased name, and literal addresses by "\0host:port".
    private var balancers: [String: UpstreamBalancer] = [:]

    /// `proxy_pass http://$var…`: the balancer for the host a request's variables named — an upstream block,
    /// a configured literal address, or a numeric address with a port, made for this request only (a client
    /// that picks the address must not be able to grow a cache). nil when a resolver would be needed.
    func balancer(forHost hostPort: String, defaultPort: UInt16) -> UpstreamBalancer? {
        if let b = balancers[hostPort.lowercased()] ?? balancers["\u{0}" + hostPort] { return b }
        guard let hp = Resolver.hostAndPort(hostPort, defaultPort: defaultPort), Resolver.isNumericAddress(hp.host),
              let addrs = Resolver.resolve(host: hp.host, port: hp.port) else { return nil }
        return UpstreamBalancer(literal: hostPort, addresses: addrs)
    }

    /// One DNS client per distinct `resolver` directive, made when a request first needs it.
    private var resolvers: [String: DNSClient] = [:]
    func dns(_ setting: ResolverSetting) -> DNSClient {
        if let c = resolvers[setting.text] { return c }
        let servers = setting.servers.compactMap { a in
            SocketAddress(host: a.host, port: a.port, isIPv6: a.isIPv6).map { ($0, a.description) }
        }
        let c = DNSClient(loop: loop, servers: servers, validMs: setting.validMs, ipv4: setting.ipv4, ipv6: setting.ipv6, log: log)
        resolvers[setting.text] = c
        return c
    }

    /// Names of temporary body files: a sequence from a start no other worker shares.
    var tempFileSerial = UInt64(getpid()) &* 100_000

    /// Deflate streams of finished gzip responses, reset for the next.
    let gzipStreams = GzipPool()

    /// At most 64 idle 16 kB buffers (1 MiB) are kept.
    /// Connection and upstream byte buffers kept for the next request.
    let buffers = BufferPools()
    /// Closed upstream connection objects (each with its timer), for the next connect.
    let upstreamConnections = Pool<UpstreamConnection>(keep: 256)
    /// The header blocks and field lists of finished requests, for the parser to fill again. They come back
    /// while their request still holds them, so they are emptied when taken (then their only reference).
    var headBlocks = ArrayPool<UInt8>(keep: 32, maxCapacity: 4096)
    var fieldLists = ArrayPool<HeaderField>(keep: 32, maxCapacity: 64)
    /// Where each upstream response head's header lines lie, refilled by every parse: one array for all.
    var responseFields: [HeaderField] = []

    /// The balancer and headers of a `proxy_pass` location (every one was resolved at start).
    /// The settings a request in `location` (or, without one, in `server`) runs with.
    func scope(server: Server, location: Location?) -> SettingsScope {
        scopes[ObjectIdentifier(location ?? server)] ?? httpScope
    }

    /// EPOLLEXCLUSIVE: one sleeping worker wakes per connection, no thundering herd.
    private func watch(_ a: Acceptor) throws {
        try loop.register(fd: a.socket.fd, events: Events.readable | Events.exclusive, handler: a)
    }

    /// Linux hands an EPOLLEXCLUSIVE wake-up to the epoll instance that registered the listener first,
    /// busy or not, so one worker ends up with nearly every connection (measured: 87% of the CPU on one of
    /// two workers). Registering again moves this worker to the back of the queue; nginx does the same
    /// every 16 accepts (ngx_reorder_accept_events).
    func requeue(_ a: Acceptor) {
        guard !acceptPaused else { return }
        loop.unregister(fd: a.socket.fd)
        do { try watch(a) } catch { log.alert("\(error)") }
    }

    /// How long accepting stops when descriptors run out (nginx's accept_mutex_delay default).
    static let acceptPauseMs: UInt64 = 500
    private var acceptPaused = false

    /// Takes the listeners out of the loop and puts them back after `acceptPauseMs` (nginx disables accept
    /// events on EMFILE the same way). EPOLLEXCLUSIVE registrations cannot be modified, only removed and re-added.
    func pauseAccepting() {
        guard !acceptPaused else { return }
        acceptPaused = true
        for a in acceptors { loop.unregister(fd: a.socket.fd) }
        loop.schedule(after: WorkerProcess.acceptPauseMs) { [unowned self] in
            self.acceptPaused = false
            // After a stop signal closeListeners() has emptied the list: nothing to resume.
            for a in self.acceptors {
                do { try self.watch(a) } catch { self.log.alert("\(error)") }
            }
        }
    }

    private func closeListeners() {
        for a in acceptors {
            loop.unregister(fd: a.socket.fd)
            close(a.socket.fd)
        }
        acceptors.removeAll()
    }

    private func finish() {
        election.resign()
        log.notice("exit")
    }
}

/// Delivers blocked signals through a signalfd so that they are handled in the loop, never in a handler.
final class SignalSource: EventHandler {
    let fd: Int32
    let onSignal: (Int32) -> Void

    init(loop: EventLoop, signals: [Int32], onSignal: @escaping (Int32) -> Void) throws {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        sigprocmask(SIG_BLOCK, &set, nil)
        fd = signals.withUnsafeBufferPointer { vigil_signalfd($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else { throw SystemError("signalfd()") }
        self.onSignal = onSignal
        try loop.register(fd: fd, events: Events.readable, handler: self)
    }

    func handleEvent(_ events: UInt32) {
        while true {
            let sig = vigil_signalfd_read(fd, nil)
            if sig <= 0 { return }
            onSignal(sig)
        }
    }
}

/// Accepts connections on one listening socket: one per readiness event, as nginx with its default
/// `multi_accept off`. The listener stays readable while more wait, and EPOLLEXCLUSIVE then wakes a worker
/// that is idle in epoll_wait, so a burst of connections spreads over the workers instead of piling onto
/// whichever woke first. `multi_accept on` takes all that are pending.
final class Acceptor: EventHandler {
    let socket: ListeningSocket
    unowned let worker: WorkerProcess
    private let acceptAll: Bool
    private var accepted = 0

    init(socket: ListeningSocket, worker: WorkerProcess) {
        self.socket = socket
        self.worker = worker
        self.acceptAll = worker.config.multiAccept
    }

    func handleEvent(_ events: UInt32) {
        repeat {
            var addr = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { vigil_accept4(socket.fd, $0, &len) }
            }
            if fd < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED: return
                case EMFILE, ENFILE:
                    // Out of descriptors (nginx's level): the listener stays readable, so stop accepting for a while
                    // instead of spinning on it, logging every turn.
                    worker.log.log(.crit, "accept4() failed (\(Errno.text(errno)))")
                    worker.pauseAccepting()
                    return
                default:
                    worker.log.error("accept4() failed (\(Errno.text(errno)))")
                    return
                }
            }
            worker.connections.accept(fd: fd, peer: addr, listening: socket)
            accepted &+= 1
            if accepted % 16 == 0 { worker.requeue(self) }
        } while acceptAll
    }
}
