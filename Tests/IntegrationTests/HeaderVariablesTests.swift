import Foundation
import TestHarness
import XCTest

/// Variables of repeated fields as nginx 1.23+ gives them (nginx 1.22 gave the first of most): a request's
/// `$http_*` and `$cookie_*` over every field, `$sent_http_*` over every field sent so far (add_header's
/// earlier ones included), `$upstream_http_*`, `$sent_trailer_*`; and `$remote_user` from Basic credentials.
final class HeaderVariablesTests: XCTestCase {
    func testRepeatedFieldsAreJoined() throws {
        let port = freePort()
        let vigil = try Vigil(config: Vigil.config(http: """
            server {
                listen 127.0.0.1:\(port);
                location / {
                    add_header X-Via $http_via;
                    add_header X-Cookie $http_cookie;
                    add_header X-Cookie-Bar $cookie_bar;
                    add_header X-User "[$remote_user]";
                    return 204;
                }
                location /sent {
                    add_header Link a;
                    add_header Link b;
                    add_header X-Links $sent_http_link;
                    return 204;
                }
                location /up { proxy_pass http://127.0.0.1:\(port)/backend; add_header X-Up $upstream_http_bar; }
                location /backend { add_header Bar 1; add_header Bar 2; return 204; }
            }
            """))
        defer { vigil.cleanup() }
        _ = try vigil.start()
        let r = try httpExchange(port, "GET / HTTP/1.0\r\nVia: a\r\nVia: b\r\nCookie: foo=1\r\nCookie: bar=2\r\n"
                                        + "Authorization: Basic dXNlcjpzZWNyZXQ=\r\n\r\n")
        XCTAssertEqual(r.header("X-Via"), "a, b")
        XCTAssertEqual(r.header("X-Cookie"), "foo=1; bar=2")
        XCTAssertEqual(r.header("X-Cookie-Bar"), "2", "a cookie from the second Cookie field")
        XCTAssertEqual(r.header("X-User"), "[user]")
        XCTAssertEqual(try httpExchange(port, "GET / HTTP/1.0\r\nAuthorization: Basic !!\r\n\r\n").header("X-User"), "[]")
        XCTAssertEqual(try httpExchange(port, "GET /sent HTTP/1.0\r\n\r\n").header("X-Links"), "a, b")
        XCTAssertEqual(try httpExchange(port, "GET /up HTTP/1.0\r\n\r\n").header("X-Up"), "1, 2")
        let twice = try httpExchange(port, "GET / HTTP/1.0\r\nAuthorization: Basic eDp5\r\nAuthorization: Basic eDp5\r\n\r\n")
        XCTAssertEqual(twice.status, 400, "a second Authorization is refused, as nginx refuses it")
    }
}
