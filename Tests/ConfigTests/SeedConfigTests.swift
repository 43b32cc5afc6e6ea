import XCTest
@testable import Config

/// The two Chinese how-to posts in shared/seeds: the configurations users will paste, verbatim.
final class SeedConfigTests: XCTestCase {
    /// shared/seeds/000_1cf08e04f03f9959.txt, the `# cat nginx.conf` block, byte for byte.
    static let seed000 = #"""
worker_processes  1;
events {
    worker_connections  1024;
}


http {
    include       mime.types;
    default_type  application/octet-stream;
    sendfile        on;
    keepalive_timeout  65;

upstream test {
       server 10.4.81.41:900;
       server 10.4.81.42:900;
       check interval=3000 rise=2 fall=5 timeout=1000 type=tcp;
    }


    server {
        listen       80;
        server_name  localhost;

        location / {
         proxy_pass test;
        }
        location /status1 {
           stub_status on;      #配置nginx内置健康检查
           access_log  off;
        }
        location /status2 {     #配置upstream_check_module模块健康检查
           check_status;
           access_log off;
           #allow SOME.IP.ADD.RESS; #可以设置允许网段访问
           #deny all;
       }
    }
}

"""#

    /// shared/seeds/001_e644514c9e09b5b9.txt, the Tengine example (24 lines, a server and an upstream, no http{}).
    static let seed001 = #"""
server {
listen 8080;
location / {
proxy_pass http://test-domain/;
access_log /var/log/nginx/test-domain_http_access.log main;
}

location /upstream_status { # 配置显示后端服务器的健康状态页面(此配置全局生效,不需要在其他虚拟域名下重复配置)
check_status;
access_log off;
}
}

upstream test-domain {
ip_hash;
server 192.168.1.36:5000;
server 192.168.1.46:5000;

check interval=2000 rise=2 fall=3 timeout=1000 type=http; # 打开后端服务器的健康检查功能,配置健康检查参数
check_http_send "GET /ping HTTP/1.0\r\n\r\n"; # 配置http健康检查包发送的请求内容。为了减少传输数据量,推荐采用"HEAD"方法
check_http_expect_alive http_2xx http_3xx; # 指定HTTP回复的成功状态,默认认为2XX和3XX的状态是健康的。
#check_keepalive_requests 100; # 配置一个连接发送的请求数,其默认值为1,表示Tengine完成1次请求后即关闭连接,若是长连接建议配置大些
#check_shm_size 1M; # 所有的后端服务器健康检查状态都存于共享内存中,该指令可以设置共享内存的大小。默认是1M
}
"""#

    // MARK: seed 000

    /// Writes `text` as nginx.conf beside a copy of conf/mime.types and loads it.
    private func load000(_ text: String, dir: TempDir) throws -> Configuration {
        try dir.copyMimeTypes()
        let path = try dir.write("nginx.conf", text)
        return try Configuration.load(file: path, prefix: dir.path)
    }

    func testSeed000AsPostedFailsWithAHint() throws {
        let dir = try TempDir()
        XCTAssertThrowsError(try load000(Self.seed000, dir: dir)) { error in
            let e = error as? ConfigError
            XCTAssertEqual(e?.description, "invalid URL prefix in \(dir.path)/nginx.conf:25, did you mean \"http://test\"?")
            XCTAssertEqual(e?.line, 25)
            XCTAssertEqual(e?.level, .emerg)
        }
    }

    func testSeed000WithoutMimeTypesFailsAtTheInclude() throws {
        let dir = try TempDir()
        let path = try dir.write("nginx.conf", Self.seed000)
        let e = expectLoadError(file: path, prefix: dir.path)
        XCTAssertEqual(e?.description, "open() \"\(dir.path)/mime.types\" failed (2: No such file or directory) in \(path):8")
    }

    func testSeed000Fixed() throws {
        let fixed = Self.seed000
            .replacingOccurrences(of: "proxy_pass test;", with: "proxy_pass http://test;")
            .replacingOccurrences(of: "10.4.81.41:900", with: "127.0.0.1:900")
            .replacingOccurrences(of: "10.4.81.42:900", with: "127.0.0.1:901")
        let dir = try TempDir()
        let conf = try load000(fixed, dir: dir)
        XCTAssertTrue(conf.warnings.isEmpty, "\(conf.warnings)")
        XCTAssertEqual(conf.workerProcesses, 1)
        XCTAssertEqual(conf.workerConnections, 1024)

        let http = try XCTUnwrap(conf.http)
        XCTAssertEqual(http.settings.core.defaultType, "application/octet-stream")
        XCTAssertEqual(http.settings.core.sendfile, true)
        XCTAssertEqual(http.settings.core.keepaliveTimeout, 65_000)
        XCTAssertEqual(http.settings.core.types["html"], "text/html")
        XCTAssertEqual(http.settings.core.types["css"], "text/css")

        XCTAssertEqual(conf.checkedPeers.map(\.upstream), ["test", "test"])
        XCTAssertEqual(conf.checkedPeers.map(\.address), [peer("127.0.0.1", 900), peer("127.0.0.1", 901)])
        let c = try XCTUnwrap(conf.checkedPeers.first?.check)
        XCTAssertEqual([c.interval, c.rise, c.fall, c.timeout], [3000, 2, 5, 1000])
        XCTAssertEqual(c.type, .tcp)
        XCTAssertTrue(c.defaultDown)
        XCTAssertEqual(http.upstream(named: "test")?.declared, SourceLocation(file: dir.path + "/nginx.conf", line: 13))

        let server = try XCTUnwrap(http.servers.first)
        XCTAssertEqual(server.listens.map(\.address.description), ["0.0.0.0:80"])
        XCTAssertEqual(server.serverNames, ["localhost"])
        XCTAssertEqual(server.locations.map(\.pattern), ["/", "/status1", "/status2"])
        guard case .proxy(let pass) = server.locations[0].content, case .upstream(let name) = pass.target else {
            return XCTFail("location / does not proxy to an upstream")
        }
        XCTAssertEqual(name, "test")
        XCTAssertNil(pass.uri)
        guard case .stubStatus = server.locations[1].content else { return XCTFail("/status1 is not stub_status") }
        guard case .checkStatus = server.locations[2].content else { return XCTFail("/status2 is not check_status") }
        XCTAssertEqual(server.locations[1].settings.log.accessLogs, [])
        XCTAssertEqual(server.locations[2].settings.log.accessLogs, [])
        // Inherited from http.
        XCTAssertEqual(server.locations[0].settings.core.keepaliveTimeout, 65_000)
        XCTAssertEqual(server.locations[0].settings.core.types["html"], "text/html")
    }

    func testSeed000WithOnlyTheURLFixedAlsoLoads() throws {
        // The posted 10.4.81.x addresses are numeric: nothing to resolve, nothing to connect to at load time.
        let dir = try TempDir()
        let conf = try load000(Self.seed000.replacingOccurrences(of: "proxy_pass test;", with: "proxy_pass http://test;"), dir: dir)
        XCTAssertEqual(conf.checkedPeers.map(\.address), [peer("10.4.81.41", 900), peer("10.4.81.42", 900)])
    }

    // MARK: seed 001

    /// seed 001 inside `events {} http { ... }`: seed line N is file line N + 2 (+1 more per `extra` line).
    private func wrap001(_ seed: String = SeedConfigTests.seed001, extra: String? = nil) -> String {
        "events {}\nhttp {\n" + (extra.map { $0 + "\n" } ?? "") + seed + "\n}\n"
    }

    static let mainFormat = #"log_format main '$remote_addr - $remote_user [$time_local] "$request" ' '$status $body_bytes_sent "$http_referer" ' '"$http_user_agent" "$http_x_forwarded_for"';"#

    func testSeed001WrappedFailsOnUnknownLogFormat() {
        assertError(wrap001(), #"unknown log format "main""#, line: 7)
    }

    func testSeed001WithLogFormatLoads() throws {
        let conf = try XCTUnwrap(assertLoads(wrap001(extra: Self.mainFormat)))
        XCTAssertTrue(conf.warnings.isEmpty)
        let http = try XCTUnwrap(conf.http)
        let u = try XCTUnwrap(http.upstream(named: "test-domain"))
        XCTAssertEqual(u.balancer, .ipHash)
        XCTAssertEqual(u.servers.map(\.text), ["192.168.1.36:5000", "192.168.1.46:5000"])
        // The proxy_pass on seed line 4 is the first mention; the block is on seed line 14.
        XCTAssertEqual(u.firstMention, SourceLocation(file: confPath, line: 7))
        XCTAssertEqual(u.declared, SourceLocation(file: confPath, line: 17))

        let c = try XCTUnwrap(u.check)
        XCTAssertEqual([c.interval, c.rise, c.fall, c.timeout], [2000, 2, 3, 1000])
        XCTAssertEqual(c.type, .http)
        XCTAssertEqual(c.httpSend, Array("GET /ping HTTP/1.0\r\n\r\n".utf8))
        XCTAssertEqual(c.expectAlive, [.http2xx, .http3xx])
        XCTAssertEqual(c.keepaliveRequests, 1)
        XCTAssertEqual(conf.shmSize, 1_048_576)
        XCTAssertEqual(conf.checkedPeers.map(\.address), [peer("192.168.1.36", 5000), peer("192.168.1.46", 5000)])

        let server = try XCTUnwrap(http.servers.first)
        XCTAssertEqual(server.listens.map(\.address.description), ["0.0.0.0:8080"])
        guard case .proxy(let pass) = server.locations[0].content, case .upstream(let name) = pass.target else {
            return XCTFail("location / does not proxy to an upstream")
        }
        XCTAssertEqual(name, "test-domain")
        XCTAssertEqual(pass.uri, "/")
        XCTAssertEqual(server.locations[0].settings.log.accessLogs,
                       [AccessLogTarget(path: "/var/log/nginx/test-domain_http_access.log", format: "main")])
        guard case .checkStatus = server.locations[1].content else { return XCTFail("/upstream_status is not check_status") }
    }

    func testSeed001WithoutMainLoads() throws {
        let text = wrap001(Self.seed001.replacingOccurrences(of: "_http_access.log main;", with: "_http_access.log;"))
        XCTAssertNotEqual(text, wrap001(), "the replacement must apply")
        let conf = try XCTUnwrap(assertLoads(text))
        XCTAssertEqual(conf.http?.servers.first?.locations.first?.settings.log.accessLogs,
                       [AccessLogTarget(path: "/var/log/nginx/test-domain_http_access.log", format: "combined")])
        XCTAssertEqual(conf.checkedPeers.count, 2)
    }

    func testSeed001UncommentedShmSizeIsInTheWrongContext() {
        // Appendix B: the commented-out check_shm_size sits inside upstream{}.
        let text = wrap001(Self.seed001.replacingOccurrences(of: "#check_shm_size 1M;", with: "check_shm_size 1M;"),
                           extra: Self.mainFormat)
        assertError(text, #""check_shm_size" directive is not allowed here"#, line: 26)
    }

    func testSeed001UncommentedKeepaliveRequests() throws {
        let text = wrap001(Self.seed001.replacingOccurrences(of: "#check_keepalive_requests 100;", with: "check_keepalive_requests 100;"),
                           extra: Self.mainFormat)
        XCTAssertEqual(assertLoads(text)?.checkedPeers.first?.check.keepaliveRequests, 100)
    }

    func testSeed001HostHeaderPayload() throws {
        // The post's advice for HTTP/1.1 backends.
        let text = wrap001(Self.seed001.replacingOccurrences(
            of: #"check_http_send "GET /ping HTTP/1.0\r\n\r\n";"#,
            with: #"check_http_send "HEAD / HTTP/1.0\r\nHost: test-domain.cm-iov.com\r\n\r\n";"#), extra: Self.mainFormat)
        XCTAssertEqual(assertLoads(text)?.checkedPeers.first?.check.httpSend,
                       Array("HEAD / HTTP/1.0\r\nHost: test-domain.cm-iov.com\r\n\r\n".utf8))
    }
}
