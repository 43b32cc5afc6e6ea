#if canImport(Glibc)
import Glibc
#endif
import CShim
import ShmTable

/// Competes for the checker lock in the segment header (design.md §1). The holder refreshes its heartbeat;
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

    private func tick() {
        guard !worker.isShuttingDown else { return }
        let lock = worker.segment.checker
        let now = vigil_monotonic_ms()
        let won = lock.tryAcquire(pid: pid, nowMs: now, staleAfterMs: CheckerElection.staleAfterMs)
        if won {
            lock.heartbeat(pid: pid, nowMs: now)
            if !isChecker {
                isChecker = true
                worker.log.notice("worker process \(pid) is the checker for generation \(worker.segment.generation)")
            }
        } else if isChecker {
            isChecker = false
        }
        worker.loop.schedule(after: CheckerElection.heartbeatPeriodMs) { [unowned self] in self.tick() }
    }

    /// On exit: hand the lock on at once instead of waiting for the heartbeat to go stale.
    func resign() {
        if isChecker { worker.segment.checker.release(ifHeldBy: pid) }
        isChecker = false
    }
}
