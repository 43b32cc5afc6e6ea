import Foundation
import XCTest

/// Runs the real `vigil` and `shmdump` binaries in a private prefix directory, on free loopback ports.
/// Only processes this harness started are ever signalled, always by pid.
public enum Binaries {
    /// Tests/TestHarness/Harness.swift → the package root, three levels up.
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    public static func path(_ name: String) -> String {
        if let dir = ProcessInfo.processInfo.environment["VIGIL_BIN_DIR"] { return dir + "/" + name }
        return packageRoot + "/.build/debug/" + name
    }
}

public struct RunResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Runs a command to completion (bounded), capturing both streams, with `stdin` (or nothing) as its input.
/// Input and output go through files, not pipes, so a daemon that keeps a descriptor open can never block
/// the test.
public func runCommand(_ path: String, _ args: [String], cwd: String? = nil, stdin input: String? = nil,
                       timeout: TimeInterval = 20) -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let base = NSTemporaryDirectory() + "vigil-run-" + UUID().uuidString
    for suffix in [".in", ".out", ".err"] { _ = FileManager.default.createFile(atPath: base + suffix, contents: nil) }
    defer { for suffix in [".in", ".out", ".err"] { unlink(base + suffix) } }
    guard (try? (input ?? "").write(toFile: base + ".in", atomically: false, encoding: .utf8)) != nil,
          let inHandle = FileHandle(forReadingAtPath: base + ".in"),
          let out = FileHandle(forWritingAtPath: base + ".out"), let err = FileHandle(forWritingAtPath: base + ".err") else {
        return RunResult(status: -1, stdout: "", stderr: "cannot create i/o files")
    }
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input == nil ? FileHandle.nullDevice : inHandle
    do { try p.run() } catch { return RunResult(status: -1, stdout: "", stderr: "\(error)") }
    try? inHandle.close()
    try? out.close()
    try? err.close()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(5_000) }
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    let o = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
    let e = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
    return RunResult(status: p.terminationStatus, stdout: o, stderr: e)
}

/// A socket bound to a free port on 127.0.0.1, listening when `backlog` is given; nil if that failed.
public func loopbackSocket(listening backlog: Int32? = nil) -> (fd: Int32, port: UInt16)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    // Only listeners share: with SO_REUSEADDR, bind(0) may hand out a port another socket has bound,
    // which freePort() must never return.
    if backlog != nil {
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0, backlog.map({ listen(fd, $0) == 0 }) ?? true else { close(fd); return nil }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return (fd, UInt16(bigEndian: addr.sin_port))
}

/// A free TCP port on 127.0.0.1 (bound to port 0 and released).
public func freePort() -> UInt16 {
    guard let s = loopbackSocket() else { return 0 }
    close(s.fd)
    return s.port
}

/// True when something accepts connections on 127.0.0.1:port.
public func canConnect(_ port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = port.bigEndian
    return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}

/// A minimal HTTP/1.0 client over a raw socket: returns the status code and body, or nil.
public func httpGet(_ port: UInt16, _ path: String, host: String = "localhost", timeout: Int = 5) -> (status: Int, headers: String, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = port.bigEndian
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else { return nil }
    let req = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\n\r\n".utf8)
    _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        data += buf[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return nil }
    let head = String(text[..<split.lowerBound])
    let parts = head.split(separator: " ", maxSplits: 2)
    guard parts.count >= 2, let code = Int(parts[1]) else { return nil }
    return (code, head, String(text[split.upperBound...]))
}

/// Polls `condition` until it holds or `timeout` passes.
@discardableResult
public func waitFor(_ timeout: TimeInterval, interval: useconds_t = 20_000, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(interval)
    }
    return condition()
}

public func processAlive(_ pid: Int32) -> Bool {
    // A zombie is not alive for our purposes: read its state from /proc.
    guard kill(pid, 0) == 0, let state = procStat(pid)?.first else { return false }
    return state != "Z" && state != "X"
}

/// Live (non-zombie) children of `pid`, from /proc.
public func childPids(of pid: Int32) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var out: [Int32] = []
    for e in entries {
        guard let p = Int32(e), let fields = procStat(p), fields.count > 2, let ppid = Int32(fields[1]) else { continue }
        if ppid == pid && fields[0] != "Z" { out.append(p) }
    }
    return out.sorted()
}

/// Makes sure this process may hold `needed` descriptors (daemons it starts inherit the limit); returns how
/// many it may hold.
public func ensureDescriptors(_ needed: Int) -> Int {
    var rl = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    if rl.rlim_cur < rlim_t(needed) {
        rl.rlim_cur = min(rl.rlim_max, rlim_t(needed))
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    }
    return Int(min(rl.rlim_cur, rlim_t(Int32.max)))
}

/// The fields of /proc/PID/stat after the command name (field 3, the state, is index 0), or nil.
private func procStat(_ pid: Int32) -> [Substring]? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
    return stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
}

/// CPU time (user + system) a process has used, in clock ticks (1/100 s).
public func cpuTicks(_ pid: Int32) -> Int? {
    guard let f = procStat(pid), f.count > 12, let u = Int(f[11]), let s = Int(f[12]) else { return nil }
    return u + s
}

/// Resident set size of a process in kB (VmRSS).
public func rssKB(_ pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
    return Int(line.split(separator: " ")[1])
}

/// Open file descriptors of a process (shared by all its threads).
public func openDescriptors(_ pid: Int32) -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
}

public func shmSegments(ofMaster pid: Int32) -> [String] {
    let all = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []
    return all.filter { $0.hasPrefix("vigil.\(pid).") }.sorted()
}

/// One Vigil instance in its own prefix directory.
public final class Vigil {
    public let prefix: String
    public var confPath: String { prefix + "/conf/vigil.conf" }
    public var pidPath: String { prefix + "/logs/vigil.pid" }
    public var errorLogPath: String { prefix + "/logs/error.log" }
    private var startedMasters: [Int32] = []

    public init(config: String) throws {
        prefix = NSTemporaryDirectory() + "vigil-it-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: prefix + "/conf", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: prefix + "/logs", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Binaries.packageRoot + "/conf/mime.types", toPath: prefix + "/conf/mime.types")
        try write(config: config)
    }

    /// `prefix/html` with these files (names relative to it), for a config's `root`; returns its path.
    @discardableResult
    public func htmlRoot(_ files: [(name: String, bytes: [UInt8])] = []) throws -> String {
        let root = prefix + "/html"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        for (name, bytes) in files {
            guard FileManager.default.createFile(atPath: root + "/" + name, contents: Data(bytes)) else {
                throw HTTPClientError("cannot write \(root)/\(name)")
            }
        }
        return root
    }

    public func write(config: String) throws {
        try config.write(toFile: confPath, atomically: true, encoding: .utf8)
    }

    /// A config skeleton with the directives nginx test harnesses always emit.
    public static func config(workers: Int = 1, workerConnections: Int = 256, http: String, main: String = "") -> String {
        """
        worker_processes \(workers);
        error_log logs/error.log info;
        pid logs/vigil.pid;
        \(main)
        events { worker_connections \(workerConnections); }
        http {
            access_log off;
            client_body_temp_path logs/client_body_temp;
            proxy_temp_path logs/proxy_temp;
        \(http)
        }

        """
    }

    @discardableResult
    public func vigil(_ args: [String], timeout: TimeInterval = 20) -> RunResult {
        runCommand(Binaries.path("vigil"), ["-p", prefix, "-c", confPath] + args, cwd: prefix, timeout: timeout)
    }

    public func shmdump(_ args: [String] = []) -> RunResult {
        runCommand(Binaries.path("shmdump"), ["-p", prefix, "-c", confPath] + args, cwd: prefix)
    }

    /// Starts the daemon; returns the master pid read from the pid file.
    public func start(file: StaticString = #filePath, line: UInt = #line) throws -> Int32 {
        let r = vigil([])
        XCTAssertEqual(r.status, 0, "vigil failed to start: \(r.stderr)", file: file, line: line)
        let pid = try XCTUnwrap(masterPid(), "no pid file after start", file: file, line: line)
        startedMasters.append(pid)
        return pid
    }

    /// A master started some other way (the systemd unit's command line), stopped by `cleanup()` like the rest.
    public func track(master pid: Int32) { startedMasters.append(pid) }

    /// `shmdump --json` parsed, or an empty dictionary when it fails.
    public func shmdumpJSON() -> [String: Any] {
        let r = shmdump(["--json"])
        return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    /// The worker holding the checker lock, from the segment.
    public func checkerPid() -> Int32? { (shmdumpJSON()["checker_pid"] as? Int).map(Int32.init) }

    public func masterPid() -> Int32? {
        guard let s = try? String(contentsOfFile: pidPath, encoding: .utf8) else { return nil }
        return Int32(s.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    public func errorLog() -> String { (try? String(contentsOfFile: errorLogPath, encoding: .utf8)) ?? "" }

    /// Workers of `master`, waiting until there are `count` of them.
    public func waitForWorkers(_ master: Int32, count: Int, timeout: TimeInterval = 10) -> [Int32] {
        var w: [Int32] = []
        waitFor(timeout) { w = childPids(of: master); return w.count == count }
        return w
    }

    /// Stops everything this instance started, by pid, and removes the prefix.
    public func cleanup() {
        for m in startedMasters where processAlive(m) {
            let kids = childPids(of: m)
            kill(m, SIGKILL)
            for k in kids { kill(k, SIGKILL) }
        }
        for m in startedMasters {
            for s in shmSegments(ofMaster: m) { unlink("/dev/shm/" + s) }
        }
        try? FileManager.default.removeItem(atPath: prefix)
    }
}

/// A value a background queue sets and the test reads after waiting on it (the wait orders the two).
public final class Handoff<T>: @unchecked Sendable {
    public var value: T
    public init(_ value: T) { self.value = value }
}

/// Backends for the dynamic-peer tests: one Vigil answering `X\n` on 127.0.0.X:`port` for each X in `hosts`, so
/// a response names the peer that gave it.
public func loopbackBackends(port: UInt16, hosts: ClosedRange<Int> = 1...3) throws -> Vigil {
    let v = try Vigil(config: Vigil.config(http: hosts.map {
        "server { listen 127.0.0.\($0):\(port); location / { return 200 \"\($0)\\n\"; } }"
    }.joined(separator: "\n")))
    _ = try v.start()
    return v
}

/// `n` GETs of / on `port`, counted by what answered: a body (a loopback backend's name) or "status N".
public func answersByBody(_ port: UInt16, _ n: Int) -> [String: Int] {
    var seen: [String: Int] = [:]
    for _ in 0..<n {
        let r = httpGet(port, "/")
        seen[r?.status == 200 ? r!.body.trimmingCharacters(in: .newlines) : "status \(r?.status ?? 0)", default: 0] += 1
    }
    return seen
}
