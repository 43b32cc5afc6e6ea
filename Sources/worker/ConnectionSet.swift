#if canImport(Glibc)
import Glibc
#endif
import Core
import Event
import HTTPServer

/// The worker's client connections: counted against worker_connections, and reachable so that a graceful
/// stop can close the idle ones and wait for the rest.
final class ConnectionSet {
    private unowned let worker: WorkerProcess
    /// Indexed by fd, as nginx's connection array: a slot costs 8 bytes, a dictionary entry several times that.
    private var open: [ClientConnection?] = []
    private(set) var count = 0
    private var serial = 0

    init(worker: WorkerProcess) { self.worker = worker }

    func accept(fd: Int32, peer: sockaddr_storage, listening: ListeningSocket) {
        let service = worker.service
        service.counters.add(.accepted)
        if count >= worker.config.workerConnections {
            worker.log.alert("\(worker.config.workerConnections) worker_connections are not enough")
            close(fd)
            return
        }
        service.counters.add(.handled)
        serial += 1
        let c = H1Connection(fd: fd, peer: peer, listen: listening.listen, service: service, serial: serial)
        do {
            try worker.loop.register(fd: fd, events: Events.readable | Events.readHangup, handler: c)
        } catch {
            worker.log.alert("\(error)")
            close(fd)
            return
        }
        if Int(fd) >= open.count { open += Array(repeating: nil, count: Int(fd) + 64 - open.count) }
        open[Int(fd)] = c
        count += 1
        service.counters.add(.active)
        c.start()
    }

    /// The same socket goes on in another protocol (HTTP/2 after ALPN or its preface).
    func replaced(_ c: ClientConnection) { open[Int(c.fd)] = c }

    /// A graceful stop began: HTTP/2 connections say GOAWAY.
    func shutdownBegan() { for case let c? in open { c.shutdownBegan() } }

    func closed(_ c: ClientConnection) {
        open[Int(c.fd)] = nil
        count -= 1
        worker.service.counters.add(.active, -1)
        worker.stopIfDrained()
    }

    func closeIdle() { for case let c? in open where c.isIdle { c.close() } }
    func closeAll() { for case let c? in open { c.close() } }
}
