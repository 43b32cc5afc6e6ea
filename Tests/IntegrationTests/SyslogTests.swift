import Foundation
import TestHarness
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `error_log syslog:…` and `access_log syslog:…` on the real binary: nginx 1.22's datagrams (PRI, the header,
/// the tag, nohostname, the error log's line and the access log's format) over UDP and a unix socket, from the
/// master and the workers (which run as `user`), every level at once; nginx's `-t` errors; a server that is not
/// there, which loses lines and nothing else; reload and reopen; and the same datagrams as Debian's nginx.
final class SyslogTests: XCTestCase {
    /// `<PRI>Mmm dd HH:MM:SS ` as a pattern: every datagram's start.
    private func header(_ pri: Int) -> String { "<\(pri)>[A-Z][a-z]{2} [ 1-3][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} " }
    private let host = NSRegularExpression.escapedPattern(for: SyslogServer.hostname)
    /// The error log's own line after the header: `2026/12/07 07:14:41 [error] 18108#18108: `.
    private let errorLine = "[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} "

    private func assertMatches(_ s: String?, _ pattern: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotNil(s?.range(of: "^" + pattern + "$", options: .regularExpression), "\(s ?? "nothing") !~ \(pattern)", file: file, line: line)
    }

    private func get(_ port: UInt16, _ path: String, file: StaticString = #filePath, line: UInt = #line) -> Int? {
        let status = httpGet(port, path)?.status
        XCTAssertNotNil(status, "no answer to \(path)", file: file, line: line)
        return status
    }

    func testAccessAndErrorLogsAtEveryLevel() throws {
        let master = try SyslogServer(), http = try SyslogServer(), access = try SyslogServer()
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let root = try vigil.htmlRoot()
        try vigil.write(config: Vigil.config(http: """
            log_format logf "$uri:$status";
            error_log syslog:server=127.0.0.1:\(http.port),facility=local0 warn;
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                location = /plain { access_log syslog:server=127.0.0.1:\(access.port) logf; return 200; }
                location = /options {
                    access_log syslog:severity=alert,server=127.0.0.1:\(access.port),facility=user,tag=Web_1,nohostname logf;
                    return 204;
                }
                location = /both {
                    access_log \(vigil.prefix)/logs/both.log logf;
                    access_log syslog:server=127.0.0.1:\(access.port) logf;
                    access_log syslog:server=127.0.0.1:\(access.port),tag=again logf if=$arg_log;
                    return 200;
                }
                location = /combined { access_log syslog:server=127.0.0.1:\(access.port); return 200; }
            }
            """, main: "error_log syslog:server=127.0.0.1:\(master.port),tag=master notice;"))
        let pid = try vigil.start()

        // The master's lines (and the workers' main-context ones) at notice: local7.notice is 189.
        let started = master.receive(1, timeout: 5).first
        assertMatches(started, header(189) + host + " master: " + errorLine + "\\[notice\\] \(pid)#\(pid): start worker process [0-9]+")

        XCTAssertEqual(get(port, "/plain"), 200)
        assertMatches(access.receive(1, timeout: 5).first, header(190) + host + " nginx: /plain:200")
        // user.alert is 9; without the hostname, the tag follows the time.
        XCTAssertEqual(get(port, "/options"), 204)
        assertMatches(access.receive(1, timeout: 5).first, header(9) + "Web_1: /options:204")
        XCTAssertEqual(get(port, "/both?log=1"), 200)
        XCTAssertEqual(get(port, "/both"), 200)
        let both = access.receive(3, timeout: 5)
        XCTAssertEqual(both.count, 3, "\(both)")
        if both.count == 3 {
            assertMatches(both[0], header(190) + host + " nginx: /both:200")
            assertMatches(both[1], header(190) + host + " again: /both:200")
            assertMatches(both[2], header(190) + host + " nginx: /both:200")
        }
        XCTAssertEqual(try String(contentsOfFile: vigil.prefix + "/logs/both.log", encoding: .utf8), "/both:200\n/both:200\n")
        XCTAssertEqual(get(port, "/combined"), 200)
        assertMatches(access.receive(1, timeout: 5).first,
                      header(190) + host + " nginx: 127\\.0\\.0\\.1 - - \\[[^]]+\\] \"GET /combined HTTP/1\\.0\" 200 0 \"-\" \"-\"")

        // A request's error goes to the http level's server at its own level: local0.err is 131.
        XCTAssertEqual(get(port, "/missing"), 404)
        assertMatches(http.receive(1, timeout: 5).first, header(131) + host + " nginx: " + errorLine
                      + "\\[error\\] [0-9]+#[0-9]+: (\\*[0-9]+ )?open\\(\\) \"\(root)/missing\" failed \\(2: No such file or directory\\).*")
        XCTAssertTrue(master.receive(timeout: 0.3).allSatisfy { !$0.contains("[info]") }, "the main syslog server takes notice and above")
        XCTAssertFalse(vigil.errorLog().contains("syslog"), vigil.errorLog())
    }

    /// A unix datagram socket (a /dev/log of the test's own) that the workers connect to as `user`.
    func testUnixDatagramSocket() throws {
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let path = vigil.prefix + "/log.sock"
        let server = try SyslogServer(unixPath: path)
        let port = freePort()
        let root = try vigil.htmlRoot()
        try vigil.write(config: Vigil.config(http: """
            log_format logf "$uri:$status";
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                access_log syslog:server=unix:\(path),tag=unix logf;
                error_log syslog:server=unix:\(path),nohostname;
            }
            """))
        _ = try vigil.start()
        XCTAssertEqual(get(port, "/absent"), 404)
        let lines = server.receive(2, timeout: 5)
        XCTAssertEqual(lines.count, 2, "\(lines)")
        if lines.count == 2 {
            assertMatches(lines[0], header(187) + "nginx: " + errorLine + "\\[error\\] .*open\\(\\) \"\(root)/absent\" failed .*")
            assertMatches(lines[1], header(190) + host + " unix: /absent:404")
        }
    }

    /// nginx's wording for each bad parameter, with the file and line, at `-t`.
    func testBadParametersAreTestErrors() throws {
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let cases: [(directive: String, message: String)] = [
            ("error_log syslog:server=127.0.0.1,foo=bar;", "unknown syslog parameter \"foo=bar\""),
            ("error_log syslog:server=127.0.0.1,;", "unknown syslog parameter \"\""),
            ("error_log syslog:server=127.0.0.1,nohostname=1;", "unknown syslog parameter \"nohostname=1\""),
            ("error_log syslog:facility=user;", "no syslog server specified"),
            ("error_log syslog:server=127.0.0.1,facility=local8;", "unknown syslog facility \"local8\""),
            ("error_log syslog:server=127.0.0.1,severity=err;", "unknown syslog severity \"err\""),
            ("error_log syslog:server=127.0.0.1,tag=a-b;", "syslog \"tag\" only allows alphanumeric characters and underscore"),
            ("error_log syslog:server=127.0.0.1,tag=\(String(repeating: "t", count: 33));", "syslog tag length exceeds 32"),
            ("error_log syslog:server=127.0.0.1,server=127.0.0.2;", "duplicate syslog \"server\""),
            ("error_log syslog:server=127.0.0.1,tag=a,tag=b;", "duplicate syslog \"tag\""),
            ("error_log syslog:server=127.0.0.1:99999;", "invalid port in syslog server \"127.0.0.1:99999\""),
            ("error_log syslog:server=unix:;", "no path in the unix domain socket in syslog server \"unix:\""),
            ("error_log syslog:server=127.0.0.1 loud;", "invalid log level \"loud\""),
        ]
        for (directive, message) in cases {
            try vigil.write(config: Vigil.config(http: "", main: directive))
            let r = vigil.vigil(["-t"])
            XCTAssertEqual(r.status, 1, directive)
            XCTAssertTrue(r.stderr.hasPrefix("vigil: [emerg] \(message) in \(vigil.confPath):4\n"), "\(directive): \(r.stderr)")
        }
        let httpCases: [(directive: String, message: String)] = [
            ("access_log syslog:server=127.0.0.1,severity=info2;", "unknown syslog severity \"info2\""),
            ("access_log syslog:server=127.0.0.1 combined buffer=32k;", "logs to syslog cannot be buffered"),
            ("access_log syslog:server=127.0.0.1 nosuchformat;", "unknown log format \"nosuchformat\""),
        ]
        for (directive, message) in httpCases {
            try vigil.write(config: Vigil.config(http: "server { listen 127.0.0.1:\(freePort()); \(directive) }"))
            let r = vigil.vigil(["-t"])
            XCTAssertEqual(r.status, 1, directive)
            XCTAssertTrue(r.stderr.hasPrefix("vigil: [emerg] \(message) in \(vigil.confPath):10\n"), "\(directive): \(r.stderr)")
        }
    }

    /// A UDP port nobody listens on and a unix socket that does not exist: every request is answered at once,
    /// by the same worker, and each failure is logged once (a minute), not once per line.
    func testAServerThatIsNotThereLosesLinesOnly() throws {
        let gone = try SyslogServer()
        let deadPort = gone.port
        gone.close()
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        try vigil.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                access_log syslog:server=127.0.0.1:\(deadPort);
                location / { return 200; }
                location /unix { access_log syslog:server=unix:\(vigil.prefix)/none.sock; return 200; }
            }
            """, main: "error_log syslog:server=127.0.0.1:\(deadPort) info;"))
        let pid = try vigil.start()
        let worker = vigil.waitForWorkers(pid, count: 1)
        let began = Date()
        for i in 0..<50 { XCTAssertEqual(get(port, i % 2 == 0 ? "/" : "/unix"), 200) }
        XCTAssertLessThan(Date().timeIntervalSince(began), 10, "a send that fails must not block")
        XCTAssertEqual(vigil.waitForWorkers(pid, count: 1), worker, "the worker is still the one that started")
        let log = vigil.errorLog()
        func count(_ s: String) -> Int { log.components(separatedBy: s).count - 1 }
        let refused = count("[error] \(worker.first ?? 0)#\(worker.first ?? 0): send() failed (111: Connection refused)")
        XCTAssertTrue((1...2).contains(refused), "once for the access log's socket, at most once for the error log's: \(log)")
        XCTAssertEqual(count("[alert]"), 1, log)
        XCTAssertEqual(count("connect() failed (2: No such file or directory)"), 1, log)
        XCTAssertEqual(count("[warn]"), 2, log)
        XCTAssertEqual(count("send() to syslog failed while logging request, client: 127.0.0.1"), 2, log)
    }

    /// A reload sends to the new configuration's servers; a reopen leaves syslog as it is.
    func testReloadSwitchesServersAndReopenKeepsThem() throws {
        let first = try SyslogServer(), second = try SyslogServer()
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        func config(_ server: SyslogServer) -> String {
            Vigil.config(http: """
                log_format logf "$uri";
                server { listen 127.0.0.1:\(port); access_log syslog:server=127.0.0.1:\(server.port) logf; return 200; }
                """)
        }
        try vigil.write(config: config(first))
        _ = try vigil.start()
        XCTAssertEqual(get(port, "/one"), 200)
        XCTAssertEqual(first.receive(1, timeout: 5).first?.hasSuffix(" nginx: /one"), true)

        try vigil.write(config: config(second))
        XCTAssertEqual(vigil.vigil(["-s", "reload"]).status, 0)
        // The old worker may answer until it has seen the reload.
        let switched = waitFor(10, interval: 100_000) {
            _ = httpGet(port, "/two")
            return second.receive(1, timeout: 0.2).first?.hasSuffix(" nginx: /two") == true
        }
        XCTAssertTrue(switched, vigil.errorLog())
        _ = first.receive(timeout: 0.3)
        XCTAssertEqual(get(port, "/three"), 200)
        XCTAssertEqual(second.receive(1, timeout: 5).first?.hasSuffix(" nginx: /three"), true)
        XCTAssertEqual(first.receive(timeout: 0.3), [])

        XCTAssertEqual(vigil.vigil(["-s", "reopen"]).status, 0)
        XCTAssertTrue(waitFor(5) { vigil.errorLog().contains("reopening logs") })
        XCTAssertEqual(get(port, "/four"), 200)
        XCTAssertEqual(second.receive(1, timeout: 5).first?.hasSuffix(" nginx: /four"), true)
    }

    /// The same requests to Vigil and to Debian's nginx: the same datagrams but for the time.
    func testDatagramsMatchNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), nport = freePort()
        let vServer = try SyslogServer(), nServer = try SyslogServer()
        func http(_ port: UInt16, _ server: SyslogServer) -> String {
            """
            log_format parity "$request $status \\"$http_user_agent\\" $args";
            server {
                listen 127.0.0.1:\(port);
                access_log syslog:server=127.0.0.1:\(server.port) parity;
                location /f { access_log syslog:server=127.0.0.1:\(server.port),facility=daemon,severity=crit,tag=t1,nohostname parity; return 201; }
                location / { return 200; }
            }
            """
        }
        let vigil = try Vigil(config: Vigil.config(http: http(vport, vServer)))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let nginx = try NginxPeer(http: http(nport, nServer), waitFor: [nport])
        defer { nginx.cleanup() }

        let time = try NSRegularExpression(pattern: "^(<[0-9]+>)[A-Z][a-z]{2} [ 1-3][0-9] [0-9:]{8} ")
        func masked(_ s: String) -> String {
            time.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: "$1TIME ")
        }
        var got: [[String]] = []
        for (port, server) in [(vport, vServer), (nport, nServer)] {
            for path in ["/a?b=%22c%22", "/f/x", "/%01?x=%7F"] { _ = httpGet(port, path) }
            got.append(server.receive(3, timeout: 5).map(masked))
        }
        XCTAssertEqual(got[0].count, 3, "\(got[0])")
        XCTAssertEqual(got[0], got[1])
    }
}
