import XCTest
import HTTP
@testable import HTTPServer

/// nginx's built-in error and redirect pages, byte for byte.
final class ErrorPagesTests: XCTestCase {

    func testErrorPageHasNginxShape() {
        XCTAssertEqual(ErrorPages.page(404, serverTokens: "vigil/0.1.0"),
                       "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n"
                       + "<hr><center>vigil/0.1.0</center>\r\n</body>\r\n</html>\r\n")
        XCTAssertEqual(ErrorPages.page(502, serverTokens: "vigil"),
                       "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
                       + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
    }

    func testPagesWhoseTitleIsNotTheStatusLineReason() {
        // nginx's 302 and 401 pages say "Found" and "Authorization Required" while the status lines say
        // "Moved Temporarily" and "Unauthorized".
        XCTAssertEqual(ErrorPages.page(302, serverTokens: "vigil"),
                       "<html>\r\n<head><title>302 Found</title></head>\r\n<body>\r\n<center><h1>302 Found</h1></center>\r\n"
                       + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
        XCTAssertEqual(ErrorPages.page(401, serverTokens: "vigil"),
                       "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n"
                       + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
    }

    func testErrorPage494IsNginxsHeaderTooLargePage() {
        // nginx's 494 page: a 400 title with a second centered line, then the usual tail.
        XCTAssertEqual(ErrorPages.page(494, serverTokens: "vigil"),
                       "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n"
                       + "<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n"
                       + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
    }

    func testEveryErrorPageIsWellFormed() throws {
        for code in [301, 303, 307, 308, 400] + Array(402...406) + Array(408...416) + [421, 429] + Array(500...505) + [507] {
            let page = try XCTUnwrap(ErrorPages.page(code, serverTokens: "vigil"), "\(code)")
            let title = "\(code) \(Status.reason(code))"
            XCTAssertFalse(Status.reason(code).isEmpty, "\(code)")
            XCTAssertEqual(page, "<html>\r\n<head><title>\(title)</title></head>\r\n<body>\r\n<center><h1>\(title)</h1></center>\r\n"
                           + "<hr><center>vigil</center>\r\n</body>\r\n</html>\r\n")
        }
    }

    func testNoPageWhereNginxSendsNone() {
        for code in [100, 200, 204, 206, 300, 304, 305, 399, 407, 418, 422, 499, 508, 599, 600] {
            XCTAssertNil(ErrorPages.page(code, serverTokens: "vigil"), "\(code)")
        }
    }
}
