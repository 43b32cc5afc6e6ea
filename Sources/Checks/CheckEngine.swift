#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Core
import Event
import HTTP
import ShmTable
import TLS

/// The prober that runs in the elected checker: one event loop, each peer's first probe
/// spread over its interval, never two probes of one peer at once, one timeout covering connect + send +
/// receive, a fresh connection per probe (or a kept-alive one for http checks), and the reference module's
/// rise/fall state machine.
public final class CheckEngine {
    let loop: EventLoop
    let segment: Segment
    let pid: Int32
    /// Client contexts of the upstreams checked with `type=https`.
    let tls: TLSBundle?
    let log: ErrorLog
    /// Whether info lines are wanted: failure texts are only built when someone will read them.
    let logsInfo: Bool
    /// One long-lived prober per peer: steady-state probing allocates nothing. The engine holds one reference
    /// to each, released in deinit, and calls them without retaining: at 10,000 peers the retain was the
    /// first touch of a cold prober, a cache miss plus an atomic per probe.
    /// Indexed by slot; nil for a dynamic slot with no peer (or one of an unchecked upstream).
    private var probers: [Unmanaged<PeerProber>?] = []
    /// When each prober's next scheduled probe starts.
    private(set) lazy var grid = ProbeGrid(loop: loop) { [unowned(unsafe) self] index, tick in
        self.probers[index]?._withUnsafeGuaranteedRef { $0.gridTick(tick) }
    }
    /// `server … resolve` names, resolved on this loop (nil when no upstream has one).
    private var resolver: PeerResolver?
    /// The stores of upstreams' servers (etcd, state files), followed on this loop (nil when no upstream has one).
    private var stores: StoreFollower?
    /// Sources of run-time peers (names, etcd) still waiting for their first answer.
    var pendingFirstAnswers = 0
    private let resolving: [Upstream]
    private var running = false
    /// Scratch space for reading replies, shared by every probe (the loop runs one handler at a time).
    var readBuffer = [UInt8](repeating: 0, count: 4096)
    /// Scratch header fields for judging whether a kept-alive check connection can be reused, shared the same way.
    var replyFields: [HeaderField] = []
    /// A socket left unconnected by a refused probe, for the next probe of its address family (refusals are
    /// judged within the probe's start, so one is enough).
    private var spareSocket: (fd: Int32, family: Int32)?
    /// Sockets probes had to open because there was no spare: tests read it to see the reuse.
    private(set) var socketsOpened = 0
    /// Created with the engine, so that a stop requested before the thread runs is not lost.
    private let stopFd: Int32 = vigil_eventfd(0)

    /// `resolving`: the upstreams with `server … resolve`, whose peers this engine finds and adds.
    public init(segment: Segment, peers: [CheckedPeer], pid: Int32, tls: TLSBundle? = nil, log: ErrorLog,
                resolving: [Upstream] = []) throws {
        self.resolving = resolving
        self.tls = tls
        self.logsInfo = log.enabled(.info)
        self.loop = try EventLoop()
        // Probes due within a few milliseconds of each other start on one wake-up: against 10,000 peers
        // that is 100 wake-ups a second instead of 1,000, and no probe starts more than 10 ms late.
        loop.timerSlackMs = 10
        self.segment = segment
        self.pid = pid
        self.log = log
        let peers = peers.prefix(segment.peerCount)
        self.probers = peers.enumerated().map { .passRetained(PeerProber(engine: self, index: $0.offset, peer: $0.element)) }
    }

    /// Peers that joined at run time (their slots filled), scheduled as at start: those new to the table at
    /// once, spread as `spreadFirstRounds` says, the others from a random point of their first second. Before
    /// run() the scheduling pass starts them with the rest.
    func addProbers(_ added: [(slot: Int, peer: CheckedPeer)]) {
        var newcomers: [PeerProber] = []
        for (slot, peer) in added {
            if slot >= probers.count { probers += Array(repeating: nil, count: slot + 1 - probers.count) }
            removeProber(slot: slot)
            let p = PeerProber(engine: self, index: slot, peer: peer)
            probers[slot] = .passRetained(p)
            guard running else { continue }
            if p.state.firstRound { newcomers.append(p) } else { p.scheduleFirst(after: randomFirstDelay(p)) }
        }
        spreadFirstRounds(newcomers)
    }

    /// New peers' first probes: 1 ms apart up to 1,000 of them, spread over one second past that.
    private func spreadFirstRounds(_ newcomers: [PeerProber]) {
        for (nth, p) in newcomers.enumerated() { p.scheduleFirst(after: UInt64(nth) * 1000 / UInt64(max(newcomers.count, 1000))) }
    }

    /// A peer that left: its probe stops and its connection closes.
    func removeProber(slot: Int) {
        guard slot < probers.count, let p = probers[slot] else { return }
        p.takeUnretainedValue().abandon()
        p.release()
        probers[slot] = nil
    }

    private lazy var seed = UInt64(pid) &* 0x9E37_79B9_7F4A_7C15 ^ vigil_monotonic_us()

    /// A random point of min(interval, 1 s): where a peer with a state to go on from starts.
    private func randomFirstDelay(_ p: PeerProber) -> UInt64 {
        seed = seed &* 6364136223846793005 &+ 1442695040888963407
        return (seed >> 33) % UInt64(max(1, min(p.peer.check.interval, 1000)))
    }

    /// Runs until `stop()` is called from any thread (or the lock is lost).
    public func run() {
        register(stopFd) { [unowned self] in self.loop.stop() }
        // Peers already in the dynamic slots get their probers with the configured ones.
        if resolving.contains(where: \.resolves) { resolver = PeerResolver(engine: self, upstreams: resolving) }
        if resolving.contains(where: \.hasStore) { stores = StoreFollower(engine: self, upstreams: resolving) }
        // Peers new to the table are probed at once (spreadFirstRounds); peers with a state to go on from
        // (carried over a reload, restored, or a previous checker's) start at a random point of min(interval, 1 s),
        // as the reference module's do.
        var newcomers: [PeerProber] = []
        for p in probers.lazy.compactMap({ $0?.takeUnretainedValue() }) {
            if p.state.firstRound { newcomers.append(p) } else { p.scheduleFirst(after: randomFirstDelay(p)) }
        }
        spreadFirstRounds(newcomers)
        running = true
        resolver?.start()
        stores?.start()
        heartbeat()
        // The segment's doorbell: some worker asked for a re-check. Drained before the scan, so a request made
        // during the scan rings again; requests rung before this checker ran (an election in between) keep it
        // readable.
        register(segment.doorbell) { [unowned self] in
            vigil_eventfd_drain(self.segment.doorbell)
            self.takeRechecks()
            self.stores?.refresh()
        }
        loop.run()
        // A checker that stops (lock lost, worker exiting) leaves no connection behind.
        resolver?.stop()
        resolver = nil
        stores?.stop()
        stores = nil
        for p in probers { p?.takeUnretainedValue().abandon() }
        if let spare = spareSocket.take() { Glibc.close(spare.fd) }
    }

    /// A socket for a probe: the spare a refused probe left, or a new one.
    func probeSocket(family: Int32) -> Int32 {
        if let spare = spareSocket, spare.family == family {
            spareSocket = nil
            return spare.fd
        }
        socketsOpened += 1
        return socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    func keepSpareSocket(_ fd: Int32, family: Int32) {
        if spareSocket == nil { spareSocket = (fd, family) } else { Glibc.close(fd) }
    }

    deinit {
        for p in probers { p?.release() }
        Glibc.close(stopFd)
    }

    /// Thread-safe: wakes the loop, which then stops (at once if it has not started yet: the count stays set).
    public func stop() { vigil_eventfd_signal(stopFd) }

    /// What the loop runs when the stop eventfd or the segment's doorbell becomes readable (the loop keeps it).
    private final class OnReadable: EventHandler {
        let action: () -> Void
        init(_ action: @escaping () -> Void) { self.action = action }
        func handleEvent(_ events: UInt32) { action() }
    }

    private func register(_ fd: Int32, _ action: @escaping () -> Void) {
        try? loop.register(fd: fd, events: Events.readable, handler: OnReadable(action))
    }

    private func takeRechecks() {
        // A scan of 10,000 slots is 10,000 loads, about 10 µs; only the probers asked for are touched.
        let seg = segment
        for i in probers.indices where probers[i] != nil && seg.slot(i).takeRecheck() { probers[i]?._withUnsafeGuaranteedRef { $0.recheckNow() } }
    }

    private func heartbeat() {
        let lock = segment.checker
        guard lock.holder == pid else {
            log.warn("checker lock for generation \(segment.generation) was taken over, worker \(pid) stops checking")
            loop.stop()
            return
        }
        lock.heartbeat(pid: pid, nowMs: vigil_monotonic_ms())
        loop.schedule(after: 250) { [unowned self] in self.heartbeat() }
    }

    /// Applies one result to the state `p` keeps and publishes it in the peer's slot.
    /// `p` is the peer's prober: its thresholds are read from it, and its names only for a log line (passing
    /// the CheckedPeer itself copied a struct of strings and arrays on every probe, a dozen retains).
    func record(_ p: PeerProber, nowMs now: UInt64, success: Bool, rttUs: UInt64, reason: FailureReason, status: Int = 0,
                message: () -> String?) {
        var s = p.state
        // A new peer's first round goes on while each result leads toward a flip (a pass when it starts down, a
        // failure when default_down=false starts it up), and ends at the flip or at the first result that does not.
        if s.firstRound && success != s.down { s.firstRound = false }
        s.checked = true
        s.checks &+= 1
        s.lastCheckMs = now
        s.rttUs = UInt32(min(rttUs, UInt64(UInt32.max)))
        s.lastStatus = UInt16(clamping: status)
        if success {
            s.rise &+= 1
            s.fall = 0
            if s.down && Int(s.rise) >= p.riseThreshold {
                s.down = false
                s.firstRound = false
                s.lastChangeMs = now
                s.stateChanges &+= 1
                log.error("enable check peer: \(p.peer.checkAddress) in upstream \"\(p.peer.upstream)\"")
            }
        } else {
            s.failures &+= 1
            s.reason = reason
            s.fall &+= 1
            s.rise = 0
            let flips = !s.down && Int(s.fall) >= p.fallThreshold
            if logsInfo || flips {
                let text = message() ?? reason.text
                if logsInfo { log.info(text) }
                if flips { log.error("disable check peer: \(p.peer.checkAddress) in upstream \"\(p.peer.upstream)\": \(text)") }
            }
            if flips {
                s.down = true
                s.firstRound = false
                s.lastChangeMs = now
                s.stateChanges &+= 1
            }
        }
        p.state = s
        segment.slot(p.index).write(s)   // the checker is the slot's only writer
    }
}

