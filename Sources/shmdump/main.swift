#if canImport(Glibc)
import Glibc
#endif
import CShim
import Config
import Core
import ShmTable

/// `shmdump`: attaches to a running Vigil's segment read-only and prints the peer table.
/// It never writes to the segment and never blocks the server.
struct DumpOptions {
    var prefix: String?
    var confFile: String?
    var segment: String?
    var json = false
    var watch = false

    static let usage = """
        Usage: shmdump [-p prefix] [-c filename] [--segment NAME] [--json] [--watch]

          -p prefix       : the prefix vigil was started with (default: the current directory)
          -c filename     : vigil's configuration file; its "pid" directive locates the master
          --segment NAME  : attach to this segment (e.g. /vigil.1234.1) instead
          --json          : print JSON instead of a table
          --watch         : redraw every second until interrupted

        """
}

struct Failure: Error { let message: String }

func fail(_ message: String) -> Never {
    fputs("shmdump: \(message)\n", stderr)
    exit(1)
}

func parseOptions(_ args: [String]) throws -> DumpOptions {
    var o = DumpOptions()
    var i = 0
    func value(_ name: String) throws -> String {
        i += 1
        guard i < args.count else { throw Failure(message: "option \"\(name)\" requires a value") }
        return args[i]
    }
    while i < args.count {
        switch args[i] {
        case "-p": o.prefix = try value("-p")
        case "-c": o.confFile = try value("-c")
        case "--segment", "-s": o.segment = try value(args[i])
        case "--json": o.json = true
        case "--watch", "-w": o.watch = true
        case "-h", "--help", "-?":
            fputs(DumpOptions.usage, stdout)
            exit(0)
        default: throw Failure(message: "invalid option: \"\(args[i])\"")
        }
        i += 1
    }
    return o
}

func cwd() -> String {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    return getcwd(&buf, buf.count) != nil ? String(cString: buf) : "."
}

/// The live segment: the highest generation in /dev/shm belonging to the master in the pid file.
func locateSegment(_ o: DumpOptions) throws -> String {
    if let s = o.segment { return s.hasPrefix("/") ? s : "/" + s }
    var prefix = o.prefix ?? cwd()
    if !prefix.hasPrefix("/") { prefix = cwd() + "/" + prefix }
    let conf = o.confFile.map { $0.hasPrefix("/") ? $0 : prefix + "/" + $0 } ?? prefix + "/conf/vigil.conf"
    let pidPath: String
    do {
        pidPath = try Configuration.load(file: conf, prefix: prefix).pidPath
    } catch {
        throw Failure(message: "\(error)")
    }
    let fd = open(pidPath, O_RDONLY)
    guard fd >= 0 else {
        throw Failure(message: "no running vigil: open() \"\(pidPath)\" failed (\(Errno.text(errno)))")
    }
    var buf = [UInt8](repeating: 0, count: 32)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    close(fd)
    let text = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).filter { !$0.isWhitespace } : ""
    guard let pid = Int32(text), pid > 0 else { throw Failure(message: "invalid PID number \"\(text)\" in \"\(pidPath)\"") }
    guard MasterLiveness.isRunning(pid) else {
        throw Failure(message: "no running vigil: master process \(pid) from \"\(pidPath)\" is not running")
    }
    var best: UInt64?
    if let dir = opendir("/dev/shm") {
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if let (owner, gen) = Layout.parseSegmentName(name), owner == pid, gen > (best ?? 0) { best = gen }
        }
        closedir(dir)
    }
    guard let gen = best else { throw Failure(message: "master process \(pid) has no segment in /dev/shm") }
    return Layout.segmentName(masterPid: pid, generation: gen)
}

func typeName(_ code: UInt8) -> String { CheckType(code: code)?.rawValue ?? "?" }

func ageText(_ thenMs: UInt64, now: UInt64) -> String {
    guard thenMs > 0 else { return "never" }
    let d = now >= thenMs ? now - thenMs : 0
    return d < 10_000 ? "\(d) ms ago" : "\(d / 1000) s ago"
}

func pad(_ s: String, _ w: Int, right: Bool = false) -> String {
    let n = s.count
    if n >= w { return s }
    let fill = String(repeating: " ", count: w - n)
    return right ? fill + s : s + fill
}

func render(_ seg: Segment, json: Bool) -> String {
    let now = vigil_monotonic_ms()
    let checker = seg.checker.holder
    let beat = seg.checker.heartbeatMs
    let beatAge: UInt64? = checker != 0 && beat > 0 ? (now >= beat ? now - beat : 0) : nil
    var rows: [(i: Int, up: String, server: String, s: PeerState, type: String, port: UInt16, admin: AdminState)] = []
    // The configured peers, then those added at run time (`resolve`).
    for i in Array(0..<seg.peerCount) + seg.activeDynamicPeers().map(\.slot) {
        let slot = seg.slot(i)
        rows.append((i, seg.upstreamName(i), seg.serverName(i), slot.read(), typeName(slot.type), slot.port, slot.admin))
    }
    if json {
        var out = "{\"segment\": \(JSONText.quoted(seg.name)), \"generation\": \(seg.generation), \"master_pid\": \(seg.masterPid), "
        out += "\"checker_pid\": \(checker == 0 ? "null" : String(checker)), "
        out += "\"checker_heartbeat_age_ms\": \(beatAge.map(String.init) ?? "null"), "
        out += "\"peer_count\": \(seg.peerCount), \"peer_capacity\": \(seg.peerCapacity), \"size\": \(seg.size), \"peers\": ["
        out += rows.map { r in
            "\n  {\"index\": \(r.i), \"upstream\": \(JSONText.quoted(r.up)), \"server\": \(JSONText.quoted(r.server)), "
                + "\"state\": \"\(r.s.down ? "down" : "up")\", \"checked\": \(r.s.checked), \"rise\": \(r.s.rise), \"fall\": \(r.s.fall), "
                + "\"checks\": \(r.s.checks), \"failures\": \(r.s.failures), \"last_rtt_us\": \(r.s.rttUs), "
                + "\"last_check_age_ms\": \(r.s.lastCheckMs == 0 ? "null" : String(now >= r.s.lastCheckMs ? now - r.s.lastCheckMs : 0)), "
                + "\"last_reason\": \(JSONText.quoted(r.s.reason.text)), \"type\": \"\(r.type)\", \"port\": \(r.port), "
                + "\"admin\": \"\(r.admin.name)\"}"
        }.joined(separator: ",")
        out += rows.isEmpty ? "]}\n" : "\n]}\n"
        return out
    }
    var out = "segment \(seg.name)  generation \(seg.generation)  master \(seg.masterPid)  "
    out += checker == 0 ? "checker none\n" : "checker \(checker) (heartbeat \(beatAge.map { "\($0) ms ago" } ?? "never"))\n"
    out += "peers \(seg.peerCount) of capacity \(seg.peerCapacity)  size \(seg.size) bytes\n\n"
    let headers = ["#", "upstream", "server", "state", "rise", "fall", "checks", "failures", "last rtt", "last check", "type", "last failure"]
    var table: [[String]] = [headers]
    for r in rows {
        table.append([String(r.i), r.up, r.server, (r.s.down ? "down" : "up") + (r.admin == .ready ? "" : " (\(r.admin.name))"), String(r.s.rise), String(r.s.fall),
                      String(r.s.checks), String(r.s.failures), r.s.checks == 0 ? "-" : "\(r.s.rttUs) us",
                      ageText(r.s.lastCheckMs, now: now), r.port == 0 ? r.type : "\(r.type):\(r.port)", r.s.reason.text])
    }
    let widths = (0..<headers.count).map { c in table.map { $0[c].count }.max()! }
    let numeric: Set<Int> = [0, 4, 5, 6, 7, 8]
    for row in table {
        out += row.enumerated().map { pad($0.element, widths[$0.offset], right: numeric.contains($0.offset)) }
            .joined(separator: "  ").trimmingTrailingSpaces() + "\n"
    }
    if rows.isEmpty { out += "(no checked peers)\n" }
    return out
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.hasSuffix(" ") { s.removeLast() }
        return s
    }
}

let opts: DumpOptions
do { opts = try parseOptions(Array(CommandLine.arguments.dropFirst())) } catch let f as Failure { fail(f.message) }

func snapshot() throws -> String {
    let name = try locateSegment(opts)
    do {
        return render(try Segment.attach(name: name), json: opts.json)
    } catch {
        throw Failure(message: "\(error)")
    }
}

do {
    if !opts.watch {
        fputs(try snapshot(), stdout)
        exit(0)
    }
    while true {
        // Re-locate each time: a reload moves the table to a new generation's segment.
        let frame = (try? snapshot()) ?? "waiting for a running vigil...\n"
        fputs("\u{1B}[H\u{1B}[2J" + frame, stdout)
        fflush(stdout)
        sleep(1)
    }
} catch let f as Failure {
    fail(f.message)
}
