import Foundation
import TestHarness
import XCTest

/// auth_basic, auth_request, `satisfy` and auth_delay side by side with Debian's nginx on one configuration:
/// every password format nginx reads (hashes made here by `openssl passwd` and Python), wrong users and
/// passwords, a missing file, a user file named by a variable, an auth_request through a real proxied backend
/// that allows, denies and challenges, auth_request_set, and satisfy any/all with allow/deny. Then what the
/// comparison does not show: nginx's error lines, and auth_delay's timing without holding the worker.
final class AuthParityTests: XCTestCase {
    /// The users of the password file, each with the password they were made with.
    private func passwordFile() throws -> (text: String, users: [(String, String)]) {
        func openssl(_ kind: String, _ password: String) -> String {
            runCommand(Tools.openssl, ["passwd", kind, password]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func python(_ code: String) -> String {
            runCommand("/usr/bin/python3", ["-W", "ignore", "-c", code]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let lines = [
            "md5:" + openssl("-1", "pw-md5"),
            "sha256:" + openssl("-5", "pw-sha256"),
            "sha512:" + openssl("-6", "pw-sha512"),
            "apr1:" + openssl("-apr1", "pw-apr1"),
            "des:" + python("import crypt; print(crypt.crypt('pw-des', 'ab'))"),
            "sha:" + python("import base64, hashlib; print('{SHA}' + base64.b64encode(hashlib.sha1(b'pw-sha').digest()).decode())"),
            "ssha:" + python("import base64, hashlib; s = b'saltsalt'; print('{SSHA}' + base64.b64encode(hashlib.sha1(b'pw-ssha' + s).digest() + s).decode())"),
            "plain:{PLAIN}pw-plain:a comment",
            "# comment:{PLAIN}x",
        ]
        for line in lines { XCTAssertGreaterThan(line.split(separator: ":", maxSplits: 1).last?.count ?? 0, 5, line) }
        let users = ["md5", "sha256", "sha512", "apr1", "des", "sha", "ssha", "plain"].map { ($0, "pw-" + $0) }
        // The last line without a newline, as nginx reads it too.
        return (lines.joined(separator: "\n") + "\nlast:{PLAIN}pw-last", users + [("last", "pw-last")])
    }

    private func config(port: UInt16, backend: UInt16, dir: String) -> String {
        """
        server {
            listen 127.0.0.1:\(backend);
            location = /check {
                if ($http_x_token = good) { add_header X-User alice; return 204; }
                if ($http_x_token = forbid) { return 403; }
                if ($http_x_token = odd) { return 302 /elsewhere; }
                add_header WWW-Authenticate 'Bearer realm="api"' always;
                return 401;
            }
        }
        server {
            listen 127.0.0.1:\(port);
            root \(dir)/html;
            location /basic/ {
                auth_basic "closed $host";
                auth_basic_user_file \(dir)/htpasswd;
                location /basic/open/ { auth_basic off; }
            }
            location /missing/ { auth_basic x; auth_basic_user_file \(dir)/nowhere; }
            location /var/ { auth_basic v; auth_basic_user_file \(dir)/$arg_f; }
            location /req/ {
                auth_request /auth;
                auth_request_set $user $upstream_http_x_user;
                auth_request_set $auth_status $upstream_status;
                add_header X-Auth-User "$user" always;
                add_header X-Auth-Status "$auth_status" always;
            }
            location = /auth {
                internal;
                proxy_pass http://127.0.0.1:\(backend)/check;
                proxy_pass_request_body off;
                proxy_set_header Content-Length "";
            }
            location /any/ {
                satisfy any;
                deny all;
                auth_basic any;
                auth_basic_user_file \(dir)/htpasswd;
                auth_request /auth;
            }
            location /all/ {
                satisfy all;
                allow 127.0.0.1;
                auth_basic all;
                auth_basic_user_file \(dir)/htpasswd;
                auth_request /auth;
            }
            location /deny-any/ { satisfy any; deny all; auth_request /auth; }
        }
        """
    }

    func testAuthenticationMatchesNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
        let vport = freePort(), vback = freePort(), nport = freePort(), nback = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let dir = vigil.prefix
        let (file, users) = try passwordFile()
        try file.write(toFile: dir + "/htpasswd", atomically: true, encoding: .utf8)
        for sub in ["basic", "basic/open", "var", "req", "any", "all", "deny-any", "missing"] {
            try FileManager.default.createDirectory(atPath: "\(dir)/html/\(sub)", withIntermediateDirectories: true)
            try "in \(sub)\n".write(toFile: "\(dir)/html/\(sub)/index.html", atomically: true, encoding: .utf8)
        }
        try vigil.write(config: Vigil.config(http: config(port: vport, backend: vback, dir: dir)))
        _ = try vigil.start()
        let nginx = try NginxPeer(http: config(port: nport, backend: nback, dir: dir), waitFor: [nport, nback])
        defer { nginx.cleanup() }

        func basic(_ user: String, _ password: String) -> String {
            "Authorization: Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        }
        var cases: [(path: String, headers: [String])] = [("/basic/", []), ("/basic/open/", []), ("/missing/", [basic("plain", "pw-plain")])]
        for (user, password) in users {
            cases.append(("/basic/", [basic(user, password)]))
            cases.append(("/basic/", [basic(user, password + "x")]))
        }
        cases += [
            ("/basic/", [basic("nobody", "pw")]), ("/basic/", [basic("#", "x")]), ("/basic/", [basic("", "pw-plain")]),
            ("/basic/", ["Authorization: Basic !!!"]), ("/basic/", ["Authorization: Bearer x"]),
            ("/var/?f=htpasswd", [basic("apr1", "pw-apr1")]), ("/var/?f=none", [basic("apr1", "pw-apr1")]),
            ("/req/", ["X-Token: good"]), ("/req/", ["X-Token: forbid"]), ("/req/", []), ("/req/", ["X-Token: odd"]),
            ("/auth", ["X-Token: good"]),
            ("/any/", []), ("/any/", ["X-Token: good"]), ("/any/", ["X-Token: forbid"]), ("/any/", [basic("plain", "pw-plain")]),
            ("/any/", ["X-Token: forbid", basic("plain", "nope")]),
            ("/all/", [basic("plain", "pw-plain")]), ("/all/", [basic("plain", "pw-plain"), "X-Token: good"]),
            ("/all/", ["X-Token: good"]),
            ("/deny-any/", []), ("/deny-any/", ["X-Token: good"]), ("/deny-any/", ["X-Token: forbid"]),
        ]
        var differences: [String] = []
        for c in cases {
            let request = getRequest(c.path, headers: c.headers + ["Connection: close"])
            let (v, n) = (comparable(try httpExchange(vport, request)), comparable(try httpExchange(nport, request)))
            if v != n { differences.append("\(c.path) \(c.headers):\n  vigil \(v)\n  nginx \(n)") }
        }
        XCTAssertEqual(differences, [], differences.joined(separator: "\n"))
        for (user, password) in users {
            XCTAssertEqual(try httpExchange(vport, getRequest("/basic/", headers: [basic(user, password), "Connection: close"])).text, "in basic\n", user)
        }
        let allowed = try httpExchange(vport, getRequest("/req/", headers: ["X-Token: good", "Connection: close"]))
        XCTAssertEqual([allowed.text, allowed.header("X-Auth-User"), allowed.header("X-Auth-Status")], ["in req\n", "alice", "204"])
        let challenged = try httpExchange(vport, getRequest("/req/", headers: ["Connection: close"]))
        XCTAssertEqual([challenged.status == 401 ? "401" : "", challenged.header("WWW-Authenticate")], ["401", "Bearer realm=\"api\""])

        // nginx's error lines, and a POST whose body stays for the location (the subrequest has none).
        let post = try httpExchange(vport, "POST /req/ HTTP/1.1\r\nHost: localhost\r\nX-Token: good\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual(post.header("X-Auth-User"), "alice")
        let log = vigil.errorLog()
        for line in ["user \"nobody\" was not found in \"\(dir)/htpasswd\"", "user \"md5\": password mismatch",
                     "open() \"\(dir)/nowhere\" failed (2: No such file or directory)", "open() \"\(dir)/none\" failed (2: No such file or directory)",
                     "auth request unexpected status: 302", "access forbidden by rule"] {
            XCTAssertTrue(log.contains(line), "no \(line) in\n\(log)")
            XCTAssertTrue(nginx.errorLog().contains(line), "nginx logs no \(line)")
        }
        XCTAssertFalse(log.contains("[alert]"), log)
    }

    /// auth_delay holds back a 401 only, and on a timer: another request is answered meanwhile.
    func testAuthDelay() throws {
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        try "u:{PLAIN}good\n".write(toFile: vigil.prefix + "/htpasswd", atomically: true, encoding: .utf8)
        let root = try vigil.htmlRoot([("index.html", Array("in\n".utf8))])
        try vigil.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                location / { auth_delay 1500ms; auth_basic x; auth_basic_user_file \(vigil.prefix)/htpasswd; }
                location /free { return 200 free; }
            }
            """))
        _ = try vigil.start()
        let auth = "Authorization: Basic " + Data("u:bad".utf8).base64EncodedString()
        let denied = try HTTPConnection(port: port)
        let started = Date()
        try denied.send(getRequest("/", headers: [auth]))
        // The one worker answers another client while the 401 waits.
        let free = try XCTUnwrap(httpGet(port, "/free"))
        XCTAssertEqual(free.body, "free")
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.0)
        XCTAssertEqual(try denied.readResponse().status, 401)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 1.4)
        let good = Date()
        XCTAssertEqual(try httpExchange(port, getRequest("/", headers: ["Authorization: Basic " + Data("u:good".utf8).base64EncodedString(),
                                                                        "Connection: close"])).status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(good), 1.0)
        XCTAssertTrue(vigil.errorLog().contains("delaying unauthorized request"))
    }

    /// A client that goes away while its request waits on auth_request's subrequest or on auth_delay: the
    /// subrequest's upstream request and the timer are dropped, and the worker serves the next client.
    func testClientGoneWhileWaiting() throws {
        let port = freePort(), slow = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        try "u:{PLAIN}good\n".write(toFile: vigil.prefix + "/htpasswd", atomically: true, encoding: .utf8)
        try vigil.write(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(slow);
                location / { auth_delay 700ms; auth_basic x; auth_basic_user_file \(vigil.prefix)/htpasswd; }
            }
            server {
                listen 127.0.0.1:\(port);
                location /req { auth_request /auth; proxy_pass http://127.0.0.1:\(port)/free; }
                location = /auth { proxy_pass http://127.0.0.1:\(slow)/; }
                location /delay { auth_delay 700ms; auth_basic x; auth_basic_user_file \(vigil.prefix)/htpasswd; }
                location /free { return 200 free; }
            }
            """))
        _ = try vigil.start()
        for path in ["/req", "/delay", "/req"] {
            let c = try HTTPConnection(port: port)
            try c.send(getRequest(path))
            usleep(200_000)
            c.close()
        }
        usleep(1_000_000)
        XCTAssertEqual(httpGet(port, "/free")?.body, "free")
        let log = vigil.errorLog()
        XCTAssertFalse(log.contains("[alert]"), log)
    }

    /// Status, the fields authentication decides and the body, the server's name in error pages made alike.
    private func comparable(_ r: HTTPResponse) -> [String] {
        let fields = r.headers.filter { ["www-authenticate", "x-auth-user", "x-auth-status", "location"].contains($0.name.lowercased()) }
            .map { "\($0.name): \($0.value)" }
        let body = r.text.replacingOccurrences(of: "nginx/1.22.1", with: "SERVER").replacingOccurrences(of: "vigil/0.1.0", with: "SERVER")
        return ["\(r.status)"] + fields + [body.debugDescription]
    }

    /// A worker remembers the headers it let in, but only against the password file as it was: an edit of the
    /// same size within the same second, a file renamed over it, a chmod and a removed user each take effect on
    /// the very next request, as with nginx's read per request; every refusal still logs its line.
    func testRememberedCredentialsFollowTheFile() throws {
        let port = freePort()
        let vigil = try Vigil(config: "")
        defer { vigil.cleanup() }
        let file = vigil.prefix + "/htpasswd"
        let sha = { (password: String) in
            runCommand("/usr/bin/python3", ["-c", "import base64, hashlib; print('{SHA}' + base64.b64encode(hashlib.sha1(b'\(password)').digest()).decode())"])
                .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try "u:\(sha("first-pw"))\n".write(toFile: file, atomically: false, encoding: .utf8)
        let root = try vigil.htmlRoot([("index.html", Array("in\n".utf8))])
        try vigil.write(config: Vigil.config(workers: 1, http: """
            server {
                listen 127.0.0.1:\(port);
                root \(root);
                location / { auth_basic x; auth_basic_user_file \(file); add_header X-User $remote_user; }
            }
            """))
        _ = try vigil.start()
        func status(_ password: String) throws -> Int {
            let auth = "Authorization: Basic " + Data("u:\(password)".utf8).base64EncodedString()
            return try httpExchange(port, getRequest("/", headers: [auth, "Connection: close"])).status
        }
        func mismatches() -> Int { vigil.errorLog().components(separatedBy: "user \"u\": password mismatch").count - 1 }

        for _ in 0..<3 { XCTAssertEqual(try status("first-pw"), 200) }
        let remembered = try httpExchange(port, getRequest("/", headers: ["Authorization: Basic " + Data("u:first-pw".utf8).base64EncodedString(),
                                                                          "Connection: close"]))
        XCTAssertEqual([remembered.text, remembered.header("X-User")], ["in\n", "u"])
        // Rewritten in place, same inode and size: the old password is out at once.
        try "u:\(sha("other-pw"))\n".write(toFile: file, atomically: false, encoding: .utf8)
        XCTAssertEqual(try status("first-pw"), 401)
        XCTAssertEqual(try status("other-pw"), 200)
        // Replaced by a rename, as htpasswd and editors do.
        try "u:\(sha("third-pw"))\n".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try status("other-pw"), 401)
        XCTAssertEqual(try status("third-pw"), 200)
        // Unreadable to the worker: nginx's 500, until it is readable again.
        XCTAssertEqual(chmod(file, 0), 0)
        XCTAssertEqual(try status("third-pw"), 500)
        XCTAssertEqual(chmod(file, 0o644), 0)
        XCTAssertEqual(try status("third-pw"), 200)
        // The user removed.
        try "someone:{PLAIN}else\n".write(toFile: file, atomically: false, encoding: .utf8)
        XCTAssertEqual(try status("third-pw"), 401)
        XCTAssertTrue(vigil.errorLog().contains("user \"u\" was not found in \"\(file)\""))
        // A refusal is never remembered: each one reads the file and logs.
        try "u:\(sha("third-pw"))\n".write(toFile: file, atomically: false, encoding: .utf8)
        let before = mismatches()
        for _ in 0..<3 { XCTAssertEqual(try status("wrong"), 401) }
        XCTAssertEqual(mismatches() - before, 3)
        XCTAssertFalse(vigil.errorLog().contains("[alert]"))
    }
}
