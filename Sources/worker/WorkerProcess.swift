#if canImport(Glibc)
import Glibc
#endif
import Config
import Core
import CShim
import Event
import HTTPProxy
import HTTPServer
import ShmTable
import TLS

/// Exit code that tells the master not to respawn: the worker cannot start at all (nginx uses 2 too).
public let fatalWorkerExitCode: Int32 = 2

/// One worker process: an event loop serving the inherited listeners through the HTTP service (and the
/// proxy handler on it), competing for the checker lock, and obeying the master's signals (TERM/INT fast
/// exit, QUIT graceful, USR1 reopen logs).
public final class WorkerProcess {
    let config: Configuration
    let listeners: [ListeningSocket]
    let segment: Segment
    let log: ErrorLog
    let masterPid: Int32
    /// The configuration's TLS contexts, built by the master before it forked this worker.
    let tls: TLSBundle
    let loop: EventLoop
    let service: HTTPService
    private var proxy: ProxyHandler!
    var election: CheckerElection!
    var connections: ConnectionSet!
    private var acceptors: [Acceptor] = []
    private var signalSource: SignalSource?

    /// How long a gracefully stopping worker waits for idle keep-alive clients' next request.
    static let idleGraceMs: UInt64 = 1000

    static let handledSignals: [Int32] = [SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP, SIGWINCH, SIGUSR2]

    public init(config: Configuration, tls: TLSBundle, accessLogs: RequestLogFiles, listeners: [ListeningSocket], segment: Segment,
                log: ErrorLog, masterPid: Int32, counters: SharedCounters, zones: SharedZones) throws {
        self.config = config
        self.tls = tls
        self.listeners = listeners
        self.segment = segment
        self.log = log
        self.masterPid = masterPid
        self.loop = try EventLoop()
        service = HTTPService(config: config, loop: loop, log: log, counters: counters, tls: tls, segment: segment, accessLogs: accessLogs,
                              zones: zones)
    }

    /// Runs in the child right after fork; never returns.
    public func run() -> Never {
        WorkerProcess.handledSignals.withUnsafeBufferPointer { vigil_signals_reset($0.baseAddress, Int32($0.count)) }
        vigil_ignore_sigpipe()
        WorkerSetup.apply(config, log: log)
        // Exit with the master: it may be SIGKILLed and never tell us. After the change of uid, which clears it.
        _ = vigil_set_pdeathsig(SIGTERM)
        // The master died before that: leave as its death signal would have made us leave.
        if getppid() != masterPid {
            log.notice("exit")
            exit(0)
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
        service.connectionClosed = { [unowned self] in self.connections.closed($0) }
        service.connectionReplaced = { [unowned self] in self.connections.replaced($0) }
        proxy = ProxyHandler(service: service)
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
            if service.isShuttingDown { return }
            service.isShuttingDown = true
            log.notice("gracefully shutting down")
            election.resign()
            closeListeners()
            connections.shutdownBegan()
            // Idle keep-alive clients may be sending their next request right now: answer it with
            // `Connection: close` rather than closing under their feet (nginx closes them at once and loses
            // those requests). Connections still idle after the grace period are closed.
            loop.schedule(after: WorkerProcess.idleGraceMs) { [unowned self] in
                self.service.idleGraceOver = true
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
            service.reopenLogs()
        default:
            break
        }
    }

    /// After QUIT: the loop ends once the last in-flight connection is done.
    func stopIfDrained() {
        if service.isShuttingDown && connections.count == 0 { loop.stop() }
    }

    var isShuttingDown: Bool { service.isShuttingDown }

    /// EPOLLEXCLUSIVE: one sleeping worker wakes per connection, no thundering herd.
    private func watch(_ a: Acceptor) throws {
        try loop.register(fd: a.socket.fd, events: Events.readable | Events.exclusive, handler: a)
    }

    /// Linux hands an EPOLLEXCLUSIVE wake-up to the epoll instance that registered the listener first,
    /// busy or not, so one worker ends up with nearly every connection (measured: 87% of the CPU on one of
    /// two workers). Registering again moves this worker to the back of the queue; nginx does the same
    /// every 16 accepts.
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
