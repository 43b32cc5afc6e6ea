import Foundation
import FuzzSupport
import XCTest
@testable import Config

/// In-process, deterministic mutation fuzzing of the configuration parser (`Configuration.parse`).
/// Each iteration derives its own PRNG from the seed and its index, so a failure names everything needed
/// to replay it. `VIGIL_FUZZ_ITERATIONS` sets the count (default 2000) and `VIGIL_FUZZ_SEED` the seed.
///
/// Invariants: the parser never crashes or hangs; every error is a `ConfigError` worded
/// `<message> in <file>:<line>[, <hint>]` with a line inside the text (or `in command line` for `-g`);
/// a configuration that loads only checks peers of upstreams that have `check`, in shm order, and every
/// `proxy_pass` to an upstream names one that exists.
final class ConfigFuzzTests: XCTestCase {

    /// The file every fuzzed configuration pretends to be. Its directory does not exist, so an `include` that a
    /// mutation produces fails with an open() error (or a glob matches nothing) and never reads real files.
    static let fuzzFile = "/nonexistent-vigil-fuzz/conf/vigil.conf"
    static let fuzzPrefix = "/nonexistent-vigil-fuzz"

    // MARK: Corpus

    /// conf/vigil.conf, read at run time; its `include mime.types;` becomes an inline `types {}` block.
    static let demoConfig: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        let path = url.path + "/conf/vigil.conf"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        return text.components(separatedBy: "\n").map { line in
            line.trimmingCharacters(in: .whitespaces).hasPrefix("include")
                ? "    types { text/html html htm; text/plain txt; application/json json; }" : line
        }.joined(separator: "\n")
    }()

    /// shared/seeds/000: the `# cat nginx.conf` block, with `proxy_pass http://test;` fixed, loopback
    /// addresses, and the `include mime.types;` replaced by an inline `types {}` (no file system).
    static let seed000 = #"""
worker_processes  1;
events {
    worker_connections  1024;
}


http {
    types { text/html html htm; image/png png; }
    default_type  application/octet-stream;
    sendfile        on;
    keepalive_timeout  65;

upstream test {
       server 127.0.0.1:900;
       server 127.0.0.1:901;
       check interval=3000 rise=2 fall=5 timeout=1000 type=tcp;
    }


    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location / {
         proxy_pass http://test;
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

    /// shared/seeds/001: the Tengine fragment (a server and an upstream, no http{}), wrapped in
    /// `events {}` / `http {}` with the `main` log format it uses, on loopback addresses.
    static let seed001 = #"""
events {}
http {
log_format main '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent';
server {
listen 127.0.0.1:8080;
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
server 127.0.0.1:5000;
server 127.0.0.1:5001;

check interval=2000 rise=2 fall=3 timeout=1000 type=http; # 打开后端服务器的健康检查功能,配置健康检查参数
check_http_send "GET /ping HTTP/1.0\r\n\r\n"; # 配置http健康检查包发送的请求内容。为了减少传输数据量,推荐采用"HEAD"方法
check_http_expect_alive http_2xx http_3xx; # 指定HTTP回复的成功状态,默认认为2XX和3XX的状态是健康的。
#check_keepalive_requests 100; # 配置一个连接发送的请求数,其默认值为1,表示Tengine完成1次请求后即关闭连接,若是长连接建议配置大些
#check_shm_size 1M; # 所有的后端服务器健康检查状态都存于共享内存中,该指令可以设置共享内存的大小。默认是1M
}
}
"""#

    /// Every check-module directive and parameter, every check type, backup/down servers, companions before
    /// and after `check`, an upstream without `check`, and each status format.
    static let checkAll = #"""
worker_processes 2;
error_log stderr info;
events { worker_connections 64; use epoll; }
http {
    check_shm_size 2M;
    upstream web {
        least_conn;
        server 127.0.0.1:8081 weight=3 max_fails=2 fail_timeout=5s;
        server 127.0.0.1:8082 max_conns=10;
        server 127.0.0.1:8083 backup;
        server 127.0.0.1:8084 down;
        check_http_expect_alive http_2xx http_3xx http_4xx http_5xx;
        check interval=1000 fall=3 rise=2 timeout=500 default_down=false type=http port=8090;
        check_http_send "HEAD /health HTTP/1.1\r\nHost: web\r\nConnection: keep-alive\r\n\r\n";
        check_keepalive_requests 100;
        keepalive 16;
        keepalive_timeout 30s;
        keepalive_requests 500;
    }
    upstream db {
        hash $remote_addr consistent;
        server 127.0.0.1:3306;
        server 127.0.0.1:3307;
        check interval=3000 rise=2 fall=5 timeout=1000 type=mysql;
    }
    upstream fcgi {
        server 127.0.0.1:9000;
        check type=fastcgi interval=2000;
        check_fastcgi_param "REQUEST_METHOD" "GET";
        check_fastcgi_param "REQUEST_URI" "/ping";
        check_fastcgi_param "SCRIPT_FILENAME" "/srv/ping.php";
        check_http_expect_alive http_2xx;
    }
    upstream tomcat {
        ip_hash;
        server 127.0.0.1:8009;
        check interval=5000 type=ajp default_down=TRUE;
    }
    upstream tls {
        server 127.0.0.1:8443;
        server 127.0.0.1:8444;
        check type=ssl_hello interval=4000 fall=1 rise=1;
    }
    upstream plain {
        server 127.0.0.1:7000;
        server 127.0.0.1:7001 backup;
    }
    server {
        listen 127.0.0.1:8080 default_server backlog=128 reuseport;
        server_name example.com *.example.com;
        location / { proxy_pass http://web; }
        location /db { proxy_pass http://db/; }
        location /php { proxy_pass http://fcgi; }
        location /tomcat { proxy_pass http://tomcat; }
        location /tls { proxy_pass http://tls; }
        location /plain { proxy_pass http://plain; }
        location = /status { check_status; }
        location = /status.csv { check_status csv; }
        location = /status.json { check_status json; }
        location = /metrics { check_status prometheus; }
        location = /status.html { check_status html; access_log off; }
    }
    server {
        listen 127.0.0.1:8081;
        check_status json;
    }
}
"""#

    /// Companion directives before `check`, a second `check` keeping the first one's type, and a wide
    /// spread of http directives around them.
    static let checkCompanions = #"""
events {}
http {
    log_format short '$remote_addr $status' ;
    log_format quoted escape=json '{"s":"$status"}';
    access_log /tmp/a.log short;
    keepalive_timeout 65 60;
    client_header_timeout 10s;
    client_max_body_size 1m;
    large_client_header_buffers 4 8k;
    proxy_next_upstream error timeout http_502;
    proxy_set_header Host $host;
    upstream alpha {
        check_http_send 'GET / HTTP/1.0\r\n\r\n';
        check_http_expect_alive http_3xx;
        check_keepalive_requests 2;
        check type=http;
        check interval=10000 fall=2;
        server 127.0.0.1:1 weight=1;
        server [::1]:2;
    }
    upstream Beta {
        hash $request_uri;
        server 127.0.0.1:3;
        check_fastcgi_param A b;
        check_http_expect_alive http_5xx;
    }
    server {
        listen 127.0.0.1:9090;
        location /a/ {
            location /a/b { proxy_pass http://ALPHA; }
            allow 127.0.0.0/8;
            deny all;
        }
        location ~* \.(png|jpg)$ { root /srv; }
        location @named { return 204; }
        location /beta { proxy_pass http://beta/x; error_page 502 504 = /err; }
        location /lit { proxy_pass http://127.0.0.1:9999; }
        location = /s { stub_status; }
        return 404 "nothing here\n";
    }
}
"""#

    static var corpus: [[UInt8]] {
        [demoConfig, seed000, seed001, checkAll, checkCompanions].map { Array($0.utf8) }
    }

    /// `-g` parameter strings, sometimes passed and sometimes mutated.
    static let globalCorpus = ["daemon off;", "worker_processes 2;", "pid logs/other.pid;", "error_log stderr debug;",
                               "master_process on; daemon off;", "env TZ;"]

    // MARK: Mutations

    static let LF: UInt8 = 0x0A

    /// Bytes that mean something to the lexer, and bytes that mean nothing to anyone.
    static let interesting: [[UInt8]] = [
        [0x7B], [0x7D], [0x3B], [0x22], [0x27], [0x5C], [0x23], [0x24], [0x00], [0x0A], [0x0D], [0x09], [0x20],
        Array("${".utf8), Array("\\\"".utf8), Array("\";".utf8), Array("{}".utf8), Array(";;".utf8), Array("}}".utf8),
        [0x80], [0xFF], [0xC3], [0xC3, 0xA9], [0xE4, 0xB8, 0xAD], [0xF0, 0x9F, 0x98, 0x80], [0xEF, 0xBB, 0xBF],
        Array("=".utf8), Array(":".utf8), Array("/".utf8), Array("*".utf8), Array("~".utf8), Array("@".utf8),
    ]

    /// Whole statements to drop in at a line start (in any context, where they may or may not belong).
    static let statements: [String] = [
        "check interval=0 rise=-1 fall=abc timeout= type=nope port=70000 default_down=maybe;\n",
        "check type=http port=65535 interval=1;\n", "check;\n", "check_http_send \"\";\n",
        "check_http_expect_alive http_1xx;\n", "check_http_expect_alive http_2xx http_2xx;\n",
        "check_keepalive_requests 0;\n", "check_fastcgi_param a;\n", "check_shm_size 100G;\n", "check_shm_size 512k;\n",
        "check_status xml;\n", "check_status;\n", "server 127.0.0.1:1 backup down weight=0;\n", "server 127.0.0.1:0;\n",
        "server [::1;\n", "server unix:/tmp/s;\n", "server 127.0.0.1:8081 fail_timeout=1h30m max_fails=;\n",
        "upstream u { server 127.0.0.1:2; check; }\n", "upstream test { server 127.0.0.1:3; }\n", "ip_hash;\n",
        "least_conn;\n", "hash $x consistent;\n", "hash a b;\n", "keepalive 0;\n",
        "proxy_pass http://test;\n", "proxy_pass http://nowhere.invalid:99999;\n", "proxy_pass test;\n",
        "proxy_pass https://x;\n", "proxy_pass http://$host;\n", "proxy_pass http://[::1]:80/;\n",
        "location / { }\n", "location = /x { location /y {} }\n", "location @n { location /z {} }\n",
        "server { listen 127.0.0.1:8080 default_server; }\n", "listen 127.0.0.1:8080 default_server;\n",
        "listen *:65536;\n", "listen [::]:80 ipv6only=off;\n", "events { }\n", "http { }\n", "types { a/b c; a/c c; }\n",
        "error_page 404 =200 /x;\n", "error_page 499 /x;\n", "return 1000;\n", "return https://x;\n",
        "allow 10.0.0.1/33;\n", "deny ::1/129;\n", "allow 10.0.0.1/8;\n", "worker_connections 0;\n",
        "worker_processes auto;\n", "keepalive_timeout 1y;\n", "send_timeout 1m1h;\n", "client_max_body_size 9999999999999999999g;\n",
        "log_format main escape=json;\n", "access_log off main;\n", "error_log logs/e.log crit extra;\n",
        "include nothing.conf;\n", "include *.conf;\n", "include\n", "'unterminated\n", "\"\n", "\\\n", "#\n", "$\n", "}\n", "{\n",
        // The rewrite module, map, headers and gzip: the script compiler and its regexes.
        "set $a \"$b$1${c}d\";\n", "set $host x;\n", "set a b;\n", "if ($a) { return 204; }\n", "if ($a ~* ^(x+)(?<n>y)$) { set $b $n$1; }\n",
        "if (!-f $document_root$uri) { rewrite ^ /index.php last; }\n", "if ($a = ) { }\n", "if (a) { }\n", "if ($a ~ (x) {}\n",
        "rewrite ^/(.*)$ /$1?x=$2? break;\n", "rewrite (( /x;\n", "rewrite ^ $scheme://$host$request_uri permanent;\n",
        "rewrite ^ /x bogus;\n", "break;\n", "return 301 $scheme://$host$request_uri;\n", "return 200 \"$nosuch\";\n",
        "map $http_host $m { hostnames; default 0; *.example.com 1; ~^(?<w>www)\\. $w; }\n", "map $a $b { default x; default y; }\n",
        "map $a $b { a 1; a 2; }\n", "map $a $uri { }\n", "add_header X-A $a always;\n", "add_header X;\n",
        "proxy_redirect default;\n", "proxy_redirect off off;\n", "proxy_redirect http://a/ /b/;\n", "proxy_hide_header X;\n",
        "error_page 404 = @fallback;\n", "error_page 500 http://x/;\n", "gzip on;\n", "gzip_comp_level 10;\n",
        "gzip_types text/css application/*;\n", "gzip_proxied any bogus;\n", "gzip_disable \"msie6\" (;\n",
        "location ~ ^/(?<x>a)(b)$ { return 200 $x$2; }\n", "ssl_session_cache shared:A:1k;\n", "listen 443 ssl;\n",
    ]

    static let numbers = ["0", "1", "-1", "00", "65535", "65536", "99999999999999999999", "9223372036854775807",
                          "1k", "1m", "1g", "10s", "1h30m", "500ms", "auto", "", "x"]

    static func lineStarts(_ b: [UInt8]) -> [Int] {
        var starts = [0]
        for (k, c) in b.enumerated() where c == LF { starts.append(k + 1) }
        return starts
    }

    /// The line starting at `s`: up to and including its LF (or to the end of the text).
    static func lineRange(_ b: [UInt8], start s: Int) -> Range<Int> {
        var e = s
        while e < b.count && b[e] != LF { e += 1 }
        return s..<min(b.count, e + 1)
    }

    static func mutate(_ input: [UInt8], corpus: [[UInt8]], rng: inout SplitMix64) -> [UInt8] {
        var b = input
        for _ in 0..<(1 + rng.below(4)) {
            let n = b.count
            switch rng.below(16) {
            case 0 where n > 0: // flip a bit
                b[rng.below(n)] ^= UInt8(1) << UInt8(rng.below(8))
            case 1 where n > 0: // replace a byte with a lexer-significant one
                let piece = rng.pick(interesting)
                let at = rng.below(n)
                b.replaceSubrange(at..<(at + 1), with: piece)
            case 2, 3: // insert `{`, `}`, `;`, quotes, backslashes, `#`, `$`, NUL, non-ASCII ...
                b.insert(contentsOf: rng.pick(interesting), at: rng.below(n + 1))
            case 4 where n > 0: // delete a line
                let r = lineRange(b, start: rng.pick(lineStarts(b)))
                b.removeSubrange(r)
            case 5: // duplicate a line
                let r = lineRange(b, start: rng.pick(lineStarts(b)))
                b.insert(contentsOf: Array(b[r]), at: r.upperBound)
            case 6: // swap two lines
                let starts = lineStarts(b)
                let r1 = lineRange(b, start: rng.pick(starts)), r2 = lineRange(b, start: rng.pick(starts))
                if r1.upperBound <= r2.lowerBound {
                    let l1 = Array(b[r1]), l2 = Array(b[r2])
                    b.replaceSubrange(r2, with: l1)
                    b.replaceSubrange(r1, with: l2)
                }
            case 7 where n > 0: // delete a few bytes
                let at = rng.below(n)
                b.removeSubrange(at..<min(n, at + 1 + rng.below(12)))
            case 8: // splice: our prefix, another config's suffix
                let other = rng.pick(corpus)
                b = Array(b[0..<rng.below(n + 1)]) + Array(other[rng.below(other.count + 1)...])
            case 9: // splice at line boundaries: some of our lines, then some of another config's
                let other = rng.pick(corpus)
                b = Array(b[0..<rng.pick(lineStarts(b))]) + Array(other[rng.pick(lineStarts(other))...])
            case 10 where n > 0: // truncate
                b.removeSubrange(rng.below(n)...)
            case 11: // insert a whole statement at a line start
                b.insert(contentsOf: Array(rng.pick(statements).utf8), at: rng.pick(lineStarts(b)))
            case 12: // swap a digit run for another number or value
                let digits = b.indices.filter { (0x30...0x39).contains(b[$0]) }
                if !digits.isEmpty {
                    let at = rng.pick(digits)
                    var end = at
                    while end < b.count && (0x30...0x39).contains(b[end]) { end += 1 }
                    b.replaceSubrange(at..<end, with: Array(rng.pick(numbers).utf8))
                }
            case 13 where n > 0: // repeat a range (long words, deep nesting when it holds a `{`)
                let at = rng.below(n)
                let piece = Array(b[at..<min(n, at + 1 + rng.below(16))])
                let times = rng.chance(5) ? 300 : 1 + rng.below(4)
                b.insert(contentsOf: Array(repeating: piece, count: times).joined(), at: at)
            case 14 where n > 0: // drop or add the final newline
                if b.last == LF { b.removeLast() } else { b.append(LF) }
            default: // comment out or un-comment a line
                let s = rng.pick(lineStarts(b))
                if s < b.count, b[s] == UInt8(ascii: "#") { b.remove(at: s) } else { b.insert(UInt8(ascii: "#"), at: s) }
            }
        }
        return b
    }

    // MARK: Invariants

    enum Outcome {
        case loaded(Configuration)
        case failed(ConfigError)
        case otherError(String)
    }

    static func parse(_ text: String, global: String?) -> Outcome {
        do {
            return .loaded(try Configuration.parse(text: text, file: fuzzFile, prefix: fuzzPrefix, globalDirectives: global))
        } catch let e as ConfigError {
            return .failed(e)
        } catch {
            return .otherError("\(type(of: error)): \(error)")
        }
    }

    /// Errors that have no place in the file: nginx's own wording for a configuration without `events {}`.
    static let unlocatedMessages: Set<String> = ["no \"events\" section in configuration"]

    /// Problems with the parser's answer for `text` (with `-g` parameters `global`), or none; `outcome` is the
    /// kind of answer (for the statistics), `detail` all of it (to compare two parses).
    static func check(_ text: String, global: String?) -> (problems: [String], outcome: String, detail: String) {
        var problems: [String] = []
        let bytes = Array(text.utf8)
        let newlines = bytes.reduce(0) { $0 + ($1 == LF ? 1 : 0) }
        let lines = newlines + (bytes.last.map { $0 != LF } ?? false ? 1 : 0)

        switch parse(text, global: global) {
        case .otherError(let e):
            problems.append("threw a non-ConfigError: \(e)")
            return (problems, "other", e)

        case .failed(let e):
            let d = e.description
            if d.isEmpty { problems.append("empty description") }
            if e.message.isEmpty { problems.append("empty message in \(d.debugDescription)") }
            if let hint = e.hint, hint.isEmpty { problems.append("empty hint in \(d.debugDescription)") }
            var rest = Substring(d)
            if let hint = e.hint {
                if rest.hasSuffix(", " + hint) { rest = rest.dropLast(hint.count + 2) } else { problems.append("description \(d.debugDescription) does not end with its hint") }
            }
            switch e.file {
            case nil:
                if !unlocatedMessages.contains(e.message) { problems.append("error without a file: \(d.debugDescription)") }
                if rest != e.message { problems.append("description \(d.debugDescription) is not the message") }
            case "command line":
                if global == nil { problems.append("located in the command line without -g: \(d.debugDescription)") }
                if e.line != 0 || !rest.hasSuffix(" in command line") || rest.dropLast(" in command line".count) != e.message {
                    problems.append("-g error not worded `<message> in command line`: \(d.debugDescription) (line \(e.line))")
                }
            case fuzzFile:
                let suffix = " in \(fuzzFile):\(e.line)"
                if !rest.hasSuffix(suffix) || rest.dropLast(suffix.count) != e.message || rest.dropLast(suffix.count).isEmpty {
                    problems.append("description \(d.debugDescription) is not `<message> in <file>:<line>`")
                }
                if !(e.line > 0 && e.line <= lines + 1) {
                    problems.append("line \(e.line) outside 1...\(lines + 1): \(d.debugDescription)")
                }
            case let other?:
                // Only an include could name another file, and includes here never find one.
                problems.append("error in unexpected file \(other): \(d.debugDescription)")
            }
            if !e.message.hasPrefix("open() ") && !e.message.hasPrefix("glob() ") && e.message.contains("/nonexistent-vigil-fuzz/conf/") {
                problems.append("error names an included file: \(d.debugDescription)")
            }
            let key = e.message.prefix { $0 != "\"" }.trimmingCharacters(in: .whitespaces)
            return (problems, key.isEmpty ? e.message : key, "\(e.level) \(d)")

        case .loaded(let conf):
            if conf.events == nil { problems.append("loaded without an events block") }
            for w in conf.warnings {
                let inFile = w.file == fuzzFile && w.line > 0 && w.line <= lines + 1
                let inCommandLine = w.file == "command line" && w.line == 0 && global != nil
                if w.level != .warn || w.message.isEmpty || !(inFile || inCommandLine) {
                    problems.append("warning \(w.description.debugDescription) (level \(w.level), line \(w.line))")
                }
            }
            problems += checkLoaded(conf)
            _ = conf.dump()
            let peers = conf.checkedPeers.map { "\($0.upstream) \($0.checkAddress) \($0.check.type)" }
            return (problems, "loaded", "loaded \(peers) \(conf.warnings.map(\.description))")
        }
    }

    /// A configuration that loaded: checked peers, upstream references and listens make sense.
    static func checkLoaded(_ conf: Configuration) -> [String] {
        var problems: [String] = []
        guard let http = conf.http else {
            if !conf.checkedPeers.isEmpty { problems.append("checked peers without an http block") }
            return problems
        }
        var expected: [String] = []
        for u in http.upstreams {
            if u.declared == nil { problems.append("upstream \(u.name) was never declared") }
            if u.servers.isEmpty { problems.append("upstream \(u.name) has no servers") }
            guard u.check != nil else { continue }
            for backup in [false, true] {
                for s in u.servers where s.backup == backup && !s.down {
                    for a in s.addresses { expected.append("\(u.name)/\(a)") }
                }
            }
        }
        for p in conf.checkedPeers {
            let owners = http.upstreams.filter { $0.name == p.upstream }
            if owners.count != 1 { problems.append("checked peer \(p.address) of upstream \(p.upstream): \(owners.count) upstreams of that name") }
            guard let u = owners.first else { continue }
            if u.check == nil { problems.append("checked peer \(p.address) in upstream \(p.upstream), which has no check") }
            if u.check != p.check { problems.append("checked peer \(p.address) carries other check settings than upstream \(p.upstream)") }
            if !u.servers.contains(where: { !$0.down && $0.addresses.contains(p.address) }) {
                problems.append("checked peer \(p.address) is not a live server of upstream \(p.upstream)")
            }
            if !(1...65535).contains(Int(p.checkAddress.port)) { problems.append("checked peer \(p.address) probes port \(p.checkAddress.port)") }
        }
        let got = conf.checkedPeers.map { "\($0.upstream)/\($0.address)" }
        if got != expected { problems.append("checked peers \(got) instead of \(expected)") }

        func walk(_ locs: [Location]) {
            for l in locs {
                if case .proxy(let pass) = l.content, case .upstream(let name) = pass.target, http.upstream(named: name) == nil {
                    problems.append("proxy_pass to upstream \(name), which does not exist")
                }
                walk(l.locations)
            }
        }
        for s in http.servers {
            walk(s.locations)
            if s.listens.isEmpty { problems.append("a server without listens") }
        }
        return problems
    }

    // MARK: Driver


    static var iterations: Int { FuzzEnvironment.iterations(default: 2000) }

    static var seed: UInt64 { FuzzEnvironment.seed(default: 0xC0F1_6F22) }

    /// One iteration: a mutated configuration, sometimes with (possibly mutated) `-g` parameters.
    static func runCase(_ iteration: Int, seed: UInt64, corpus: [[UInt8]], progress: FuzzProgress) {
        var rng = SplitMix64(seed: seed ^ (UInt64(iteration) &* 0xD1B5_4A32_D192_ED03))
        let input = mutate(rng.pick(corpus), corpus: corpus, rng: &rng)
        var global: String?
        if rng.chance(10) {
            var g = Array(rng.pick(globalCorpus).utf8)
            if rng.chance(50) { g = mutate(g, corpus: globalCorpus.map { Array($0.utf8) }, rng: &rng) }
            global = String(decoding: g, as: UTF8.self)
        }
        // What the parser sees: invalid UTF-8 is repaired when the bytes become a String.
        let text = String(decoding: input, as: UTF8.self)
        progress.start(Array(text.utf8))
        var (problems, outcome, detail) = check(text, global: global)
        // The same text twice gives the same answer (no state leaks between parses).
        if rng.chance(10) {
            let again = check(text, global: global)
            if again.detail != detail { problems.append("second parse: \(again.detail) vs first: \(detail)") }
        }
        progress.count(outcome)
        for p in problems {
            progress.fail("seed \(seed) iteration \(iteration)\(global.map { " -g \($0.debugDescription)" } ?? ""): \(p)\n"
                          + "config: \(text.debugDescription)")
        }
        progress.finish()
    }

    func testMutationFuzz() {
        // Mutated host names would otherwise go to DNS: slow, flaky, and not what is being tested.
        Resolver.looksUpNames = false
        defer { Resolver.looksUpNames = true }
        let iterations = Self.iterations, seed = Self.seed
        let corpus = Self.corpus
        guard let progress = FuzzProgress.runTest(
            "config fuzz", iterations: iterations, seed: seed,
            show: { String(decoding: $0, as: UTF8.self).debugDescription },
            summary: { outcomes in
                "\(outcomes["loaded"] ?? 0) loaded; top outcomes: "
                    + outcomes.sorted { $0.value > $1.value }.prefix(12).map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            },
            { Self.runCase($0, seed: seed, corpus: corpus, progress: $1) }) else { return }
        // The mutations must leave enough configurations whole to reach the directive handlers and finish().
        if iterations >= 500 {
            XCTAssertGreaterThan(progress.outcomes["loaded"] ?? 0, iterations / 50, "too few mutated configurations load")
        }
    }

    /// Every corpus entry loads, has checked peers where it should, and passes the invariants itself.
    func testCorpusIsValid() throws {
        XCTAssertFalse(Self.demoConfig.isEmpty, "conf/vigil.conf could not be read")
        for (k, entry) in Self.corpus.enumerated() {
            let text = String(decoding: entry, as: UTF8.self)
            guard case .loaded(let conf) = Self.parse(text, global: nil) else {
                XCTFail("corpus entry \(k) does not load: \(Self.parse(text, global: nil))")
                continue
            }
            XCTAssertFalse(conf.checkedPeers.isEmpty, "corpus entry \(k) has no checked peers")
            XCTAssertEqual(Self.check(text, global: nil).problems, [], "corpus entry \(k)")
        }
        // The check-module entry: down and unchecked servers are skipped, backups come after primaries.
        let conf = try Configuration.parse(text: Self.checkAll, file: Self.fuzzFile, prefix: Self.fuzzPrefix)
        XCTAssertEqual(conf.checkedPeers.map { "\($0.upstream) \($0.address) \($0.check.type)" }, [
            "web 127.0.0.1:8081 http", "web 127.0.0.1:8082 http", "web 127.0.0.1:8083 http",
            "db 127.0.0.1:3306 mysql", "db 127.0.0.1:3307 mysql", "fcgi 127.0.0.1:9000 fastcgi",
            "tomcat 127.0.0.1:8009 ajp", "tls 127.0.0.1:8443 ssl_hello", "tls 127.0.0.1:8444 ssl_hello",
        ])
        XCTAssertEqual(conf.shmSize, 2 << 20)
    }

    /// The invariants catch what they should: a wrong location, and an error without `in file:line`.
    func testInvariantsRejectBadErrors() {
        XCTAssertEqual(Self.check("events {}\nhttp { bogus; }\n", global: nil).problems, [])
        XCTAssertEqual(Self.check("events {}\n", global: "bogus;").problems, [])
        XCTAssertEqual(Self.check("http {}\n", global: nil).problems, [])
        XCTAssertEqual(Self.check("events {}\nhttp {\n", global: nil).outcome, "unexpected end of file, expecting")
    }

    /// The mutator itself is deterministic: the same seed gives the same cases.
    func testMutatorIsDeterministic() {
        let corpus = Self.corpus
        for iteration in 0..<50 {
            var a = SplitMix64(seed: 42 ^ UInt64(iteration)), b = SplitMix64(seed: 42 ^ UInt64(iteration))
            let input = corpus[iteration % corpus.count]
            XCTAssertEqual(Self.mutate(input, corpus: corpus, rng: &a), Self.mutate(input, corpus: corpus, rng: &b))
        }
    }
}

