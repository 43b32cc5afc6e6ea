import Foundation

/// Client threads sending GETs to 127.0.0.1:port for a fixed time, counting answers and failures (with the time
/// each failure happened). A keep-alive client reconnects after an error or a `Connection: close`, as wrk and
/// browsers do; a fresh-connection client opens one connection per request.
public final class Load: @unchecked Sendable {
    public struct Failure: CustomStringConvertible {
        public let at: Date
        public let what: String
        public var description: String { what }
    }

    private let lock = NSLock()
    private var okCount = 0
    private var failureList: [Failure] = []
    private let group = DispatchGroup()

    /// Starts `keepAlive` keep-alive clients and `fresh` fresh-connection clients at once. A request succeeds when
    /// the answer is a 200 (with `body`, if given).
    public init(port: UInt16, keepAlive: Int, fresh: Int = 0, seconds: TimeInterval, path: String = "/", body: String? = nil) {
        let deadline = Date().addingTimeInterval(seconds)
        for k in 0..<(keepAlive + fresh) {
            let reuse = k < keepAlive
            group.enter()
            Thread {
                defer { self.group.leave() }
                var done = 0
                var conn: HTTPConnection?
                while Date() < deadline {
                    do {
                        if conn == nil { conn = try HTTPConnection(port: port) }
                        try conn!.send(getRequest(path, headers: reuse ? [] : ["Connection: close"]))
                        let r = try conn!.readResponse()
                        guard r.status == 200, body == nil || r.text == body else { throw HTTPClientError("status \(r.status), body \(r.text.prefix(40).debugDescription)") }
                        done += 1
                        if !reuse || r.header("Connection") == "close" { conn?.close(); conn = nil }
                    } catch {
                        self.fail("\(error)")
                        conn?.close()
                        conn = nil
                    }
                }
                conn?.close()
                self.lock.lock()
                self.okCount += done
                self.lock.unlock()
            }.start()
        }
    }

    private func fail(_ what: String) {
        lock.lock()
        failureList.append(Failure(at: Date(), what: what))
        lock.unlock()
    }

    /// Waits for every client to finish; false if they have not within `timeout`.
    @discardableResult
    public func wait(timeout: TimeInterval = 20) -> Bool { group.wait(timeout: .now() + timeout) == .success }

    /// Answered requests (complete once `wait` returned).
    public var ok: Int {
        lock.lock(); defer { lock.unlock() }
        return okCount
    }

    public var failures: [Failure] {
        lock.lock(); defer { lock.unlock() }
        return failureList
    }

    /// Requests sent: answered plus failed.
    public var sent: Int { ok + failures.count }
}
