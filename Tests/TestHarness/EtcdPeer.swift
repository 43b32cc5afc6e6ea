import Foundation

/// Debian's real etcd (`etcd-server`, 3.4) on 127.0.0.1 for the upsync tests: its own data directory and
/// ports, keys written and removed through its v3 JSON gateway with curl, stopped (and started again on the
/// same data) by its own pid.
public final class EtcdPeer {
    public static let binary = "/usr/bin/etcd"
    public let clientPort: UInt16
    private let peerPort: UInt16
    private let dir: String
    private var process: Process?

    public var authority: String { "127.0.0.1:\(clientPort)" }

    public init() throws {
        guard Tools.available(EtcdPeer.binary) else { throw PKIError(description: "etcd is not installed (scripts/install-deps installs etcd-server)") }
        clientPort = freePort()
        peerPort = freePort()
        dir = NSTemporaryDirectory() + "vigil-etcd-\(getpid())-\(clientPort)"
        try start()
    }

    /// Starts etcd (again, on the same data) and waits until it answers.
    public func start() throws {
        let peerURL = "http://127.0.0.1:\(peerPort)", clientURL = "http://127.0.0.1:\(clientPort)"
        process = try spawnProcess(EtcdPeer.binary, ["--name", "vigil-test", "--data-dir", dir + "/data",
                                                     "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                                                     "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
                                                     "--initial-cluster", "vigil-test=\(peerURL)"], log: dir + ".log")
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if runCommand(Tools.curl, ["-sf", "-m", "1", "http://\(authority)/health"]).stdout.contains("true") { return }
            usleep(100_000)
        }
        throw PKIError(description: "etcd did not come up on \(authority)")
    }

    public func stop() {
        if let p = process { stopProcess(p) }
        process = nil
    }

    public func cleanup() {
        stop()
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.removeItem(atPath: dir + ".log")
    }

    public func put(_ key: String, _ value: String) {
        call("put", #"{"key":"\#(base64(key))","value":"\#(base64(value))"}"#)
    }

    public func delete(_ key: String) {
        call("deleterange", #"{"key":"\#(base64(key))"}"#)
    }

    private func call(_ method: String, _ body: String) {
        let r = runCommand(Tools.curl, ["-sf", "-m", "5", "-X", "POST", "http://\(authority)/v3/kv/\(method)", "-d", body])
        precondition(r.status == 0, "etcd \(method) failed: \(r.stdout)")
    }

    private func base64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
}
