#if canImport(Glibc)
import Glibc
#endif
import Config
import CShim
import Core
import Event

/// nginx's `resolver`: a non-blocking DNS client on a worker's event loop. It asks the servers in turn
/// (one connected UDP socket each), A and AAAA of a name at once and of the same server, follows a CNAME
/// that comes without addresses, asks over TCP once a reply is truncated, and caches answers for their TTL
/// (or `valid=`) and "no such host" for 10 s. The answers of both families are judged together, as nginx
/// judges them when the A answer comes first (the order it asks in). Every lookup ends within its timeout.
public final class DNSClient {
    public typealias Completion = (Result<[ResolvedAddress], ResolveError>) -> Void
    /// What a lookup finds: a name's addresses, or its SRV records.
    typealias Found = Result<Answer, ResolveError>
    enum Answer { case addresses([ResolvedAddress]), services([ServiceRecord]) }

    /// nginx asks the next server when one has not answered for 5 s.
    static let resendMs: UInt64 = 5000
    static let negativeMs: UInt64 = 10_000
    static let cacheLimit = 1024
    /// nginx's NGX_RESOLVER_MAX_RECURSION: CNAMEs followed before a name is "not found".
    static let maxCNAMEs = 50

    private let loop: EventLoop
    private let servers: [UDPServer]
    private let validMs: UInt64?
    private let types: [RecordType]
    private let log: ErrorLog
    private var cache: [String: CacheEntry] = [:]
    private var lookups: [String: Lookup] = [:]
    private var inFlight: [UInt16: Question] = [:]
    private var nextServer = 0

    struct CacheEntry {
        let result: Found
        let expires: UInt64
    }

    /// `servers` are numeric addresses with ports; `log` gets nginx-style error lines about the servers.
    public init(loop: EventLoop, servers: [(address: SocketAddress, text: String)], validMs: Int?, ipv4: Bool, ipv6: Bool,
                log: ErrorLog) {
        self.loop = loop
        self.servers = servers.map { UDPServer(address: $0.address, text: $0.text) }
        self.validMs = validMs.map { UInt64($0) }
        self.types = (ipv4 ? [.a] : []) + (ipv6 ? [.aaaa] : [])
        self.log = log
        for s in self.servers { s.client = self }
    }

    /// A client for a `resolver` directive's servers and parameters.
    public convenience init(loop: EventLoop, setting: ResolverSetting, log: ErrorLog) {
        let servers = setting.servers.compactMap { a in
            SocketAddress(host: a.host, port: a.port, isIPv6: a.isIPv6).map { ($0, a.description) }
        }
        self.init(loop: loop, servers: servers, validMs: setting.validMs, ipv4: setting.ipv4, ipv6: setting.ipv6, log: log)
    }

    /// How much longer the cached answer for `name` holds (its TTL or `valid=`), 0 when none is cached: when
    /// an upstream's `resolve` asks again.
    public func validForMs(_ name: String, service: Bool = false) -> UInt64 {
        guard let hit = cache[DNSClient.key(name, service: service)], hit.expires > loop.now else { return 0 }
        return hit.expires - loop.now
    }

    /// Lookups and the cache know a name's SRV records apart from its addresses (a space is in no DNS name).
    static func key(_ name: String, service: Bool) -> String {
        Reply.trimmed(name).lowercased() + (service ? " SRV" : "")
    }

    /// Closes the sockets and ends every lookup (a worker that stops).
    public func shutdown() {
        for l in Array(lookups.values) { finish(l, .failure(.timedOut)) }
        for s in servers { s.close(loop) }
    }

    /// Calls `done` with the addresses of `name`, at once when they are cached, otherwise from the loop.
    public func resolve(_ name: String, timeoutMs: Int, _ done: @escaping Completion) {
        lookUp(name, types: types, timeoutMs: timeoutMs) { found in
            done(found.map { if case .addresses(let a) = $0 { a } else { [] } })
        }
    }

    /// Calls `done` with the SRV records of `name` (the targets are names, for `resolve` to look up).
    public func resolveService(_ name: String, timeoutMs: Int, _ done: @escaping (Result<[ServiceRecord], ResolveError>) -> Void) {
        lookUp(name, types: [.srv], timeoutMs: timeoutMs) { found in
            done(found.map { if case .services(let s) = $0 { s } else { [] } })
        }
    }

    private func lookUp(_ name: String, types: [RecordType], timeoutMs: Int, _ done: @escaping (Found) -> Void) {
        let query = Reply.trimmed(name).lowercased()
        guard Query.isValidName(query) else { return done(.failure(.formatError)) }
        let key = DNSClient.key(query, service: types == [.srv])
        if let hit = cache[key] {
            if hit.expires > loop.now { return done(hit.result) }
            cache[key] = nil
        }
        if let running = lookups[key] {
            running.waiters.append(done)
            return
        }
        let lookup = Lookup(key: key, types: types, done: done, timer: loop.makeTimer())
        lookups[key] = lookup
        lookup.timer.rearm(after: UInt64(max(1, timeoutMs))) { [unowned self, unowned lookup] in
            self.finish(lookup, .failure(.timedOut))
        }
        ask(query, for: lookup)
    }

    /// Asks one server (the next in turn) for every family of `name`.
    private func ask(_ name: String, for lookup: Lookup) {
        let server = nextServer % servers.count
        nextServer += 1
        for type in lookup.types {
            var id = UInt16.random(in: 0 ... .max)
            while inFlight[id] != nil { id &+= 1 }
            let q = Question(id: id, name: name, type: type, lookup: lookup, firstServer: server, resend: loop.makeTimer())
            lookup.questions.append(q)
            inFlight[id] = q
            send(q)
        }
    }

    /// Sends (again) to the question's current server, over TCP once a reply was truncated; the resend
    /// timer moves it to the next one.
    private func send(_ q: Question) {
        let server = servers[q.server % servers.count]
        if q.overTCP {
            q.tcp?.cancel()
            q.tcp = TCPExchange(loop: loop, address: server.address, query: q.packet) { [unowned self, unowned q] bytes in
                q.tcp = nil
                guard let bytes else {
                    self.log.error("DNS over TCP with resolver \(server.text) failed while resolving \(q.name)")
                    return self.retryElsewhere(q, .serverFailure)
                }
                self.handle(bytes, for: q, from: server.text, overTCP: true)
            }
        } else if let e = server.send(q.packet, loop: loop) {
            log.error("send() to resolver \(server.text) failed (\(Errno.text(e)))")
        }
        q.resend.rearm(after: DNSClient.resendMs) { [unowned self, unowned q] in
            q.server += 1
            self.send(q)
        }
    }

    /// A datagram from a server: dropped unless it answers a question in flight.
    func received(_ bytes: [UInt8], from server: UDPServer) {
        guard let id = Reply.id(of: bytes), let q = inFlight[id] else { return }
        handle(bytes, for: q, from: server.text, overTCP: false)
    }

    private func handle(_ bytes: [UInt8], for q: Question, from server: String, overTCP: Bool) {
        let reply: Reply
        do {
            reply = try Reply.parse(bytes, id: q.id, name: q.name, type: q.type)
        } catch Reply.ParseError.notOurs {
            // Over UDP, someone else's datagram; over TCP, the server's only answer, and it is not this one.
            if overTCP { retryElsewhere(q, .formatError) }
            return
        } catch {
            log.error("invalid DNS response \(q.id) from \(server) while resolving \(q.name)")
            return retryElsewhere(q, .formatError)
        }
        switch reply.outcome {
        case .truncated:
            if overTCP { return retryElsewhere(q, .formatError) }
            // The same server again over TCP, the resend timer still running (nginx's rn->tcp); a truncated
            // reply to a resend that crossed the switch is ignored.
            guard !q.overTCP else { return }
            q.overTCP = true
            send(q)
        case .failed(ResolveError.formatError.code):
            // nginx takes a "format error" as the server's problem, not the name's: another server is asked.
            log.error("DNS error (\(ResolveError.formatError)), query id:\(q.id), name:\"\(q.name)\"")
            retryElsewhere(q, .formatError)
        default:
            answered(q, reply.outcome)
        }
    }

    /// A server that sent nonsense or dropped TCP: the next one is asked, unless every one has been.
    private func retryElsewhere(_ q: Question, _ error: ResolveError) {
        guard q.server + 1 < q.firstServer + servers.count else { return answered(q, .failed(error.code)) }
        q.server += 1
        send(q)
    }

    private func retire(_ q: Question) {
        q.resend.cancel()
        q.tcp?.cancel()
        q.tcp = nil
        inFlight[q.id] = nil
    }

    /// Once every family of the name has its answer: an error in any is the lookup's (nginx fails the
    /// name then, addresses or not); else the addresses of all; else the last family's CNAME is followed
    /// for every family; else the name is not found.
    private func answered(_ q: Question, _ outcome: Reply.Outcome) {
        let lookup = q.lookup
        retire(q)
        q.outcome = outcome
        guard lookup.questions.allSatisfy({ $0.outcome != nil }) else { return }
        var addresses: [ResolvedAddress] = []
        for question in lookup.questions {
            switch question.outcome {
            case .failed(let code)?:
                return fail(lookup, ResolveError(code: code))
            case .answered(let found, let ttl, let cname)?:
                if !found.isEmpty || cname != nil { lookup.ttl = min(lookup.ttl, ttl) }
                addresses += found
            case .services(let records, let ttl)?:
                // Records or none: an SRV lookup has its answer (nginx takes no records as "not found").
                guard !records.isEmpty else { return fail(lookup, .hostNotFound) }
                store(lookup.key, .success(.services(records)), for: validMs ?? UInt64(ttl) * 1000)
                return finish(lookup, .success(.services(records)))
            default:
                break
            }
        }
        if !addresses.isEmpty {
            store(lookup.key, .success(.addresses(addresses)), for: validMs ?? UInt64(lookup.ttl) * 1000)
            return finish(lookup, .success(.addresses(addresses)))
        }
        if case .answered(_, _, let cname?)? = lookup.questions.last?.outcome, lookup.cnames < DNSClient.maxCNAMEs {
            lookup.cnames += 1
            lookup.questions = []
            return ask(cname, for: lookup)
        }
        fail(lookup, .hostNotFound)
    }

    /// Only "no such host" is cached: another server, or the same one later, may answer the rest.
    private func fail(_ lookup: Lookup, _ error: ResolveError) {
        if error == .hostNotFound { store(lookup.key, .failure(error), for: validMs ?? DNSClient.negativeMs) }
        finish(lookup, .failure(error))
    }

    private func store(_ name: String, _ result: Found, for ms: UInt64) {
        guard ms > 0 else { return }
        if cache.count >= DNSClient.cacheLimit {
            let now = loop.now
            cache = cache.filter { $0.value.expires > now }
            if cache.count >= DNSClient.cacheLimit { cache.removeAll() }
        }
        cache[name] = CacheEntry(result: result, expires: loop.now + ms)
    }

    private func finish(_ lookup: Lookup, _ result: Found) {
        for q in lookup.questions { retire(q) }
        lookup.timer.cancel()
        lookups[lookup.key] = nil
        let waiters = lookup.waiters
        lookup.waiters = []
        for w in waiters { w(result) }
    }
}

/// One name being resolved, shared by every request that asked for it meanwhile.
final class Lookup {
    /// The name asked (and, for SRV, DNSClient.key's mark): what lookups and the cache know it by.
    let key: String
    /// A and/or AAAA, or SRV.
    let types: [RecordType]
    var waiters: [(DNSClient.Found) -> Void]
    let timer: Timer
    /// The families asked of the current name (the looked-up one, or the CNAME it led to), in `types` order.
    var questions: [Question] = []
    var cnames = 0
    var ttl = UInt32.max

    init(key: String, types: [RecordType], done: @escaping (DNSClient.Found) -> Void, timer: Timer) {
        self.key = key
        self.types = types
        self.waiters = [done]
        self.timer = timer
    }
}

/// One query (a name and a type): in flight until it has its outcome.
final class Question {
    let id: UInt16
    let name: String
    let type: RecordType
    unowned let lookup: Lookup
    let firstServer: Int
    var server: Int
    let packet: [UInt8]
    let resend: Timer
    /// A reply came truncated: every later send of it, to any server, is over TCP.
    var overTCP = false
    var tcp: TCPExchange?
    var outcome: Reply.Outcome?

    init(id: UInt16, name: String, type: RecordType, lookup: Lookup, firstServer: Int, resend: Timer) {
        self.id = id
        self.name = name
        self.type = type
        self.lookup = lookup
        self.firstServer = firstServer
        self.server = firstServer
        self.packet = Query.encode(id: id, name: name, type: type)
        self.resend = resend
    }
}

/// A connected UDP socket to one resolver, opened on first use.
final class UDPServer: EventHandler {
    let address: SocketAddress
    let text: String
    unowned(unsafe) var client: DNSClient?
    private var fd: Int32 = -1
    private unowned(unsafe) var loop: EventLoop?

    init(address: SocketAddress, text: String) {
        self.address = address
        self.text = text
    }

    /// nil, or the errno of a failed send.
    func send(_ packet: [UInt8], loop: EventLoop) -> Int32? {
        if fd < 0 {
            let s = socket(address.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard s >= 0 else { return errno }
            guard Socket.connect(s, to: address) == 0 else { let e = errno; Glibc.close(s); return e }
            do { try loop.register(fd: s, events: Events.readable, handler: self) } catch { Glibc.close(s); return EBADF }
            fd = s
            self.loop = loop
        }
        return packet.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } < 0 ? errno : nil
    }

    func handleEvent(_ events: UInt32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while fd >= 0 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                // ECONNREFUSED: a server that is not there; the resend timer moves its questions on.
                if errno == EINTR || errno == ECONNREFUSED { continue }
                return
            }
            client?.received(Array(buffer[0..<n]), from: self)
        }
    }

    func close(_ loop: EventLoop) {
        guard fd >= 0 else { return }
        loop.close(fd: fd)
        fd = -1
    }
}

/// One query over TCP (RFC 1035 4.2.2: each message behind its two-byte length), for a truncated reply.
final class TCPExchange: EventHandler {
    private unowned(unsafe) let loop: EventLoop
    private var fd: Int32
    private var out: [UInt8]
    private var sent = 0
    private var input: [UInt8] = []
    private var done: (([UInt8]?) -> Void)?

    init(loop: EventLoop, address: SocketAddress, query: [UInt8], _ done: @escaping ([UInt8]?) -> Void) {
        self.loop = loop
        self.out = [UInt8(query.count >> 8), UInt8(query.count & 0xFF)] + query
        self.done = done
        fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0, Socket.connect(fd, to: address) == 0 || errno == EINPROGRESS,
              (try? loop.register(fd: fd, events: Events.writable, handler: self)) != nil else {
            loop.schedule(after: 0) { [weak self] in self?.end(nil) }
            return
        }
    }

    func handleEvent(_ events: UInt32) {
        if sent < out.count {
            let n = out[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 { return errno == EAGAIN || errno == EINTR ? () : end(nil) }
            sent += n
            if sent == out.count { try? loop.modify(fd: fd, events: Events.readable) }
            return
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { return errno == EAGAIN || errno == EINTR ? () : end(nil) }
            if n == 0 { return end(nil) }
            input += buffer[0..<n]
            if input.count >= 2 {
                let length = Int(input[0]) << 8 | Int(input[1])
                if input.count >= 2 + length { return end(Array(input[2..<(2 + length)])) }
            }
        }
    }

    func cancel() {
        done = nil
        if fd >= 0 { loop.close(fd: fd); fd = -1 }
    }

    private func end(_ reply: [UInt8]?) {
        let d = done
        cancel()
        d?(reply)
    }
}
