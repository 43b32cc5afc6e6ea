import XCTest
@testable import Config

/// Directives Vigil accepts for compatibility and does not act on. One that asks for a behaviour Vigil does not
/// have (`sendfile on`, `proxy_buffering on`) still parses as nginx parses it and
/// leaves a `[notice]` saying so, with why and where, for `-t` to print; the tuning knobs every nginx.conf and
/// test harness carries (hash sizes, temp paths for responses Vigil never spools) are accepted quietly and
/// listed in the README.
final class NoEffectTests: XCTestCase {
    private func notices(_ text: String) throws -> [String] {
        try parseConf(text).notices.map(\.description)
    }

    func testDirectivesAskingForWhatVigilDoesNotDoSaySo() throws {
        let conf = """
            events { accept_mutex on; }
            http {
            sendfile on;
            tcp_nopush on;
            rewrite_log on;
            server {
            listen 127.0.0.1:8080;
            error_log /tmp/e.log;
            location / { proxy_buffering on; proxy_pass http://127.0.0.1:9000; }
            }
            }
            """
        let found = try notices(conf)
        for (name, line) in [("accept_mutex", 1), ("sendfile", 3), ("tcp_nopush", 4), ("rewrite_log", 5), ("proxy_buffering", 9)] {
            XCTAssertTrue(found.contains { $0.hasPrefix("\"\(name)\" has no effect in vigil: ") && $0.hasSuffix(" in \(confPath):\(line)") },
                          "\(name): \(found)")
        }
        XCTAssertEqual(found.count, 5, "a server's error_log is acted on: \(found)")
    }

    func testTheirOffValuesAndTuningKnobsAreQuiet() throws {
        let conf = """
            pcre_jit on;
            events { accept_mutex off; accept_mutex_delay 100ms; }
            http {
            sendfile off; tcp_nopush off; rewrite_log off;
            proxy_temp_path /tmp/p; fastcgi_temp_path /tmp/f; server_names_hash_bucket_size 64; types_hash_max_size 2048;
            server { listen 127.0.0.1:8080; location / { proxy_buffering off; proxy_buffers 8 4k; gzip_buffers 4 8k; proxy_pass http://127.0.0.1:9000; } }
            }
            """
        XCTAssertEqual(try notices(conf), [])
    }

    func testNoOpDirectivesStillParseAsNginxDoes() throws {
        assertError(inHTTP("sendfile on;\nsendfile off;"), #""sendfile" directive is duplicate"#, line: 4)
        assertError(inHTTP("proxy_buffering maybe;"), #"invalid value "maybe" in "proxy_buffering" directive, it must be "on" or "off""#, line: 3)
        assertError(inHTTP("proxy_temp_path;"), #"invalid number of arguments in "proxy_temp_path" directive"#, line: 3)
        XCTAssertTrue(try parseConf(inHTTP("")).notices.isEmpty, "a configuration without them has no notices")
    }

    /// proxy_buffer_size is acted on: the most an upstream's head may take, one page by default.
    func testProxyBufferSizeIsTheHeadLimit() throws {
        let conf = try parseConf(inHTTP("proxy_buffer_size 16k;\nserver { location / { proxy_buffer_size 2k; } }"))
        XCTAssertEqual(conf.http?.settings.proxy.bufferSize, 16384)
        XCTAssertEqual(conf.http?.servers.first?.settings.proxy.bufferSize, 16384)
        XCTAssertEqual(conf.http?.servers.first?.locations.first?.settings.proxy.bufferSize, 2048)
        XCTAssertEqual(try parseConf(inHTTP("")).http?.settings.proxy.bufferSize, 4096)
        XCTAssertTrue(try parseConf(inHTTP("proxy_buffer_size 8k;")).notices.isEmpty)
    }
}
