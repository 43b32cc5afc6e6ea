#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Core
import HTTPServer
import ShmTable
import TLS
import Worker

/// One configuration generation: its config, shm segment, listening sockets and access log files.
final class Generation {
    let number: UInt64
    let config: Configuration
    let tls: TLSBundle
    let segment: Segment
    let sockets: [ListeningSocket]
    let accessLogs: RequestLogFiles
    /// limit_req, limit_conn and cache keys zones: those a reload keeps are the previous generation's own mappings.
    let zones: SharedZones
    init(number: UInt64, config: Configuration, tls: TLSBundle, segment: Segment, sockets: [ListeningSocket], accessLogs: RequestLogFiles,
         zones: SharedZones) {
        self.zones = zones
        self.number = number
        self.config = config
        self.tls = tls
        self.segment = segment
        self.sockets = sockets
        self.accessLogs = accessLogs
    }

    static func mapZones(_ config: Configuration, previous: SharedZones = SharedZones()) throws -> SharedZones {
        SharedZones(limits: try LimitZone.mapping(config.limitZones.map { ($0.name, $0.size, $0.kind == .requests ? .requests : .connections, $0.keyText) },
                                                  previous: previous.limits),
                    caches: try CacheZone.mapping(config.cacheZones.map { ($0.name, $0.size, $0.path) }, previous: previous.caches))
    }

    /// Its last worker is gone (or the master is exiting).
    func retire() {
        segment.unlink()
        accessLogs.close()
    }
}

/// The master process: single-threaded, never serves traffic. It forks workers,
/// re-forks any that die, and turns signals into nginx's actions: HUP reload, TERM/INT fast stop,
/// QUIT graceful stop, USR1 reopen logs.
final class Master {
    enum Stop { case fast, graceful }

    let options: Options
    var config: Configuration
    let log = ErrorLog()
    var listeners = ListenerSet()
    var current: Generation!
    var retiring: [UInt64: Generation] = [:]
    /// Each live worker by pid: its generation, and its row of the stub_status counters.
    var workers: [Int32: (generation: UInt64, counterRow: Int)] = [:]
    var stopping: Stop?
    var killDeadline: UInt64 = 0
    var pid: Int32 = getpid()
    var signalFd: Int32 = -1
    /// Write end of the daemon's readiness pipe; workers must not inherit it.
    var readiness: Int32 = -1
    /// stub_status counters, shared by every worker of every generation; each worker adds to its own row.
    let counters = SharedCounters()
    static let masterSignals: [Int32] = [SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD, SIGALRM]

    let inheritedDescriptors: [Int32]

    /// The first configuration's TLS contexts (main.swift built them, as `-t` does).
    let firstTLS: TLSBundle

    init(options: Options, config: Configuration, tls: TLSBundle, inheritedDescriptors: [Int32]) {
        self.options = options
        self.config = config
        self.firstTLS = tls
        self.inheritedDescriptors = inheritedDescriptors
    }

    /// Startup failures go to the terminal and the error log, as nginx's do.
    private func fatal(_ message: String) -> Int32 {
        stderrLine("[emerg] \(message)")
        if !log.writesToStderr { log.emerg(message) }
        return 1
    }

    /// As nginx's (ngx_log_open_default): without a file among them (syslog servers only, or none), the default
    /// file is opened too, at [error].
    private func errorLogTargets(_ conf: Configuration) -> [ErrorLogTarget] {
        if conf.errorLogs.contains(where: { $0.syslog == nil }) { return conf.errorLogs }
        return conf.errorLogs + [ErrorLogTarget(path: options.resolvedErrorLog ?? conf.fullPath("logs/error.log"), level: .error)]
    }

    func run() -> Int32 {
        vigil_sigmask_all(SIG_BLOCK)
        vigil_ignore_sigpipe()
        do { try log.open(errorLogTargets(config)) } catch { return fatal("\(error)") }
        for w in config.warnings { log.warn("\(w)") }
        for n in config.notices { log.notice("\(n)") }

        let sockets: [ListeningSocket]
        do { sockets = try listeners.prepare(for: config, log: log) } catch { return fatal("\(error)") }
        if let err = SegmentPlan(config: config).fitError { return fatal(err) }
        if let err = UpsyncStartup.unreadable(config, log: log) { return fatal(err) }
        let accessLogs: RequestLogFiles
        do {
            try WorkerFiles.makeTempDirectories(config)
            accessLogs = try RequestLogFiles(config: config, log: log)
        } catch { return fatal("\(error)") }

        if config.daemon {
            switch daemonize() {
            case .parent(let code): return code
            case .child(let fd): readiness = fd
            }
        }
        pid = getpid()
        Master.removeStaleSegments()

        let segment: Segment
        let restored = config.http?.checkStateFile.map { StateFile.load($0.path) { self.log.warn($0) } } ?? [:]
        do { segment = try createSegment(generation: 1, plan: SegmentPlan(config: config, restored: restored)) } catch { return fatal("\(error)") }
        let zones: SharedZones
        do { zones = try Generation.mapZones(config) } catch {
            segment.unlink()
            return fatal("\(error)")
        }
        current = Generation(number: 1, config: config, tls: firstTLS, segment: segment, sockets: sockets, accessLogs: accessLogs,
                             zones: zones)
        do { try PidFile.write(config.pidPath, pid: pid) } catch {
            segment.unlink()
            return fatal("\(error)")
        }
        signalFd = Master.masterSignals.withUnsafeBufferPointer { vigil_signalfd($0.baseAddress, Int32($0.count)) }
        // Detach from the terminal before forking, so that no worker keeps the caller's stdout/stderr open.
        if readiness >= 0 { redirectStdio() }
        for _ in 0..<config.workerProcesses { spawn(current) }
        if readiness >= 0 {
            writeAll(readiness, "ok\n")
            close(readiness)
            readiness = -1
        }
        return loop()
    }

    // MARK: daemon

    enum DaemonRole { case parent(Int32), child(Int32) }

    /// Forks; the parent waits until the child reports that workers are running (or that it failed).
    private func daemonize() -> DaemonRole {
        var fds: [Int32] = [0, 0]
        guard vigil_pipe2(&fds, 0) == 0 else { return .parent(fatal("pipe2() failed (\(errno))")) }
        let child = vigil_fork()
        if child < 0 { return .parent(fatal("fork() failed (\(Errno.text(errno)))")) }
        if child > 0 {
            close(fds[1])
            var buf = [UInt8](repeating: 0, count: 16)
            var got = [UInt8]()
            while true {
                let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                got += buf[0..<n]
                if got.contains(0x0A) { break }
            }
            return .parent(got.starts(with: Array("ok".utf8)) ? 0 : 1)
        }
        close(fds[0])
        setsid()
        for fd in inheritedDescriptors {
            close(fd)
        }
        return .child(fds[1])
    }

    private func redirectStdio() {
        let null = open("/dev/null", O_RDWR)
        guard null >= 0 else { return }
        dup2(null, 0)
        dup2(null, 1)
        if !log.writesToStderr { dup2(log.firstFileDescriptor ?? null, 2) }
        if null > 2 { close(null) }
    }

    // MARK: segments

    private func createSegment(generation: UInt64, plan: SegmentPlan) throws -> Segment {
        if let err = plan.fitError { throw ShmError(err) }
        let segment = try Segment.create(name: Layout.segmentName(masterPid: pid, generation: generation), size: plan.size,
                                         generation: generation, masterPid: pid, checksum: plan.checksum, peers: plan.entries,
                                         zoneRecords: plan.zoneRecords, dynamicUpstreams: plan.dynamicUpstreams)
        let now = vigil_monotonic_ms()
        for c in plan.carriedDynamic {
            guard let slot = segment.addDynamicPeer(c.peer, state: c.state, type: c.type, checkPort: c.port, nowMs: now) else {
                log.error("cannot carry server \(c.peer.name) of upstream \"\(segment.dynamicUpstreamName(c.peer.upstream))\" over the reload, memory exhausted")
                break
            }
            segment.slot(slot).setAdmin(c.admin)
        }
        if !plan.carriedDynamic.isEmpty { segment.publishMembership() }
        if plan.namesResolved { segment.markNamesResolved() }
        return segment
    }

    /// Segments left by masters that died without cleaning up (SIGKILL, power loss).
    static func removeStaleSegments() {
        guard let dir = opendir("/dev/shm") else { return }
        defer { closedir(dir) }
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard let (owner, _) = Layout.parseSegmentName(name) else { continue }
            if !MasterLiveness.isRunning(owner) { _ = vigil_shm_unlink("/" + name) }
        }
    }

    // MARK: workers

    private func spawn(_ gen: Generation) {
        let row = SharedCounters.freeRow(besides: workers.values.map(\.counterRow))
        let child = vigil_fork()
        if child < 0 {
            log.alert("fork() failed while spawning \"worker process\" (\(Errno.text(errno)))")
            return
        }
        if child == 0 {
            close(signalFd)
            if readiness >= 0 { close(readiness) }
            let keep = Set(gen.sockets.map { $0.fd })
            for s in listeners.sockets.values where !keep.contains(s.fd) { close(s.fd) }
            for g in [current!] + Array(retiring.values) where g !== gen { g.accessLogs.close() }
            counters.row = row
            do {
                let w = try WorkerProcess(config: gen.config, tls: gen.tls, accessLogs: gen.accessLogs, listeners: gen.sockets, segment: gen.segment,
                                          log: log, masterPid: pid, counters: counters, zones: gen.zones)
                w.run()
            } catch {
                log.emerg("\(error)")
                exit(fatalWorkerExitCode)
            }
        }
        workers[child] = (gen.number, row)
        log.notice("start worker process \(child)")
    }

    private func signalWorkers(_ sig: Int32, generation: UInt64? = nil) {
        for (p, w) in workers where generation == nil || w.generation == generation {
            // EPERM: the master lacks CAP_KILL for workers that changed uid (a unit's capability bounding set).
            if kill(p, sig) != 0 && errno != ESRCH { log.alert("kill(\(p), \(sig)) failed (\(Errno.text(errno)))") }
        }
    }

    private func reap() {
        while true {
            var exited: Int32 = 0, signaled: Int32 = 0, code: Int32 = 0, core: Int32 = 0
            let dead = vigil_reap(&exited, &signaled, &code, &core)
            if dead <= 0 { return }
            guard let (gen, row) = workers.removeValue(forKey: dead) else { continue }
            counters.clearGauges(row: row)
            if signaled != 0 {
                log.alert("worker process \(dead) exited on signal \(code)\(core != 0 ? " (core dumped)" : "")")
            } else if code == 0 {
                log.notice("worker process \(dead) exited with code 0")
            } else {
                log.alert("worker process \(dead) exited with code \(code)")
            }
            let segment = gen == current.number ? current.segment : retiring[gen]?.segment
            segment?.checker.release(ifHeldBy: dead)

            if gen == current.number, stopping == nil {
                if exited != 0 && code == fatalWorkerExitCode {
                    log.alert("worker process \(dead) exited with fatal code \(code) and cannot be respawned")
                } else {
                    spawn(current)
                }
            } else if let old = retiring[gen], !workers.values.contains(where: { $0.generation == gen }) {
                old.retire()
                retiring[gen] = nil
            }
        }
    }

    // MARK: reload

    private func reload() {
        let newConf: Configuration
        do {
            newConf = try Configuration.load(file: options.resolvedConfFile, prefix: options.resolvedPrefix,
                                             globalDirectives: options.globalDirectives)
        } catch {
            log.emerg("\(error)")
            return
        }
        for w in newConf.warnings { log.warn("\(w)") }
        for n in newConf.notices { log.notice("\(n)") }
        // Certificates load before anything changes: a bad one leaves the running configuration serving.
        let tls: TLSBundle
        do { tls = try TLSBundle(config: newConf) } catch {
            log.emerg("\(error)")
            return
        }
        let plan = SegmentPlan(config: newConf, previous: (current.config, current.segment))
        let sockets: [ListeningSocket]
        do { sockets = try listeners.prepare(for: newConf, log: log) } catch {
            log.emerg("\(error)")
            return
        }
        let accessLogs: RequestLogFiles
        do {
            try WorkerFiles.makeTempDirectories(newConf)
            accessLogs = try RequestLogFiles(config: newConf, log: log)
        } catch {
            log.emerg("\(error)")
            listeners.retain(only: current.sockets)
            return
        }
        let zones: SharedZones
        do { zones = try Generation.mapZones(newConf, previous: current.zones) } catch {
            log.emerg("\(error)")
            accessLogs.close()
            listeners.retain(only: current.sockets)
            return
        }
        let number = current.number + 1
        let segment: Segment
        do { segment = try createSegment(generation: number, plan: plan) } catch {
            log.emerg("\(error)")
            accessLogs.close()
            listeners.retain(only: current.sockets)
            return
        }
        do { try log.open(errorLogTargets(newConf)) } catch {
            log.emerg("\(error)")
            segment.unlink()
            accessLogs.close()
            listeners.retain(only: current.sockets)
            return
        }
        let old = current!
        current = Generation(number: number, config: newConf, tls: tls, segment: segment, sockets: sockets, accessLogs: accessLogs,
                             zones: zones)
        config = newConf
        for _ in 0..<newConf.workerProcesses { spawn(current) }
        retiring[old.number] = old
        signalWorkers(SIGQUIT, generation: old.number)
        if !workers.values.contains(where: { $0.generation == old.number }) {
            old.retire()
            retiring[old.number] = nil
        }
        listeners.retain(only: sockets)
    }

    // MARK: main loop

    private func loop() -> Int32 {
        nextStateSave = vigil_monotonic_ms() + UInt64(config.http?.checkStateIntervalMs ?? 0)
        while true {
            var pfd = pollfd(fd: signalFd, events: Int16(POLLIN), revents: 0)
            var timeout: Int32 = stopping != nil ? 100 : -1
            if config.http?.checkStateFile != nil {
                let now = vigil_monotonic_ms()
                let wait = Int32(clamping: nextStateSave > now ? nextStateSave - now : 0)
                timeout = timeout < 0 ? wait : min(timeout, wait)
            }
            _ = poll(&pfd, 1, timeout)
            if config.http?.checkStateFile != nil && vigil_monotonic_ms() >= nextStateSave { saveState() }
            while true {
                var sender: Int32 = 0
                let sig = vigil_signalfd_read(signalFd, &sender)
                if sig <= 0 { break }
                handle(signal: sig, from: sender)
            }
            if let stop = stopping {
                if workers.isEmpty { return exitCleanly() }
                if stop == .fast && vigil_monotonic_ms() > killDeadline {
                    signalWorkers(SIGKILL)
                    killDeadline = .max
                }
            }
        }
    }

    private func handle(signal sig: Int32, from sender: Int32) {
        let name = Master.signalName(sig)
        switch sig {
        case SIGCHLD:
            reap()
        case SIGHUP:
            log.notice("signal \(sig) (\(name)) received from \(sender), reconfiguring")
            if stopping == nil { reload() }
        case SIGTERM, SIGINT:
            log.notice("signal \(sig) (\(name)) received from \(sender), exiting")
            if stopping != .fast {
                stopping = .fast
                killDeadline = vigil_monotonic_ms() + 3000
                signalWorkers(SIGTERM)
                listeners.closeAll()
            }
        case SIGQUIT:
            log.notice("signal \(sig) (\(name)) received from \(sender), shutting down")
            if stopping == nil {
                stopping = .graceful
                signalWorkers(SIGQUIT)
                listeners.closeAll()
            }
        case SIGUSR1:
            log.notice("signal \(sig) (\(name)) received from \(sender), reopening logs")
            log.reopen()
            WorkerFiles.handOverLogs([current.config] + retiring.values.map(\.config), errorLogPaths: log.filePaths, log: log)
            signalWorkers(SIGUSR1)
        default:
            log.notice("signal \(sig) (\(name)) received from \(sender), ignored")
        }
    }

    /// When check_state_file is next written.
    private var nextStateSave: UInt64 = 0

    private func saveState() {
        guard let http = config.http, let file = http.checkStateFile else { return }
        if let failure = StateFile.save(StateFile.render(peers: current.config.checkedPeers, segment: current.segment), to: file.path) {
            log.error(failure)
        }
        nextStateSave = vigil_monotonic_ms() + UInt64(http.checkStateIntervalMs)
    }

    private func exitCleanly() -> Int32 {
        saveState()
        current.retire()
        for g in retiring.values { g.retire() }
        PidFile.remove(config.pidPath, ifPid: pid)
        log.notice("exit")
        return 0
    }

    static func signalName(_ sig: Int32) -> String {
        switch sig {
        case SIGHUP: "SIGHUP"; case SIGTERM: "SIGTERM"; case SIGINT: "SIGINT"; case SIGQUIT: "SIGQUIT"
        case SIGUSR1: "SIGUSR1"; case SIGUSR2: "SIGUSR2"; case SIGWINCH: "SIGWINCH"; case SIGCHLD: "SIGCHLD"
        case SIGALRM: "SIGALRM"
        default: "signal \(sig)"
        }
    }
}
