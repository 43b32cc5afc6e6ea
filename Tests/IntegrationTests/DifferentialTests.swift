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

    static let knownDifferences: [String: KnownDifference] = [:]

    /// The header the proxies set from the client's port, by which the backends file what they receive.
    static let keyHeader = "X-Client-Port"

    /// Both proxies and their backends, started once for the class.
    struct Peers {
        let vigil: Vigil
        let nginx: NginxPeer
        let vigilBackend: RecordingBackend
        let nginxBackend: RecordingBackend
        let vigilPort: UInt16
        let nginxPort: UInt16
    }

    nonisolated(unsafe) static var peers: Peers?
    nonisolated(unsafe) static var setupError: String?

    /// The same server block for both: `/p/` proxied to a URI part, everything else as it came.
    static func server(listen: UInt16, backend: UInt16) -> String {
        """
        server {
            listen 127.0.0.1:\(listen);
            proxy_set_header \(keyHeader) $remote_port;
            location / { proxy_pass http://127.0.0.1:\(backend); }
            location /p/ { proxy_pass http://127.0.0.1:\(backend)/q/; }
        }
        """
    }

    override class func setUp() {
        super.setUp()
        guard Tools.available(Tools.nginx) else { return setupError = "Debian's nginx is not installed (scripts/install-deps installs it)" }
        do {
            let vigilBackend = try RecordingBackend(keyHeader: keyHeader), nginxBackend = try RecordingBackend(keyHeader: keyHeader)
            let vigilPort = freePort(), nginxPort = freePort()
            let vigil = try Vigil(config: Vigil.config(workers: 1, http: server(listen: vigilPort, backend: vigilBackend.port)))
            _ = try vigil.start()
            let nginx = try NginxPeer(http: server(listen: nginxPort, backend: nginxBackend.port), waitFor: [nginxPort])
            guard waitFor(5, { canConnect(vigilPort) }) else { return setupError = "vigil did not start: \(vigil.errorLog())" }
            peers = Peers(vigil: vigil, nginx: nginx, vigilBackend: vigilBackend, nginxBackend: nginxBackend,
                          vigilPort: vigilPort, nginxPort: nginxPort)
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
                    let (index, side) = (job / 2, job % 2)
                    table.record(job, side == 0 ? Self.run(cases[index], port: peers.vigilPort, backend: peers.vigilBackend)
                                                : Self.run(cases[index], port: peers.nginxPort, backend: peers.nginxBackend))
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

    /// The jobs (two per case: Vigil, nginx) handed to the worker threads, and their outcomes.
    final class OutcomeTable: @unchecked Sendable {
        private let lock = NSLock()
        private var next = 0
        private var results: [Outcome?]

        init(_ count: Int) { results = Array(repeating: nil, count: count) }

        func nextJob() -> Int? {
            lock.lock(); defer { lock.unlock() }
            guard next < results.count else { return nil }
            next += 1
            return next - 1
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

    /// Sends one case and collects what its backend received from the client's connection.
    static func run(_ c: DifferentialCase, port: UInt16, backend: RecordingBackend) -> Outcome {
        guard let exchange = try? RawExchange.run(port, c.bytes) else { return Outcome(statuses: [-1], closedWithoutResponse: false, forwarded: []) }
        let forwarded = backend.requests(String(exchange.clientPort)).map { normalised(ProxiedRequest($0), backendPort: backend.port) }
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
