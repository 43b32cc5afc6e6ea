import Foundation
import XCTest

/// Real TLS peers for the integration tests: a private PKI made with the `openssl` CLI, `openssl s_client`
/// and `curl` as clients, `openssl s_server` and Debian's nginx as servers. Everything listens on 127.0.0.1,
/// every command is bounded in time, and every process is stopped by its own pid.
public enum Tools {
    public static let openssl = "/usr/bin/openssl"
    public static let curl = "/usr/bin/curl"
    public static let nginx = "/usr/sbin/nginx"

    public static func available(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }
}

/// Starts a long-running child with its output in `log` (or discarded).
public func spawnProcess(_ path: String, _ args: [String], log: String? = nil) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    p.standardInput = FileHandle.nullDevice
    if let log {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = FileHandle(forWritingAtPath: log)
    } else {
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
    }
    try p.run()
    return p
}

/// SIGTERM to the child, then SIGKILL if it is still there after `grace` seconds; waits for it.
public func stopProcess(_ p: Process, grace: TimeInterval = 3) {
    guard p.isRunning else { return }
    kill(p.processIdentifier, SIGTERM)
    let deadline = Date().addingTimeInterval(grace)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
}

public struct PKIError: Error, CustomStringConvertible {
    public let description: String
}

/// A throwaway PKI in a temp directory, made with the openssl CLI:
///
/// - `ca`: "Vigil Test CA" (RSA-2048), the root everything below chains to, except:
/// - `other-ca`: "Other Test CA" (P-256), an unrelated root for the "wrong CA" cases;
/// - `inter`: "Vigil Test Intermediate", signed by `ca`;
/// - leaves, each `NAME.crt` / `NAME.key`: `a-rsa` (CN a.test, RSA-2048) and `a-ec` (CN a.test, P-256), both
///   with SANs a.test, localhost, 127.0.0.1; `b` (CN b.test); `backend` (CN backend.test, SAN 127.0.0.1 too);
///   `client` (CN client.test, for client authentication); `deep` (CN deep.test, signed by `inter`;
///   `deep-chain.crt` is the leaf followed by the intermediate);
/// - `a-rsa-enc.key`: a-rsa's key encrypted with the passphrase in the second line of `password.txt`
///   (the first line is a wrong one: nginx tries each line in turn); `badpassword.txt` has only wrong ones.
public final class TestPKI {
    public let dir: String
    public static let passphrase = "vigil-secret"

    public var caCert: String { dir + "/ca.crt" }
    public var otherCACert: String { dir + "/other-ca.crt" }
    public var passwordFile: String { dir + "/password.txt" }
    public var badPasswordFile: String { dir + "/badpassword.txt" }
    public var encryptedKey: String { dir + "/a-rsa-enc.key" }
    public func cert(_ name: String) -> String { dir + "/" + name + ".crt" }
    public func key(_ name: String) -> String { dir + "/" + name + ".key" }

    public init() throws {
        dir = NSTemporaryDirectory() + "vigil-pki-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        do {
            try make()
        } catch {
            remove()
            throw error
        }
    }

    public func remove() { try? FileManager.default.removeItem(atPath: dir) }

    private func openssl(_ args: [String]) throws {
        let r = runCommand(Tools.openssl, args, cwd: dir, timeout: 30)
        guard r.status == 0 else { throw PKIError(description: "openssl \(args.joined(separator: " ")) failed: \(r.stderr)") }
    }

    private func newKey(_ name: String, rsa: Bool) throws {
        if rsa {
            try openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key(name)])
        } else {
            try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key(name)])
        }
    }

    /// A certificate for `name`'s key, signed by `signer`, with the given extensions.
    private func sign(_ name: String, cn: String, signer: String, extensions: String) throws {
        let ext = dir + "/" + name + ".ext", csr = dir + "/" + name + ".csr"
        try extensions.write(toFile: ext, atomically: true, encoding: .utf8)
        try openssl(["req", "-new", "-key", key(name), "-subj", "/CN=" + cn, "-out", csr])
        try openssl(["x509", "-req", "-in", csr, "-CA", cert(signer), "-CAkey", key(signer), "-set_serial",
                     String(UInt32.random(in: 1...UInt32.max)), "-days", "2", "-extfile", ext, "-out", cert(name)])
    }

    private func leaf(_ name: String, cn: String, sans: [String], rsa: Bool = false, signer: String = "ca") throws {
        try newKey(name, rsa: rsa)
        try sign(name, cn: cn, signer: signer, extensions: """
            subjectAltName=\(sans.joined(separator: ","))
            basicConstraints=CA:FALSE
            extendedKeyUsage=serverAuth,clientAuth

            """)
    }

    private func make() throws {
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key("ca"), "-out", cert("ca"),
                     "-subj", "/CN=Vigil Test CA", "-days", "2"])
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key("other-ca"),
                     "-out", cert("other-ca"), "-subj", "/CN=Other Test CA", "-days", "2"])
        try newKey("inter", rsa: false)
        try sign("inter", cn: "Vigil Test Intermediate", signer: "ca",
                 extensions: "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
        let aNames = ["DNS:a.test", "DNS:localhost", "IP:127.0.0.1"]
        try leaf("a-rsa", cn: "a.test", sans: aNames, rsa: true)
        try leaf("a-ec", cn: "a.test", sans: aNames)
        try leaf("b", cn: "b.test", sans: ["DNS:b.test"])
        try leaf("backend", cn: "backend.test", sans: ["DNS:backend.test", "IP:127.0.0.1"])
        try leaf("client", cn: "client.test", sans: ["DNS:client.test"])
        try leaf("deep", cn: "deep.test", sans: ["DNS:deep.test"], signer: "inter")
        let chain = try String(contentsOfFile: cert("deep"), encoding: .utf8) + String(contentsOfFile: cert("inter"), encoding: .utf8)
        try chain.write(toFile: cert("deep-chain"), atomically: true, encoding: .utf8)
        try openssl(["pkey", "-in", key("a-rsa"), "-aes256", "-passout", "pass:" + TestPKI.passphrase, "-out", encryptedKey])
        try "not-the-passphrase\n\(TestPKI.passphrase)\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        try "not-the-passphrase\nnor-this-one\n".write(toFile: badPasswordFile, atomically: true, encoding: .utf8)
    }
}

/// What `openssl s_client` printed about one connection.
public struct TLSClientResult: CustomStringConvertible {
    public let status: Int32
    /// stdout and stderr together, with CRLF turned into LF (a Swift Character holds "\r\n" whole, so splitting
    /// on "\n" would not split it).
    public let output: String

    public init(status: Int32, output: String) {
        self.status = status
        self.output = output.replacingOccurrences(of: "\r\n", with: "\n")
    }

    /// The output without the certificate's PEM, the ticket's hex dump and the session's key material.
    public var description: String {
        var lines: [String] = []
        var inPEM = false
        for l in output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if l.hasPrefix("-----BEGIN") { inPEM = true; continue }
            if l.hasPrefix("-----END") { inPEM = false; continue }
            let t = l.trimmingCharacters(in: .whitespaces)
            if inPEM || t.range(of: #"^[0-9a-f]{4} - "#, options: .regularExpression) != nil { continue }
            if ["Master-Key:", "Session-ID:", "Session-ID-ctx:", "PSK identity", "SRP username:", "Resumption PSK:"].contains(where: { t.hasPrefix($0) }) { continue }
            lines.append(l)
        }
        return "s_client exit \(status):\n" + lines.joined(separator: "\n")
    }

    private func firstLine(startingWith prefix: String) -> String? {
        output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.first { $0.hasPrefix(prefix) }
    }

    /// The CN of the server certificate (`subject=CN = a.test` in OpenSSL 3.0, `subject=CN=a.test` later).
    public var subjectCN: String? {
        guard let line = firstLine(startingWith: "subject="), let r = line.range(of: "CN") else { return nil }
        var rest = line[r.upperBound...].trimmingCharacters(in: .whitespaces)
        guard rest.hasPrefix("=") else { return nil }
        rest = String(rest.dropFirst()).trimmingCharacters(in: .whitespaces)
        return String(rest.split(separator: ",").first ?? "").trimmingCharacters(in: .whitespaces)
    }

    /// `Server public key is 2048 bit`.
    public var serverKeyBits: Int? {
        guard let line = firstLine(startingWith: "Server public key is ") else { return nil }
        return Int(line.dropFirst("Server public key is ".count).split(separator: " ").first ?? "")
    }

    /// The session line: `New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384` or `Reused, ...`.
    public var sessionLine: String? { output.split(separator: "\n").map(String.init).first { $0.hasPrefix("New, ") || $0.hasPrefix("Reused, ") } }
    public var reused: Bool? { sessionLine.map { $0.hasPrefix("Reused, ") } }
    public var protocolName: String? { sessionLine.map { String($0.split(separator: ",")[1].trimmingCharacters(in: .whitespaces)) } }
    public var cipher: String? {
        guard let line = sessionLine, let r = line.range(of: "Cipher is ") else { return nil }
        return String(line[r.upperBound...]).trimmingCharacters(in: .whitespaces)
    }

    /// `Verify return code: 0 (ok)`: the first one printed (for the handshake).
    public var verifyCode: Int? {
        guard let line = firstLine(startingWith: "Verify return code: ") else { return nil }
        return Int(line.dropFirst("Verify return code: ".count).split(separator: " ").first ?? "")
    }

    /// The HTTP status lines in the application data, in order.
    public var httpStatusLines: [String] {
        output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("HTTP/1.") }
    }
}

/// `openssl s_client -connect 127.0.0.1:port ARGS -ign_eof` with `request` on its stdin: it sends the request,
/// prints what comes back, and ends when the server closes (so a request should ask for `Connection: close`
/// or be HTTP/1.0). Session tickets that arrive after the handshake are seen, so `-sess_out` works with TLS 1.3.
public func sClient(port: UInt16, _ args: [String], request: String = "GET / HTTP/1.0\r\n\r\n", timeout: TimeInterval = 10) -> TLSClientResult {
    let r = runCommand(Tools.openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-ign_eof"] + args, stdin: request, timeout: timeout)
    return TLSClientResult(status: r.status, output: r.stdout + r.stderr)
}

/// Debian's nginx as a peer, in its own prefix under `dir`, in the foreground and as one process
/// (`master_process off`), so that stopping it is one signal to one pid.
public final class NginxPeer {
    public let dir: String
    private var process: Process?

    /// `http` is the body of the http block; `waitFor` are the ports it must be accepting on before this returns.
    public init(http: String, waitFor ports: [UInt16], file: StaticString = #filePath, line: UInt = #line) throws {
        dir = NSTemporaryDirectory() + "vigil-nginx-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        try """
            master_process off;
            daemon off;
            worker_processes 1;
            pid logs/nginx.pid;
            error_log logs/error.log info;
            events { worker_connections 256; }
            http {
                \(http.contains("access_log") ? "" : "access_log off;")
                client_body_temp_path logs/cb; proxy_temp_path logs/pt; fastcgi_temp_path logs/ft;
                uwsgi_temp_path logs/ut; scgi_temp_path logs/st;
            \(http)
            }

            """.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        process = try spawnProcess(Tools.nginx, ["-p", dir + "/", "-c", dir + "/nginx.conf", "-e", dir + "/logs/error.log"],
                                   log: dir + "/logs/stderr.log")
        let up = waitFor(10) { ports.allSatisfy { canConnect($0) } }
        XCTAssertTrue(up, "nginx did not start: \(errorLog())", file: file, line: line)
    }

    public func errorLog() -> String {
        ((try? String(contentsOfFile: dir + "/logs/error.log", encoding: .utf8)) ?? "")
            + ((try? String(contentsOfFile: dir + "/logs/stderr.log", encoding: .utf8)) ?? "")
    }

    /// The lines of a log file under logs/ (without the empty string after the last newline).
    public func logLines(_ name: String) -> [String] {
        ((try? String(contentsOfFile: dir + "/logs/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    public var isRunning: Bool { process?.isRunning ?? false }

    public func stop() {
        if let p = process { stopProcess(p) }
        process = nil
    }

    /// Stops it and removes its prefix.
    public func cleanup() {
        stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}
