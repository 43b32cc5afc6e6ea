import Foundation
import Glibc
import XCTest
@testable import Config
import Core
import CShim
import Event
@testable import Upstream

// Helpers shared by the Upstream tests: balancers built from real configurations, loopback sockets made the
// way CheckEngineTests makes them, and a delegate that records what an UpstreamConnection tells its user.

// MARK: balancers

/// Parses `upstream` (a whole `upstream name { … }` block) inside an otherwise empty http block.
func parseUpstream(_ block: String, file: StaticString = #filePath, line: UInt = #line) throws -> (Configuration, Upstream) {
    let conf = try Configuration.parse(text: "events {}\nhttp {\n\(block)\n}\n")
    let upstream = try XCTUnwrap(conf.http?.upstreams.first, "no upstream parsed", file: file, line: line)
    return (conf, upstream)
}

/// A balancer for the first upstream of `block`, with no shm segment (no checks).
func balancer(_ block: String, file: StaticString = #filePath, line: UInt = #line) throws -> UpstreamBalancer {
    let (_, upstream) = try parseUpstream(block, file: file, line: line)
    return UpstreamBalancer(upstream: upstream, segment: nil, checkedIndex: [:])
}

extension UpstreamBalancer {
    /// All peers, primaries then backups, by their `host:port` name.
    var peersByName: [String: Peer] {
        Dictionary(uniqueKeysWithValues: (primaries + backups).map { ($0.name, $0) })
    }

    func peer(_ name: String, file: StaticString = #filePath, line: UInt = #line) -> Peer {
        guard let p = peersByName[name] else {
            XCTFail("no peer \(name) in \(peersByName.keys.sorted())", file: file, line: line)
            return primaries[0]
        }
        return p
    }

    /// One selection without a client address or key, answering the peer's name ("-" for none).
    func pick(now: UInt64, tried: [Peer] = [], key: String? = nil, client: [UInt8] = []) -> String {
        select(clientAddress: { client }, hashKey: key, now: now, tried: tried)?.name ?? "-"
    }

    /// `n` selections at `now`.
    func picks(_ n: Int, now: UInt64, tried: [Peer] = []) -> [String] {
        (0..<n).map { _ in pick(now: now, tried: tried) }
    }
}

/// How often each name occurs.
func counts(_ names: [String]) -> [String: Int] {
    names.reduce(into: [:]) { $0[$1, default: 0] += 1 }
}

// MARK: descriptors and sockets

func openDescriptors() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

func isOpen(_ fd: Int32) -> Bool { fd >= 0 && fcntl(fd, F_GETFD) != -1 }

/// A TCP socket bound to an ephemeral loopback port: refuses connections until listen() is called on it.
func boundSocket(file: StaticString = #filePath, line: UInt = #line) -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    XCTAssertGreaterThanOrEqual(fd, 0, "socket()", file: file, line: line)
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
        XCTAssertEqual(bind(fd, p, len), 0, "bind()", file: file, line: line)
        XCTAssertEqual(getsockname(fd, p, &len), 0, "getsockname()", file: file, line: line)
    } }
    return (fd, UInt16(bigEndian: sa.sin_port))
}

/// A non-blocking listening socket on an ephemeral loopback port.
func listeningSocket(backlog: Int32 = 64, file: StaticString = #filePath, line: UInt = #line) -> (fd: Int32, port: UInt16) {
    let s = boundSocket(file: file, line: line)
    XCTAssertEqual(listen(s.fd, backlog), 0, "listen()", file: file, line: line)
    XCTAssertEqual(vigil_set_nonblock(s.fd), 0, file: file, line: line)
    return s
}

/// Accepts one pending connection (non-blocking), or -1 if none is there yet.
func acceptOne(_ listener: Int32) -> Int32 {
    vigil_accept4(listener, nil, nil)
}

func loopback(_ port: UInt16) -> (SocketAddress, PeerAddress) {
    (SocketAddress(host: "127.0.0.1", port: port, isIPv6: false)!, PeerAddress(host: "127.0.0.1", port: port, isIPv6: false))
}

/// Turns `loop` until `done()` holds or `seconds` pass; answers whether it held. `between` runs after each
/// turn (a test's in-process server does its share of the work there).
@discardableResult
func drive(_ loop: EventLoop, for seconds: Double = 3, until done: () -> Bool, between: () -> Void = {}) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !done() {
        if Date() >= deadline { return false }
        loop.runOnce(waitingAtMost: 10)
        between()
    }
    return true
}

// MARK: the caller of an UpstreamConnection

/// Records everything an UpstreamConnection tells its user (a stand-in for the proxy or the prober).
final class RecordingDelegate: UpstreamConnectionDelegate {
    var ready: [UInt32] = []
    var events: [UInt32] = []
    var failures: [UpstreamConnection.Failure] = []
    var timeouts = 0

    func upstreamReady(_ events: UInt32) { ready.append(events) }
    func upstreamEvent(_ events: UInt32) { self.events.append(events) }
    func upstreamFailed(_ failure: UpstreamConnection.Failure) { failures.append(failure) }
    func upstreamTimedOut() { timeouts += 1 }

    var heardAnything: Bool { !ready.isEmpty || !failures.isEmpty || timeouts > 0 }

    /// The failure text for assertions: "connect(111)", "handshake(…)", "verify(…)", "socket(…)".
    var failureTexts: [String] {
        failures.map {
            switch $0 {
            case .connect(let e): return "connect(\(e))"
            case .socket(let e): return "socket(\(e))"
            case .bind(let e): return "bind(\(e))"
            case .handshake(let s): return "handshake(\(s))"
            case .verify(let s): return "verify(\(s))"
            }
        }
    }
}

/// Connects `c` to 127.0.0.1:`port` and registers it; a connect that fails at once is reported to the
/// delegate as the loop would have (so callers see one path).
func start(_ c: UpstreamConnection, port: UInt16, delegate: RecordingDelegate, tls: UpstreamTLSSetup? = nil, socket: Int32? = nil,
           file: StaticString = #filePath, line: UInt = #line) {
    let (sa, pa) = loopback(port)
    c.delegate = delegate
    switch c.connect(to: sa, peer: pa, socket: socket, delayAck: false, tls: tls) {
    case .inProgress:
        XCTAssertNoThrow(try c.watch(), file: file, line: line)
    case .connected:
        XCTAssertNoThrow(try c.watch(), file: file, line: line)
        c.connected(Events.writable)
    case .failed(let f):
        delegate.upstreamFailed(f)
    }
}

// MARK: nginx's failure accounting

/// A failure of `peer` (max_fails=2 on it), then an hour of successful requests to it, then one more failure:
/// nginx forgets the first failure once a request succeeds (the selection after fail_timeout moved `checked`
/// on, so `accessed < checked`), and the peer stays in. Returns whether `peer` is still chosen by `choose` at
/// the end. `choose` must send to `peer` whenever it is usable.
func survivesSparseFailures(_ b: UpstreamBalancer, _ peer: Peer, choose: (UInt64) -> Peer?,
                            file: StaticString = #filePath, line: UInt = #line) -> Bool {
    b.finished(peer, failed: true, now: 1_000)
    var t: UInt64 = 20_000
    while t < 3_600_000 {
        let p = choose(t)
        XCTAssertTrue(p === peer, "at \(t) ms the peer is usable and chosen", file: file, line: line)
        b.finished(peer, failed: false, now: t + 5)
        t += 60_000
    }
    b.finished(peer, failed: true, now: 3_700_000)
    return choose(3_700_001) === peer
}
