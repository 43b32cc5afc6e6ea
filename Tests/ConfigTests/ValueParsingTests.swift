import XCTest
@testable import Config

/// nginx's value syntaxes: sizes and times (in ms).
final class ValueParsingTests: XCTestCase {
    // MARK: sizes

    func testSizes() {
        XCTAssertEqual(Values.size("0"), 0)
        XCTAssertEqual(Values.size("1024"), 1024)
        XCTAssertEqual(Values.size("8k"), 8192)
        XCTAssertEqual(Values.size("8K"), 8192)
        XCTAssertEqual(Values.size("1m"), 1_048_576)
        XCTAssertEqual(Values.size("10M"), 10_485_760)
        XCTAssertEqual(Values.size("1g"), 1 << 30)
        XCTAssertEqual(Values.size("2G"), 2 << 30)
        XCTAssertNil(Values.size("1g", allowGiga: false))
        XCTAssertEqual(Values.size("512k", allowGiga: false), 524_288)
    }

    func testBadSizes() {
        for bad in ["", "k", "m", "-1", "+1", "1.5m", "10mb", "1 k", " 1k", "1kk", "abc", "1t", "0x10",
                    "99999999999999999999", "9223372036854775807k"] {
            XCTAssertNil(Values.size(bad), bad.debugDescription)
        }
    }

    func testSizeDirectives() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("client_max_body_size 10m;\nclient_body_buffer_size 16k;\n"
                                                    + "client_header_buffer_size 1024;\nlarge_client_header_buffers 4 8k;")))
        let s = try XCTUnwrap(conf.http?.settings)
        XCTAssertEqual(s.core.clientMaxBodySize, 10_485_760)
        XCTAssertEqual(s.core.clientBodyBufferSize, 16_384)
        XCTAssertEqual(s.core.clientHeaderBufferSize, 1024)
        XCTAssertEqual(s.core.largeClientHeaderBuffers.count, 4)
        XCTAssertEqual(s.core.largeClientHeaderBuffers.size, 8192)
        assertError(inHTTP("client_max_body_size 10x;"), #""client_max_body_size" directive invalid value"#, line: 3)
        assertError(inHTTP("server {\n  client_body_buffer_size -1;\n}"), #""client_body_buffer_size" directive invalid value"#, line: 4)
        assertError(inHTTP("large_client_header_buffers 4 8q;"), #""large_client_header_buffers" directive invalid value"#, line: 3)
    }

    // MARK: times

    func testTimes() {
        XCTAssertEqual(Values.msec("65"), 65_000)
        XCTAssertEqual(Values.msec("0"), 0)
        XCTAssertEqual(Values.msec("500ms"), 500)
        XCTAssertEqual(Values.msec("1m30s"), 90_000)
        XCTAssertEqual(Values.msec("1m 30s"), 90_000)
        XCTAssertEqual(Values.msec("1m30"), 90_000)
        XCTAssertEqual(Values.msec("30s"), 30_000)
        XCTAssertEqual(Values.msec("2m"), 120_000)
        XCTAssertEqual(Values.msec("1h"), 3_600_000)
        XCTAssertEqual(Values.msec("1h30m"), 5_400_000)
        XCTAssertEqual(Values.msec("1d"), 86_400_000)
        XCTAssertEqual(Values.msec("1w"), 604_800_000)
        XCTAssertEqual(Values.msec("1s500ms"), 1500)
        XCTAssertEqual(Values.msec("1d2h3m4s5ms"), 86_400_000 + 7_200_000 + 180_000 + 4000 + 5)
        XCTAssertEqual(Values.msec("30 "), 30_000)
    }

    func testBadTimes() {
        // Units must descend and appear once; y and M are too large for a millisecond value, as in nginx.
        for bad in ["", " ", "s", "ms", "-1", "+1", "1.5s", "1x", "30m1h", "1m1m", "1s1m", "500ms1s", "1ms1ms",
                    "1S", "1H", "1y", "1M", "1y2d", "abc", "1 s", "99999999999999999999", "9999999999999999d"] {
            XCTAssertNil(Values.msec(bad), bad.debugDescription)
        }
    }

    func testTimeDirectives() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("keepalive_timeout 65;\nproxy_read_timeout 500ms;\n"
                                                    + "proxy_connect_timeout 1m30s;\nsend_timeout \"1m 30s\";")))
        let s = try XCTUnwrap(conf.http?.settings)
        XCTAssertEqual(s.core.keepaliveTimeout, 65_000)
        XCTAssertEqual(s.proxy.readTimeout, 500)
        XCTAssertEqual(s.proxy.connectTimeout, 90_000)
        XCTAssertEqual(s.core.sendTimeout, 90_000)
        assertError(inHTTP("keepalive_timeout 5x;"), #""keepalive_timeout" directive invalid value"#, line: 3)
        assertError(inHTTP("proxy_read_timeout 1y;"), #""proxy_read_timeout" directive invalid value"#, line: 3)
        assertError(inHTTP("server {\n  send_timeout 30m1h;\n}"), #""send_timeout" directive invalid value"#, line: 4)
        assertError("worker_shutdown_timeout x;\nevents {}\n", #""worker_shutdown_timeout" directive invalid value"#, line: 1)
        assertError(inUpstream("server 127.0.0.1:1 fail_timeout=10q;"), #"invalid parameter "fail_timeout=10q""#, line: 5)
    }

    func testKeepaliveHeaderTimeoutIsWholeSeconds() throws {
        let conf = try XCTUnwrap(assertLoads(inHTTP("keepalive_timeout 75s 60;")))
        XCTAssertEqual(conf.http?.settings.core.keepaliveTimeout, 75_000)
        XCTAssertEqual(conf.http?.settings.core.keepaliveHeaderTimeout, 60_000)
    }

    // MARK: numbers and flags

    func testPlainNumbers() {
        XCTAssertEqual(Values.plainNumber("0"), 0)
        XCTAssertEqual(Values.plainNumber("0012"), 12)
        for bad in ["", "-1", "+1", "1k", " 1", "1 ", "١"] {
            XCTAssertNil(Values.plainNumber(bad), bad.debugDescription)
        }
    }

    func testFlags() {
        XCTAssertEqual(Values.flag("on"), true)
        XCTAssertEqual(Values.flag("OFF"), false)
        XCTAssertNil(Values.flag("yes"))
        XCTAssertNil(Values.flag(""))
    }

    func testWorkerProcesses() throws {
        XCTAssertEqual(assertLoads("worker_processes 4;\nevents {}")?.workerProcesses, 4)
        XCTAssertGreaterThanOrEqual(assertLoads("worker_processes auto;\nevents {}")?.workerProcesses ?? 0, 1)
        assertError("worker_processes many;\nevents {}", #""worker_processes" directive invalid value"#, line: 1)
        // nginx's own wording; Vigil also refuses 0, which nginx only notices at run time.
        assertError("events {\n  worker_connections many;\n}", #"invalid number "many""#, line: 2)
        assertError("events {\n  worker_connections 0;\n}", #"invalid number "0""#, line: 2)
        assertError("worker_rlimit_nofile lots;\nevents {}", #""worker_rlimit_nofile" directive invalid number"#, line: 1)
        XCTAssertEqual(assertLoads("events {\n  worker_connections 4096;\n}")?.workerConnections, 4096)
        let debug = assertLoads("events {\n  debug_connection 10.0.0.0/8;\n  debug_connection unix:;\n  debug_connection ::1;\n}")?.events
        XCTAssertEqual(debug?.debugConnections.map(\.prefix), [8, 128])
        XCTAssertEqual(debug?.debugUnixClients, true)
        assertError("events {\n  debug_connection no.such.host.invalid;\n}", #"host not found in debug_connection "no.such.host.invalid""#, line: 2)
    }
}
