import Foundation
import TestHarness
import XCTest

/// Vigil and Debian's nginx 1.22, configured alike, each in front of its own recording backend, get the same
/// raw requests (`DifferentialCorpus.swift`): smuggling vectors, odd framing, URIs, headers and versions. For
/// every case the client's statuses and what reached the backend (request line, framing, headers, body) must
/// be the same, except for the cases listed in `knownDifferences`, each with its reason. Nothing nginx refuses
/// may reach a backend through Vigil.
final class DifferentialTests: XCTestCase {
    /// Where Vigil and nginx 1.22 differ on purpose.
    enum KnownDifference {
        /// nginx passes the request on; Vigil refuses it and nothing reaches its backend.
        case stricter(String)
        /// Both refuse, or both pass it on, but not identically.
        case accepted(String)
    }

    static let knownDifferences: [String: KnownDifference] = {
        var list: [String: KnownDifference] = [:]
        let http09 = KnownDifference.stricter("HTTP/0.9 has no headers: no Host, no framing, and an answer without a status "
                                               + "line that a client cannot tell from a body, the stuff of cross-protocol attacks; "
                                               + "no client has sent it in decades")
        for name in ["http09-get", "http09-get-lf"] { list[name] = http09 }
        list["http09-post"] = .accepted("both refuse it; nginx answers in HTTP/0.9 (a body without a status line), Vigil with a status line")
        let notUTF8 = KnownDifference.stricter("a target, and a path once %-decoded, must be UTF-8: Vigil routes and proxies URIs as "
                                                + "text, so bytes that are not UTF-8 would be altered on their way; an overlong form "
                                                + "(%C0%AE for \".\") is the classic way past a normaliser")
        for name in ["raw-latin1", "pct-latin1", "pct-overlong-dot"] { list[name] = notUTF8 }
        list["no-colon"] = .stricter("a header line without \":\" is no field (RFC 9112 §5); nginx passes it on as an empty header, "
                                     + "where a backend may read it as a continuation or the end of the head")
        list["cr-cr-lf"] = .stricter("a CR that does not end a line: parsers that end lines at a bare CR see \"X-Foo: a\", then an "
                                     + "empty line, the end of the head, where nginx sees one header")
        let host = KnownDifference.stricter("nginx 1.29.4's Host rules (RFC 3986's reg-name or an IP literal, a port up to 65535): "
                                            + "a \"\\\" reads as \"/\" in browsers when a redirect is built from the host, and "
                                            + "raw bytes past ASCII are no host name")
        for name in ["host-backslash", "host-utf8"] { list[name] = host }
        let chunkExtension = KnownDifference.stricter("a chunk extension is a token or quoted string (RFC 9112 §7.1.1); control "
                                                      + "bytes in it are nothing a client needs, and parsers disagree on them")
        for name in ["chunk-extension-ctl", "chunk-extension-nul"] { list[name] = chunkExtension }
        let chunkLF = KnownDifference.stricter("chunked framing takes CRLF only (RFC 9112 §7.1); a bare LF is read differently by "
                                               + "other parsers on the way, which is how requests are smuggled past a proxy "
                                               + "(smuggle-trailer-bare-lf: nginx passes a second, hidden request)")
        for name in ["chunk-bare-lf-after-size", "chunk-bare-lf-after-data", "chunk-bare-lf-last", "chunk-trailer-bare-lf",
                     "smuggle-trailer-bare-lf"] {
            list[name] = chunkLF
        }
        list["chunks-above-max-body-size"] = .accepted("both refuse the body; Vigil answers 413 when the size line that takes it past "
                                                       + "client_max_body_size ends, nginx only once a byte of that chunk's data arrives")
        list["proxy-connection"] = .accepted("Vigil does not pass Proxy-Connection on: it is the client's hop-by-hop header for the "
                                             + "proxy it talks to (RFC 7230 A.1.2), never standardised, and an HTTP/1.0 backend "
                                             + "may take it as keep-alive on a connection Vigil means to close")
        list["lenient-at-name"] = .stricter("with ignore_invalid_headers off, nginx passes on names that are no token at all "
                                            + "(RFC 9110 §5.1); Vigil passes \"_\" and \".\" names but refuses these")
        list["lenient-non-ascii-name"] = list["lenient-at-name"]
        return list
    }()

    /// The header the proxies set from the client's port, by which the backends file what they receive.
    static let keyHeader = "X-Client-Port"

    /// Both proxies and their backends, started once for the class.
    struct Peers {
        let vigil: Vigil
        let nginx: NginxPeer
        let vigilBackend: RecordingBackend
        let nginxBackend: RecordingBackend
        /// Each proxy's two servers: nginx's defaults, and the lenient rules.
        let vigilPorts: (UInt16, UInt16)
        let nginxPorts: (UInt16, UInt16)
    }

    nonisolated(unsafe) static var peers: Peers?
    nonisolated(unsafe) static var setupError: String?

    /// The same servers for both: `/p/` proxied to a URI part, everything else as it came; the second server with
    /// the lenient header and path rules.
    static func servers(listen: (UInt16, UInt16), backend: UInt16) -> String {
        func server(_ port: UInt16, _ rules: String) -> String {
            """
            server {
                listen 127.0.0.1:\(port);
                \(rules)
                proxy_set_header \(keyHeader) $remote_port;
                location / { proxy_pass http://127.0.0.1:\(backend); }
                location /p/ { proxy_pass http://127.0.0.1:\(backend)/q/; }
            }
            """
        }
        return server(listen.0, "") + "\n"
            + server(listen.1, "underscores_in_headers on; ignore_invalid_headers off; merge_slashes off;")
    }

    override class func setUp() {
        super.setUp()
        guard Tools.available(Tools.nginx) else { return setupError = "Debian's nginx is not installed (scripts/install-deps installs it)" }
        do {
            let vigilBackend = try RecordingBackend(keyHeader: keyHeader), nginxBackend = try RecordingBackend(keyHeader: keyHeader)
            let vigilPorts = (freePort(), freePort()), nginxPorts = (freePort(), freePort())
            let vigil = try Vigil(config: Vigil.config(workers: 1, http: servers(listen: vigilPorts, backend: vigilBackend.port)))
            _ = try vigil.start()
            let nginx = try NginxPeer(http: servers(listen: nginxPorts, backend: nginxBackend.port), waitFor: [nginxPorts.0, nginxPorts.1])
            guard waitFor(5, { canConnect(vigilPorts.0) && canConnect(vigilPorts.1) }) else {
                return setupError = "vigil did not start: \(vigil.errorLog())"
            }
            peers = Peers(vigil: vigil, nginx: nginx, vigilBackend: vigilBackend, nginxBackend: nginxBackend,
                          vigilPorts: vigilPorts, nginxPorts: nginxPorts)
        } catch {
            setupError = "\(error)"
        }
    }

    override class func tearDown() {
        if let p = peers {
            p.vigil.cleanup()
            p.nginx.cleanup()
            p.vigilBackend.stop()
            p.nginxBackend.stop()
        }
        peers = nil
        super.tearDown()
    }

    /// What one proxy did with one case: the client's view and the backend's.
    struct Outcome: Equatable, CustomStringConvertible {
        var statuses: [Int]
        /// Only told apart when there was no response: closed at once, or left waiting for more.
        var closedWithoutResponse: Bool
        /// Each request the backend received, normalised (see `normalised`).
        var forwarded: [String]

        var refused: Bool { forwarded.isEmpty }

        var description: String {
            let client = statuses.isEmpty ? (closedWithoutResponse ? "closed without response" : "no response") : "statuses \(statuses)"
            return "\(client); backend got \(forwarded.isEmpty ? "nothing" : forwarded.joined(separator: " || "))"
        }
    }

    func testVigilRefusesAtLeastWhatNginxRefuses() throws {
        if let e = Self.setupError { throw XCTSkip(e) }
        let peers = try XCTUnwrap(Self.peers)
        let cases = DifferentialCase.all
        XCTAssertEqual(Set(cases.map(\.name)).count, cases.count, "case names are unique")
        let started = Date()

        // Each (case, proxy) pair on its own connection, 16 at a time: the backends file requests by client port.
        let table = OutcomeTable(cases.count * 2)
        let workers = DispatchGroup()
        for _ in 0..<16 {
            workers.enter()
            Thread {
                defer { workers.leave() }
                while let job = table.nextJob() {
                    let c = cases[job / 2]
                    let (ports, backend) = job % 2 == 0 ? (peers.vigilPorts, peers.vigilBackend) : (peers.nginxPorts, peers.nginxBackend)
                    table.record(job, Self.run(c, port: c.lenient ? ports.1 : ports.0, backend: backend, table: table))
                }
            }.start()
        }
        workers.wait()
        let outcomes = table.outcomes

        var identical = 0, stricter = 0, accepted = 0
        var report: [String] = []
        for (i, c) in cases.enumerated() {
            let vigil = outcomes[2 * i]!, nginx = outcomes[2 * i + 1]!
            let known = Self.knownDifferences[c.name]
            if vigil == nginx {
                identical += 1
                if known != nil { report.append("\(c.name): listed as a difference but both now do the same: \(vigil)") }
                continue
            }
            switch known {
            case .stricter:
                stricter += 1
                if !vigil.refused || nginx.refused {
                    report.append("\(c.name): listed as Vigil refusing what nginx passes, but\n  vigil: \(vigil)\n  nginx: \(nginx)")
                }
            case .accepted:
                accepted += 1
                if !vigil.refused && nginx.refused {
                    report.append("\(c.name): nginx refuses it but Vigil's backend got it\n  vigil: \(vigil)\n  nginx: \(nginx)")
                }
            case nil:
                report.append("\(c.name): \(Self.printable(c.bytes.prefix(120)))\n  vigil: \(vigil)\n  nginx: \(nginx)")
            }
        }
        for name in Self.knownDifferences.keys where !cases.contains(where: { $0.name == name }) {
            report.append("\(name): listed but not in the corpus")
        }
        print("differential: \(cases.count) cases, \(identical) identical, \(stricter + accepted) listed differences "
              + "(\(stricter) deliberate strictness, \(accepted) accepted), \(report.count) unexpected, "
              + String(format: "%.1f s", Date().timeIntervalSince(started)))
        XCTAssertTrue(report.isEmpty, "differences from nginx not in the list:\n" + report.joined(separator: "\n"))
    }

    /// The jobs (two per case: Vigil, nginx) handed to the worker threads, their outcomes, and the client ports
    /// used so far.
    final class OutcomeTable: @unchecked Sendable {
        private let lock = NSLock()
        private var next = 0
        private var results: [Outcome?]
        private var usedPorts = Set<UInt16>()

        init(_ count: Int) { results = Array(repeating: nil, count: count) }

        func nextJob() -> Int? {
            lock.lock(); defer { lock.unlock() }
            guard next < results.count else { return nil }
            next += 1
            return next - 1
        }

        /// False when an earlier case had this client port: what its backend received is filed under it.
        func claim(_ port: UInt16) -> Bool {
            lock.lock(); defer { lock.unlock() }
            return usedPorts.insert(port).inserted
        }

        func record(_ job: Int, _ outcome: Outcome) {
            lock.lock(); defer { lock.unlock() }
            results[job] = outcome
        }

        var outcomes: [Outcome?] {
            lock.lock(); defer { lock.unlock() }
            return results
        }
    }

    /// Sends one case on a connection from a client port no case had before, and collects what its backend
    /// received from that port.
    static func run(_ c: DifferentialCase, port: UInt16, backend: RecordingBackend, table: OutcomeTable) -> Outcome {
        var held: [HTTPConnection] = []   // ports taken before, kept until a fresh one comes
        defer { held.forEach { $0.close() } }
        guard var connection = try? HTTPConnection(port: port) else { return Outcome(statuses: [-1], closedWithoutResponse: false, forwarded: []) }
        while !table.claim(connection.localPort) {
            held.append(connection)
            guard let again = try? HTTPConnection(port: port) else { return Outcome(statuses: [-1], closedWithoutResponse: false, forwarded: []) }
            connection = again
        }
        let clientPort = connection.localPort
        guard let exchange = try? RawExchange.run(connection, c.bytes) else { return Outcome(statuses: [-1], closedWithoutResponse: false, forwarded: []) }
        let forwarded = backend.requests(String(clientPort)).map { normalised(ProxiedRequest($0), backendPort: backend.port) }
        return Outcome(statuses: exchange.statuses, closedWithoutResponse: exchange.statuses.isEmpty && exchange.closed, forwarded: forwarded)
    }

    /// The request line, the framing, the client's headers in order and the body. What the proxies set
    /// themselves is left out once checked: Host (`$proxy_host`) and the client port.
    static func normalised(_ r: ProxiedRequest, backendPort: UInt16) -> String {
        var headers: [String] = []
        var framing: [String] = []
        for (name, value) in r.headers {
            switch name.lowercased() {
            case keyHeader.lowercased():
                continue
            case "host" where value == "127.0.0.1:\(backendPort)":
                continue
            case "content-length", "transfer-encoding":
                framing.append("\(name.lowercased()): \(value)")
            default:
                headers.append("\(name): \(printable(Array(value.unicodeScalars.map { UInt8($0.value) })[...]))")
            }
        }
        return "\(printable(Array(r.requestLine.unicodeScalars.map { UInt8($0.value) })[...])) {\(framing.joined(separator: ", "))} "
            + "[\(headers.joined(separator: ", "))] body \"\(printable(r.body.prefix(64)))\"\(r.body.count > 64 ? "… (\(r.body.count) bytes)" : "")"
    }

    /// Bytes with CR, LF, tab, controls and non-ASCII escaped.
    static func printable(_ bytes: ArraySlice<UInt8>) -> String {
        var out = ""
        for b in bytes {
            switch b {
            case 13: out += "\\r"
            case 10: out += "\\n"
            case 9: out += "\\t"
            case 0x20...0x7E: out.append(Character(Unicode.Scalar(b)))
            default: out += String(format: "\\x%02x", b)
            }
        }
        return out
    }
}
