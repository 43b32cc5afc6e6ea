#if canImport(Glibc)
import Glibc
#endif
import XCTest
@testable import Event

/// The order in which the loop serves ready descriptors under load.
final class ReadinessOrderTests: XCTestCase {
    /// Sixteen busy clients, each answering one service after it was served (as h2load answers while the
    /// server goes on with the next connection): the client served last before a wait answers just after it.
    /// Served in the order they became ready, none waits much more than one round of the others; taken all
    /// together per wait, that one waited for two (epoll puts a level-triggered fd back on its ready list as
    /// it hands it out, ahead of any fd that becomes ready later).
    func testDescriptorsAreServedInTheOrderTheyBecameReady() throws {
        let loop = try EventLoop()
        final class Client: EventHandler {
            let server: Int32, client: Int32
            unowned let bench: Bench
            init(_ fds: [Int32], _ bench: Bench) { server = fds[0]; client = fds[1]; self.bench = bench }
            func handleEvent(_ events: UInt32) { bench.served(self) }
        }
        final class Bench {
            var services = 0, worst = 0
            var answeredAt: [Int32: Int] = [:]
            var pending: Client?
            let loop: EventLoop
            init(_ loop: EventLoop) { self.loop = loop }
            func answer(_ c: Client) {
                var b: UInt8 = 1
                _ = write(c.client, &b, 1)
                answeredAt[c.server] = services
            }
            func served(_ c: Client) {
                var b: UInt8 = 0
                guard read(c.server, &b, 1) == 1 else { return }
                services += 1
                if let was = answeredAt[c.server] { worst = max(worst, services - was - 1) }
                // The previous one's client answers now; this one's during the next service.
                if let p = pending { answer(p) }
                pending = c
                if services == 800 { loop.stop() }
            }
        }
        let bench = Bench(loop)
        var clients: [Client] = []
        for _ in 0..<16 {
            var fds: [Int32] = [0, 0]
            XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
            let c = Client(fds, bench)
            clients.append(c)
            try loop.register(fd: c.server, events: Events.readable, handler: c)
            bench.answer(c)
        }
        defer { for c in clients { Glibc.close(c.server); Glibc.close(c.client) } }
        loop.run()
        // One round is fifteen others; taken all together per wait, the late one waited for 28.
        XCTAssertLessThanOrEqual(bench.worst, 16)
    }
}
