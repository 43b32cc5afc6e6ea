import Foundation
import TestHarness
import XCTest

/// nginx's tuning directives Vigil accepts without effect are still checked as nginx checks them, and
/// reset_timedout_connection closes a client that timed out with a RST instead of a FIN.
final class TuningDirectiveTests: XCTestCase {
    func testTuningDirectivesAreCheckedAndAccepted() throws {
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            aio threads; directio 4m; output_buffers 2 32k; sendfile_max_chunk 512k; postpone_output 1460;
            open_file_cache max=1000 inactive=20s; open_file_cache_valid 30s; open_file_cache_min_uses 2;
            open_file_cache_errors on; lingering_close always; lingering_time 30s; lingering_timeout 5s;
            msie_padding off; proxy_max_temp_file_size 0; proxy_temp_file_write_size 64k; proxy_store off;
            server { listen 127.0.0.1:\(port); location / { return 200 "ok"; } }
            """))
        defer { vigil.cleanup() }
        let ok = vigil.vigil(["-t"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        for (line, message) in [("directio 4q;", "\"directio\" directive invalid value"),
                                ("open_file_cache inactive=20s;", "\"open_file_cache\" must have the \"max\" parameter"),
                                ("aio sometimes;", "invalid value \"sometimes\""),
                                ("proxy_store on;", "\"proxy_store on\" is not supported by vigil"),
                                ("reset_timedout_connection maybe;", "it must be \"on\" or \"off\"")] {
            try vigil.write(config: Vigil.config(http: "\(line)\nserver { listen 127.0.0.1:\(port); }"))
            let t = vigil.vigil(["-t"])
            XCTAssertEqual(t.status, 1, line)
            XCTAssertTrue(t.stderr.contains(message), "\(line): \(t.stderr)")
        }
    }

    func testResetTimedoutConnectionSendsARst() throws {
        let plain = freePort(), resetting = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            client_header_timeout 1s;
            server { listen 127.0.0.1:\(plain); location / { return 200; } }
            server { listen 127.0.0.1:\(resetting); reset_timedout_connection on; location / { return 200; } }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        for (port, reset) in [(plain, false), (resetting, true)] {
            let c = try HTTPConnection(port: port)
            try c.send("GET / HTTP/1.1\r\nHost: x\r\n")   // half a head: client_header_timeout ends it
            var byte: UInt8 = 0
            let n = read(c.fd, &byte, 1)
            let error = errno
            c.close()
            if reset {
                XCTAssertEqual(n, -1, "a RST, not an orderly close")
                XCTAssertEqual(error, ECONNRESET)
            } else {
                XCTAssertEqual(n, 0, "an orderly close")
            }
        }
    }
}
