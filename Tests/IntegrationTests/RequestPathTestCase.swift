import Foundation
import TestHarness
import XCTest

/// The request path on the real binary, seen from a client (RequestPathTests: `return`, routing, keep-alive,
/// error codes; ProxyPathTests: proxying and balancing, the status pages and the access log). Backends are
/// Vigil's own `return` servers on other loopback ports (and, where the bytes a backend received matter, a
/// capture server inside the test). One worker, so that per-worker balancer state gives exact counts.
class RequestPathTestCase: XCTestCase {
    var vigil: Vigil?
    var port: UInt16 = 0
    var capture: CaptureServer?

    override func setUp() {
        port = freePort()
    }

    override func tearDown() {
        capture?.stop()
        vigil?.cleanup()
    }

    /// Starts Vigil with `http` as the body of the http block.
    func start(_ http: String, workers: Int = 1, file: StaticString = #filePath, line: UInt = #line) throws {
        let v = try Vigil(config: Vigil.config(workers: workers, http: http))
        vigil = v
        _ = try v.start(file: file, line: line)
    }

    /// A backend server block answering `text` on every URI.
    func backend(_ p: UInt16, _ text: String) -> String {
        "server { listen 127.0.0.1:\(p); location / { return 200 \"\(text)\"; } }\n"
    }

    func get(_ path: String, host: String = "localhost", headers: [String] = [], on p: UInt16? = nil) throws -> HTTPResponse {
        try httpExchange(p ?? port, getRequest(path, host: host, headers: headers))
    }

    /// nginx's built-in page with Vigil's name in the footer.
    func errorPage(_ title: String) -> String {
        "<html>\r\n<head><title>\(title)</title></head>\r\n<body>\r\n<center><h1>\(title)</h1></center>\r\n<hr><center>vigil/0.1.0</center>\r\n</body>\r\n</html>\r\n"
    }

    func errorLogEventually(contains s: String, timeout: TimeInterval = 3) -> Bool {
        waitFor(timeout) { self.vigil?.errorLog().contains(s) ?? false }
    }
}
