import XCTest
@testable import Config
@testable import Upstream

/// proxy_next_upstream, _tries and _timeout as RetryPolicy applies them.
final class RetryPolicyTests: XCTestCase {
    func policy(_ conditions: NextUpstream, tries: Int = 0, timeoutMs: Int = 0) -> RetryPolicy {
        var s = ProxySettings()
        s.nextUpstream = conditions
        s.nextUpstreamTries = tries
        s.nextUpstreamTimeout = timeoutMs
        return RetryPolicy(s)
    }

    let statuses: [(Int, NextUpstream)] = [(500, .http500), (502, .http502), (503, .http503), (504, .http504),
                                           (403, .http403), (404, .http404), (429, .http429)]

    func testDefaultIsErrorAndTimeout() {
        let p = RetryPolicy(ProxySettings())
        XCTAssertEqual(p.conditions, [.error, .timeout])
        XCTAssertTrue(p.covers(.error, method: "GET", requestSent: false))
        XCTAssertTrue(p.covers(.timeout, method: "GET", requestSent: true))
        XCTAssertFalse(p.covers(.invalidHeader, method: "GET", requestSent: true))
        XCTAssertFalse(p.covers(.status(502), method: "GET", requestSent: true))
        XCTAssertEqual(p.tries, 0)
        XCTAssertEqual(p.timeoutMs, 0)
    }

    func testEachConditionCoversItsFailureOnly() {
        let failures: [(UpstreamFailure, NextUpstream)] = [(.error, .error), (.timeout, .timeout), (.invalidHeader, .invalidHeader)]
            + statuses.map { (.status($0.0), $0.1) }
        for (option, _) in NextUpstream.names where option != "off" && option != "non_idempotent" {
            let condition = NextUpstream.names[option]!
            let p = policy(condition)
            for (failure, coveredBy) in failures {
                XCTAssertEqual(p.covers(failure, method: "GET", requestSent: true), coveredBy == condition,
                               "proxy_next_upstream \(option) for \(failure)")
            }
            XCTAssertFalse(p.covers(.status(501), method: "GET", requestSent: false), "no http_501 condition exists")
            XCTAssertFalse(p.covers(.status(200), method: "GET", requestSent: false))
        }
    }

    func testOffCoversNothing() {
        let p = policy(NextUpstream.names["off"]!)
        for f in [UpstreamFailure.error, .timeout, .invalidHeader, .status(502)] {
            XCTAssertFalse(p.covers(f, method: "GET", requestSent: false))
        }
        XCTAssertFalse(policy([.nonIdempotent]).covers(.error, method: "POST", requestSent: true), "non_idempotent alone names no failure")
    }

    func testNonIdempotentMethodsAfterTheRequestWentOut() {
        let p = policy([.error, .timeout, .http502])
        for method in ["POST", "LOCK", "PATCH"] {
            XCTAssertTrue(p.covers(.error, method: method, requestSent: false), "\(method) not yet sent: retried")
            XCTAssertFalse(p.covers(.error, method: method, requestSent: true), "\(method) already sent: not retried")
            XCTAssertFalse(p.covers(.timeout, method: method, requestSent: true))
            XCTAssertFalse(p.covers(.status(502), method: method, requestSent: true))
        }
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            XCTAssertTrue(p.covers(.error, method: method, requestSent: true), "\(method) is idempotent")
        }
        let withFlag = policy([.error, .http502, .nonIdempotent])
        XCTAssertTrue(withFlag.covers(.error, method: "POST", requestSent: true))
        XCTAssertTrue(withFlag.covers(.status(502), method: "PATCH", requestSent: true))
        XCTAssertFalse(withFlag.covers(.timeout, method: "POST", requestSent: true), "non_idempotent adds no condition")
    }

    func testRetriesStatus() {
        let p = policy([.error, .http500, .http404])
        XCTAssertTrue(p.retriesStatus(500))
        XCTAssertTrue(p.retriesStatus(404))
        XCTAssertFalse(p.retriesStatus(502))
        XCTAssertFalse(p.retriesStatus(200))
        XCTAssertFalse(p.retriesStatus(501))
        for (status, option) in statuses {
            XCTAssertTrue(policy(option).retriesStatus(status), "\(status)")
            XCTAssertFalse(policy([.error, .timeout, .invalidHeader, .nonIdempotent]).retriesStatus(status), "\(status)")
        }
    }

    func testAllowsAnotherWithTries() {
        let unlimited = policy([.error])
        XCTAssertTrue(unlimited.allowsAnother(after: 100, startedMs: 0, nowMs: 1_000_000), "0: no limit here (the peer count limits)")
        let three = policy([.error], tries: 3)
        XCTAssertTrue(three.allowsAnother(after: 1, startedMs: 0, nowMs: 0))
        XCTAssertTrue(three.allowsAnother(after: 2, startedMs: 0, nowMs: 0))
        XCTAssertFalse(three.allowsAnother(after: 3, startedMs: 0, nowMs: 0), "tries counts the first attempt")
        XCTAssertFalse(policy([.error], tries: 1).allowsAnother(after: 1, startedMs: 0, nowMs: 0), "tries 1: never a second")
    }

    func testAllowsAnotherWithTimeout() {
        let p = policy([.error], timeoutMs: 500)
        XCTAssertTrue(p.allowsAnother(after: 1, startedMs: 10_000, nowMs: 10_000))
        XCTAssertTrue(p.allowsAnother(after: 5, startedMs: 10_000, nowMs: 10_499))
        XCTAssertFalse(p.allowsAnother(after: 1, startedMs: 10_000, nowMs: 10_500), "timeout reached")
        XCTAssertFalse(p.allowsAnother(after: 1, startedMs: 10_000, nowMs: 20_000))
        let both = policy([.error], tries: 2, timeoutMs: 500)
        XCTAssertFalse(both.allowsAnother(after: 2, startedMs: 0, nowMs: 1))
        XCTAssertFalse(both.allowsAnother(after: 1, startedMs: 0, nowMs: 600))
        XCTAssertTrue(both.allowsAnother(after: 1, startedMs: 0, nowMs: 100))
    }

    func testFailuresThatCountAgainstThePeer() {
        for f in [UpstreamFailure.error, .timeout, .invalidHeader, .status(500), .status(502), .status(503), .status(504), .status(429)] {
            XCTAssertTrue(f.countsAgainstPeer, "\(f)")
        }
        XCTAssertFalse(UpstreamFailure.status(403).countsAgainstPeer, "nginx never counts http_403")
        XCTAssertFalse(UpstreamFailure.status(404).countsAgainstPeer, "nor http_404")
        XCTAssertTrue(UpstreamFailure.timeout.isTimeout)
        XCTAssertFalse(UpstreamFailure.error.isTimeout)
    }

    func testPolicyFromTheDirectives() throws {
        let conf = try Configuration.parse(text: """
            events {}
            http {
                upstream u { server 127.0.0.1:1; server 127.0.0.1:2; }
                server {
                    proxy_next_upstream error http_503 non_idempotent;
                    proxy_next_upstream_tries 2;
                    location / { proxy_pass http://u; proxy_next_upstream_timeout 3s; }
                    location /off { proxy_pass http://u; proxy_next_upstream off; }
                }
            }
            """)
        let server = try XCTUnwrap(conf.http?.servers.first)
        let root = try XCTUnwrap(server.locations.first { $0.pattern == "/" })
        let offLocation = try XCTUnwrap(server.locations.first { $0.pattern == "/off" })
        let p = RetryPolicy(root.settings.proxy)
        XCTAssertEqual(p.conditions, [.error, .http503, .nonIdempotent], "inherited from the server level")
        XCTAssertEqual(p.tries, 2)
        XCTAssertEqual(p.timeoutMs, 3000)
        XCTAssertTrue(p.covers(.status(503), method: "POST", requestSent: true))
        XCTAssertFalse(p.covers(.timeout, method: "GET", requestSent: false))
        let off = RetryPolicy(offLocation.settings.proxy)
        XCTAssertFalse(off.covers(.error, method: "GET", requestSent: false))
    }
}
