import Foundation
import TestHarness
import XCTest

/// TLS on the real binary, against real TLS peers on 127.0.0.1: `curl` and `openssl s_client` as clients,
/// `openssl s_server -www` and Debian's nginx as upstreams and checked peers. Certificates come from a private
/// PKI the test makes with the openssl CLI (TestPKI). Where the expected behaviour is nginx's, it was checked
/// against Debian's nginx 1.22 with the same configuration. TLSTests: the client side; TLSUpstreamTests:
/// `proxy_pass https://` and checks over TLS.
class TLSTestCase: XCTestCase {
    static var sharedPKI: TestPKI?
    static var pkiFailure = ""

    var pki: TestPKI!
    var vigils: [Vigil] = []
    var nginxPeers: [NginxPeer] = []
    var children: [Process] = []
    var scratch = ""

    override class func setUp() {
        super.setUp()
        guard Tools.available(Tools.openssl) else { return }
        do { sharedPKI = try TestPKI() } catch { pkiFailure = "\(error)" }
    }

    override class func tearDown() {
        sharedPKI?.remove()
        sharedPKI = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        try XCTSkipUnless(Tools.available(Tools.openssl), "openssl is not installed (scripts/install-deps installs it)")
        pki = try XCTUnwrap(Self.sharedPKI, "the test PKI could not be made: \(Self.pkiFailure)")
        scratch = NSTemporaryDirectory() + "vigil-tls-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        for v in vigils { v.cleanup() }
        for n in nginxPeers { n.cleanup() }
        for c in children { stopProcess(c) }
        vigils = []
        nginxPeers = []
        children = []
        try? FileManager.default.removeItem(atPath: scratch)
    }

    func requireCurl() throws {
        try XCTSkipUnless(Tools.available(Tools.curl), "curl is not installed (scripts/install-deps installs it)")
    }

    func requireNginx() throws {
        try XCTSkipUnless(Tools.available(Tools.nginx), "Debian's nginx is not installed (scripts/install-deps installs it)")
    }

    // MARK: helpers

    /// Starts Vigil with `http` as the body of the http block.
    @discardableResult
    func startVigil(workers: Int = 1, _ http: String, file: StaticString = #filePath, line: UInt = #line) throws -> (Vigil, Int32) {
        let v = try Vigil(config: Vigil.config(workers: workers, http: http))
        vigils.append(v)
        let master = try v.start(file: file, line: line)
        return (v, master)
    }

    /// `ssl_certificate` / `ssl_certificate_key` lines for the PKI's pairs, in order.
    func certs(_ names: String...) -> String {
        names.map { "ssl_certificate \(pki.cert($0)); ssl_certificate_key \(pki.key($0));" }.joined(separator: "\n")
    }

    struct CurlResult: CustomStringConvertible {
        let code: Int
        let body: String
        let run: RunResult
        var description: String { "curl exit \(run.status), http \(code), body \(body.debugDescription), stderr \(run.stderr)" }
    }

    /// One curl request: `*.test` names resolve to 127.0.0.1, the test CA is trusted (unless `cacert` says otherwise).
    func curl(_ url: String, _ flags: [String] = [], cacert: String? = nil) -> CurlResult {
        let bodyFile = scratch + "/curl-" + UUID().uuidString.prefix(8)
        defer { unlink(bodyFile) }
        var args = ["-sS", "--max-time", "8", "-o", bodyFile, "-w", "%{http_code}", "--cacert", cacert ?? pki.caCert]
        if let u = URL(string: url), let host = u.host, host.hasSuffix(".test"), let port = u.port {
            args += ["--resolve", "\(host):\(port):127.0.0.1"]
        }
        let r = runCommand(Tools.curl, args + flags + [url], timeout: 12)
        let body = (try? String(contentsOfFile: bodyFile, encoding: .utf8)) ?? ""
        return CurlResult(code: Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, body: body, run: r)
    }

    /// The lines of a log file under the instance's logs/ (no empty string after the last newline).
    func logLines(_ v: Vigil, _ name: String) -> [String] {
        ((try? String(contentsOfFile: v.prefix + "/logs/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// 1-based number of the first line of the instance's config that contains `needle`.
    func configLine(_ v: Vigil, containing needle: String) -> Int? {
        let text = (try? String(contentsOfFile: v.confPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains(needle) }.map { $0 + 1 }
    }

    /// Waits until the peer closes `fd` (EOF or reset), discarding anything it sends first; the seconds it took,
    /// or nil if it is still open after `timeout`.
    func secondsUntilClosed(_ fd: Int32, since start: Date, timeout: TimeInterval) -> TimeInterval? {
        var buf = [UInt8](repeating: 0, count: 4096)
        while Date().timeIntervalSince(start) < timeout {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) { return Date().timeIntervalSince(start) }
        }
        return nil
    }

    /// The rows of a `check_status csv` page: [index, upstream, name, state, rise, fall, type, port].
    func statusRows(_ port: UInt16) -> [[String]] {
        guard let r = httpGet(port, "/status"), r.status == 200 else { return [] }
        return r.body.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    func states(_ port: UInt16) -> [String] { statusRows(port).map { $0.count > 3 ? $0[3] : "?" } }
}
