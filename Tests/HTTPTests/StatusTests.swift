import XCTest
@testable import HTTP

final class StatusTests: XCTestCase {

    func testStatusLinesWhoseErrorPagesSayOtherwise() {
        XCTAssertEqual(Status.line(302), "HTTP/1.1 302 Moved Temporarily")
        XCTAssertEqual(Status.line(401), "HTTP/1.1 401 Unauthorized")
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
        // The space stays without a phrase (RFC 9112 §4), as nginx writes it.
        XCTAssertEqual(Status.line(599), "HTTP/1.1 599 ")
    }
}
