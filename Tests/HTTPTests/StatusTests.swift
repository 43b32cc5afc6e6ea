import XCTest
@testable import HTTP

final class StatusTests: XCTestCase {

    func testErrorPageHasNginxShape() {
        XCTAssertEqual(Status.errorPage(404, serverTokens: "vigil/0.1.0"),
                       "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n"
                       + "<hr><center>vigil/0.1.0</center>\r\n</body>\r\n</html>\r\n")
        XCTAssertEqual(Status.errorPage(502, serverTokens: "vigil"),
                       "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
                       + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
    }

    func testPagesWhoseTitleIsNotTheStatusLineReason() {
        // nginx's 302 and 401 pages say "Found" and "Authorization Required" while the status lines say
        // "Moved Temporarily" and "Unauthorized".
        XCTAssertEqual(Status.errorPage(302, serverTokens: "vigil"),
                       "<html>\r\n<head><title>302 Found</title></head>\r\n<body>\r\n<center><h1>302 Found</h1></center>\r\n"
                       + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
        XCTAssertEqual(Status.errorPage(401, serverTokens: "vigil"),
                       "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n"
                       + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
        XCTAssertEqual(Status.line(302), "HTTP/1.1 302 Moved Temporarily")
        XCTAssertEqual(Status.line(401), "HTTP/1.1 401 Unauthorized")
    }

    func testErrorPage494IsNginxsHeaderTooLargePage() {
        // ngx_http_error_494_page: a 400 title with a second centered line, then the usual tail.
        XCTAssertEqual(Status.errorPage(494, serverTokens: "vigil"),
                       "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n"
                       + "<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n"
                       + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
    }

    func testEveryErrorPageIsWellFormed() throws {
        for code in [301, 303, 307, 308, 400] + Array(402...406) + Array(408...416) + [421, 429] + Array(500...505) + [507] {
            let page = try XCTUnwrap(Status.errorPage(code, serverTokens: "vigil"), "\(code)")
            let title = "\(code) \(Status.reason(code))"
            XCTAssertFalse(Status.reason(code).isEmpty, "\(code)")
            XCTAssertEqual(page, "<html>\r\n<head><title>\(title)</title></head>\r\n<body>\r\n<center><h1>\(title)</h1></center>\r\n"
                           + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
        }
    }

    func testNoPageWhereNginxSendsNone() {
        for code in [100, 200, 204, 206, 300, 304, 305, 399, 407, 418, 422, 499, 508, 599, 600] {
            XCTAssertNil(Status.errorPage(code, serverTokens: "vigil"), "\(code)")
        }
    }

    func testReasonPhrasesAreNginxs() {
        let expected: [Int: String] = [
            200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
            301: "Moved Permanently", 302: "Moved Temporarily", 303: "See Other", 304: "Not Modified",
            307: "Temporary Redirect", 308: "Permanent Redirect",
            400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Not Allowed",
            408: "Request Time-out", 413: "Request Entity Too Large", 414: "Request-URI Too Large",
            416: "Requested Range Not Satisfiable", 429: "Too Many Requests",
            500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
            503: "Service Temporarily Unavailable", 504: "Gateway Time-out", 505: "HTTP Version Not Supported",
        ]
        for (code, reason) in expected {
            XCTAssertEqual(Status.reason(code), reason, "\(code)")
        }
        XCTAssertEqual(Status.reason(418), "")
        XCTAssertEqual(Status.reason(999), "")
    }

    func testStatusLine() {
        XCTAssertEqual(Status.line(200), "HTTP/1.1 200 OK")
        XCTAssertEqual(Status.line(504), "HTTP/1.1 504 Gateway Time-out")
        XCTAssertEqual(Status.line(599), "HTTP/1.1 599")
    }
}
