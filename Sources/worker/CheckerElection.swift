#if canImport(Glibc)
import Glibc
#endif
import Checks
import Config
import CShim
import ShmTable

/// Competes for the checker lock in the segment header. The holder runs the probes on
/// their own thread, which also refreshes the heartbeat;
/// a holder whose heartbeat is older than three periods is presumed dead and replaced, so a SIGKILLed
/// checker is succeeded within about one check interval.
final class CheckerElection {
    static let heartbeatPeriodMs: UInt64 = 250
    static let staleAfterMs: UInt64 = 3 * heartbeatPeriodMs

    unowned let worker: WorkerProcess
    let pid = getpid()
    private(set) var isChecker = false

    init(worker: WorkerProcess) { self.worker = worker }

    func start() {
        // Spread the first attempts so workers forked together do not race in lockstep.
        worker.loop.schedule(after: UInt64(pid) % 50) { [unowned self] in self.tick() }
    }

    private var thread: CheckerThread?

    private func tick() {
        guard !worker.isShuttingDown else { return }
        let lock = worker.segment.checker
        if isChecker {
            // The probe thread keeps the heartbeat (this loop does when there is no thread); if the lock was lost
            // (stalled past the stale limit), stand down.
            if lock.holder != pid {
                standDown()
            } else if thread == nil {
                lock.heartbeat(pid: pid, nowMs: vigil_monotonic_ms())
            }
        } else if lock.tryAcquire(pid: pid, nowMs: vigil_monotonic_ms(), staleAfterMs: CheckerElection.staleAfterMs) {
            becomeChecker()
        }
        worker.loop.schedule(after: CheckerElection.heartbeatPeriodMs) { [unowned self] in self.tick() }
    }

    private func becomeChecker() {
        let peers = worker.config.checkedPeers
        // Nothing to probe or resolve: the lock is held and its heartbeat kept from this loop, without a thread. A
        // second thread makes every system call on a socket take and drop a reference to its file (the descriptor
        // table is shared then), about 1% of a proxied request's cost.
        if !peers.isEmpty || !worker.config.resolvingUpstreams.isEmpty {
            do { thread = try startThread(peers) } catch {
                worker.log.alert("cannot start the checker: \(error)")
                worker.segment.checker.release(ifHeldBy: pid)
                return
            }
        }
        isChecker = true
        worker.log.notice("worker process \(pid) is the checker for generation \(worker.segment.generation), \(peers.count) peers")
    }

    private func startThread(_ peers: [CheckedPeer]) throws -> CheckerThread {
        let engine = try CheckEngine(segment: worker.segment, peers: peers, pid: pid, tls: worker.tls, log: worker.log,
                                     resolving: worker.config.resolvingUpstreams)
        let t = CheckerThread(engine: engine)
        t.start()
        return t
    }

    private func standDown() {
        thread?.stop()
        thread = nil
        isChecker = false
    }

    /// On exit: hand the lock on at once instead of waiting for the heartbeat to go stale.
    func resign() {
        guard isChecker else { return }
        standDown()
        worker.segment.checker.release(ifHeldBy: pid)
    }
}
