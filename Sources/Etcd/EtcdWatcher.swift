#if canImport(Glibc)
import Glibc
#endif
import Core
import Event
import HTTP

/// nginx-upsync-module's `upsync … upsync_type=etcd`, on etcd's v3 API: a non-blocking client on an event loop
/// that reads every key under an upstream's prefix, then watches the prefix from the next revision, so a
/// change reaches it as etcd commits it (no polling). It hands on the whole set of servers after each change.
/// While etcd cannot be reached it keeps the set it has and tries again every `retryMs`; back, it reads the
/// whole prefix again. A key that is not `ADDRESS:PORT`, or a value that is not upsync's JSON, is logged and
/// left out, keeping what the key held before. One process runs it, never every worker.
public final class EtcdWatcher: EventHandler {
    public typealias Change = ([UpsyncPeer]) -> Void

    private let loop: EventLoop
    private let address: SocketAddress
    /// `HOST:PORT` as configured: the Host header and the log lines.
    private let authority: String
    private let prefix: String
    private let timeoutMs: UInt64
    private let retryMs: UInt64
    private let log: ErrorLog
    /// The upstream's name, for log lines.
    private let upstream: String
    private let onChange: Change

    private enum Phase { case idle, connecting, ranging, watching }
    private var phase = Phase.idle
    private var fd: Int32 = -1
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var head: ResponseHead?
    private var chunked = ChunkedDecoder()
    /// The watch stream's bytes after de-chunking, up to the end of the current line.
    private var line: [UInt8] = []
    private lazy var timer = loop.makeTimer()
    private var failing = false
    private var stopped = false

    /// The servers by key, and the set last handed on.
    private var peers: [String: UpsyncPeer] = [:]
    private var published: [UpsyncPeer]?
    /// The store's revision the set is from.
    public private(set) var revision = 0
    /// Whether a read of the whole prefix has succeeded since start (`strong_dependency` asks for one).
    public private(set) var hasSynced = false
    /// Called once, after the first read of the prefix or the first failure, whichever comes first.
    public var onFirstResult: (() -> Void)?

    /// A reply or a watch line larger than this is refused: 10,000 servers' keys and values fit easily.
    static let maxReply = 8 << 20

    public init(loop: EventLoop, address: SocketAddress, authority: String, prefix: String, timeoutMs: UInt64, retryMs: UInt64,
                log: ErrorLog, upstream: String, onChange: @escaping Change) {
        self.loop = loop
        self.address = address
        self.authority = authority
        self.prefix = prefix
        self.timeoutMs = timeoutMs
        self.retryMs = retryMs
        self.log = log
        self.upstream = upstream
        self.onChange = onChange
    }

    public func start() {
        stopped = false
        connect()
    }

    public func stop() {
        stopped = true
        timer.cancel()
        closeSocket()
    }

    // MARK: the connection

    private func connect() {
        guard !stopped else { return }
        fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return fail("socket() failed (\(Errno.text(errno)))") }
        let rc = Socket.connect(fd, to: address)
        guard rc == 0 || errno == EINPROGRESS else { return fail("connect() to \(authority) failed (\(Errno.text(errno)))") }
        do {
            try loop.register(fd: fd, events: Events.writable | Events.readable, handler: self)
        } catch {
            return fail("epoll_ctl() failed")
        }
        phase = .connecting
        timer.rearm(after: timeoutMs) { [unowned self] in self.fail("etcd at \(self.authority) timed out") }
        request("/v3/kv/range", EtcdV3.rangeBody(prefix: prefix))
    }

    private func request(_ path: String, _ body: String) {
        output += Array("POST \(path) HTTP/1.1\r\nHost: \(authority)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        head = nil
        chunked = ChunkedDecoder()
    }

    public func handleEvent(_ events: UInt32) {
        if phase == .connecting {
            let e = Socket.pendingError(fd)
            guard e == 0 else { return fail("connect() to \(authority) failed (\(Errno.text(e)))") }
            phase = .ranging
        }
        if events & Events.writable != 0 && !output.isEmpty { flush() }
        if fd >= 0 && events & (Events.readable | Events.hangup | Events.error | Events.readHangup) != 0 { read() }
    }

    private func flush() {
        let n = output.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n < 0 {
            if errno == EAGAIN || errno == EINTR { return }
            return fail("send() to \(authority) failed (\(Errno.text(errno)))")
        }
        output.removeFirst(n)
        if output.isEmpty { try? loop.modify(fd: fd, events: Events.readable) }
    }

    private func read() {
        var buf = [UInt8](repeating: 0, count: 65536)
        while fd >= 0 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                input += buf[..<n]
                guard input.count <= EtcdWatcher.maxReply else { return fail("etcd at \(authority) sent a reply too large") }
                if phase == .watching { timer.rearm(after: timeoutMs) }
                process()
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            return fail(n == 0 ? "etcd at \(authority) closed the connection" : "recv() from \(authority) failed (\(Errno.text(errno)))")
        }
    }

    /// What has come in so far: the head, then the range reply whole or the watch stream line by line.
    private func process() {
        if head == nil {
            let parsed = input.withUnsafeBytes { ResponseParser.parse($0) }
            switch parsed {
            case .incomplete: return
            case .invalid(let why): return fail("etcd at \(authority) sent an invalid response (\(why))")
            case .complete(let h, let consumed):
                input.removeFirst(consumed)
                guard h.status == 200 else { return fail("etcd at \(authority) answered \(h.status)") }
                head = h
            }
        }
        guard let head else { return }
        if phase == .ranging {
            let body: [UInt8]
            if head.chunked {
                switch dechunk() {
                case .error(let why): return fail("etcd at \(authority) sent a bad chunked reply (\(why))")
                case .data: return
                case .end:
                    body = line
                    line = []
                }
            } else {
                guard let length = head.contentLength, input.count >= length else {
                    if head.contentLength == nil { return fail("etcd at \(authority) sent a reply of unknown length") }
                    return
                }
                body = Array(input[..<length])
                input.removeFirst(length)
            }
            return ranged(body)
        }
        guard head.chunked else { return fail("etcd at \(authority) sent a watch stream that is not chunked") }
        switch dechunk() {
        case .error(let why): return fail("etcd at \(authority) sent a bad watch stream (\(why))")
        case .end: return fail("etcd at \(authority) ended the watch")
        case .data: break
        }
        while let newline = line.firstIndex(of: 0x0A) {
            let message = Array(line[..<newline])
            line.removeFirst(newline + 1)
            guard watched(message) else { return }
        }
    }

    /// The chunked body's data so far onto `line`, and what the decoder consumed gone from the input (the
    /// decoder keeps its place between reads).
    private func dechunk() -> ChunkedDecoder.Event {
        let event = input.withUnsafeBytes { buf in chunked.feed(buf) { line += buf[$0] } }
        switch event {
        case .error: break
        case .end(let consumed): input.removeFirst(consumed)
        case .data: input.removeAll(keepingCapacity: true)
        }
        return event
    }

    /// The server a key and its value describe; nil, logged, when they describe none (the key then keeps what
    /// it held before).
    private func server(_ pair: EtcdV3.KeyValue) -> UpsyncPeer? {
        switch UpsyncPeer.parse(key: pair.key, value: pair.value) {
        case .success(let p): return p
        case .failure(let why):
            log.warn("upsync: \(why), ignored, upstream \"\(upstream)\"")
            return nil
        }
    }

    private func ranged(_ body: [UInt8]) {
        guard let (pairs, rev) = EtcdV3.rangeReply(body) else { return fail("etcd at \(authority) sent a range reply that is not etcd's") }
        var fresh: [String: UpsyncPeer] = [:]
        for pair in pairs { fresh[pair.key] = server(pair) ?? peers[pair.key] }
        peers = fresh
        revision = rev
        hasSynced = true
        firstResult()
        if failing {
            failing = false
            log.notice("upsync: etcd at \(authority) answers again, upstream \"\(upstream)\"")
        }
        publish()
        phase = .watching
        request("/v3/watch", EtcdV3.watchBody(prefix: prefix, from: rev + 1))
        try? loop.modify(fd: fd, events: Events.readable | Events.writable)
        timer.rearm(after: timeoutMs) { [unowned self] in
            // A quiet watch past upsync_timeout is read again whole: cheap, and it heals a connection lost
            // without a word.
            self.closeSocket()
            self.connect()
        }
    }

    /// One line of the watch stream; false when the watch had to start over.
    private func watched(_ text: [UInt8]) -> Bool {
        switch EtcdV3.watchMessage(text) {
        case nil:
            fail("etcd at \(authority) sent a watch message that is not etcd's")
            return false
        case .ended(let why):
            fail("etcd ended the watch (\(why))")
            return false
        case .created:
            return true
        case .changes(let changes, let rev):
            for change in changes {
                switch change {
                case .delete(let key): peers[key] = nil
                case .put(let pair):
                    if let p = server(pair) { peers[pair.key] = p }
                }
            }
            revision = max(revision, rev)
            publish()
            return true
        }
    }

    private func publish() {
        let set = peers.keys.sorted().map { peers[$0]! }
        guard set != published else { return }
        published = set
        onChange(set)
    }

    /// Logs the first failure of a run of them, keeps the servers it has, and tries again after `retryMs`.
    private func fail(_ why: String) {
        firstResult()
        if !failing {
            failing = true
            log.error("upsync: \(why), upstream \"\(upstream)\"; keeping its \(peers.count) servers")
        }
        closeSocket()
        guard !stopped else { return }
        timer.rearm(after: retryMs) { [unowned self] in self.connect() }
    }

    private func firstResult() {
        let f = onFirstResult
        onFirstResult = nil
        f?()
    }

    private func closeSocket() {
        if fd >= 0 { loop.close(fd: fd) }
        fd = -1
        phase = .idle
        input = []
        output = []
        line = []
        head = nil
    }
}
