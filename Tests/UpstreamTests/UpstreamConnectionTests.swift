import Foundation
import Glibc
import XCTest
@testable import Config
import Core
import CShim
import Event
@testable import Upstream

/// UpstreamConnection against real sockets on 127.0.0.1, driven in process with `EventLoop.runOnce`: what it
/// tells its delegate about a connect that succeeds, is refused or hangs, and what it leaves behind.
final class UpstreamConnectionTests: XCTestCase {
    var loop: EventLoop!
    /// Descriptors a test opened itself (listeners, accepted sockets), closed when it ends.
    var owned: [Int32] = []
    var connections: [UpstreamConnection] = []

    override func setUpWithError() throws { loop = try EventLoop() }

    override func tearDown() {
        // Connections first: an armed timer must not outlive its connection, nor a connection its loop.
        connections.forEach { $0.close() }
        connections = []
        owned.forEach { close($0) }
        owned = []
        loop = nil
    }

    func own(_ fd: Int32) -> Int32 { owned.append(fd); return fd }

    func connection() -> UpstreamConnection {
        let c = UpstreamConnection(loop: loop)
        connections.append(c)
        return c
    }

    func testConnectToListenerIsReadyThenHearsThePeer() throws {
        let listener = listeningSocket()
        _ = own(listener.fd)
        let c = connection(), d = RecordingDelegate()
        start(c, port: listener.port, delegate: d)
        XCTAssertTrue(drive(loop, until: { d.heardAnything }), "no word from the connection in 3 s")
        XCTAssertEqual(d.ready.count, 1)
        XCTAssertEqual(d.failureTexts, [])
        XCTAssertEqual(d.timeouts, 0)
        XCTAssertNotEqual((d.ready.first ?? 0) & Events.writable, 0, "ready comes with room to write")
        XCTAssertEqual(c.state, .ready)
        XCTAssertEqual(c.peer, PeerAddress(host: "127.0.0.1", port: listener.port, isIPv6: false))
        XCTAssertNil(c.tls)
        XCTAssertEqual(c.requests, 0)

        // The descriptor stays registered: bytes from the peer come as events, and are there to read.
        var server: Int32 = -1
        XCTAssertTrue(drive(loop, until: { server >= 0 }, between: { server = acceptOne(listener.fd) }))
        _ = own(server)
        XCTAssertEqual(write(server, "hello", 5), 5)
        XCTAssertTrue(drive(loop, until: { !d.events.isEmpty }))
        XCTAssertNotEqual(d.events.reduce(0, |) & Events.readable, 0)
        var buf = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(read(c.fd, &buf, 16), 5)
        XCTAssertEqual(String(decoding: buf.prefix(5), as: UTF8.self), "hello")
        XCTAssertEqual(d.ready.count, 1, "ready is said once")
    }

    func testRefusedConnectFailsWithECONNREFUSED() throws {
        let refusing = boundSocket()   // bound, never listening: the kernel answers with RST
        _ = own(refusing.fd)
        let c = connection(), d = RecordingDelegate()
        c.delegate = d
        let (sa, pa) = loopback(refusing.port)
        switch c.connect(to: sa, peer: pa, delayAck: false, tls: nil) {
        case .failed(let f):
            d.upstreamFailed(f)   // refused at once: the same failure the loop would report
        case .connected:
            XCTFail("connected to a port nobody listens on")
        case .inProgress:
            try c.watch()
            XCTAssertTrue(drive(loop, until: { d.heardAnything }), "no word from the connection in 3 s")
        }
        XCTAssertEqual(d.failureTexts, ["connect(\(ECONNREFUSED))"])
        XCTAssertEqual(d.ready.count, 0)
        XCTAssertNotEqual(c.state, .ready)
        // The loop has nothing more to say about it.
        loop.runOnce(waitingAtMost: 50)
        XCTAssertEqual(d.failures.count, 1, "the failure is reported once")
    }

    func testConnectTimeoutFiresWhenTheListenerNeverCompletesIt() throws {
        // A listener with backlog 0 whose one queue place is taken: the kernel drops further SYNs, so a connect
        // stays in progress (the next SYN goes out only after a second) and the armed timeout decides.
        let listener = listeningSocket(backlog: 0)
        _ = own(listener.fd)
        let filler = own(socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0))
        let (sa, pa) = loopback(listener.port)
        _ = Socket.connect(filler, to: sa)
        var pfd = pollfd(fd: filler, events: Int16(POLLOUT), revents: 0)
        XCTAssertEqual(poll(&pfd, 1, 2000), 1, "the filler connection completes")
        XCTAssertEqual(Socket.pendingError(filler), 0)

        let c = connection(), d = RecordingDelegate()
        c.delegate = d
        guard case .inProgress = c.connect(to: sa, peer: pa, delayAck: false, tls: nil) else {
            return XCTFail("expected the connect to be in progress")
        }
        try c.watch()
        let started = Date()
        c.arm(after: 200)
        XCTAssertTrue(drive(loop, until: { d.heardAnything }))
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(d.timeouts, 1)
        XCTAssertEqual(d.ready.count, 0, "the connect never completed")
        XCTAssertEqual(d.failures.count, 0)
        XCTAssertEqual(c.state, .connecting)
        XCTAssertGreaterThanOrEqual(elapsed, 0.19, "not before the armed time")
        XCTAssertLessThan(elapsed, 1.0)
        XCTAssertEqual(loop.pendingTimers, 0, "a fired timeout is not armed any more")

        // disarm() cancels; arming again replaces the earlier deadline.
        c.arm(after: 100)
        c.disarm()
        XCTAssertEqual(loop.pendingTimers, 0)
        drive(loop, for: 0.3, until: { false })
        XCTAssertEqual(d.timeouts, 1, "a disarmed timeout does not fire")
        c.arm(after: 60_000)
        c.arm(after: 50)
        XCTAssertEqual(loop.pendingTimers, 1, "one timer per connection")
        XCTAssertTrue(drive(loop, for: 2, until: { d.timeouts == 2 }), "the re-armed, earlier deadline fires")
        c.close()
        XCTAssertEqual(loop.pendingTimers, 0)
    }

    func testKnownRefusalAndDetachedSocketServesTheNextConnect() throws {
        let refusing = boundSocket()
        _ = own(refusing.fd)
        let listener = listeningSocket()
        _ = own(listener.fd)
        let before = openDescriptors()

        let c = connection(), d = RecordingDelegate()
        c.delegate = d
        let (refusedAddress, refusedPeer) = loopback(refusing.port)
        guard case .inProgress = c.connect(to: refusedAddress, peer: refusedPeer, delayAck: false, tls: nil) else {
            return XCTFail("a non-blocking connect on loopback is in progress first")
        }
        // On loopback the RST is in before connect() returns: the second connect() says so, no epoll needed.
        var refusal: Int32?
        let deadline = Date().addingTimeInterval(2)
        while refusal == nil && Date() < deadline {
            refusal = c.knownRefusal(refusedAddress)
            if refusal == nil { usleep(1000) }
        }
        XCTAssertEqual(refusal, ECONNREFUSED)
        let fd = c.fd
        XCTAssertEqual(c.detachSocket(), fd)
        XCTAssertEqual(c.fd, -1)
        XCTAssertEqual(c.state, .closed)
        XCTAssertTrue(isOpen(fd), "the detached socket stays open for its new owner")
        XCTAssertEqual(openDescriptors(), before + 1)

        // The same socket, unconnected again, connects to a live peer.
        let next = connection(), d2 = RecordingDelegate()
        start(next, port: listener.port, delegate: d2, socket: fd)
        XCTAssertEqual(next.fd, fd)
        XCTAssertTrue(drive(loop, until: { d2.heardAnything }))
        XCTAssertEqual(d2.ready.count, 1, "\(d2.failureTexts)")
        XCTAssertEqual(next.knownRefusal(loopback(listener.port).0), nil, "a connected socket has no refusal to report")
        XCTAssertEqual(d.failures.count + d.ready.count, 0, "the first connection's delegate heard nothing")
        next.close()
        XCTAssertFalse(isOpen(fd))
        XCTAssertEqual(openDescriptors(), before)
    }

    func testRefusalReadThroughTheLoopLeavesSocketReusable() throws {
        // A refusal reported by epoll (its SO_ERROR read): one more connect() answers ECONNABORTED and leaves
        // the socket unconnected, as the prober relies on.
        let refusing = boundSocket()
        _ = own(refusing.fd)
        let listener = listeningSocket()
        _ = own(listener.fd)
        let c = connection(), d = RecordingDelegate()
        c.delegate = d
        let (sa, pa) = loopback(refusing.port)
        guard case .inProgress = c.connect(to: sa, peer: pa, delayAck: false, tls: nil) else { return XCTFail("in progress first") }
        try c.watch()
        XCTAssertTrue(drive(loop, until: { d.heardAnything }))
        XCTAssertEqual(d.failureTexts, ["connect(\(ECONNREFUSED))"])
        XCTAssertEqual(c.knownRefusal(sa), ECONNABORTED)
        loop.unregister(fd: c.fd)
        let s = c.detachSocket()
        let next = connection(), d2 = RecordingDelegate()
        start(next, port: listener.port, delegate: d2, socket: s)
        XCTAssertTrue(drive(loop, until: { d2.heardAnything }))
        XCTAssertEqual(d2.ready.count, 1, "\(d2.failureTexts)")
    }

    func testCloseReleasesTheDescriptorAndTheObjectConnectsAgain() throws {
        let listener = listeningSocket()
        _ = own(listener.fd)
        let before = openDescriptors()
        let c = connection(), d = RecordingDelegate()
        start(c, port: listener.port, delegate: d)
        XCTAssertEqual(openDescriptors(), before + 1)
        XCTAssertTrue(drive(loop, until: { d.heardAnything }))
        XCTAssertEqual(d.ready.count, 1)
        c.arm(after: 10_000)
        let fd = c.fd
        c.close()
        XCTAssertEqual(c.fd, -1)
        XCTAssertEqual(c.state, .closed)
        XCTAssertNil(c.peer)
        XCTAssertFalse(isOpen(fd))
        XCTAssertEqual(loop.pendingTimers, 0, "close cancels the timer")
        XCTAssertEqual(openDescriptors(), before, "close releases the descriptor")
        c.close()   // twice is harmless
        XCTAssertEqual(openDescriptors(), before)

        // The same object connects again (the pools reuse closed connections).
        let d2 = RecordingDelegate()
        start(c, port: listener.port, delegate: d2)
        XCTAssertTrue(drive(loop, until: { d2.heardAnything }))
        XCTAssertEqual(d2.ready.count, 1)
        XCTAssertEqual(d.ready.count, 1, "the old delegate hears nothing more")
        c.close()
        // The accepted side: the kernel queued the connections; nothing leaks on ours.
        while true {
            let s = acceptOne(listener.fd)
            if s < 0 { break }
            close(s)
        }
        XCTAssertEqual(openDescriptors(), before)
    }

    func testEventsAfterPeerClosesReachTheDelegate() throws {
        let listener = listeningSocket()
        _ = own(listener.fd)
        let c = connection(), d = RecordingDelegate()
        start(c, port: listener.port, delegate: d)
        var server: Int32 = -1
        XCTAssertTrue(drive(loop, until: { !d.ready.isEmpty && server >= 0 }, between: { if server < 0 { server = acceptOne(listener.fd) } }))
        close(server)
        XCTAssertTrue(drive(loop, until: { d.events.contains { $0 & (Events.readHangup | Events.readable) != 0 } }),
                      "the peer's close reaches a ready connection's delegate")
    }
}
